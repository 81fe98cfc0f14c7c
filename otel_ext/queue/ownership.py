"""Who owns which queue file: one SQLite file per process, held by an exclusive ``flock`` on a
sibling ``.lock`` file for the life of the process. The kernel releases the lock when the owner
dies (even by kill -9), so a file whose lock can be taken is an orphan that may be adopted.

The queue directory is created 0700; lock and database files are 0600. Like OpenSSH's
StrictModes, an existing directory that is a symlink, belongs to another user or is writable by
group or others is refused with one line naming it (unless the user opts in with
``OTEL_EXT_QUEUE_INSECURE_DIR=true``); we never chmod a directory we did not create, and never adopt
a file that is a symlink or belongs to another user, opted in or not.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import secrets
import stat
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from otel_ext.queue import segments
from otel_ext.queue.segments import dir_problem
from otel_ext.settings import explicit_or_env


@dataclass
class ClaimedFile:
    """A queue file path plus the open, flock'ed lock file descriptor that proves ownership."""

    db_path: Path
    lock_path: Path
    lock_fd: int

    def release(self, remove: bool = False) -> None:
        if remove:
            for suffix in ("", "-wal", "-shm", ".reserve", ".seq"):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(f"{self.db_path}{suffix}")
            segments.remove_all(self.db_path)
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


class UnsafeQueueDir(ValueError):
    """The queue directory could be read or planted into by someone else; the message names it."""


INSECURE_DIR_ENV = "OTEL_EXT_QUEUE_INSECURE_DIR"


def prepare_dir(path: str | os.PathLike[str], allow_insecure: bool | None = None) -> Path:
    """Create the queue directory 0700, or check an existing one (see module docstring).

    ``allow_insecure`` None: as ``OTEL_EXT_QUEUE_INSECURE_DIR`` says (so every user of the queue
    directory — exporter, first hop, CLI — takes the same decision)."""
    allow_insecure = bool(explicit_or_env(allow_insecure, INSECURE_DIR_ENV))
    directory = Path(path)
    try:
        info = os.lstat(directory)
    except FileNotFoundError:
        directory.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        old_umask = os.umask(0o077)
        try:
            os.mkdir(directory, 0o700)
        except FileExistsError:  # created meanwhile by a sibling process: check it below
            pass
        finally:
            os.umask(old_umask)
        info = os.lstat(directory)
    problem = dir_problem(directory, info)
    if problem and not allow_insecure:
        raise UnsafeQueueDir(f"queue directory {directory} {problem}; refusing to use it "
                             "(fix it, choose another OTEL_EXT_QUEUE_DIR, or set OTEL_EXT_QUEUE_INSECURE_DIR=true)")
    if not directory.is_dir():
        raise UnsafeQueueDir(f"queue directory {directory} is not a directory")
    return directory


def foreign_file(path: Path) -> str | None:
    """Why ``path`` must not be adopted (a symlink, not a regular file, another user's), or None."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    if stat.S_ISLNK(info.st_mode):
        return "is a symlink"
    if not stat.S_ISREG(info.st_mode):
        return "is not a regular file"
    if info.st_uid != os.geteuid():
        return f"belongs to uid {info.st_uid}"
    return None


def _try_lock(path: Path) -> int | None:
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
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


def orphans(directory: Path, exclude: Path | None = None,
            refused: Callable[[Path, str], None] | None = None) -> Iterator[ClaimedFile]:
    """Lock and yield every queue file in ``directory`` whose owner is gone.

    Files that are symlinks or belong to another user (the db, its WAL or its lock) are never
    yielded; ``refused(path, why)`` is told about them."""
    for db_path in sorted(directory.glob("q-*.db")):
        if exclude is not None and db_path == exclude:
            continue
        lock_path = db_path.with_suffix(".lock")
        why = next(((p, w) for p in (db_path, Path(f"{db_path}-wal"), Path(f"{db_path}-shm"), lock_path)
                    if (w := foreign_file(p))), None) or segments.foreign_segment(db_path)
        if why is not None:
            if refused is not None:
                refused(*why)
            continue
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
    for folder in sorted(directory.glob(f"q-*.db{segments.SEGMENT_SUFFIX}")):
        db_path = Path(str(folder)[: -len(segments.SEGMENT_SUFFIX)])
        if db_path != exclude and not db_path.exists():
            _sweep_segments(db_path)


def _sweep_segments(db_path: Path) -> None:
    """Remove the segment directory of a queue file that is gone: its owner removed the file (an
    adopted orphan, a drained queue) and was killed before it removed the segments. Only while no
    one holds the file's lock (an owner creating or quarantining it holds it), and never what is not
    ours (see :func:`segments.remove_all`)."""
    lock_path = db_path.with_suffix(".lock")
    if foreign_file(lock_path):
        return
    try:
        fd = _try_lock(lock_path)
    except OSError:
        return
    if fd is None:
        return
    try:
        if not db_path.exists():
            segments.remove_all(db_path)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(lock_path)
    finally:
        os.close(fd)


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
