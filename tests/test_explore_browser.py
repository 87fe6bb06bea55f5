"""The explorer page in headless Chromium: its JavaScript geometry equals the Python engine's.

For seeded random configurations (1-D and 2-D, conv and transposed conv, valid and invalid),
loaded through the URL query, the page's output size, the non-zeros of C, the colliding sizes
and the size formula equal :class:`convlens.LayerSpec`, :func:`convlens.conv_matrix` and
:func:`convlens.arithmetic.colliding_input_sizes`; the overlap counts of a transposed conv
(both the scatter's and the fractionally strided view's) equal ``F.conv_transposeNd`` of ones
with a ones kernel, and every hovered formula lists exactly the (tap, input) pairs of torch's
Jacobian (float64, one-hot inputs). Invalid settings show the message, and the console never
logs an error. The driver setup is the report's (``test_report_browser.py``).
"""

from __future__ import annotations

import contextlib
import io
import math
import random
import re
import shlex
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from click.testing import CliRunner
from selenium import webdriver
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from convlens import LayerSpec, conv_matrix
from convlens.arithmetic import colliding_input_sizes
from convlens.cli import cli
from convlens.errors import ParameterError
from convlens.explore import LIMITS, write_explorer
from test_report_browser import browser, severe_console_entries

__all__ = ["browser"]  # the fixture, shared with the report's browser test

SUBSCRIPTS = str.maketrans("₀₁₂₃₄₅₆₇₈₉", "0123456789")
N_RANDOM = 56


@pytest.fixture(scope="module")
def page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_explorer(tmp_path_factory.mktemp("explore") / "explorer.html")


# --- configurations --------------------------------------------------------------------------


