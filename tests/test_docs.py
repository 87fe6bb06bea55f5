"""The documentation site's examples are real: every ```python block of the pages under docs/
runs as written, every `convlens ...` line names real commands and options, every page is in
the navigation, and the gallery's commands draw what the gallery says.

The site itself is built by `mkdocs build --strict` in .ci/run (docs extra), whose hooks
(docs/hooks.py) also check the built pages.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import pkgutil
import re
import shlex
import sys
from pathlib import Path
from types import ModuleType

import click
import pytest
import torch
import torch.nn.functional as F
import yaml
from PIL import Image

import convlens
from convlens.cli import cli

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
# pages written by others (architecture) or by the benchmark scripts: not run here
NOT_RUN = {"ARCHITECTURE.md", "benchmarks-matrix.md", "benchmarks-scan.md"}
PAGES = sorted(p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md") if p.name not in NOT_RUN)


def _blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, flags=re.S | re.M)


def _load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"convlens_docs_{name}", DOCS / f"{name}.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def _nav_files(nav: object) -> list[str]:
    if isinstance(nav, str):
        return [nav]
    if isinstance(nav, list):
        return [f for item in nav for f in _nav_files(item)]
    if isinstance(nav, dict):
        return [f for value in nav.values() for f in _nav_files(value)]
    return []


def _config() -> dict:
    # mkdocs.yml has no Python tags; a plain YAML load reads it
    return yaml.safe_load((ROOT / "mkdocs.yml").read_text(encoding="utf-8"))


@pytest.mark.parametrize("page", [p for p in PAGES if _blocks((DOCS / p).read_text(), "python")])
def test_python_examples_run(page: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # anything an example writes lands here
    monkeypatch.setattr(sys, "path", list(sys.path))  # examples may add a folder
    namespace: dict[str, object] = {"__name__": f"docs_{page}"}
    for block in _blocks((DOCS / page).read_text(encoding="utf-8"), "python"):
        exec(compile(block, str(DOCS / page), "exec"), namespace)


def _check_command_line(line: str) -> None:
    """``convlens GROUP CMD --opt ...``: the command exists and takes every option named."""
    words = shlex.split(line)
    words = words[words.index("convlens") + 1 :]
    command: click.Command = cli
    ctx = click.Context(cli, info_name="convlens")
    while isinstance(command, click.Group) and words and not words[0].startswith("-"):
        sub = command.get_command(ctx, words[0])
        assert sub is not None, f"no command {words[0]!r} in: {line}"
        command, words = sub, words[1:]
        ctx = click.Context(command, info_name=command.name, parent=ctx)
    known = {opt for param in command.params for opt in (*param.opts, *param.secondary_opts)}
    known |= {"-h", "--help"}
    for word in words:
        if word.startswith("-"):
            assert word.split("=")[0] in known, f"{word} is no option of {command.name}: {line}"


def _command_lines(text: str) -> list[str]:
    return [
        line.split(" #")[0].strip()
        for block in _blocks(text, "bash")
        for line in block.splitlines()
        if re.match(r"^\s*(convlens |torchrun .*-m convlens )", line)
    ]


def test_every_command_line_is_real() -> None:
    gallery = _load("gen_gallery")
    lines = [line for p in PAGES for line in _command_lines((DOCS / p).read_text())]
    lines += [f.command for f in gallery.FIGURES]
    assert len(lines) >= 30
    for line in lines:
        _check_command_line(line)


def test_a_wrong_command_line_is_caught() -> None:
    with pytest.raises(AssertionError, match="no option"):
        _check_command_line("convlens arith conv --input 5 --kernal 3")
    with pytest.raises(AssertionError, match="no command"):
        _check_command_line("convlens arith convolve --input 5")


def test_every_page_is_in_the_navigation() -> None:
    config = _config()
    in_nav = set(_nav_files(config["nav"]))
    on_disk = {p.relative_to(DOCS).as_posix() for p in DOCS.rglob("*.md")}
    on_disk |= {p.relative_to(DOCS).as_posix() for p in DOCS.glob("tutorial*.ipynb")}
    generated = {"gallery.md", "api/index.md"}  # made by docs/hooks.py at build time
    assert in_nav - on_disk == generated
    assert on_disk <= in_nav
    assert config["use_directory_urls"] is False  # links work from file://
    assert config["theme"]["font"] is False  # no web fonts


def test_api_pages_document_their_module() -> None:
    for page in sorted((DOCS / "api").glob("*.md")):
        assert page.read_text().strip().splitlines()[0] == f"::: convlens.{page.stem}"
    documented = {p.stem for p in (DOCS / "api").glob("*.md")}
    required = {"arithmetic", "matrix", "transpose", "symbolic", "deconvnet", "scan", "analysis"}
    assert required | {"models", "figures"} <= documented


def _gif_frames(path: Path) -> int:
    with Image.open(path) as image:
        return int(image.n_frames)


@pytest.mark.slow
def test_gallery_draws_what_it_shows(tmp_path: Path) -> None:
    gallery = _load("gen_gallery")
    written = gallery.draw(tmp_path)
    assert [p.name for p in written] == [f.file for f in gallery.FIGURES]
    page = gallery.page()
    for figure in gallery.FIGURES:
        assert f"(gallery/{figure.file})" in page
        assert figure.command in page
        with Image.open(tmp_path / figure.file) as image:
            assert image.width > 200
            assert image.height > 100
    # one frame per output pixel of the conv, per input pixel of the scatter, per output pixel
    # of the fractionally strided view: counted by torch itself
    conv = F.conv2d(torch.zeros(1, 1, 5, 5), torch.zeros(1, 1, 3, 3), stride=2, padding=1)
    assert _gif_frames(tmp_path / "conv-strided.gif") == conv[0, 0].numel() == 9
    assert _gif_frames(tmp_path / "conv-seed.gif") == 4
    assert _gif_frames(tmp_path / "scatter-strided.gif") == 3 * 3
    back = F.conv_transpose2d(torch.zeros(1, 1, 3, 3), torch.zeros(1, 1, 3, 3), stride=2, padding=1)
    assert _gif_frames(tmp_path / "fractional-strided.gif") == back[0, 0].numel() == 25
    assert _gif_frames(tmp_path / "fractional-seed.gif") == 16


def _public_docstrings() -> list[tuple[str, str]]:
    out = []
    for info in pkgutil.walk_packages(convlens.__path__, "convlens."):
        if info.name.startswith("convlens.cli") or info.name.endswith("__main__"):
            continue
        module = importlib.import_module(info.name)
        out.append((info.name, inspect.getdoc(module) or ""))
        for name, obj in vars(module).items():
            own = getattr(obj, "__module__", None) == info.name
            if own and (inspect.isclass(obj) or inspect.isfunction(obj)):
                out.append((f"{info.name}.{name}", inspect.getdoc(obj) or ""))
    return out


def test_docstrings_become_markdown() -> None:
    """The API reference's griffe extension fences every >>> example and turns reST literals
    and roles into Markdown code, on every docstring of the package."""
    rst = _load("griffe_rst")
    assert rst.to_markdown("See :class:`~convlens.arithmetic.LayerSpec`, ``a\nb``.") == (
        "See `LayerSpec`, `a\nb`."
    )
    docstrings = _public_docstrings()
    assert len(docstrings) > 200
    for name, doc in docstrings:
        markdown = rst.to_markdown(doc)
        assert rst.to_markdown(markdown) == markdown, name
        fenced = False
        for line in markdown.splitlines():
            if line.strip().startswith("```"):
                fenced = not fenced
            elif not fenced:
                assert not line.lstrip().startswith(">>>"), f"{name}: a bare example"
                assert "``" not in line, f"{name}: a reST literal left: {line}"
        assert not fenced, f"{name}: an unclosed fence"
