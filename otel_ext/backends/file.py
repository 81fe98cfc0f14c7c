"""File backend (``file:///dir``): OTLP/JSON lines, one ExportLogsServiceRequest per line — the
format of the collector's file exporter and otlpjsonfile receiver — with size-based rotation.
The embedded default when no backend is configured.

Files are created 0600 in a 0700 directory. A line is acknowledged once written and flushed
(and fsync'd when ``fsync=True``). Rotated files are kept (``max_files=0``, the default) or the
oldest beyond ``max_files`` are removed and counted.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote

from otel_ext.backends.base import Backend
from otel_ext.backends.otlp_json import to_otlp_json, to_otlp_json_reference
from otel_ext.backends.outcome import Outcome
from otel_ext.backends.urls import BackendConfigError, BackendPlugin, BackendURL

ACTIVE_NAME = "logs.jsonl"
__all__ = ["ACTIVE_NAME", "FileBackend", "FileConfig", "ensure_private_dir", "to_otlp_json", "to_otlp_json_reference"]


@dataclass(frozen=True)
class FileConfig:
    directory: str
    max_bytes: int = 64 * 1024 * 1024
    max_files: int = 0  # rotated files kept; 0 = keep all
    fsync: bool = False
    name: str = ""


def ensure_private_dir(path: Path) -> None:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    os.chmod(path, 0o700)


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
            ensure_private_dir(self.directory)
            self._dir_ready = True
        try:
            return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        except FileNotFoundError:
            ensure_private_dir(self.directory)
            return os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)

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
                ensure_private_dir(self.directory)
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
    return FileBackend(FileConfig(directory, max_bytes=u.integer("max_bytes", 64 * 1024 * 1024),
                                  max_files=u.integer("max_files", 0, minimum=0),
                                  fsync=u.query.get("fsync", "") in ("1", "true"), name=u.name))


PLUGIN = BackendPlugin("file", ("file",), frozenset({"max_bytes", "max_files", "fsync"}), from_url,
                       "OTLP JSON lines in a local directory")
