"""Failover policies and backend health (circuit breaking).

A backend that fails with a retryable/auth outcome is marked *down* and traffic moves to the next
one at once; a throttled backend is *paused* for the server-given delay. Down backends are probed
by the :class:`~otel_ext.export.sender.Prober` with requests that carry no customer data; after
``recover_after`` consecutive good probes a backend is *up* again (one good probe suffices when
nothing else is up), so traffic returns to the highest-priority healthy backend.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field

from otel_ext.backends.base import Backend
from otel_ext.settings import POLICIES

__all__ = ["POLICIES", "BackendHealth", "Policy"]


@dataclass
class BackendHealth:
    backend: Backend
    level: int
    up: bool = True
    paused_until: float = 0.0
    probe_streak: int = 0
    next_probe_at: float = 0.0
    backoff: float = 0.0
    auth_failed: bool = False
    last_error: str = ""
    probing: bool = field(default=False, repr=False)

    def available(self, now: float) -> bool:
        return self.up and now >= self.paused_until


class Policy:
    """Chooses the backend for the next request of one delivery lane."""

    def __init__(
        self,
        backends: list[Backend],
        mode: str = "priority",
        probe_interval: float = 0.25,
        max_probe_interval: float = 5.0,
        recover_after: int = 2,
    ) -> None:
        if mode not in ("priority", "round_robin"):
            raise ValueError(f"lane policy must be priority or round_robin, got {mode!r}")
        if not backends:
            raise ValueError("a policy needs at least one backend")
        self.mode = mode
        self.health = [BackendHealth(b, i) for i, b in enumerate(backends)]
        self.probe_interval = probe_interval
        self.max_probe_interval = max_probe_interval
        self.recover_after = recover_after
        self.changed = threading.Event()
        self._lock = threading.Lock()
        self._rr = 0

    def choose(self, now: float | None = None) -> BackendHealth | None:
        now = time.monotonic() if now is None else now
        with self._lock:
            available = [h for h in self.health if h.available(now)]
            if not available:
                return None
            if self.mode == "priority":
                return available[0]
            self._rr = (self._rr + 1) % len(available)
            return available[self._rr]

    def mark_down(self, health: BackendHealth, error: str, auth: bool = False) -> None:
        now = time.monotonic()
        with self._lock:
            if health.up:
                health.backoff = self.probe_interval * (8 if auth else 1)
            health.up = False
            health.auth_failed = auth
            health.probe_streak = 0
            health.last_error = error
            health.next_probe_at = now + health.backoff

    def pause(self, health: BackendHealth, delay: float | None, error: str) -> None:
        delay = min(max(delay if delay is not None else 1.0, 0.05), 300.0)
        with self._lock:
            health.paused_until = time.monotonic() + delay
            health.last_error = error

    def on_success(self, health: BackendHealth) -> None:
        if not health.up or health.paused_until:
            with self._lock:
                health.up = True
                health.paused_until = 0.0
                health.auth_failed = False
                health.last_error = ""

    def due_probes(self, now: float) -> list[BackendHealth]:
        with self._lock:
            due = [h for h in self.health if not h.up and not h.probing and now >= h.next_probe_at]
            for h in due:
                h.probing = True
            return due

    def record_probe(self, health: BackendHealth, ok: bool, error: str = "") -> None:
        now = time.monotonic()
        with self._lock:
            health.probing = False
            if not ok:
                health.probe_streak = 0
                health.backoff = min(max(health.backoff * 2, self.probe_interval), self.max_probe_interval)
                health.next_probe_at = now + health.backoff
                health.last_error = error or health.last_error
                return
            health.probe_streak += 1
            others_up = any(h.up for h in self.health if h is not health)
            if health.probe_streak >= (self.recover_after if others_up else 1):
                health.up = True
                health.auth_failed = False
                health.probe_streak = 0
                health.backoff = self.probe_interval
                recovered = True
            else:
                health.next_probe_at = now + self.probe_interval
                recovered = False
        if recovered:
            self.changed.set()

    def next_event_in(self, now: float) -> float:
        """Seconds until a paused backend resumes or a probe is due (capped at 0.5 s)."""
        with self._lock:
            times = [h.paused_until for h in self.health if h.up and h.paused_until > now]
            times += [h.next_probe_at for h in self.health if not h.up]
        return max(0.01, min([t - now for t in times] + [0.5]))

    def active(self) -> str | None:
        chosen = [h for h in self.health if h.available(time.monotonic())]
        return chosen[0].backend.name if chosen else None
