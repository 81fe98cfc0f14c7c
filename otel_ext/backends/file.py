"""File backend (``file:///dir``): OTLP/JSON lines, one ExportLogsServiceRequest per line — the
format of the collector's file exporter and otlpjsonfile receiver — with size-based rotation.
The embedded default when no backend is configured.

Files are created 0600 in a 0700 directory. A line is acknowledged once written and flushed
(and fsync'd when ``fsync=True``). Rotated files are kept (``max_files=0``, the default) or the
oldest beyond ``max_files`` are removed and counted.

The directory follows the queue directory's rules: an existing one that is a symlink, belongs to
another user or is writable by group or others is refused at start-up with one line naming it
(``?insecure_dir=true`` opts in); a path that exists but is not a directory is always refused. The
active file is opened without following a symlink and must be a regular file of ours, so a planted
``logs.jsonl -> ~/.bashrc`` gets no line appended (the send fails as retryable, naming the file,
and the records stay queued).
"""

from __future__ import annotations

import os
import stat
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from otel_ext.backends.base import Backend
from otel_ext.backends.otlp_json import to_otlp_json, to_otlp_json_reference
from otel_ext.backends.outcome import Outcome
from otel_ext.backends.urls import BackendConfigError, BackendPlugin, BackendURL
from otel_ext.queue.segments import dir_problem

ACTIVE_NAME = "logs.jsonl"
_OPEN_FLAGS = os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
__all__ = ["ACTIVE_NAME", "FileBackend", "FileConfig", "ensure_private_dir", "to_otlp_json", "to_otlp_json_reference"]


@dataclass(frozen=True)
class FileConfig:
    directory: str
    max_bytes: int = 64 * 1024 * 1024
    max_files: int = 0  # rotated files kept; 0 = keep all
    fsync: bool = False
    name: str = ""
    insecure_dir: bool = False


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


class UnsafeFile(OSError):
    """The file backend's directory or active file could be planted into by someone else."""


def unsafe_directory(path: Path, insecure_dir: bool = False) -> str | None:
    """Why ``path`` must not be written into (see the module docstring), or None (also when it does
    not exist yet: it will be created 0700)."""
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        return None
    except OSError as exc:
        return f"cannot be checked ({exc.strerror})"
    if not stat.S_ISDIR(info.st_mode) and not stat.S_ISLNK(info.st_mode):
        return "is not a directory"
    problem = dir_problem(path, info)
    if problem and insecure_dir and path.is_dir():
        return None
    return problem


class FileBackend(Backend):
    """Appends OTLP/JSON lines to ``<directory>/logs.jsonl``, rotating by size."""

    def __init__(self, config: FileConfig) -> None:
        self.config = config
        self.directory = Path(config.directory)
        self.name = config.name or f"file://{self.directory}"
        self._lock = threading.Lock()
        self.removed_files = 0
        self._dir_ready = False

    def _open(self) -> int:
        """The active file, opened per send (a file rotated or removed from outside is recreated);
        the directory is made private once, and again whenever it has gone missing."""
        path = self.directory / ACTIVE_NAME
        if not self._dir_ready:
            self._prepare_dir()
            self._dir_ready = True
        try:
            fd = os.open(path, _OPEN_FLAGS, 0o600)
        except FileNotFoundError:
            self._prepare_dir()
            fd = os.open(path, _OPEN_FLAGS, 0o600)
        except OSError as exc:
            if os.path.islink(path):
                raise UnsafeFile(f"{path} is a symlink; refusing to follow it") from exc
            raise
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.geteuid():
            os.close(fd)
            what = "not a regular file" if not stat.S_ISREG(info.st_mode) else f"owned by uid {info.st_uid}"
            raise UnsafeFile(f"{path} is {what}; refusing to append to it")
        return fd

    def _prepare_dir(self) -> None:
        problem = unsafe_directory(self.directory, self.config.insecure_dir)
        if problem:  # planted after start-up (the directory was checked then)
            raise UnsafeFile(f"file backend directory {self.directory} {problem}; refusing to write there")
        ensure_private_dir(self.directory)

    def _rotate(self) -> None:
        active = self.directory / ACTIVE_NAME
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = self.directory / f"logs-{stamp}-{time.time_ns() % 1_000_000_000:09d}.jsonl"
        os.replace(active, target)
        if self.config.max_files > 0:
            rotated = sorted(p for p in self.directory.glob("logs-*.jsonl"))
            for old in rotated[: max(0, len(rotated) - self.config.max_files)]:
                old.unlink(missing_ok=True)
                self.removed_files += 1

    def send(self, payload: bytes, records: int) -> Outcome:
        if records == 0 and not payload:
            try:
                self._prepare_dir()
                return Outcome.ok() if os.access(self.directory, os.W_OK) else Outcome.retryable("not writable")
            except OSError as exc:
                return Outcome.retryable(f"{exc}")
        try:
            line = (to_otlp_json(payload) + "\n").encode("utf-8")
        except Exception as exc:  # noqa: BLE001 - an undecodable payload is permanent
            return Outcome.permanent(f"cannot encode OTLP/JSON: {exc}"[:500])
        with self._lock:
            try:
                fd = self._open()
                try:
                    size = os.fstat(fd).st_size
                    if size and size + len(line) > self.config.max_bytes:
                        os.close(fd)
                        self._rotate()
                        fd = self._open()
                    written = os.write(fd, line)
                    if written != len(line):  # short write (disk full): never leave half a line
                        os.ftruncate(fd, size if size + len(line) <= self.config.max_bytes else 0)
                        return Outcome.retryable(f"short write ({written} of {len(line)} bytes)")
                    if self.config.fsync:
                        os.fsync(fd)
                finally:
                    os.close(fd)
            except OSError as exc:
                return Outcome.retryable(f"{type(exc).__name__}: {exc}"[:500])
        return Outcome.ok()


def from_url(u: BackendURL) -> FileBackend:
    """``file:///dir`` with ``max_bytes`` (rotation size), ``max_files`` (0 = keep all), ``fsync``."""
    directory = unquote(u.parts.path) if not u.parts.netloc else None
    if not directory:
        raise BackendConfigError(f"{u.source}: file backend needs an absolute path: file:///var/lib/app/logs")
    insecure_dir = u.query.get("insecure_dir", "") in ("1", "true")
    problem = unsafe_directory(Path(directory), insecure_dir)
    if problem:
        hint = "" if problem == "is not a directory" else \
            " (fix it, choose another directory, or add ?insecure_dir=true)"
        raise BackendConfigError(f"{u.source}: file backend directory {directory} {problem}; "
                                 f"refusing to write there{hint}")
    return FileBackend(FileConfig(directory, max_bytes=u.integer("max_bytes", 64 * 1024 * 1024),
                                  max_files=u.integer("max_files", 0, minimum=0),
                                  fsync=u.query.get("fsync", "") in ("1", "true"), name=u.name,
                                  insecure_dir=insecure_dir))


PLUGIN = BackendPlugin("file", ("file",), frozenset({"max_bytes", "max_files", "fsync", "insecure_dir"}), from_url,
                       "OTLP JSON lines in a local directory")
