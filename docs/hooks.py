"""MkDocs hooks (mkdocs.yml ``hooks:``): the pages generated at build time, and the checks that
make ``mkdocs build --strict`` fail when the site would be wrong.

- ``on_pre_build``: resolves every command of the lazy CLI group for mkdocs-click;
- ``on_files``: the [gallery](gallery.md), drawn now by docs/gen_gallery.py, and the API index
  (``api/index.md``), one row per name of ``convlens.__all__`` linked to where it is documented;
- ``on_page_markdown``: an API page also documents, from their own modules, the functions
  whose name is also a submodule's (griffe sees the submodule: ``convlens.deconvnet.project``);
- ``on_post_page``: drops nbconvert's loader for mermaid diagrams (the notebooks have none, and
  it names a CDN) and configures MathJax 3 before it loads;
- ``on_post_build``: copies MathJax 3 (TeX to SVG, for the notebooks' formulas) in from the
  ``django-static-mathjax`` package of the docs extra (no Django needed), then checks that no page loads anything
  from the network (the site must work from ``file://``), that the CLI page documents every
  command of ``convlens.cli``, that every API page documents every public class and function
  of its module, and that no docstring fell apart into quotes.
"""

from __future__ import annotations

import importlib
import importlib.util
import inspect
import re
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

import click
from mkdocs.exceptions import PluginError
from mkdocs.structure.files import File, Files

DOCS = Path(__file__).resolve().parent

#: The API pages, one per module (docs/api/<name>.md holds ``::: convlens.<name>``).
API_PAGES = (
    "arithmetic",
    "matrix",
    "transpose",
    "symbolic",
    "figures",
    "deconvnet",
    "scan",
    "analysis",
    "models",
    "lint",
    "demo",
    "errors",
)

_EXTERNAL = re.compile(
    r"<(?:script|link|img|iframe|source|audio|video)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//",
    re.I,
)
_IMPORT_URL = re.compile(r"import\(\s*[\"'](?:https?:)?//", re.I)
_MERMAID = re.compile(
    r'<script type="module">\s*document\.addEventListener\("DOMContentLoaded".*?'
    r"</script>",
    re.S,
)


