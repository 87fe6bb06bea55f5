"""Files that are never half-written, and folders that convlens never takes from a user.

Every file convlens writes goes to a temporary name in the same folder, is flushed and
fsync'ed, then moved over the old one with ``os.replace`` (atomic on POSIX), and the folder is
fsync'ed: a crash leaves either the old file or the new one, never half of one. A folder of
results is built beside its destination and moved into place when complete
(:func:`staged_directory`).

Ownership: a folder convlens writes into keeps a manifest, :data:`MANIFEST`, of the files it
wrote there. convlens replaces or removes only files listed in it and refuses a folder that
holds anything else (:func:`foreign_files`): a user's files are never deleted or overwritten.
A run that writes into a folder over time (a scan) holds it with :func:`run_folder`: a lock
file (:data:`LOCK`, with the pid and host of the holder; a stale one, whose process is gone,
is taken over) keeps two runs out of one folder, every atomic write inside it is listed in the
manifest before it happens, and a run that fails before writing anything leaves no folder
behind. Folders get the user's umask (``0o777 & ~umask``). Torch-free; nothing here imports
more than the standard library.

>>> import tempfile, pathlib
>>> path = pathlib.Path(tempfile.mkdtemp()) / "notes" / "a.txt"
>>> atomic_write_text(path, "hello")
>>> path.read_text(), sorted(p.name for p in path.parent.iterdir())
('hello', ['a.txt'])
>>> run = path.parent.parent / "run"
>>> with run_folder(run) as folder:
...     atomic_write_text(folder / "result.txt", "42")
>>> sorted(written_files(run)), foreign_files(run)
(['result.txt'], [])
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import shutil
import socket
import tempfile
import threading
import time
import uuid
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from convlens.errors import ParameterError, verbatim

__all__ = [
    "LOCK",
    "MANIFEST",
    "Reuse",
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "check_folder",
    "foreign_files",
    "remove_written",
    "run_folder",
    "sha256_file",
    "staged_directory",
    "umask_mode",
    "will_write",
    "written_files",
]

#: The manifest of a folder convlens writes into: one relative path per line.
MANIFEST = ".convlens-written"
#: The lock file of a run in progress (JSON: pid, host, start time).
LOCK = ".convlens-lock"
_HEADER = "# files written by convlens in this folder (it may replace or remove exactly these)\n"
_CREATED = "# created-by-convlens\n"
_TEMP = re.compile(r"^\..+\.\d+-[0-9a-f]{8}\.tmp$")
#: How many names an error message lists before it says how many more there are.
SHOWN = 5
#: A lock that cannot be read is taken as abandoned after this many seconds.
UNREADABLE_LOCK_S = 60.0


# ----------------------------------------------------------------------------- atomic files


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


def _unwritable(param: str, where: Path, exc: OSError) -> ParameterError:
    return ParameterError(
        param,
        "a folder convlens can write to",
        verbatim(repr(os.fspath(where))),
        hint=exc.strerror or type(exc).__name__,
    )


def umask_mode(mode: int = 0o777) -> int:
    """``mode`` less the process's umask: the permissions a new folder gets from ``mkdir``.

    >>> old = os.umask(0o027); mode = umask_mode(); _ = os.umask(old)
    >>> oct(mode)
    '0o750'
    """
    umask = os.umask(0)
    os.umask(umask)
    return mode & ~umask


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str], *, param: str = "path") -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that wants a file name (Pillow,
    matplotlib, safetensors); when the block ends without an error, the file written there
    is fsync'ed and moved onto ``path``. On an error nothing changes at ``path`` and the
    temporary file is removed. The parent folder is created when missing; a folder that
    cannot be written is an error naming ``param`` and ``path`` (not the temporary name).
    Inside a folder held by :func:`run_folder`, ``path`` is listed in its manifest first.

    >>> import tempfile, pathlib
    >>> target = pathlib.Path(tempfile.mkdtemp()) / "x.bin"
    >>> with atomic_path(target) as tmp:
    ...     _ = tmp.write_bytes(b"abc")
    >>> target.read_bytes()
    b'abc'
    """
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(param, path.parent, exc) from exc
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise _unwritable(param, path.parent, PermissionError(13, "Permission denied"))
    _record(path)
    tmp = _temporary_name(path)
    try:
        yield tmp
        if not tmp.is_file():
            raise ParameterError(param, f"a file written to {tmp.name}", "nothing written")
        with open(tmp, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    _fsync_folder(path.parent)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes, *, param: str = "path") -> None:
    """Write ``data`` to ``path`` atomically (temporary file, fsync, ``os.replace``)."""
    with atomic_path(path, param=param) as tmp, open(tmp, "wb") as f:
        f.write(data)
        f.flush()


