"""Who owns which queue file: one SQLite file per process, held by an exclusive ``flock`` on a
sibling ``.lock`` file for the life of the process. The kernel releases the lock when the owner
dies (even by kill -9), so a file whose lock can be taken is an orphan that may be adopted.

The queue directory is created 0700; lock and database files are 0600.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass
class ClaimedFile:
    """A queue file path plus the open, flock'ed lock file descriptor that proves ownership."""

    db_path: Path
    lock_path: Path
    lock_fd: int

    def release(self, remove: bool = False) -> None:
        if remove:
            for suffix in ("", "-wal", "-shm"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.db_path}{suffix}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(self.lock_path)
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)
        self.lock_fd = -1

    def forget(self) -> None:
        """In a forked child: drop the inherited descriptor without touching the parent's lock."""
        with contextlib.suppress(OSError):
            os.close(self.lock_fd)
        self.lock_fd = -1


def prepare_dir(path: str | os.PathLike[str]) -> Path:
    directory = Path(path)
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(directory, 0o700)
    return directory


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        return None
    return fd


def claim_new(directory: Path) -> ClaimedFile:
    """Create and lock a fresh queue file name for this process."""
    stem = f"q-{os.getpid()}-{secrets.token_hex(4)}"
    tmp = directory / f".{stem}.lock.tmp"
    fd = _try_lock(tmp)
    if fd is None:  # pragma: no cover - a fresh random name cannot be locked by anyone else
        raise OSError(f"cannot lock {tmp}")
    lock_path = directory / f"{stem}.lock"
    os.replace(tmp, lock_path)  # the lock is held before the name becomes visible
    return ClaimedFile(directory / f"{stem}.db", lock_path, fd)


def orphans(directory: Path, exclude: Path | None = None) -> Iterator[ClaimedFile]:
    """Lock and yield every queue file in ``directory`` whose owner is gone."""
    for db_path in sorted(directory.glob("q-*.db")):
        if exclude is not None and db_path == exclude:
            continue
        lock_path = db_path.with_suffix(".lock")
        try:
            fd = _try_lock(lock_path)
        except OSError:
            continue
        if fd is None:
            continue  # a live owner holds it
        if not db_path.exists():  # adopted and removed by someone else meanwhile
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_path)
            os.close(fd)
            continue
        yield ClaimedFile(db_path, lock_path, fd)


@dataclass(frozen=True)
class QueueFileInfo:
    db_path: Path
    owner_pid: int | None
    alive: bool


def list_queue_files(directory: Path) -> list[QueueFileInfo]:
    """Every queue file with its owner pid and whether its lock is currently held."""
    out = []
    for db_path in sorted(directory.glob("q-*.db")):
        parts = db_path.stem.split("-")
        pid = int(parts[1]) if len(parts) >= 3 and parts[1].isdigit() else None
        lock_path = db_path.with_suffix(".lock")
        alive = False
        if lock_path.exists():
            try:
                fd = os.open(lock_path, os.O_RDWR)
                try:
                    fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
                    fcntl.flock(fd, fcntl.LOCK_UN)
                except OSError:
                    alive = True
                finally:
                    os.close(fd)
            except OSError:
                pass
        out.append(QueueFileInfo(db_path, pid, alive))
    return out
