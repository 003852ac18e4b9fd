"""Structured log lines through the host (`wharf:plugin/log`): they carry the
component's name and the request id. Fields are keyword arguments."""


def _log(level_name: str, message: str, fields) -> None:
    from wit_world.imports import log

    level = getattr(log.Level, level_name)
    log.log(level, message, [(k, str(v)) for k, v in fields.items()])


def debug(message: str, **fields) -> None:
    _log("DEBUG", message, fields)


def info(message: str, **fields) -> None:
    _log("INFO", message, fields)


def warn(message: str, **fields) -> None:
    _log("WARN", message, fields)


def error(message: str, **fields) -> None:
    _log("ERROR", message, fields)
