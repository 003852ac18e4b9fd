"""What a host capability fails with, as one Python exception."""


class CapabilityError(Exception):
    """The host could not serve a capability call.

    `kind` is the WIT `error` case: "invalid" (the call itself is wrong: a
    bad key, a stream not granted), "unavailable" (Redis, for now: try
    again) or "internal".
    """

    def __init__(self, kind: str, message: str):
        super().__init__(f"{kind}: {message}")
        self.kind = kind
        self.message = message


def host(fn, *args):
    """Calls the generated binding `fn`, turning its `Err` into `CapabilityError`."""
    from componentize_py_types import Err

    try:
        return fn(*args)
    except Err as e:
        err = e.value
        kind = type(err).__name__.split("_")[-1].lower()
        raise CapabilityError(kind, getattr(err, "value", str(err))) from None