def atomic_write_text(path: str | os.PathLike[str], text: str, *, param: str = "path") -> None:
    """Write UTF-8 ``text`` to ``path`` atomically."""
    atomic_write_bytes(path, text.encode("utf-8"), param=param)


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


# -------------------------------------------------------------------------------- ownership


def _is_bookkeeping(rel: str) -> bool:
    """The manifest, the lock and convlens's own temporary files (any folder level)."""
    name = rel.rsplit("/", 1)[-1]
    return rel in (MANIFEST, LOCK) or bool(_TEMP.match(name))


def _manifest_lines(folder: Path) -> list[str]:
    try:
        return (folder / MANIFEST).read_text("utf-8", errors="replace").splitlines()
    except (FileNotFoundError, NotADirectoryError):
        return []


def written_files(folder: str | os.PathLike[str]) -> set[str]:
    """The files (relative POSIX paths) that :data:`MANIFEST` lists as written by convlens
    in ``folder``; empty for a folder without one."""
    return {line for line in _manifest_lines(Path(folder)) if line and not line.startswith("#")}


def _created_by_convlens(folder: Path) -> bool:
    return _CREATED.strip() in _manifest_lines(folder)


def _walk(folder: Path) -> Iterator[tuple[str, bool]]:
    """Every entry under ``folder`` as (relative POSIX path, is a directory); links are files."""
    for root, dirs, files in os.walk(folder, followlinks=False):
        base = Path(root).relative_to(folder)
        for name in list(dirs):
            if (Path(root) / name).is_symlink():
                dirs.remove(name)
                files.append(name)
        for name in dirs:
            yield (base / name).as_posix(), True
        for name in files:
            yield (base / name).as_posix(), False