def random_configs(seed: int, n: int) -> list[dict[str, Any]]:
    """Seeded configurations over the page's whole parameter space; some are invalid."""
    rng = random.Random(seed)
    out = []
    for index in range(n):
        dims = 1 + index % 2
        mode = "conv" if (index // 2) % 2 == 0 else "transpose"
        differ = dims == 2 and rng.random() < 0.35

        def axis(low: int, high: int, differ: bool = differ, dims: int = dims) -> list[int]:
            first = rng.randint(low, high)
            return [first, rng.randint(low, high) if differ else first][:dims]

        config: dict[str, Any] = {
            "mode": mode,
            "dims": dims,
            "input": axis(1, 32 if dims == 1 else 14),
            "kernel": axis(1, 6),
            "stride": axis(1, 4),
            "dilation": axis(1, 3) if rng.random() < 0.4 else [1] * dims,
        }
        roll = rng.random()
        if mode == "conv" and roll < 0.2:
            config["padding"] = rng.choice(["same", "valid"])
            if config["padding"] == "same" and rng.random() < 0.7:
                config["stride"] = [1] * dims
        else:
            config["padding"] = axis(0, 4)
        if mode == "transpose":
            top = [max(s, d) - 1 for s, d in zip(config["stride"], config["dilation"])]
            # mostly legal output_padding, sometimes one PyTorch refuses
            config["output_padding"] = [
                rng.randint(0, t + (1 if rng.random() < 0.15 else 0)) for t in top
            ]
        out.append(config)
    return out


def query(config: dict[str, Any]) -> str:
    parts = []
    for key, value in config.items():
        text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
        parts.append(f"{key}={text}")
    return "?" + "&".join(parts)


def spec_of(config: dict[str, Any]) -> LayerSpec:
    pad = config["padding"]
    padding = pad if isinstance(pad, str) else tuple(pad)
    n = config["dims"]
    if config["mode"] == "conv":
        return LayerSpec.conv(
            tuple(config["kernel"]), tuple(config["stride"]), padding,
            tuple(config["dilation"]), ndim=n,
        )  # fmt: skip
    return LayerSpec.conv_transpose(
        tuple(config["kernel"]), tuple(config["stride"]), padding,
        tuple(config.get("output_padding", [0] * n)), 1, tuple(config["dilation"]), ndim=n,
    )  # fmt: skip


def python_output(config: dict[str, Any]) -> tuple[int, ...] | None:
    """LayerSpec's output size, or None where it refuses the configuration."""
    try:
        return spec_of(config).output_size(tuple(config["input"]))
    except ParameterError:
        return None


# --- references -----------------------------------------------------------------------------


def jacobian_terms(config: dict[str, Any]) -> torch.Tensor:
    """torch's Jacobian with weight value = tap + 1, shape (output pixels, input pixels), float64.

    Entry (o, i) is 1 + the flat tap through which output o reads input i (0 if none): one-hot
    inputs through F.convNd / F.conv_transposeNd, nothing from convlens.
    """
    n = config["dims"]
    size = config["input"]
    count = math.prod(size)
    x = torch.eye(count, dtype=torch.float64).reshape(count, 1, *size)
    w = torch.arange(1, math.prod(config["kernel"]) + 1, dtype=torch.float64)
    w = w.reshape(1, 1, *config["kernel"])
    pad = config["padding"]
    if config["mode"] == "conv":
        conv = [F.conv1d, F.conv2d][n - 1]
        with warnings.catch_warnings():  # 'same' with an even kernel: torch pads a copy
            warnings.simplefilter("ignore", UserWarning)
            y = conv(x, w, stride=config["stride"], padding=pad, dilation=config["dilation"])
    else:
        tconv = [F.conv_transpose1d, F.conv_transpose2d][n - 1]
        y = tconv(
            x, w, stride=config["stride"], padding=pad,
            output_padding=config["output_padding"], dilation=config["dilation"],
        )  # fmt: skip
    return y.reshape(count, -1).T


def overlap_reference(config: dict[str, Any]) -> torch.Tensor:
    """How many taps write each output pixel: F.conv_transposeNd of ones with a ones kernel."""
    n = config["dims"]
    tconv = [F.conv_transpose1d, F.conv_transpose2d][n - 1]
    ones = torch.ones(1, 1, *config["input"], dtype=torch.float64)
    kernel = torch.ones(1, 1, *config["kernel"], dtype=torch.float64)
    y = tconv(
        ones, kernel, stride=config["stride"], padding=config["padding"],
        output_padding=config["output_padding"], dilation=config["dilation"],
    )  # fmt: skip
    return y[0, 0].reshape(1, -1) if n == 1 else y[0, 0]


def nnz_reference(config: dict[str, Any]) -> int:
    n = config["dims"]
    if config["mode"] == "conv":
        weight = torch.ones(1, 1, *config["kernel"])
        pad = config["padding"]
        return conv_matrix(
            weight, tuple(config["input"]), stride=tuple(config["stride"]),
            padding=pad if isinstance(pad, str) else tuple(pad),
            dilation=tuple(config["dilation"]),
        )._nnz()  # fmt: skip
    module = [nn.ConvTranspose1d, nn.ConvTranspose2d][n - 1](
        1, 1, tuple(config["kernel"]), tuple(config["stride"]), tuple(config["padding"]),
        tuple(config["output_padding"]), dilation=tuple(config["dilation"]), bias=False,
    )  # fmt: skip
    return conv_matrix(module, tuple(config["input"]))._nnz()


def parse_formula(text: str, dims: int) -> tuple[tuple[int, ...], set[tuple[tuple, tuple]]]:
    """``y₁₂ = w₁₁x₁₂ + …`` → (the output cell, {(tap, input)}), 0-based."""

    def index(group: str) -> tuple[int, ...]:
        digits = group.translate(SUBSCRIPTS)
        parts = digits.split(",") if "," in digits else (list(digits) if dims == 2 else [digits])
        assert len(parts) == dims, text
        return tuple(int(p) - 1 for p in parts)

    head = re.match(r"y([₀-₉,]+) = ", text)
    assert head, text
    terms = {(index(w), index(x)) for w, x in re.findall(r"w([₀-₉,]+)x([₀-₉,]+)", text)}
    return index(head.group(1)), terms


def flat(pos: tuple[int, ...], shape: tuple[int, ...] | list[int]) -> int:
    out = 0
    for p, s in zip(pos, shape):
        out = out * s + p
    return out


# --- reading the page ------------------------------------------------------------------------

READ_PAGE = """
const q = (s) => document.querySelector(s);
const all = (s) => Array.from(document.querySelectorAll(s));
const msg = q('[data-testid=error]');
const out = {
  error: !msg.hidden && msg.offsetHeight > 0,
  errorText: msg.textContent,
  params: all('[data-testid=error] li').map((li) => li.dataset.param),
  output: q('[data-testid=output-size]').textContent,
  nnz: q('[data-testid=nnz]').textContent,
  overlap: all('[data-testid=overlap-cell]').map((e) => [+e.dataset.row, +e.dataset.col, +e.dataset.count]),
  fractional: all('[data-testid=fractional-cell]').map((e) => [+e.dataset.row, +e.dataset.col, +e.dataset.count]),
  colliding: all('[data-testid=colliding]').map((e) => [+e.dataset.axis, e.dataset.sizes]),
  sizeFormula: all('[data-testid=size-formula-axis] code').map((e) => e.textContent),
  tooLarge: !!q('[data-testid=too-large]'),
  checkerboard: (q('[data-testid=checkerboard]') || {}).textContent || null,
  formulas: [],
};
for (const [r, c] of arguments[0]) {
  const cell = q(`[data-testid=output-cell][data-r="${r}"][data-c="${c}"]`) ||
               q(`[data-testid=overlap-cell][data-row="${r}"][data-col="${c}"]`);
  if (!cell) { out.formulas.push(null); continue; }
  cell.dispatchEvent(new MouseEvent('mouseover', {bubbles: true}));
  out.formulas.push(q('[data-testid=formula]').textContent);
}
return out;
"""


def load(driver: webdriver.Chrome, page: Path, config: dict[str, Any], cells=()) -> dict:
    driver.get(page.as_uri() + query(config))
    return driver.execute_script(READ_PAGE, [list(c) for c in cells])


def normalise(formula: str) -> str:
    """The page's typeset size formula in LayerSpec.formula's ASCII."""
    for a, b in (("⌊", "floor("), ("⌋", ")"), ("−", "-"), ("·", "*")):
        formula = formula.replace(a, b)
    return formula


def check_valid(state: dict, config: dict[str, Any], size: tuple[int, ...]) -> int:
    """Check one valid configuration; returns how many interior overlap counts were checked."""
    spec = spec_of(config)
    assert not state["error"], state["errorText"]
    assert state["output"] == "×".join(map(str, size))
    assert int(state["nnz"]) == nnz_reference(config)
    # the size formula, with the numbers filled in, is LayerSpec's
    lines = spec.formula(tuple(config["input"]))
    assert [normalise(s) for s in state["sizeFormula"]] == (
        [lines[0]] if len(set(lines)) == 1 else list(lines)
    )
    # colliding conv input sizes, per axis (axes shown once when equal)
    expected = colliding_input_sizes(spec, tuple(config["input"]))
    for axis, sizes in state["colliding"]:
        assert tuple(int(v) for v in sizes.split(",") if v) == expected[axis]
    drawn = not state["tooLarge"]
    if config["mode"] == "transpose" and drawn:
        ref = overlap_reference(config)
        assert tuple(ref.shape) == ((1, *size) if config["dims"] == 1 else size)
        for cells in (state["overlap"], state["fractional"]):
            got = torch.zeros_like(ref)
            for r, c, count in cells:
                got[r, c] = count
            assert len(cells) == ref.numel()
            assert torch.equal(got, ref)
        if config["dims"] == 1:
            return check_checkerboard(state["checkerboard"], config, ref[0])
    return 0


def check_checkerboard(text: str, config: dict[str, Any], counts: torch.Tensor) -> int:
    """The caption's interior cycle is what torch's overlap counts do away from the borders:
    output y with d(k-1) <= y + p <= (i-1)s gets ``cycle[(y + p) % s]`` taps."""
    (i,), (k,), (s,), (p,), (d,) = (
        config[key] for key in ("input", "kernel", "stride", "padding", "dilation")
    )
    uniform = re.search(r"every output gets (\d+) tap", text)
    cycle = [int(uniform.group(1))] * s if uniform else None
    if cycle is None:
        found = re.search(r"cycles ([\d, ]+) with period (\d+)", text)
        assert found, text
        cycle = [int(v) for v in found.group(1).split(",")]
        assert int(found.group(2)) == s
        assert len(set(cycle)) > 1
    assert len(cycle) == s, text
    interior = [y for y in range(counts.numel()) if d * (k - 1) <= y + p <= (i - 1) * s]
    for y in interior:
        assert counts[y] == cycle[(y + p) % s], (text, y)
    return len(interior)


def hover_cells(size: tuple[int, ...], rng: random.Random) -> list[tuple[int, int]]:
    shape = (1, *size) if len(size) == 1 else size
    picks = {(0, 0), (shape[0] - 1, shape[1] - 1)}
    picks |= {(rng.randrange(shape[0]), rng.randrange(shape[1])) for _ in range(3)}
    return sorted(picks)


def check_formulas(state: dict, config: dict[str, Any], size, cells) -> int:
    """Every hovered formula has exactly torch's (tap, input) pairs; returns how many checked."""
    if state["tooLarge"]:
        return 0
    jac = jacobian_terms(config)
    assert jac.shape[0] == math.prod(size)
    assert int(state["nnz"]) == int((jac != 0).sum())  # a second, independent nnz reference
    checked = 0
    for (r, c), text in zip(cells, state["formulas"]):
        assert text is not None, (r, c)
        pos = (c,) if config["dims"] == 1 else (r, c)
        cell, terms = parse_formula(text, config["dims"])
        assert cell == pos
        row = jac[flat(pos, size)]
        expected = {
            (tuple(divmod(int(v) - 1, config["kernel"][-1]) if config["dims"] == 2 else
                   (int(v) - 1,)),
             tuple(divmod(i, config["input"][-1]) if config["dims"] == 2 else (i,)))
            for i, v in enumerate(row.tolist()) if v
        }  # fmt: skip
        assert terms == expected, text
        checked += 1
    return checked


# --- the tests -------------------------------------------------------------------------------


def test_random_configurations_equal_the_python_engine_and_torch(
    browser: webdriver.Chrome, page: Path
) -> None:
    rng = random.Random(2024)
    configs = random_configs(seed=13, n=N_RANDOM)
    browser.get_log("browser")
    seen = {"valid": 0, "invalid": 0, "formulas": 0, "overlap": 0, "interior": 0, "modes": set()}
    for config in configs:
        size = python_output(config)
        if size is None:
            state = load(browser, page, config)
            assert state["error"], config
            assert state["output"] == "—"
            with pytest.raises((RuntimeError, ValueError, TypeError)):
                jacobian_terms(config)  # torch refuses it too
            seen["invalid"] += 1
        else:
            cells = hover_cells(size, rng)
            state = load(browser, page, config, cells)
            seen["interior"] += check_valid(state, config, size)
            seen["formulas"] += check_formulas(state, config, size, cells)
            seen["overlap"] += bool(state["overlap"])
            seen["valid"] += 1
        seen["modes"].add((config["mode"], config["dims"], size is None))
        assert severe_console_entries(browser) == [], query(config)
    # the sample covers what it claims: both modes, both dims, valid and invalid
    assert len(seen["modes"]) >= 6, seen["modes"]
    assert seen["valid"] >= 35
    assert seen["invalid"] >= 5
    assert seen["overlap"] >= 10
    assert seen["formulas"] >= 100
    assert seen["interior"] >= 50, seen


@pytest.mark.parametrize(
    ("text", "param"),
    [
        ("input=abc", "input"),
        ("input=0", "input"),
        (f"input={LIMITS['input'] + 1}", "input"),
        ("dims=3", "dims"),
        ("mode=deconv", "mode"),
        ("dims=2&kernel=3,3,3", "kernel"),
        ("dims=1&input=5,7", "input"),
        ("mode=transpose&padding=same", "padding"),
        ("mode=conv&output_padding=1", "output_padding"),
        ("mode=transpose&stride=2&output_padding=2", "output_padding"),
        ("mode=transpose&input=2&kernel=3&padding=4", "padding"),
        ("mode=conv&stride=2&padding=same", "stride"),
        ("mode=conv&input=3&kernel=5", "kernel"),
        ("padding=-1", "padding"),
        ("stride=0", "stride"),
        ("kernel=3&kernel=4", "kernel"),
        ("input=<script>alert(1)</script>", "input"),
    ],
)
def test_invalid_query_values_show_a_message(
    browser: webdriver.Chrome, page: Path, text: str, param: str
) -> None:
    browser.get_log("browser")
    browser.get(page.as_uri() + "?" + text)
    state = browser.execute_script(READ_PAGE, [])
    assert state["error"]
    assert param in state["params"]
    assert state["errorText"].count("expected") >= 1
    # the page is not blank: the controls are there and focusable
    assert browser.find_element(By.ID, "kernel-0").is_displayed()
    assert browser.execute_script("return document.scripts.length") == 1  # nothing injected
    assert severe_console_entries(browser) == []


# The seed's example, transcribed from its LaTeX (x^{(l+1)}_{ij} written x_ij): the transposed
# conv of a 2×2 input with a 3×3 kernel, (vec(x)ᵀ Cᵀ) reshaped to 4×4 ...
SEED_TRANSPOSED = [
    ["w₁₁x₁₁", "w₁₁x₁₂ + w₁₂x₁₁", "w₁₂x₁₂ + w₁₃x₁₁", "w₁₃x₁₂"],
    ["w₁₁x₂₁ + w₂₁x₁₁", "w₁₁x₂₂ + w₁₂x₂₁ + w₂₁x₁₂ + w₂₂x₁₁",
     "w₁₂x₂₂ + w₁₃x₂₁ + w₂₂x₁₂ + w₂₃x₁₁", "w₁₃x₂₂ + w₂₃x₁₂"],
    ["w₂₁x₂₁ + w₃₁x₁₁", "w₂₁x₂₂ + w₂₂x₂₁ + w₃₁x₁₂ + w₃₂x₁₁",
     "w₂₂x₂₂ + w₂₃x₂₁ + w₃₂x₁₂ + w₃₃x₁₁", "w₂₃x₂₂ + w₃₃x₁₂"],
    ["w₃₁x₂₁", "w₃₁x₂₂ + w₃₂x₂₁", "w₃₂x₂₂ + w₃₃x₂₁", "w₃₃x₂₂"],
]  # fmt: skip
# ... and the conv of a 4×4 input with it (X^{(l+1)} = X^{(l)} * W).
SEED_CONV = [
    ["w₁₁x₁₁ + w₁₂x₁₂ + w₁₃x₁₃ + w₂₁x₂₁ + w₂₂x₂₂ + w₂₃x₂₃ + w₃₁x₃₁ + w₃₂x₃₂ + w₃₃x₃₃",
     "w₁₁x₁₂ + w₁₂x₁₃ + w₁₃x₁₄ + w₂₁x₂₂ + w₂₂x₂₃ + w₂₃x₂₄ + w₃₁x₃₂ + w₃₂x₃₃ + w₃₃x₃₄"],
    ["w₁₁x₂₁ + w₁₂x₂₂ + w₁₃x₂₃ + w₂₁x₃₁ + w₂₂x₃₂ + w₂₃x₃₃ + w₃₁x₄₁ + w₃₂x₄₂ + w₃₃x₄₃",
     "w₁₁x₂₂ + w₁₂x₂₃ + w₁₃x₂₄ + w₂₁x₃₂ + w₂₂x₃₃ + w₂₃x₃₄ + w₃₁x₄₂ + w₃₂x₄₃ + w₃₃x₄₄"],
]  # fmt: skip


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("mode=transpose&dims=2&input=2&kernel=3&stride=1&padding=0", SEED_TRANSPOSED),
        ("mode=conv&dims=2&input=4&kernel=3&stride=1&padding=0", SEED_CONV),
    ],
)
def test_hovered_formulas_read_as_the_seed_writes_them(
    browser: webdriver.Chrome, page: Path, text: str, expected: list[list[str]]
) -> None:
    browser.get(page.as_uri() + "?" + text)
    cells = [(r, c) for r in range(len(expected)) for c in range(len(expected[0]))]
    state = browser.execute_script(READ_PAGE, [list(cell) for cell in cells])
    for (r, c), formula in zip(cells, state["formulas"]):
        assert formula == f"y{chr(0x2081 + r)}{chr(0x2081 + c)} = {expected[r][c]}"


