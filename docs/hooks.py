"""MkDocs hooks (mkdocs.yml ``hooks:``): the pages generated at build time, and the checks that
make ``mkdocs build --strict`` fail when the site would be wrong.

- ``on_files``: the [gallery](gallery.md), drawn now by docs/gen_gallery.py, and the API index
  (``api/index.md``), one row per name of ``convlens.__all__`` linked to where it is documented;
- ``on_post_page``: drops nbconvert's loader for mermaid diagrams (the notebooks have none, and
  it names a CDN);
- ``on_post_build``: copies MathJax (for the notebooks' formulas) in from the
  ``jupyter-server-mathjax`` package of the docs extra, then checks that no page loads anything
  from the network (the site must work from ``file://``), that the CLI page documents every
  command of ``convlens.cli`` and that no docstring fell apart into quotes.
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
    "errors",
)

_EXTERNAL = re.compile(
    r"<(?:script|link|img|iframe|source|audio|video)\b[^>]*\b(?:src|href)\s*=\s*[\"']?(?:https?:)?//",
    re.I,
)
_IMPORT_URL = re.compile(r"import\(\s*[\"'](?:https?:)?//", re.I)
_MERMAID = re.compile(r'<script type="module">\s*document\.addEventListener\("DOMContentLoaded".*?'
                      r"</script>", re.S)


def _gallery_module() -> Any:
    spec = importlib.util.spec_from_file_location("convlens_docs_gallery", DOCS / "gen_gallery.py")
    assert spec is not None and spec.loader is not None
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


def api_index() -> str:
    """The API index page: every public top-level name, what it is, and where it is documented."""
    import convlens

    pages = {name: importlib.import_module(f"convlens.{name}") for name in API_PAGES}
    rows = []
    for name in sorted(convlens.__all__, key=str.lower):
        obj = getattr(convlens, name)
        where, link = "", f"`{name}`"
        documented = (inspect.isclass(obj) or inspect.isfunction(obj)) and inspect.getdoc(obj)
        for page, module in pages.items():
            found = [n for n in getattr(module, "__all__", ()) if getattr(module, n, None) is obj]
            if found:
                where = f"[`convlens.{page}`]({page}.md)"
                if documented:
                    link = f"[`{name}`][convlens.{page}.{found[0]}]"
                break
        kind = "class" if inspect.isclass(obj) else "function" if callable(obj) else "value"
        what = _first_sentence(obj) if documented else f"`{obj!r}`" if kind == "value" else ""
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


def on_files(files: Files, config: Any) -> Files:
    gallery = _gallery_module()
    with tempfile.TemporaryDirectory(prefix="convlens-gallery-") as tmp:
        for path in gallery.draw(tmp):
            files.append(File.generated(config, f"gallery/{path.name}", content=path.read_bytes()))
    files.append(File.generated(config, "gallery.md", content=gallery.page()))
    files.append(File.generated(config, "api/index.md", content=api_index()))
    return files


def on_post_page(output: str, page: Any, config: Any) -> str:
    return _MERMAID.sub("", output) if "mermaid" in output else output


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
    cli_page = (site / "cli.html").read_text(encoding="utf-8")
    for name in _commands(cli, "convlens"):
        if f"<code>{name}</code>" not in cli_page and f">{name}<" not in cli_page:
            problems.append(f"cli.html: command {name!r} is not documented")
    return problems


def on_post_build(config: Any, **kwargs: Any) -> None:
    import jupyter_server_mathjax

    site = Path(config["site_dir"])
    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    shutil.copytree(source, site / "assets" / "mathjax", dirs_exist_ok=True)
    problems = check_site(site)
    if problems:
        raise PluginError("the built site is wrong:\n  " + "\n  ".join(problems))
