"""``convlens explore``: one self-contained HTML page to play with conv, transposed conv and C.

The page is vanilla JavaScript and SVG inlined into a single file: no build step, nothing fetched
(a Content-Security-Policy forbids any request), it works from ``file://``. Its settings live in
the URL query (``?mode=transpose&dims=2&input=5&kernel=3&stride=2&padding=1&output_padding=1``),
so a link shares one configuration. The views follow Dumoulin & Visin, *A guide to convolution
arithmetic for deep learning*, arXiv:1603.07285: the kernel sliding over the padded input, the
transposed convolution as a scatter and as a fractionally strided convolution, the matrix ``C``
(or ``Cᵀ``) and the overlap count of every output pixel of a transposed convolution.

The page computes the geometry in JavaScript with the definitions of
:class:`convlens.arithmetic.LayerSpec`; ``tests/test_explore_browser.py`` proves the two equal
on seeded random configurations. This module validates the initial state with
:class:`~convlens.arithmetic.LayerSpec`, renders the Jinja2 template (autoescape) and writes the
file atomically.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "explorer.html"
>>> write_explorer(out, mode="transpose", input=5, kernel=3, stride=2, padding=1).name
'explorer.html'
>>> initial_state(mode="transpose", input=5, kernel=3, stride=2, padding=1)["output_padding"]
[0, 0]
"""

from __future__ import annotations

import base64
import functools
import hashlib
import json
import math
import os
import tempfile
from importlib import resources
from pathlib import Path
from typing import Any

import jinja2

from convlens import __version__
from convlens._utils import as_tuple
from convlens.arithmetic import LayerSpec
from convlens.errors import ParameterError, ParameterTypeError

__all__ = [
    "LIMITS",
    "MODES",
    "STATE_KEYS",
    "describe_state",
    "initial_state",
    "render_explorer",
    "write_explorer",
]

#: The page's bounds on each setting (inclusive), and on what it draws. ``draw``: the longest
#: grid axis (padded input, scatter or zero-inserted canvas) that is drawn; ``matrix_nnz``: the
#: most non-zeros of ``C`` drawn. Larger settings still get every number, only not the pictures.
LIMITS: dict[str, int] = {
    "input": 32,
    "kernel": 32,
    "stride": 16,
    "padding": 32,
    "dilation": 16,
    "draw": 96,
    "matrix_nnz": 60000,
}
MODES = ("conv", "transpose")
#: The settings of the page, in the order of its URL query.
STATE_KEYS = (
    "mode",
    "dims",
    "input",
    "kernel",
    "stride",
    "padding",
    "dilation",
    "output_padding",
    "step",
    "by",
)
_DEFAULTS: dict[str, Any] = {
    "mode": "conv",
    "input": 5,
    "kernel": 3,
    "stride": 1,
    "padding": 0,
    "dilation": 1,
    "output_padding": 0,
    "step": 0,
    "by": "input",
}
# The geometry controls: (key, label, smallest value, help text).
_PARAMS = (
    ("input", "input size", 1, f"This layer's input: 1 to {LIMITS['input']} per axis."),
    ("kernel", "kernel k", 1, ""),
    ("stride", "stride s", 1, ""),
    ("padding", "padding p", 0, "Zeros on each side; a conv also takes same or valid."),
    ("dilation", "dilation d", 1, "Spacing of the kernel taps (1: none)."),
    ("output_padding", "output padding", 0, "Transposed convolutions only."),
)
#: Written into every page; a file without it was not written by convlens and is never replaced.
GENERATOR = f"convlens explore {__version__}"


def _infer_dims(state: dict[str, Any]) -> int:
    for key in ("input", "kernel", "stride", "padding", "dilation", "output_padding"):
        value = state.get(key)
        if isinstance(value, (tuple, list)):
            return len(value)
    return 2


def _axis_values(value: Any, dims: int, name: str, low: int) -> list[int]:
    values = as_tuple(value, dims, name)
    top = LIMITS.get(name)
    for v in values:
        if v < low or (top is not None and v > top):
            bound = f"from {low} to {top}" if top is not None else f"at least {low}"
            raise ParameterError(
                name, f"an int {bound} per axis in the explorer", value if dims > 1 else v
            )
    return list(values)


def _spec(state: dict[str, Any]) -> LayerSpec:
    pad = state["padding"]
    padding = pad if isinstance(pad, str) else tuple(pad)
    if state["mode"] == "conv":
        if any(state["output_padding"]):
            raise ParameterError(
                "output_padding", "0 for a convolution (transposed convolutions only)",
                state["output_padding"],
            )  # fmt: skip
        return LayerSpec.conv(
            tuple(state["kernel"]), tuple(state["stride"]), padding, tuple(state["dilation"]),
            ndim=state["dims"],
        )  # fmt: skip
    if isinstance(padding, str):
        raise ParameterError(
            "padding", "ints for a transposed convolution ('same'/'valid' are for conv)", padding
        )
    return LayerSpec.conv_transpose(
        tuple(state["kernel"]), tuple(state["stride"]), padding, tuple(state["output_padding"]),
        1, tuple(state["dilation"]), ndim=state["dims"],
    )  # fmt: skip