def test_unknown_keys_are_a_note_and_the_page_still_works(
    browser: webdriver.Chrome, page: Path
) -> None:
    browser.get(page.as_uri() + "?colour=red&input=6&kernel=3&dims=1")
    state = browser.execute_script(READ_PAGE, [])
    assert not state["error"]
    assert state["output"] == str(F.conv1d(torch.zeros(1, 1, 6), torch.zeros(1, 1, 3)).shape[-1])
    assert "colour" in browser.find_element(By.CSS_SELECTOR, "[data-testid=notes]").text


def test_keyboard_changes_settings_steps_and_the_link(
    browser: webdriver.Chrome, page: Path
) -> None:
    browser.get(page.as_uri() + "?mode=conv&dims=2&input=5&kernel=3&stride=1&padding=0")
    kernel = browser.find_element(By.ID, "kernel-0")
    kernel.send_keys(Keys.ARROW_UP)  # 3 -> 4
    expected = F.conv2d(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 4, 4)).shape[-1]
    out = browser.find_element(By.CSS_SELECTOR, "[data-testid=output-size]")
    assert out.text == f"{expected}×{expected}"
    shown = out.text
    share = browser.find_element(By.ID, "share").get_attribute("href")
    assert "kernel=4" in share
    assert "kernel=4" in browser.current_url  # the address itself follows (file:// too)
    # the step slider moves the current output: the formula follows
    slider = browser.find_element(By.ID, "step")
    formula = browser.find_element(By.CSS_SELECTOR, "[data-testid=formula]")
    assert formula.text.startswith("y₁₁ = w₁₁x₁₁")
    slider.send_keys(Keys.ARROW_RIGHT)
    assert formula.text.startswith("y₁₂ = w₁₁x₁₂")
    # play / pause from the keyboard
    play = browser.find_element(By.ID, "play")
    play.send_keys(Keys.SPACE)
    assert play.get_attribute("aria-pressed") == "true"
    play.send_keys(Keys.SPACE)
    assert play.get_attribute("aria-pressed") == "false"
    # the shared link reproduces the configuration
    link = browser.find_element(By.ID, "share").get_attribute("href")
    browser.get(link)
    assert browser.find_element(By.CSS_SELECTOR, "[data-testid=output-size]").text == shown
    assert severe_console_entries(browser) == []


