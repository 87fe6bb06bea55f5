"""Files that are never half-written: atomic writes of bytes, text and whole folders.

Every file convlens writes goes to a temporary name in the same folder, is flushed and
fsync'ed, then moved over the old one with ``os.replace`` (atomic on POSIX), and the folder is
fsync'ed: a crash leaves either the old file or the new one, never half of one. A folder of
results is built beside its destination and moved into place when complete
(:func:`staged_directory`). Torch-free; nothing here imports more than the standard library.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "notes" / "a.txt"
>>> atomic_write_text(path, "hello")
>>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
('hello', ['a.txt'])
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

from convlens.errors import ParameterError

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "sha256_file",
    "staged_directory",
]


def _fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (best effort: not every system allows it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _temporary_name(path: Path) -> Path:
    """A hidden name beside ``path`` that no other writer (process or thread) uses."""
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (Pillow,
    matplotlib, safetensors); when the block ends without an error, the file written there
    is fsync'ed and moved onto ``path``. On an error nothing changes at ``path`` and the
    temporary file is removed. The parent folder is created when missing.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_bytes(b"abc")
    >>> target.read_bytes()
    b'abc'
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temporary_name(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise ParameterError("path", f"a file written to {tmp.name}", "nothing written")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_folder(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()


def atomic_write_text(path: str | os.PathLike[str], text: str) -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"))


def sha256_file(path: str | os.PathLike[str]) -> str:
    """The hex SHA-256 of a file's bytes.

    >>> import tempfile, pathlib
    >>> p = pathlib.Path(tempfile.mkdtemp()) / "empty"; _ = p.write_bytes(b"")
    >>> sha256_file(p)[:16]
    'e3b0c44298fc1c14'
    """
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@contextlib.contextmanager
def staged_directory(
    out: str | os.PathLike[str], *, replace: bool = False, prefix: str = ".convlens-"
) -> Iterator[Path]:
    """A new folder beside ``out`` to write a set of files into; they reach ``out`` only when
    the block ends without an error (else the folder is removed and ``out`` is untouched).

    A missing ``out`` is the staged folder renamed into place. An existing one receives the
    staged files one by one (``os.replace``: same-named files are replaced, others kept), or,
    with ``replace=True``, is swapped for the staged folder as a whole (the caller checks that
    the old folder is its own to replace). The staged folder has the usual permissions
    (``0o777`` less the umask), not ``mkdtemp``'s ``0o700``.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> with staged_directory(out) as tmp:
    ...     _ = (tmp / "a.txt").write_text("a")
    >>> sorted(p.name for p in out.parent.iterdir()), (out / "a.txt").read_text()
    (['run'], 'a')
    """
    out = Path(out).absolute()
    if out.exists() and not out.is_dir():
        raise ParameterError("out", "a folder", str(out))
    out.parent.mkdir(parents=True, exist_ok=True)
    staged = Path(tempfile.mkdtemp(prefix=f"{prefix}{out.name}-", dir=out.parent))
    umask = os.umask(0)
    os.umask(umask)
    staged.chmod(0o777 & ~umask)
    try:
        yield staged
        if not out.exists():
            os.rename(staged, out)
        elif replace:
            _swap(staged, out)
        else:
            for item in sorted(staged.iterdir()):
                os.replace(item, out / item.name)
        _fsync_folder(out.parent)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)


def _swap(staged: Path, out: Path) -> None:
    """Put ``staged`` where ``out`` is; the old folder is removed once the new one is in."""
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(out, old)
    try:
        os.rename(staged, out)
    except BaseException:
        os.rename(old, out)
        raise
    shutil.rmtree(old, ignore_errors=True)
