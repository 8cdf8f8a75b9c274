"""Writing outputs so that no crash, kill or full disk leaves half a file under its final name.

Every output of latentdiag (reports, figures, checkpoints, weights, converted files, k-NN
graphs, exports) is written under a temporary name beside its final one and renamed into place
when complete: ``os.replace`` is atomic on one file system, so a reader sees the old file, no
file, or the whole new one. The temporary name is ``.NAME.tmp-PID-RANDOM[SUFFIX]``; a process
killed with SIGKILL cannot remove its own, so the next write of the same output removes those
whose process is no longer running on this machine (:func:`sweep_stale_temps`).

The resumable ``.partial`` of ``embed`` is another thing: it is kept on purpose, and never swept.
"""

from __future__ import annotations

import contextlib
import os
import re
import secrets
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

__all__ = [
    "atomic_path",
    "atomic_write_bytes",
    "atomic_write_text",
    "atomic_write_with",
    "folder_lock",
    "sweep_stale_temps",
    "temp_path",
]

_TEMP = re.compile(r"^\.(?P<name>.+)\.tmp-(?P<pid>\d+)-[0-9a-f]{8}(?:\.[A-Za-z0-9]+)?$")


def temp_path(final: str | os.PathLike[str], *, keep_suffix: bool = False) -> Path:
    """A fresh temporary name beside ``final`` (``keep_suffix``: ending in its suffix too, for
    writers that infer the format from the name)."""
    p = Path(final)
    suffix = p.suffix if keep_suffix else ""
    return p.with_name(f".{p.name}.tmp-{os.getpid()}-{secrets.token_hex(4)}{suffix}")


def _running(pid: int) -> bool:
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except OSError:
        return True
    return True


def sweep_stale_temps(folder: str | os.PathLike[str], name: str | None = None) -> list[Path]:
    """Remove the temporary files and folders that killed processes left in ``folder``.

    Only names this module makes (``.NAME.tmp-PID-RANDOM``) whose PID is not a running
    process are removed; ``name`` limits it to the temporaries of one output. Never raises:
    what cannot be removed stays.

    Returns:
        The paths removed.
    """
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        m = _TEMP.match(entry.name)
        if m is None or (name is not None and m["name"] != name) or _running(int(m["pid"])):
            continue
        path = Path(entry.path)
        try:
            if entry.is_dir(follow_symlinks=False):
                shutil.rmtree(path)
            else:
                path.unlink()
        except OSError:
            continue
        removed.append(path)
    return removed


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink()


@contextlib.contextmanager
def atomic_path(final: str | os.PathLike[str], *, keep_suffix: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``final``; rename it to ``final`` when the block ends
    without an exception (and remove it otherwise). The caller writes a file there, or makes a
    folder (a folder replaces an existing ``final`` folder: the old one is removed first).

    Temporaries of the same output left by killed processes are removed first.
    """
    target = Path(final)
    target.parent.mkdir(parents=True, exist_ok=True)
    sweep_stale_temps(target.parent, target.name)
    tmp = temp_path(target, keep_suffix=keep_suffix)
    try:
        yield tmp
        if tmp.is_dir() and target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        _remove(tmp)


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp, open(tmp, "xb") as f:
        f.write(data)
    return Path(path)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns the path."""
    with atomic_path(path) as tmp, open(tmp, "x", encoding="utf-8") as f:
        f.write(text)
    return Path(path)


def atomic_write_with(path: str | os.PathLike[str], write: Callable[[Path], object]) -> Path:
    """Call ``write(tmp)`` to write the file, then move it to ``path``; returns the path."""
    with atomic_path(path) as tmp:
        write(tmp)
    return Path(path)


@contextlib.contextmanager
def folder_lock(folder: str | os.PathLike[str]) -> Iterator[None]:
    """Hold an exclusive lock on ``folder`` while the block runs (blocking until another
    holder is done), so that two processes writing several files into one folder do it one
    after the other and the folder ends as one writer's whole output, never a mix.

    An advisory ``flock`` on the folder itself: no lock file is left behind, and the lock ends
    with the process however it ends. Where ``flock`` is not available (Windows) it is a no-op.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)  # closing releases the lock
