"""The component's settings from `wharf.toml` (`[components.<name>.config]`)."""

from typing import Optional


def get(key: str, default: Optional[str] = None) -> Optional[str]:
    from wit_world.imports import config

    value = config.get(key)
    return default if value is None else value