def initial_state(**state: Any) -> dict[str, Any]:
    """The page's settings, validated: per-axis values as lists of ``dims`` ints.

    Keys are :data:`STATE_KEYS` (all optional): ``mode`` (``'conv'`` or ``'transpose'``),
    ``dims`` (1 or 2; default: the length of any list given, else 2), ``input``, ``kernel``,
    ``stride``, ``padding`` (ints, or ``'same'``/``'valid'`` for a conv), ``dilation``,
    ``output_padding`` (transposed conv), ``step`` (0-based) and ``by`` (``'input'`` or
    ``'output'``: what the step walks over for a transposed conv). Raises
    :class:`~convlens.errors.ParameterError` for what PyTorch or the page refuses.

    >>> initial_state(input=(5, 7), kernel=3, padding="same")["padding"]
    'same'
    """
    unknown = sorted(set(state) - set(STATE_KEYS))
    if unknown:
        raise ParameterError("initial_state", f"keys among {', '.join(STATE_KEYS)}", unknown[0])
    merged = {**_DEFAULTS, **{k: v for k, v in state.items() if v is not None}}
    if merged["mode"] not in MODES:
        raise ParameterError("mode", "'conv' or 'transpose'", merged["mode"])
    dims = state.get("dims")
    dims = _infer_dims(state) if dims is None else dims
    if isinstance(dims, bool) or not isinstance(dims, int):
        raise ParameterTypeError("dims", "1 or 2", dims)
    if dims not in (1, 2):
        raise ParameterError("dims", "1 or 2 (the explorer draws 1-D and 2-D)", dims)
    out: dict[str, Any] = {"mode": merged["mode"], "dims": dims}
    for key, low in (("input", 1), ("kernel", 1), ("stride", 1), ("dilation", 1)):
        out[key] = _axis_values(merged[key], dims, key, low)
    pad = merged["padding"]
    if isinstance(pad, str):
        if pad not in ("same", "valid"):
            raise ParameterError("padding", "ints, 'same' or 'valid'", pad)
        out["padding"] = pad
    else:
        out["padding"] = _axis_values(pad, dims, "padding", 0)
    out["output_padding"] = _axis_values(merged["output_padding"], dims, "output_padding", 0)
    spec = _spec(out)
    size = spec.output_size(tuple(out["input"]))
    if merged["by"] not in ("input", "output"):
        raise ParameterError("by", "'input' or 'output'", merged["by"])
    out["by"] = merged["by"]
    walks_input = out["mode"] == "transpose" and out["by"] == "input"
    steps = math.prod(out["input"] if walks_input else size)
    step = merged["step"]
    if isinstance(step, bool) or not isinstance(step, int) or not 0 <= step < steps:
        raise ParameterError("step", f"an int from 0 to {steps - 1}", step)
    out["step"] = step
    return out


def describe_state(**state: Any) -> str:
    """One line on the layer of a (valid) state: its kind and input → output size.

    >>> describe_state(mode="transpose", input=5, kernel=3, stride=2, padding=1, output_padding=1)
    'transposed conv 5×5 → 10×10'
    """
    out = initial_state(**state)
    size = _spec(out).output_size(tuple(out["input"]))
    kind = "conv" if out["mode"] == "conv" else "transposed conv"
    return f"{kind} {'×'.join(map(str, out['input']))} → {'×'.join(map(str, size))}"


@functools.lru_cache(maxsize=1)
def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("convlens.explore", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def _static(name: str) -> str:
    text = resources.files("convlens.explore").joinpath("static").joinpath(name).read_text("utf-8")
    closing = "</script" if name.endswith(".js") else "</style"
    if closing in text.lower():  # would end the inline element early
        raise ParameterError(f"static/{name}", f"no {closing!r}", "a file containing it")
    return text


def _csp_hash(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode()


def render_explorer(**state: Any) -> str:
    """The page as one HTML string, starting in the settings ``state`` (see :func:`initial_state`).

    >>> "data-testid=\\"output-size\\"" in render_explorer(input=6)
    True
    """
    initial = initial_state(**state)
    script, style = _static("explorer.js"), _static("explorer.css")
    config = {"initial": initial, "limits": LIMITS, "version": __version__, "keys": STATE_KEYS}
    return (
        _environment()
        .get_template("explorer.html.j2")
        .render(
            config=json.dumps(config, sort_keys=True),
            generator=GENERATOR,
            script=script,
            style=style,
            script_hash=_csp_hash(script),
            style_hash=_csp_hash(style),
            version=__version__,
            params=_PARAMS,
        )
    )


def _written_by_us(path: Path) -> bool:
    try:
        with path.open("r", encoding="utf-8", errors="replace") as f:
            head = f.read(4096)
    except OSError:
        return False
    return '<meta name="generator" content="convlens explore' in head


def write_explorer(path: str | os.PathLike[str], **initial_state: Any) -> Path:
    """Write the explorer page to ``path`` (atomically) and return the path.

    ``initial_state`` is the page's starting configuration (see :func:`initial_state`); the URL
    query still overrides it when the page is opened. An existing file is replaced only if an
    earlier ``write_explorer`` wrote it.

    >>> import tempfile, pathlib
    >>> p = write_explorer(pathlib.Path(tempfile.mkdtemp()) / "e.html", dims=1, input=8, kernel=4)
    >>> p.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    True
    """
    out = Path(path)
    if out.is_dir():
        raise ParameterError("out", "a file path, not a folder", str(out))
    if out.exists() and not _written_by_us(out):
        raise ParameterError(
            "out", "a new file or one that convlens explore wrote", str(out),
            hint="convlens never overwrites a file it did not write",
        )  # fmt: skip
    if not out.parent.is_dir():
        raise ParameterError("out", "a path in an existing folder", str(out))
    html = render_explorer(**initial_state)
    fd, tmp = tempfile.mkstemp(suffix=".html", prefix=".convlens-", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(html)
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return out
