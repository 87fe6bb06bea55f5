"""Output folders of the analyses (evolution, invariance, correspondence): claimed, atomic.

A folder receives an analysis only when it is new or empty, or when it holds that analysis'
marker file (``.convlens-<kind>``, a JSON listing every file convlens wrote there) and the
caller says ``resume`` (continue: keep what is there) or ``overwrite`` (delete the files the
marker lists, and nothing else, then start again). Every file is written atomically
(temporary file + ``os.replace``) and recorded in the marker.

>>> import tempfile, pathlib
>>> run = RunFolder.claim(pathlib.Path(tempfile.mkdtemp()) / "run", "demo")
>>> run.write_json("a.json", {"x": 1}).name, run.written()
('a.json', ['a.json'])
"""

from __future__ import annotations

import io
import json
import math
import os
from pathlib import Path
from typing import Any

from convlens.errors import ParameterError, verbatim
from convlens.io import atomic_write_bytes, atomic_write_text

__all__ = ["RunFolder", "json_ready"]


def json_ready(value: Any) -> Any:
    """``value`` with tensors/arrays turned into lists and non-finite floats into None.

    >>> import torch
    >>> json_ready({"a": torch.tensor([1.0, float("nan")]), "b": (1, 2)})
    {'a': [1.0, None], 'b': [1, 2]}
    """
    if hasattr(value, "tolist") and not isinstance(value, (str, bytes)):
        value = value.tolist()
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Path):
        return os.fspath(value)
    return value


class RunFolder:
    """A claimed output folder of one analysis ``kind``; see the module docstring."""

    def __init__(self, path: Path, kind: str, files: list[str]) -> None:
        self.path = path
        self.kind = kind
        self._files = files

    @property
    def marker(self) -> Path:
        return self.path / f".convlens-{self.kind}"

    @classmethod
    def claim(
        cls,
        out: str | os.PathLike[str],
        kind: str,
        *,
        resume: bool = False,
        overwrite: bool = False,
    ) -> RunFolder:
        """Take ``out`` for analysis ``kind`` (raises ``ParameterError`` on a folder that is
        not ours, or ours without ``resume``/``overwrite``)."""
        if resume and overwrite:
            raise ParameterError("overwrite", "either resume or overwrite, not both", True)
        path = Path(out)
        if path.exists() and not path.is_dir():
            raise ParameterError("out", "a folder path", verbatim(f"the file {os.fspath(path)!r}"))
        marker = path / f".convlens-{kind}"
        files: list[str] = []
        if path.is_dir() and any(path.iterdir()):
            if not marker.is_file():
                raise ParameterError(
                    "out",
                    f"a new or empty folder, or one written by convlens {kind}",
                    verbatim(f"the non-empty folder {os.fspath(path)!r}"),
                    hint="choose another --out (convlens never deletes files it did not write)",
                )
            if not (resume or overwrite):
                raise ParameterError(
                    "out",
                    "a new or empty folder",
                    verbatim(f"the folder {os.fspath(path)!r} of an earlier {kind} run"),
                    hint="pass --resume to continue it or --overwrite to replace its files",
                )
            try:
                files = [str(f) for f in json.loads(marker.read_text("utf-8"))["files"]]
            except (ValueError, KeyError, TypeError) as exc:
                raise ParameterError(
                    "out", f"a readable marker {marker.name}", os.fspath(marker), hint=str(exc)
                ) from exc
            if overwrite:
                for name in files:
                    target = path / name
                    if target.is_file() and target.resolve().is_relative_to(path.resolve()):
                        target.unlink()
                files = []
        path.mkdir(parents=True, exist_ok=True)
        run = cls(path, kind, files)
        run._save_marker()
        return run

    def written(self) -> list[str]:
        """The files (relative paths) convlens wrote here, in order."""
        return list(self._files)

    def _save_marker(self) -> None:
        doc = {"written_by": f"convlens {self.kind}", "files": self._files}
        atomic_write_text(self.marker, json.dumps(doc, indent=1) + "\n")

    def record(self, relative: str | os.PathLike[str]) -> Path:
        """Note that convlens writes ``relative`` (also files written by others' code, such as
        a scan's run folder, so that ``overwrite`` may remove them); return its path."""
        name = Path(relative).as_posix()
        if name not in self._files:
            self._files.append(name)
            self._save_marker()
        return self.path / name

    def write_bytes(self, relative: str, data: bytes) -> Path:
        target = self.record(relative)
        atomic_write_bytes(target, data)
        return target

    def write_text(self, relative: str, text: str) -> Path:
        return self.write_bytes(relative, text.encode("utf-8"))

    def write_json(self, relative: str, doc: Any) -> Path:
        return self.write_text(relative, json.dumps(json_ready(doc), indent=1) + "\n")

    def write_figure(self, relative: str, figure: Any, *, dpi: int = 110) -> Path:
        """A matplotlib figure as PNG (closed afterwards)."""
        import matplotlib.pyplot as plt

        buffer = io.BytesIO()
        try:
            figure.savefig(buffer, format="png", dpi=dpi)
        finally:
            plt.close(figure)
        return self.write_bytes(relative, buffer.getvalue())