def test_rows_and_columns_can_differ_and_play_advances(
    browser: webdriver.Chrome, page: Path
) -> None:
    browser.get(page.as_uri() + "?mode=conv&dims=2&input=5&kernel=3&stride=2&padding=1")
    second = browser.find_element(By.ID, "input-1")
    assert not second.is_displayed()
    browser.find_element(By.ID, "separate").click()
    assert second.is_displayed()
    second.send_keys(Keys.BACKSPACE, "9")  # input 5×9
    expected = F.conv2d(torch.zeros(1, 1, 5, 9), torch.zeros(1, 1, 3, 3), stride=2, padding=1)
    out = browser.find_element(By.CSS_SELECTOR, "[data-testid=output-size]")
    assert out.text == "×".join(map(str, expected.shape[2:]))
    assert "input=5,9" in browser.find_element(By.ID, "share").get_attribute("href")
    label = browser.find_element(By.ID, "step-label")
    before = label.text
    browser.find_element(By.ID, "play").click()
    WebDriverWait(browser, 10).until(lambda d: label.text != before)
    browser.find_element(By.ID, "play").click()
    assert severe_console_entries(browser) == []


def test_a_step_in_the_link_selects_that_output(browser: webdriver.Chrome, page: Path) -> None:
    base = "?mode=transpose&dims=2&input=3&kernel=3&stride=2&padding=1&output_padding=1"
    browser.get(page.as_uri() + base + "&by=output&step=7")  # output (1, 1) of 6×6
    formula = browser.find_element(By.CSS_SELECTOR, "[data-testid=formula]").text
    state = browser.execute_script(READ_PAGE, [[1, 1]])
    assert formula == state["formulas"][0]
    assert formula.startswith("y₂₂ = ")
    browser.get(page.as_uri() + base + "&by=output&step=36")  # one past the last output
    state = browser.execute_script(READ_PAGE, [])
    assert state["error"]
    assert state["params"] == ["step"]