def foreign_files(folder: str | os.PathLike[str]) -> list[str]:
    """What convlens did not write in ``folder`` (sorted relative POSIX paths): files not in
    its manifest, and folders (shown with a trailing ``/``) that hold none of its files.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp())
    >>> _ = (root / "thesis.tex").write_text("mine"); (root / "empty").mkdir()
    >>> foreign_files(root)
    ['empty/', 'thesis.tex']
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    written = written_files(folder)
    foreign: list[str] = []
    dirs: list[str] = []
    files: list[str] = []
    for rel, is_dir in _walk(folder):
        (dirs if is_dir else files).append(rel)
    for rel in files:
        if rel not in written and not _is_bookkeeping(rel):
            foreign.append(rel)
    for rel in dirs:
        prefix = rel + "/"
        if not any(f.startswith(prefix) for f in files):
            foreign.append(prefix)
    return sorted(foreign)


def _listing(names: list[str]) -> str:
    shown = ", ".join(names[:SHOWN])
    more = len(names) - SHOWN
    return f"{shown}, ... ({len(names)} in all)" if more > 0 else shown


def check_folder(
    out: str | os.PathLike[str],
    *,
    param: str = "out",
    allow_foreign: bool = False,
    expected: str = "a new or empty folder, or one that convlens wrote",
    hint: str | None = "convlens never deletes or overwrites files it did not write",
) -> Path:
    """``out`` (absolute) when convlens may write into it: missing, a folder of its own, or
    (``allow_foreign``) any folder; a file, or a folder holding what convlens did not write,
    is an error naming ``param`` and the first of those files.

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()); _ = (root / "a.txt").write_text("x")
    >>> try:
    ...     check_folder(root)
    ... except ParameterError as exc:
    ...     print(str(exc).split(", received")[0])
    out: expected a new or empty folder, or one that convlens wrote
    """
    path = Path(out).absolute()
    if path.exists() and not path.is_dir():
        raise ParameterError(param, "a folder", verbatim(f"the file {os.fspath(path)!r}"), hint)
    if not allow_foreign:
        foreign = foreign_files(path)
        if foreign:
            raise ParameterError(
                param,
                expected,
                verbatim(
                    f"the folder {os.fspath(path)!r} with files convlens did not write: "
                    f"{_listing(foreign)}"
                ),
                hint,
            )
    return path


def _append_manifest(folder: Path, names: Iterable[str], *, created: bool = False) -> None:
    """Add ``names`` to the manifest of ``folder`` (appended lines: cheap, and safe for several
    processes writing at once)."""
    manifest = folder / MANIFEST
    fresh = not manifest.exists()
    lines = ([_HEADER] + ([_CREATED] if created else [])) if fresh else []
    lines += [f"{name}\n" for name in names]
    if not lines:
        return
    with open(manifest, "a", encoding="utf-8") as f:
        f.write("".join(lines))
        f.flush()


def _prune(folder: Path, rel_dirs: Iterable[str]) -> None:
    """Remove the folders ``rel_dirs`` (and their parents inside ``folder``) that are empty."""
    for rel in sorted(set(rel_dirs), key=lambda r: -r.count("/")):
        path = folder / rel
        while path != folder and folder in path.parents:
            try:
                path.rmdir()
            except OSError:
                break
            path = path.parent


def remove_written(folder: str | os.PathLike[str], *, keep_folder: bool = False) -> list[str]:
    """Remove exactly the files convlens wrote in ``folder`` (its manifest), the sub-folders
    that leaves empty and, unless ``keep_folder``, the manifest and the folder itself where
    convlens created it and nothing else is left. Returns what is left that convlens did not
    write (never touched).

    >>> import tempfile, pathlib
    >>> root = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> with run_folder(root) as f:
    ...     atomic_write_text(f / "sub" / "a.txt", "a")
    >>> _ = (root / "mine.txt").write_text("keep")
    >>> remove_written(root), sorted(p.name for p in root.iterdir())
    (['mine.txt'], ['mine.txt'])
    """
    folder = Path(os.path.abspath(folder))
    if not folder.is_dir():
        return []
    created = _created_by_convlens(folder)
    parents = []
    for rel in written_files(folder):
        path = folder / rel
        if ".." in Path(rel).parts or Path(rel).is_absolute():
            continue  # a manifest never points outside its folder
        if path.is_file() or path.is_symlink():
            path.unlink()
        if "/" in rel:
            parents.append(rel.rsplit("/", 1)[0])
    for rel, is_dir in list(_walk(folder)):
        if not is_dir and _TEMP.match(rel.rsplit("/", 1)[-1]):
            (folder / rel).unlink(missing_ok=True)
    _prune(folder, parents)
    manifest = folder / MANIFEST
    if keep_folder:
        text = _HEADER + (_CREATED if created else "")
        if manifest.exists():
            manifest.write_text(text, encoding="utf-8")
        with _HELD_LOCK:
            if folder in _HELD:
                _HELD[folder].names = set()
    else:
        manifest.unlink(missing_ok=True)
        if created:
            with contextlib.suppress(OSError):
                folder.rmdir()
    return foreign_files(folder)


# ------------------------------------------------------------------------------------ locks


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process
    except OSError:
        return False
    return True


def _read_lock(lock: Path) -> dict[str, object] | None:
    try:
        doc = json.loads(lock.read_text("utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def _holder(doc: dict[str, object] | None) -> str:
    if doc is None:
        return "a lock file that cannot be read"
    return f"a run in process {doc.get('pid')} on host {doc.get('host')} since {doc.get('started')}"


def _stale(lock: Path, doc: dict[str, object] | None) -> bool:
    if doc is None:
        try:
            return time.time() - lock.stat().st_mtime > UNREADABLE_LOCK_S
        except FileNotFoundError:
            return True
    pid = doc.get("pid")
    return doc.get("host") == socket.gethostname() and isinstance(pid, int) and not _alive(pid)


def _take_lock(folder: Path, param: str) -> None:
    lock = folder / LOCK
    content = json.dumps(
        {
            "pid": os.getpid(),
            "host": socket.gethostname(),
            "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        }
    )
    for _attempt in range(3):
        tmp = _temporary_name(lock)
        try:
            tmp.write_text(content, encoding="utf-8")
            try:
                os.link(tmp, lock)  # atomic and exclusive, with the content already in place
                return
            except FileExistsError:
                pass
            except OSError:  # a file system without hard links
                try:
                    fd = os.open(lock, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
                except FileExistsError:
                    pass
                else:
                    with os.fdopen(fd, "w", encoding="utf-8") as f:
                        f.write(content)
                    return
        except OSError as exc:
            raise _unwritable(param, folder, exc) from exc
        finally:
            tmp.unlink(missing_ok=True)
        doc = _read_lock(lock)
        if not _stale(lock, doc):
            raise ParameterError(
                param,
                "a folder that no other convlens run is using",
                verbatim(f"{os.fspath(folder)!r}, locked by {_holder(doc)}"),
                hint=f"wait for that run to end; if none is running, delete {os.fspath(lock)}",
            )
        aside = lock.with_name(f"{LOCK}.stale-{uuid.uuid4().hex[:8]}")
        with contextlib.suppress(FileNotFoundError):
            os.rename(lock, aside)  # of two takers only one moves it; the other retries
            aside.unlink(missing_ok=True)
    raise ParameterError(
        param, "a folder that no other convlens run is using", verbatim(repr(os.fspath(folder)))
    )


def _drop_lock(folder: Path) -> None:
    lock = folder / LOCK
    doc = _read_lock(lock)
    if (
        doc is not None
        and doc.get("pid") == os.getpid()
        and doc.get("host") == socket.gethostname()
    ):
        lock.unlink(missing_ok=True)


# ------------------------------------------------------------------------------ run folders


@dataclass
class _Held:
    count: int
    names: set[str]
    thread: int = 0


_HELD: dict[Path, _Held] = {}
_HELD_LOCK = threading.Lock()


def _record(path: Path) -> None:
    """List ``path`` in the manifest of the innermost folder this process holds around it."""
    target = Path(os.path.abspath(path))
    with _HELD_LOCK:
        holders = [f for f in _HELD if f in target.parents]
        if not holders:
            return
        folder = max(holders, key=lambda f: len(f.parts))
        names = _HELD[folder].names
        rel = target.relative_to(folder).as_posix()
        if rel in names:
            return
        names.add(rel)
        _append_manifest(folder, [rel])


def will_write(path: str | os.PathLike[str]) -> Path:
    """List ``path`` in the manifest of the innermost folder this process holds around it
    (:func:`run_folder`) before code of its own writes there (a nested run folder), so that
    the folder holds nothing convlens did not write; returns ``path``. Nothing is written at
    ``path``; outside a held folder this does nothing.

    >>> import tempfile, pathlib
    >>> with run_folder(pathlib.Path(tempfile.mkdtemp()) / "run") as held:
    ...     _ = will_write(held / "scan" / "x.json")
    >>> sorted(written_files(held))
    ['scan/x.json']
    """
    _record(Path(path))
    return Path(path)


def _only_bookkeeping(folder: Path) -> bool:
    return all(is_dir or _is_bookkeeping(rel) for rel, is_dir in _walk(folder))


Reuse = Literal["refuse", "continue", "clear"]


@contextlib.contextmanager
def run_folder(
    out: str | os.PathLike[str],
    *,
    param: str = "out",
    reuse: Reuse = "refuse",
    used_hint: str | None = None,
    lock: bool = True,
    join: bool = False,
) -> Iterator[Path]:
    """Hold the folder ``out`` for a run that writes into it over time; yields its absolute
    path.

    Refused: a file; a folder holding what convlens did not write (:func:`check_folder`); a
    folder another live run holds (:data:`LOCK`; the lock of a process that is gone is taken
    over). A folder with an earlier run's files is refused with ``reuse="refuse"`` (the
    message adds ``used_hint``), kept for the run to continue with ``"continue"`` and emptied
    of them with ``"clear"``. While held, every atomic write inside (:func:`atomic_path`) is
    listed in the manifest before it happens. When the block raises before anything but the
    bookkeeping was written, the folder is left as it was (removed when the run created
    it). ``join``: list this process's writes in a folder another process of the same job
    holds (no checks, no lock); ``lock=False``: no lock file. Held again by the same process,
    it is only counted (no second check); another thread of the same process finds it
    locked like any other run.
    """
    folder = Path(os.path.abspath(out))
    with _HELD_LOCK:
        held = _HELD.get(folder)
        if held is not None and held.thread == threading.get_ident():
            held.count += 1
        else:
            held = None
    if held is not None:
        try:
            yield folder
        finally:
            with _HELD_LOCK:
                held.count -= 1
        return
    if join:
        with _HELD_LOCK:
            _HELD[folder] = _Held(1, written_files(folder), threading.get_ident())
        try:
            yield folder
        finally:
            with _HELD_LOCK:
                _HELD.pop(folder, None)
        return
    check_folder(folder, param=param)
    existed = folder.is_dir()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _unwritable(param, folder, exc) from exc
    try:
        if lock:
            _take_lock(folder, param)
        if not (folder / MANIFEST).exists():
            _append_manifest(folder, [], created=not existed)
    except BaseException:
        _abandon(folder, existed, locked=False)
        raise
    earlier = sorted(f for f in written_files(folder) if (folder / f).exists())
    if earlier and reuse == "refuse":
        if lock:
            _drop_lock(folder)
        raise ParameterError(
            param,
            "a new or empty folder",
            verbatim(f"the folder {os.fspath(folder)!r} with an earlier run ({_listing(earlier)})"),
            used_hint,
        )
    if earlier and reuse == "clear":
        remove_written(folder, keep_folder=True)
    with _HELD_LOCK:
        _HELD[folder] = _Held(1, written_files(folder), threading.get_ident())
    try:
        yield folder
    except BaseException:
        _abandon(folder, existed, locked=lock)
        raise
    finally:
        with _HELD_LOCK:
            _HELD.pop(folder, None)
        if lock:
            _drop_lock(folder)


def _abandon(folder: Path, existed: bool, *, locked: bool) -> None:
    """After a failure: a folder holding only bookkeeping is put back as it was."""
    if not folder.is_dir() or not _only_bookkeeping(folder):
        return
    if locked:
        _drop_lock(folder)
    if (folder / LOCK).exists():
        return  # another run's lock
    (folder / MANIFEST).unlink(missing_ok=True)
    if not existed:
        shutil.rmtree(folder, ignore_errors=True)  # only empty folders and our temp files


# --------------------------------------------------------------------------- staged folders


@contextlib.contextmanager
def staged_directory(
    out: str | os.PathLike[str],
    *,
    replace: bool = False,
    prefix: str = ".convlens-",
    param: str = "out",
) -> Iterator[Path]:
    """A new folder beside ``out`` to write a set of files into; they reach ``out`` only when
    the block ends without an error (else the folder is removed and ``out`` is untouched).

    A missing ``out`` is the staged folder renamed into place. An existing one receives the
    staged files one by one (``os.replace``; a same-named file is replaced only where
    convlens wrote it, its other files are kept), or, with ``replace=True``, is swapped for
    the staged folder as a whole, only when it holds nothing convlens did not write (checked
    on entry and again just before the swap). Either way the files written are listed in
    ``out``'s manifest. The staged folder has the usual permissions (``0o777`` less the
    umask), not ``mkdtemp``'s ``0o700``.

    >>> import tempfile, pathlib
    >>> out = pathlib.Path(tempfile.mkdtemp()) / "run"
    >>> with staged_directory(out) as tmp:
    ...     _ = (tmp / "a.txt").write_text("a")
    >>> sorted(p.name for p in out.parent.iterdir()), (out / "a.txt").read_text()
    (['run'], 'a')
    """
    out = check_folder(out, param=param, allow_foreign=not replace)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staged = Path(tempfile.mkdtemp(prefix=f"{prefix}{out.name}-", dir=out.parent))
    except OSError as exc:
        raise _unwritable(param, out.parent, exc) from exc
    staged.chmod(umask_mode())
    try:
        yield staged
        names = sorted(rel for rel, is_dir in _walk(staged) if not is_dir and rel != MANIFEST)
        if not out.exists():
            _append_manifest(staged, names, created=True)
            os.rename(staged, out)
        elif replace:
            check_folder(out, param=param)
            _append_manifest(staged, names, created=_created_by_convlens(out))
            _swap(staged, out)
        else:
            _merge(staged, out, names, param)
        _fsync_folder(out.parent)
    finally:
        if staged.exists():
            shutil.rmtree(staged, ignore_errors=True)


def _merge(staged: Path, out: Path, names: list[str], param: str) -> None:
    """Move the files ``names`` of ``staged`` into ``out``, replacing only files of its own."""
    written = written_files(out)
    taken = [n for n in names if (out / n).exists() and n not in written]
    if taken:
        raise ParameterError(
            param,
            "a folder whose files of these names convlens wrote",
            verbatim(f"the folder {os.fspath(out)!r} with files of its own: {_listing(taken)}"),
            hint="convlens never overwrites a file it did not write; choose another folder",
        )
    _append_manifest(out, [n for n in names if n not in written])
    for name in names:
        target = out / name
        target.parent.mkdir(parents=True, exist_ok=True)
        os.replace(staged / name, target)


def _swap(staged: Path, out: Path) -> None:
    """Put ``staged`` where ``out`` is; of the old folder, only what convlens wrote is removed
    (anything else stays in the renamed old folder)."""
    old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:8]}")
    os.rename(out, old)
    try:
        os.rename(staged, out)
    except BaseException:
        os.rename(old, out)
        raise
    left = remove_written(old)
    if not left:
        with contextlib.suppress(OSError):
            old.rmdir()
