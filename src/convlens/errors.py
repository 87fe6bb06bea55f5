"""The one exception family of convlens.

Every error that convlens raises on purpose derives from :class:`ConvLensError`, so
``except convlens.ConvLensError`` catches them all. Bad values are also ``ValueError``s and
bad types ``TypeError``s, so code that already catches those keeps working.

Messages follow one pattern: the parameter, what was expected, what was received.

>>> from convlens.errors import ParameterError
>>> str(ParameterError("stride", "a positive int", 0))
'stride: expected a positive int, received 0'
"""

from __future__ import annotations

from typing import Any

__all__ = ["ConvLensError", "ParameterError", "ParameterTypeError", "UnsupportedModuleError"]


class ConvLensError(Exception):
    """Base class of every error convlens raises on purpose."""


def _format(param: str, expected: str, received: Any, hint: str | None) -> str:
    shown = received if isinstance(received, _Verbatim) else repr(received)
    msg = f"{param}: expected {expected}, received {shown}"
    return f"{msg}. {hint}" if hint else msg


class _Verbatim(str):
    """A received value that is already a description (shown without quotes)."""


def verbatim(text: str) -> Any:
    """Mark ``text`` as a description of the received value rather than the value itself."""
    return _Verbatim(text)


class ParameterError(ConvLensError, ValueError):
    """A parameter has a value convlens cannot work with.

    Attributes ``param``, ``expected`` and ``received`` keep the parts of the message.
    """

    def __init__(self, param: str, expected: str, received: Any, hint: str | None = None):
        self.param, self.expected, self.received, self.hint = param, expected, received, hint
        super().__init__(_format(param, expected, received, hint))


class ParameterTypeError(ConvLensError, TypeError):
    """A parameter has a type convlens cannot work with."""

    def __init__(self, param: str, expected: str, received: Any, hint: str | None = None):
        self.param, self.expected, self.received, self.hint = param, expected, received, hint
        super().__init__(_format(param, expected, verbatim(type(received).__name__), hint))


class UnsupportedModuleError(ConvLensError, ValueError):
    """A module inside a model has a type that an operation does not support."""

    def __init__(self, path: str, module_type: str, supported: list[str], operation: str):
        self.path, self.module_type, self.supported = path, module_type, supported
        super().__init__(
            f"module {path!r}: expected one of {', '.join(supported)} for {operation}, "
            f"received {module_type}"
        )