def test_output_padding_is_offered_only_where_pytorch_allows_it(
    browser: webdriver.Chrome, page: Path
) -> None:
    browser.get(page.as_uri() + "?mode=transpose&dims=1&input=5&kernel=3&stride=1&padding=1")
    op = browser.find_element(By.ID, "output_padding-0")
    assert not op.is_enabled()
    hint = browser.find_element(By.ID, "hint-output_padding").text
    assert "max(stride, dilation)" in hint
    stride = browser.find_element(By.ID, "stride-0")
    stride.send_keys(Keys.ARROW_UP)  # stride 2: output_padding 0..1 is legal
    assert op.is_enabled()
    op.send_keys(Keys.ARROW_UP)
    expected = F.conv_transpose1d(
        torch.zeros(1, 1, 5), torch.zeros(1, 1, 3), stride=2, padding=1, output_padding=1
    ).shape[-1]
    assert browser.find_element(By.CSS_SELECTOR, "[data-testid=output-size]").text == str(expected)
    # the table says which colliding conv input size output_padding=1 picks
    rows = browser.find_elements(By.CSS_SELECTOR, "table.ops tr.current td")
    assert rows[0].text.startswith("1")
    assert rows[1].text == str(expected)


def _run_cli(line: str, cwd: Path) -> str:
    args = shlex.split(line)
    assert args[0] == "convlens"
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(cwd)
        result = CliRunner().invoke(cli, args[1:])
    assert result.exit_code == 0, (line, result.output)
    return result.output


