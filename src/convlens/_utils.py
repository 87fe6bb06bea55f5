"""Small shared helpers: turning user arguments into per-dimension tuples, with clear errors."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from convlens.errors import ParameterError, ParameterTypeError


def as_tuple(value: Any, ndim: int, name: str) -> tuple[int, ...]:
    """``value`` (an int or a sequence of ``ndim`` ints) as a tuple of ``ndim`` ints.

    >>> as_tuple(3, 2, "stride"), as_tuple((1, 2), 2, "stride")
    ((3, 3), (1, 2))
    """
    if isinstance(value, bool):
        raise ParameterTypeError(name, f"an int or a sequence of {ndim} ints", value)
    if isinstance(value, int):
        return (value,) * ndim
    if hasattr(value, "__index__") and not isinstance(value, Sequence):
        return (int(value),) * ndim
    if isinstance(value, Sequence) and not isinstance(value, str):
        items = tuple(value)
        if len(items) == 1 and ndim != 1:
            items = items * ndim
        if len(items) != ndim or not all(
            isinstance(v, int) and not isinstance(v, bool) for v in items
        ):
            raise ParameterError(name, f"an int or a sequence of {ndim} ints", value)
        return items
    raise ParameterTypeError(name, f"an int or a sequence of {ndim} ints", value)


def infer_ndim(*values: Any, default: int = 2) -> int:
    """The number of spatial dimensions implied by the first sequence among ``values``."""
    for v in values:
        if isinstance(v, Sequence) and not isinstance(v, str) and len(v) > 1:
            return len(v)
    for v in values:
        if isinstance(v, Sequence) and not isinstance(v, str) and len(v) == 1:
            return 1
    return default


def check_positive(values: tuple[int, ...], name: str, *, allow_zero: bool = False) -> None:
    """Raise :class:`ParameterError` unless every value is > 0 (>= 0 with ``allow_zero``)."""
    bad = [v for v in values if v < 0 or (v == 0 and not allow_zero)]
    if bad:
        what = "non-negative ints" if allow_zero else "positive ints"
        received = values[0] if len(values) == 1 else values
        raise ParameterError(name, what, received)
