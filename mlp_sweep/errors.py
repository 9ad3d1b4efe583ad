"""Errors a user can act on: each message is one line naming the key, the value and the choices."""


class MlpSweepError(Exception):
    """Base of every error mlp_sweep reports as one line instead of a traceback."""


class ConfigError(MlpSweepError):
    """A config value that composes but makes no sense (lr <= 0, hidden width 0, ...)."""

    def __init__(self, key: str, value: object, allowed: str) -> None:
        self.key, self.value, self.allowed = key, value, allowed
        super().__init__(f"{key}={value!s}: {allowed}")


class DeviceError(ConfigError):
    """`device=` names no device, or one this machine does not have."""


class DataError(MlpSweepError):
    """A dataset that is missing, truncated or corrupted."""


class ConfigMismatch(MlpSweepError):
    """A run folder that holds a run of another config: refused, never overwritten."""


def first_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[0] if lines else ""


def one_line(err: BaseException) -> str:
    """Any error as the one line a console or a record shows: ours as they say it, another's
    as its type and the first line of its message."""
    message = first_line(str(err))
    if isinstance(err, MlpSweepError):
        return message
    return f"{type(err).__name__}: {message}" if message else type(err).__name__
