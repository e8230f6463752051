"""Private temporary folders for files that hold a secret: passfiles, salted SQL, copies of a database.

What must always hold: such a file lives only in a folder of its own, inside one folder per user
(`<TMPDIR>/dbguard-<uid>`, mode 0700, refused when it is anyone else's), and is gone when its run
ends, however it ends: the folder is removed on every exit path, and a folder whose run was killed
is removed by the next run that makes one. A run holds an exclusive lock on its folder while it
lives (the kernel lets go of it when the process dies, whatever killed it), so a folder whose lock
can be taken belongs to nobody and is swept. Making a folder and sweeping take turns under a lock
on the root, so a sweep never sees a folder between its creation and its lock. Process ids are
only part of the name, for people.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import stat
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from dbguard.errors import Refused

_LOCK = ".lock"


def private_root() -> Path:
    """`<TMPDIR>/dbguard-<uid>`: made 0700 on first use; refused when it is not this user's own, private folder."""
    root = Path(tempfile.gettempdir()) / f"dbguard-{os.geteuid()}"
    try:
        os.mkdir(root, 0o700)
    except FileExistsError:
        pass
    except OSError as exc:
        raise Refused(
            f"the private folder {root} for temporary secrets cannot be made ({exc.strerror})",
            "set TMPDIR to a folder you can write",
        ) from None
    found = os.lstat(root)
    if not stat.S_ISDIR(found.st_mode) or found.st_uid != os.geteuid() or found.st_mode & 0o077:
        raise Refused(
            f"the private folder {root} for temporary secrets is not this user's own with mode 0700",
            f"remove {root} (it will be made again), or set TMPDIR to a folder only you can write",
        )
    return root


@contextmanager
def _turn(root: Path) -> Iterator[None]:
    """Making a folder and sweeping take turns (held for a moment only)."""
    fd = os.open(root / _LOCK, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _unowned(folder: Path) -> bool:
    """True when no live run holds `folder`'s lock (its run ended or was killed, perhaps before locking it)."""
    try:
        fd = os.open(folder / _LOCK, os.O_RDONLY)
    except FileNotFoundError:
        return True
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    finally:
        os.close(fd)  # also lets go of the lock, if we took it
    return True


def _sweep(root: Path) -> list[Path]:
    removed = []
    for folder in root.iterdir():
        if folder.is_dir() and not folder.is_symlink() and _unowned(folder):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    return removed


def sweep() -> list[Path]:
    """Remove the private folders that killed runs left behind; returns what was removed."""
    root = private_root()
    with _turn(root):
        return _sweep(root)


@contextmanager
def private_folder(kind: str) -> Iterator[Path]:
    """A new folder `<kind>-<pid>-<random>` in the private root, locked while it lives, removed on exit."""
    root = private_root()
    with _turn(root):
        _sweep(root)
        folder = Path(tempfile.mkdtemp(prefix=f"{kind}-{os.getpid()}-", dir=root))
        lock = os.open(folder / _LOCK, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        fcntl.flock(lock, fcntl.LOCK_EX)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        os.close(lock)


def private_file(folder: Path, name: str, text: str) -> Path:
    """Write `text` to a new file (mode 0600) in a private folder."""
    path = folder / name
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    return path