def _gallery_module() -> Any:
    spec = importlib.util.spec_from_file_location("convlens_docs_gallery", DOCS / "gen_gallery.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def _first_sentence(obj: Any) -> str:
    doc = inspect.getdoc(obj) or ""
    text = " ".join(doc.split("\n\n", 1)[0].split())
    text = re.sub(r":(?:func|class|meth|mod|attr|data|exc):`~?([^`]+)`", r"`\1`", text)
    text = text.replace("``", "`")
    return text.split(". ")[0].rstrip(".").replace("|", "\\|")


def _documented(obj: Any) -> bool:
    return (inspect.isclass(obj) or inspect.isfunction(obj)) and bool(inspect.getdoc(obj))


def _anchor(page: str, name: str, obj: Any) -> str:
    """The identifier under which mkdocstrings documents ``convlens.<page>.<name>``: where a
    submodule has the same name (``convlens.deconvnet.project``), the API page documents the
    object from its own module instead."""
    package = hasattr(importlib.import_module(f"convlens.{page}"), "__path__")
    if package and importlib.util.find_spec(f"convlens.{page}.{name}") is not None:
        return f"{obj.__module__}.{obj.__name__}"
    return f"convlens.{page}.{name}"


def api_index() -> str:
    """The API index page: every public top-level name, what it is, and where it is documented."""
    import convlens

    pages = {name: importlib.import_module(f"convlens.{name}") for name in API_PAGES}
    rows = []
    for name in sorted(convlens.__all__, key=str.lower):
        obj = getattr(convlens, name)
        where, link = "", f"`{name}`"
        for page, module in pages.items():
            found = [n for n in getattr(module, "__all__", ()) if getattr(module, n, None) is obj]
            if found:
                where = f"[`convlens.{page}`]({page}.md)"
                if _documented(obj):
                    link = f"[`{name}`][{_anchor(page, found[0], obj)}]"
                break
        kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "value"
        what = _first_sentence(obj) if _documented(obj) else f"`{obj!r}`" if kind == "value" else ""
        rows.append(f"| {link} | {kind} | {what} | {where} |")
    return "\n".join(
        [
            "# The `convlens` package",
            "",
            "`import convlens` gives the names below; each is documented on the page of the",
            "module that defines it. Heavy dependencies (sympy, matplotlib, torchvision) load",
            "only when a name that needs them is first used.",
            "",
            "::: convlens",
            "    options:",
            "      members: false",
            "      show_root_heading: false",
            "",
            "| name | kind | what it is | documented in |",
            "|---|---|---|---|",
            *rows,
            "",
        ]
    )


def _shadowed(page: str) -> list[str]:
    """Identifiers of the public classes and functions of ``convlens.<page>`` that share their
    name with a submodule (``convlens.deconvnet.project``): griffe sees the submodule there."""
    module = importlib.import_module(f"convlens.{page}")
    out = []
    for name in getattr(module, "__all__", ()):
        obj = getattr(module, name)
        anchor = _anchor(page, name, obj)
        if _documented(obj) and anchor != f"convlens.{page}.{name}":
            out.append(anchor)
    return out


def on_page_markdown(markdown: str, page: Any, config: Any, files: Any) -> str:
    # an API page documents its module, and also the names griffe finds shadowed there
    stem = page.file.src_uri.removeprefix("api/").removesuffix(".md")
    if not page.file.src_uri.startswith("api/") or stem not in API_PAGES:
        return markdown
    options = "    options:\n      heading_level: 2\n      show_root_full_path: false"
    extra = [f"\n::: {anchor}\n{options}\n" for anchor in _shadowed(stem)]
    return markdown + "".join(extra)


def on_pre_build(config: Any) -> None:
    # mkdocs-click documents a group's ``commands`` dict when it is not empty, and the lazy
    # ``convlens`` group fills it only as commands are first used (the gallery runs some):
    # resolve every command first so that the CLI page documents all of them.
    from convlens.cli import cli

    ctx = click.Context(cli, info_name="convlens")
    for name in cli.list_commands(ctx):
        cli.get_command(ctx, name)


def on_files(files: Files, config: Any) -> Files:
    gallery = _gallery_module()
    with tempfile.TemporaryDirectory(prefix="convlens-gallery-") as tmp:
        for path in gallery.draw(tmp):
            files.append(File.generated(config, f"gallery/{path.name}", content=path.read_bytes()))
    files.append(File.generated(config, "gallery.md", content=gallery.page()))
    files.append(File.generated(config, "api/index.md", content=api_index()))
    return files


#: MathJax 3 reads its configuration from ``window.MathJax`` before it loads; the notebooks'
#: formulas are ``$...$`` (nbconvert's MathJax 2 configuration is ignored by MathJax 3). The SVG
#: output needs no web fonts, which browsers refuse to load from file://.
_MATHJAX_CONFIG = (
    "<script>window.MathJax = {tex: {inlineMath: [['$', '$'], ['\\\\(', '\\\\)']], "
    "displayMath: [['$$', '$$'], ['\\\\[', '\\\\]']], processEscapes: true}, "
    "svg: {fontCache: 'global'}};</script>"
)
_MATHJAX_LOADER = '<script src="assets/mathjax/tex-svg.js'
#: What of MathJax's es5 build the site needs: the TeX-to-SVG component and what it loads lazily
#: (TeX extensions, the menu); not the speech-rule engine or the other combined components.
_MATHJAX_PARTS = ("tex-svg.js", "input", "output", "ui", "a11y", "adaptors")


def on_post_page(output: str, page: Any, config: Any) -> str:
    if "mermaid" in output:
        output = _MERMAID.sub("", output)
    if _MATHJAX_LOADER in output:
        output = output.replace(_MATHJAX_LOADER, _MATHJAX_CONFIG + _MATHJAX_LOADER, 1)
    return output


def _commands(group: click.Group, prefix: str) -> list[str]:
    ctx = click.Context(group, info_name=prefix)
    names = []
    for name in group.list_commands(ctx):
        command = group.get_command(ctx, name)
        full = f"{prefix} {name}"
        names.append(full)
        if isinstance(command, click.Group):
            names += _commands(command, full)
    return names


def check_site(site: Path) -> list[str]:
    """What is wrong with a built site (empty when nothing is)."""
    from convlens.cli import cli

    problems = []
    for html in sorted(site.rglob("*.html")):
        text = html.read_text(encoding="utf-8")
        rel = html.relative_to(site).as_posix()
        for pattern in (_EXTERNAL, _IMPORT_URL):
            for hit in pattern.finditer(text):
                problems.append(f"{rel}: loads from the network: {hit.group(0)[:120]}")
        if rel.startswith("api/") and "<blockquote>" in text:
            problems.append(f"{rel}: a docstring rendered as a block quote (a bare >>>?)")
    for page in API_PAGES:  # every public class and function of the page's module is on it
        module = importlib.import_module(f"convlens.{page}")
        text = (site / "api" / f"{page}.html").read_text(encoding="utf-8")
        for name in getattr(module, "__all__", ()):
            obj = getattr(module, name)
            if _documented(obj) and f'id="{_anchor(page, name, obj)}"' not in text:
                problems.append(f"api/{page}.html: {name} is not documented")
    cli_page = (site / "cli.html").read_text(encoding="utf-8")
    for name in _commands(cli, "convlens"):
        if f"<code>{name}</code>" not in cli_page and f">{name}<" not in cli_page:
            problems.append(f"cli.html: command {name!r} is not documented")
    return problems


def on_post_build(config: Any, **kwargs: Any) -> None:
    import mathjax  # the django-static-mathjax package: MathJax 3 and nothing else

    site = Path(config["site_dir"])
    es5 = Path(mathjax.__file__).parent / "static" / "mathjax" / "es5"
    target = site / "assets" / "mathjax"
    target.mkdir(parents=True, exist_ok=True)
    for part in _MATHJAX_PARTS:
        if (es5 / part).is_dir():
            shutil.copytree(es5 / part, target / part, dirs_exist_ok=True)
        else:
            shutil.copy2(es5 / part, target / part)
    problems = check_site(site)
    if problems:
        raise PluginError("the built site is wrong:\n  " + "\n  ".join(problems))