@pytest.mark.parametrize(
    "config",
    [
        {"mode": "conv", "dims": 2, "input": [5, 6], "kernel": [3, 2], "stride": 2,
         "padding": 1, "dilation": 1},
        {"mode": "conv", "dims": 1, "input": 7, "kernel": 4, "stride": 1, "padding": "same",
         "dilation": 2},
        {"mode": "transpose", "dims": 2, "input": 3, "kernel": 3, "stride": 2, "padding": 1,
         "output_padding": 1, "dilation": 1},
        {"mode": "transpose", "dims": 1, "input": 4, "kernel": 2, "stride": 1, "padding": 0,
         "output_padding": 1, "dilation": 2},
    ],
)  # fmt: skip
def test_generated_code_and_cli_lines_run_and_agree(
    browser: webdriver.Chrome, page: Path, config: dict[str, Any], tmp_path: Path
) -> None:
    browser.get(page.as_uri() + query(config))
    code = browser.find_element(By.CSS_SELECTOR, "[data-testid=torch-code]").text
    shown = browser.find_element(By.CSS_SELECTOR, "[data-testid=output-size]").text
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(code, {})  # the generated PyTorch code, as a learner would paste it
    shape = eval(printed.getvalue().strip())
    assert shape[:2] == (1, 1)
    assert "×".join(map(str, shape[2:])) == shown
    lines = browser.find_element(By.CSS_SELECTOR, "[data-testid=cli-code]").text.splitlines()
    arith = _run_cli(lines[0], tmp_path)
    assert re.search(r"-> output " + re.escape(" x ".join(map(str, shape[2:]))) + "$", arith, re.M)
    explore = [line for line in lines if line.startswith("convlens explore")]
    assert len(explore) == 1
    _run_cli(explore[0], tmp_path)
    if config["dims"] == 2:  # the figure lines (2-D only) run too
        figures = [line for line in lines if line.startswith("convlens figure")]
        assert len(figures) == 2
        # the quick one: C as a .png (conv), the scatter GIF with one frame per input pixel
        _run_cli(figures[1] if config["mode"] == "conv" else figures[0], tmp_path)


@pytest.fixture
def sized(browser: webdriver.Chrome) -> Iterator[webdriver.Chrome]:
    yield browser
    browser.set_window_size(1280, 900)


@pytest.mark.parametrize("width", [1280, 400])
@pytest.mark.parametrize(
    "text",
    [
        "mode=conv&dims=2&input=7&kernel=3&stride=2&padding=1",
        "mode=transpose&dims=2&input=5&kernel=3&stride=2&padding=1&output_padding=1",
        "mode=transpose&dims=1&input=12&kernel=4&stride=3&padding=1",
    ],
)
def test_nothing_overflows_the_window(
    sized: webdriver.Chrome, page: Path, text: str, width: int
) -> None:
    sized.set_window_size(width, 800)
    sized.get(page.as_uri() + "?" + text)
    inner = sized.execute_script("return document.documentElement.clientWidth")
    scroll = sized.execute_script("return document.documentElement.scrollWidth")
    assert scroll <= inner, (scroll, inner)
    assert not sized.execute_script(READ_PAGE, [])["error"]
