"""Small shared helpers: turning user arguments into per-dimension tuples, with clear errors."""

from __future__ import annotations

import operator
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


def is_int(value: Any) -> bool:
    """Whether ``value`` is an integer (``int``, NumPy integer...), a bool not counting as one.

    >>> is_int(3), is_int(True), is_int(3.0)
    (True, False, False)
    """
    if isinstance(value, bool):
        return False
    if isinstance(value, int):
        return True
    if isinstance(value, (Sequence, str, float)) or not hasattr(type(value), "__index__"):
        return False
    try:
        operator.index(value)
    except TypeError:
        return False
    return True


def check_int(value: Any, name: str, *, allow_zero: bool = False) -> int:
    """``value`` as an int, or :class:`ParameterTypeError` (not an int: a bool is none) /
    :class:`ParameterError` (not > 0, or not >= 0 with ``allow_zero``).

    >>> check_int(3, "groups")
    3
    >>> check_int(True, "groups")
    Traceback (most recent call last):
    ...
    convlens.errors.ParameterTypeError: groups: expected an int, received bool
    """
    expected = "a non-negative int" if allow_zero else "a positive int"
    if not is_int(value):
        raise ParameterTypeError(name, "an int", value)
    v = operator.index(value)
    if v < 0 or (v == 0 and not allow_zero):
        raise ParameterError(name, expected, value)
    return v


def check_pair(value: Any, name: str) -> tuple[int, int]:
    """A ``(before, after)`` pair of non-negative ints.

    >>> check_pair((1, 2), "padding")
    (1, 2)
    """
    if not isinstance(value, Sequence) or isinstance(value, str) or len(value) != 2:
        raise ParameterError(name, "a pair (before, after) of non-negative ints", value)
    if not all(is_int(v) for v in value):
        raise ParameterTypeError(name, "a pair (before, after) of non-negative ints", value)
    lo, hi = (operator.index(v) for v in value)
    if lo < 0 or hi < 0:
        raise ParameterError(name, "a pair (before, after) of non-negative ints", value)
    return lo, hi
