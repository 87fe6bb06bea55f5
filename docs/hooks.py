"""MkDocs hooks (mkdocs.yml ``hooks:``): the site must work from ``file://`` with nothing
fetched from the network, so MathJax (for the notebooks' formulas) is copied in from the
``jupyter-server-mathjax`` package of the docs extra instead of a CDN."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any


def on_post_build(config: Any, **kwargs: Any) -> None:
    import jupyter_server_mathjax

    source = Path(jupyter_server_mathjax.__file__).parent / "static"
    target = Path(config["site_dir"]) / "assets" / "mathjax"
    shutil.copytree(source, target, dirs_exist_ok=True)
