"""``convlens explore`` without a browser: the written file, its validation, its CLI.

The geometry the page computes is checked in a real browser by ``test_explore_browser.py``;
here: the initial state is refused exactly where PyTorch refuses the layer (the reference is
``torch.nn.functional``), the file is self-contained (a Content-Security-Policy whose hashes
match the inline script and style, nothing fetched), it is written atomically and never over a
file convlens did not write, and the CLI passes its options through.
"""

from __future__ import annotations

import base64
import hashlib
import html.parser
import json
import re
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from convlens.cli import COMMANDS, cli, main
from convlens.errors import ParameterError
from convlens.explore import LIMITS, STATE_KEYS, initial_state, render_explorer, write_explorer


class _Page(html.parser.HTMLParser):
    """The parts of the page the tests read: meta tags, inline script/style, body attributes,
    every src/href."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.body: dict[str, str] = {}
        self.links: list[str] = []
        self.inline: dict[str, list[str]] = {"script": [], "style": []}
        self._in: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "meta":
            key = a.get("name") or a.get("http-equiv") or ""
            self.meta[key.lower()] = a.get("content", "")
        if tag == "body":
            self.body = a
        self.links += [a[k] for k in ("src", "href") if k in a]
        if tag in self.inline:
            self._in = tag
            self.inline[tag].append("")

    def handle_endtag(self, tag: str) -> None:
        if tag == self._in:
            self._in = None

    def handle_data(self, data: str) -> None:
        if self._in:
            self.inline[self._in][-1] += data


def parse_page(text: str) -> _Page:
    page = _Page()
    page.feed(text)
    return page


def _sha256(text: str) -> str:
    return "sha256-" + base64.b64encode(hashlib.sha256(text.encode()).digest()).decode()


# --- the file -------------------------------------------------------------------------------------


def test_the_page_is_self_contained_and_its_policy_allows_only_its_own_code() -> None:
    page = parse_page(render_explorer(mode="transpose", input=5, kernel=3, stride=2, padding=1))
    (script,), (style,) = page.inline["script"], page.inline["style"]
    policy = dict(
        part.strip().split(" ", 1) for part in page.meta["content-security-policy"].split(";")
    )
    assert policy["default-src"] == "'none'"
    assert policy["script-src"] == f"'{_sha256(script)}'"
    assert policy["style-src"] == f"'{_sha256(style)}'"
    assert policy["img-src"] == "'none'"
    # nothing to fetch: no external src/href, only the page's own query links
    assert all(link.startswith("?") for link in page.links), page.links
    assert not re.search(r"\b(fetch|XMLHttpRequest|import\s*\(|eval\s*\(|innerHTML)\b", script)
    assert page.meta["generator"].startswith("convlens explore")


def test_the_config_attribute_round_trips_the_initial_state() -> None:
    state = {"mode": "conv", "input": (7, 9), "kernel": 4, "padding": "same", "dilation": 2}
    page = parse_page(render_explorer(**state))
    config = json.loads(page.body["data-config"])
    assert config["initial"] == initial_state(**state)
    assert config["initial"]["input"] == [7, 9]
    assert config["initial"]["dims"] == 2
    assert config["limits"] == LIMITS
    assert tuple(config["keys"]) == STATE_KEYS


def test_write_is_atomic_and_replaces_only_its_own_file(tmp_path: Path) -> None:
    out = tmp_path / "explorer.html"
    assert write_explorer(out, input=6) == out
    first = out.read_text(encoding="utf-8")
    write_explorer(out, input=7)  # its own file: replaced
    assert out.read_text(encoding="utf-8") != first
    assert sorted(p.name for p in tmp_path.iterdir()) == ["explorer.html"]  # no temp file left
    foreign = tmp_path / "notes.html"
    foreign.write_text("<!DOCTYPE html><p>mine</p>", encoding="utf-8")
    with pytest.raises(ParameterError, match="did not write"):
        write_explorer(foreign)
    assert foreign.read_text(encoding="utf-8") == "<!DOCTYPE html><p>mine</p>"
    with pytest.raises(ParameterError, match="folder"):
        write_explorer(tmp_path)
    with pytest.raises(ParameterError, match="existing folder"):
        write_explorer(tmp_path / "missing" / "e.html")
    # a refused state writes nothing
    with pytest.raises(ParameterError):
        write_explorer(tmp_path / "bad.html", kernel=9, input=4)
    assert not (tmp_path / "bad.html").exists()


def test_package_data_ships_beside_the_module() -> None:
    """The template and the static files live in the package folder that hatch packs whole
    (``packages = ["src/convlens"]``), and nothing in .gitignore hides them."""
    root = Path(__import__("convlens.explore").explore.__file__).parent
    for rel in ("templates/explorer.html.j2", "static/explorer.js", "static/explorer.css"):
        assert (root / rel).is_file(), rel
    ignored = (Path(__file__).parents[1] / ".gitignore").read_text().split()
    assert not any(p in ignored for p in ("*.js", "*.css", "*.j2", "static/", "templates/"))


# --- validation equals PyTorch's ---------------------------------------------------------------


def _torch_accepts(state: dict[str, Any]) -> bool:
    """Whether torch runs the layer of ``state`` on a zero input (the independent reference)."""
    n = state["dims"]
    conv = [F.conv1d, F.conv2d][n - 1]
    tconv = [F.conv_transpose1d, F.conv_transpose2d][n - 1]
    x = torch.zeros(1, 1, *state["input"], dtype=torch.float64)
    w = torch.zeros(1, 1, *state["kernel"], dtype=torch.float64)
    pad = state["padding"]
    try:
        if state["mode"] == "conv":
            if any(state["output_padding"]):
                return False  # F.conv has no output_padding at all
            y = conv(x, w, stride=state["stride"], padding=pad, dilation=state["dilation"])
        else:
            if isinstance(pad, str):
                return False
            y = tconv(
                x, w, stride=state["stride"], padding=pad,
                output_padding=state["output_padding"], dilation=state["dilation"],
            )  # fmt: skip
    except (RuntimeError, ValueError, TypeError):
        return False
    return y.numel() > 0


@st.composite
def raw_states(draw: st.DrawFn) -> dict[str, Any]:
    dims = draw(st.sampled_from([1, 2]))
    ints = lambda lo, hi: st.lists(  # noqa: E731
        st.integers(lo, hi), min_size=dims, max_size=dims
    )
    return {
        "mode": draw(st.sampled_from(["conv", "transpose"])),
        "dims": dims,
        "input": draw(ints(1, 12)),
        "kernel": draw(ints(1, 7)),
        "stride": draw(ints(1, 4)),
        "padding": draw(st.one_of(ints(0, 5), st.sampled_from(["same", "valid"]))),
        "dilation": draw(ints(1, 3)),
        "output_padding": draw(ints(0, 3)),
    }


@given(raw_states())
def test_initial_state_is_refused_exactly_where_torch_refuses(state: dict[str, Any]) -> None:
    accepted = _torch_accepts(state)
    if accepted:
        out = initial_state(**state)
        assert out["input"] == state["input"]
        assert out["mode"] == state["mode"]
    else:
        with pytest.raises(ParameterError):
            initial_state(**state)


@pytest.mark.parametrize(
    ("state", "param"),
    [
        ({"input": LIMITS["input"] + 1}, "input"),
        ({"kernel": 0}, "kernel"),
        ({"mode": "deconv"}, "mode"),
        ({"dims": 3}, "dims"),
        ({"colour": "red"}, "initial_state"),
        ({"step": 9, "input": 3, "kernel": 1}, "step"),
        ({"by": "pixel"}, "by"),
        ({"padding": "full"}, "padding"),
    ],
)
def test_page_limits_and_unknown_settings_are_refused(state: dict[str, Any], param: str) -> None:
    with pytest.raises(ParameterError) as info:
        initial_state(**state)
    assert info.value.param == param


# --- the command ---------------------------------------------------------------------------------


def test_cli_writes_the_page_with_the_options_as_initial_state(tmp_path: Path) -> None:
    out = tmp_path / "e.html"
    args = ["explore", "--mode", "transpose", "--input", "5,6", "--kernel", "3", "--stride",
            "2", "--padding", "1", "--output-padding", "1", "--out", str(out)]  # fmt: skip
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    assert str(out) in result.output
    config = json.loads(parse_page(out.read_text(encoding="utf-8")).body["data-config"])
    assert config["initial"] == initial_state(
        mode="transpose", input=(5, 6), kernel=3, stride=2, padding=1, output_padding=1
    )
    # the shape the page starts in is torch's
    y = F.conv_transpose2d(
        torch.zeros(1, 1, 5, 6), torch.zeros(1, 1, 3, 3), stride=2, padding=1, output_padding=1
    )
    assert "10×12" in result.output or "10x12" in result.output, (result.output, y.shape)
    assert tuple(y.shape[2:]) == (10, 12)


def test_cli_refuses_bad_settings_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as code:
        main(["explore", "--kernel", "7", "--input", "4", "--out", str(tmp_path / "e.html")])
    assert code.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1
    assert err[0].startswith("convlens: error: kernel")
    assert not (tmp_path / "e.html").exists()


def test_cli_table_lists_explore() -> None:
    assert COMMANDS["explore"][0] == "explore"
