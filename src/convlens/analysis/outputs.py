"""Output folders of the analyses (evolution, invariance, correspondence), held through
:mod:`convlens.io`: one manifest, one lock, atomic files.

:meth:`RunFolder.claim` holds the folder with :func:`convlens.io.run_folder` (its lock keeps
a second run out; its manifest, :data:`convlens.io.MANIFEST`, lists every file convlens wrote
there; a folder holding anything else is refused). A hidden marker ``.convlens-<kind>``,
listed in that manifest like any other file, says which analysis wrote the folder. A folder
receives an analysis only when it is new or empty, or when it holds an earlier run of that
same analysis and the caller says ``resume`` (continue: keep what is there) or ``overwrite``
(remove the files that run wrote, nothing else, then start again); the files of another
command's run are never replaced. A run that fails before writing a result leaves the folder
as it found it.

>>> import tempfile, pathlib
>>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
>>> with RunFolder.claim(out, "demo") as run:
...     run.write_json("a.json", {"x": 1}).name, run.written()
('a.json', ['a.json'])
>>> from convlens.io import foreign_files, written_files
>>> sorted(written_files(out)), foreign_files(out)
(['.convlens-demo', 'a.json'], [])
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from convlens.errors import ParameterError, verbatim
from convlens.io import (
    LOCK,
    MANIFEST,
    SHOWN,
    atomic_write_bytes,
    atomic_write_text,
    check_folder,
    remove_written,
    run_folder,
    will_write,
    written_files,
)

__all__ = ["MARKER_PREFIX", "RunFolder", "json_ready"]

#: The marker of a folder written by analysis ``kind`` is ``MARKER_PREFIX + kind``.
MARKER_PREFIX = ".convlens-"


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


def _listing(names: list[str]) -> str:
    more = len(names) - SHOWN
    shown = ", ".join(names[:SHOWN])
    return f"{shown}, ... ({len(names)} in all)" if more > 0 else shown


def _earlier(path: Path) -> list[str]:
    """The files an earlier convlens run wrote in ``path`` that are still there."""
    return sorted(f for f in written_files(path) if (path / f).exists())


def _refuse_earlier(path: Path, kind: str, *, resume: bool, overwrite: bool) -> None:
    """Raise when ``path`` holds a run ``kind`` may not continue or replace: another command's
    run (always), or an earlier ``kind`` run without ``resume`` / ``overwrite``."""
    earlier = _earlier(path)
    if not earlier:
        return
    marker = MARKER_PREFIX + kind
    if marker not in earlier:
        others = [f[len(MARKER_PREFIX) :] for f in earlier if f.startswith(MARKER_PREFIX)]
        whose = f"a convlens {others[0]} run" if others else "another convlens command's run"
        raise ParameterError(
            "out",
            f"a new or empty folder, or one of an earlier convlens {kind} run",
            verbatim(f"the folder {os.fspath(path)!r} with the files of {whose}"),
            hint=f"--resume and --overwrite apply to an earlier {kind} run only; choose "
            "another --out",
        )
    if not (resume or overwrite):
        shown = _listing([f for f in earlier if f != marker] or earlier)
        raise ParameterError(
            "out",
            "a new or empty folder",
            verbatim(f"the folder {os.fspath(path)!r} of an earlier {kind} run ({shown})"),
            hint="pass --resume to continue it or --overwrite to replace its files",
        )


class RunFolder:
    """A held output folder of one analysis ``kind`` (see the module docstring); made by
    :meth:`claim`. ``path`` is absolute; :meth:`written` lists what this run wrote."""

    def __init__(self, path: Path, kind: str) -> None:
        self.path = path
        self.kind = kind
        self._files: list[str] = []

    @property
    def marker(self) -> Path:
        """The file that says which analysis wrote this folder."""
        return self.path / f"{MARKER_PREFIX}{self.kind}"

    @staticmethod
    def check(
        out: str | os.PathLike[str],
        kind: str,
        *,
        resume: bool = False,
        overwrite: bool = False,
    ) -> Path:
        """``out`` (absolute) when :meth:`claim` would take it now; else the error it would
        raise. For refusing a folder before hours of work (nothing is locked or written:
        :meth:`claim` checks again under the lock).

        >>> import tempfile, pathlib
        >>> root = pathlib.Path(tempfile.mkdtemp()); _ = (root / "mine.txt").write_text("x")
        >>> try:
        ...     RunFolder.check(root, "demo")
        ... except ParameterError as exc:
        ...     print(str(exc).split(", received")[0])
        out: expected a new or empty folder, or one that convlens wrote
        """
        if resume and overwrite:
            raise ParameterError("overwrite", "either resume or overwrite, not both", True)
        path = check_folder(out, param="out", hint=_FOREIGN_HINT)
        _refuse_earlier(path, kind, resume=resume, overwrite=overwrite)
        return path

    @classmethod
    @contextlib.contextmanager
    def claim(
        cls,
        out: str | os.PathLike[str],
        kind: str,
        *,
        resume: bool = False,
        overwrite: bool = False,
    ) -> Iterator[RunFolder]:
        """Hold ``out`` for analysis ``kind`` while the block runs (raises
        ``ParameterError``, changing nothing, on a folder that is not convlens's, one that
        another run holds, another command's run, or an earlier ``kind`` run without
        ``resume`` / ``overwrite``)."""
        cls.check(out, kind, resume=resume, overwrite=overwrite)
        with run_folder(out, param="out", reuse="continue") as path:
            _refuse_earlier(path, kind, resume=resume, overwrite=overwrite)  # under the lock
            if overwrite:
                remove_written(path, keep_folder=True)
            run = cls(path, kind)
            try:
                yield run
            except BaseException:
                run._undo_if_empty()
                raise

    def _undo_if_empty(self) -> None:
        """After a failure: when nothing but the marker was written (by any run), remove
        it and the folders made for nested runs, so the folder is as it was found."""
        marker = self.marker.name
        if all(f == marker for f in _earlier(self.path)):
            remove_written(self.path, keep_folder=True)

    def _mark(self) -> None:
        if not self.marker.exists():
            doc = {"written_by": f"convlens {self.kind}"}
            atomic_write_text(self.marker, json.dumps(doc) + "\n")

    def written(self) -> list[str]:
        """The files (relative POSIX paths) this run wrote through this object, in the order
        first written (nested runs' files are not among them)."""
        return list(self._files)

    def record(self, relative: str | os.PathLike[str]) -> Path:
        """List ``relative`` in the folder's manifest before code of its own writes it (a
        nested scan's run folder: see :meth:`nested`), so that the folder stays convlens's
        and ``overwrite`` removes it; return its path. Nothing is written there."""
        self._mark()
        return will_write(self.path / Path(relative))

    def nested(self, relative: str, files: Iterable[str]) -> Path:
        """Make room for a run folder of its own (:func:`convlens.io.run_folder`, as a scan
        holds) at ``relative``: its ``files``, manifest and lock are listed here first, so this
        folder holds nothing convlens did not write. Call :meth:`adopt` after it ran."""
        for name in (*files, MANIFEST, LOCK):
            self.record(f"{relative}/{name}")
        return self.path / relative

    def adopt(self, relative: str) -> None:
        """List here whatever the nested run folder at ``relative`` wrote besides the files
        named to :meth:`nested` (its own manifest says what)."""
        for name in sorted(written_files(self.path / relative)):
            self.record(f"{relative}/{name}")

    def write_bytes(self, relative: str, data: bytes) -> Path:
        """Write ``data`` to ``relative`` atomically; return its path."""
        self._mark()
        target = self.path / relative
        atomic_write_bytes(target, data, param="out")
        name = Path(relative).as_posix()
        if name not in self._files:
            self._files.append(name)
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


_FOREIGN_HINT = "choose another --out (convlens never deletes or overwrites files it did not write)"
