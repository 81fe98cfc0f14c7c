"""Sliding-window detectors. Each reads one classified record's :class:`Event` and may return
:class:`Alert` s. Time is the record's own timestamp (event time), so replays are deterministic.

Defaults follow public detection rules (Elastic detection-rules' brute-force and password-spraying
thresholds, the OWASP logging vocabulary's ``authn_login_fail_max``, ``authn_login_successafterfail``
and ``malicious_excess_404``). One alert per key per window: after firing, a key is quiet for one
window and its count starts afresh, so a continuing attack alerts again once per window (re-arm).
``sys_error_spike`` and ``sys_latency_slo_breach`` are otel-ext names in the OWASP style (the
vocabulary has none for these).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NamedTuple

from otel_ext.detect.state import BoundedKeys

NS = 1_000_000_000


class Event(NamedTuple):
    """What the detectors read of one labelled record (a tuple: built once per record, cheaply)."""

    ts_ns: int
    event_class: str
    action: str | None
    status: int | None
    route: str | None
    client: str | None
    user: str | None
    duration_ms: float | None
    user_agent: str | None = None


@dataclass(frozen=True)
class Alert:
    rule_id: str
    rule_name: str
    action: str
    event_class: str
    category: tuple[str, ...]
    type: tuple[str, ...]
    severity: str  # WARN, ERROR
    key_field: str  # the field the key belongs to: user.id, source.ip, http.route
    key: str
    count: float
    window_s: float
    ts_ns: int
    message: str
    extra: dict[str, Any] = field(default_factory=dict)


class Detector:
    """Base: subclasses set ``rule_id`` and implement :meth:`observe`."""

    rule_id = ""
    defaults: dict[str, float] = {}

    def __init__(self, max_keys: int, on_evict: Callable[[], None], **params: float) -> None:
        unknown = set(params) - set(self.defaults)
        if unknown:
            raise ValueError(f"detector {self.rule_id}: unknown parameter(s) {sorted(unknown)} "
                             f"(allowed: {sorted(self.defaults)})")
        self.params = {**self.defaults, **params}
        for name, value in self.params.items():
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"detector {self.rule_id}: {name} must be a positive number, got {value!r}")
        self.max_keys = max_keys
        self.on_evict = on_evict

    def observe(self, event: Event) -> list[Alert]:
        raise NotImplementedError

    def wants(self, action: str | None) -> bool:
        """False only if :meth:`observe` returns no alert and changes no state for *every* event
        with this ``event.action`` (the engine then skips the call: one cheap test per record)."""
        return True

    def state_size(self) -> int:
        raise NotImplementedError


class _Window:
    """Timestamps of the last ``cap`` events of one key within the window (bounded deque), and the
    time until which the key stays quiet after an alert."""

    __slots__ = ("quiet_until", "times")

    def __init__(self, cap: int) -> None:
        self.times: deque[int] = deque(maxlen=cap)
        self.quiet_until = 0

    def add(self, ts: int, window_ns: int) -> int:
        times = self.times
        times.append(ts)
        cutoff = ts - window_ns
        while times and times[0] <= cutoff:
            times.popleft()
        return len(times)


class CountPerKey(Detector):
    """≥ ``threshold`` matching events for one key within ``window_s``."""

    field_name = ""
    key_field = ""
    rule_name = ""
    action = ""
    event_class = "security"
    category: tuple[str, ...] = ("authentication",)
    type: tuple[str, ...] = ("info",)
    severity = "WARN"

    def __init__(self, max_keys: int, on_evict: Callable[[], None], **params: float) -> None:
        super().__init__(max_keys, on_evict, **params)
        self.threshold = int(self.params["threshold"])
        self.window_ns = int(self.params["window_s"] * NS)
        self.keys: BoundedKeys[_Window] = BoundedKeys(max_keys, lambda: _Window(self.threshold), on_evict)

    def matches(self, event: Event) -> bool:
        raise NotImplementedError

    def key_of(self, event: Event) -> str | None:
        return getattr(event, self.field_name)  # type: ignore[no-any-return]

    def observe(self, event: Event) -> list[Alert]:
        if not self.matches(event):
            return []
        key = self.key_of(event)
        if not key:
            return []
        window = self.keys.get(key)
        count = window.add(event.ts_ns, self.window_ns)
        if count < self.threshold or event.ts_ns < window.quiet_until:
            return []
        window.times.clear()  # re-arm: the next alert needs a fresh threshold's worth ...
        window.quiet_until = event.ts_ns + self.window_ns  # ... and one window of quiet
        window_s = self.params["window_s"]
        return [Alert(self.rule_id, self.rule_name, self.action, self.event_class, self.category, self.type,
                      self.severity, self.key_field, key, count, window_s, event.ts_ns,
                      f"{self.rule_name}: {count} events for {self.key_field} {key} within {window_s:g} s")]

    def state_size(self) -> int:
        return len(self.keys)


class BruteForceAccount(CountPerKey):
    rule_id = "brute_force_account"
    rule_name = "Brute force against one account"
    action = "authn_login_fail_max"
    field_name = "user"
    key_field = "user.id"
    type = ("start",)
    defaults = {"threshold": 10, "window_s": 600}

    def matches(self, event: Event) -> bool:
        return event.action == "authn_login_fail"

    def wants(self, action: str | None) -> bool:
        return action == "authn_login_fail"


class BruteForceSource(CountPerKey):
    rule_id = "brute_force_source"
    rule_name = "Brute force from one source"
    action = "authn_login_fail_max"
    field_name = "client"
    key_field = "source.ip"
    type = ("start",)
    defaults = {"threshold": 30, "window_s": 300}

    def matches(self, event: Event) -> bool:
        return event.action == "authn_login_fail"

    def wants(self, action: str | None) -> bool:
        return action == "authn_login_fail"


class Fuzzing(CountPerKey):
    rule_id = "fuzzing_404_403"
    rule_name = "Path fuzzing (many 404/403 from one source)"
    action = "malicious_excess_404"
    field_name = "client"
    key_field = "source.ip"
    category = ("intrusion_detection", "web")
    type = ("denied",)
    defaults = {"threshold": 20, "window_s": 60}

    def matches(self, event: Event) -> bool:
        return event.status in (404, 403)


class AttackSource(CountPerKey):
    """≥ ``threshold`` malicious events (payload inspection or an app's own ``malicious_*`` action)
    from one source within ``window_s``: someone is attacking, whatever the tool."""

    rule_id = "attack_source"
    rule_name = "Attack traffic from one source"
    action = "malicious_attack_tool"
    field_name = "client"
    key_field = "source.ip"
    category = ("intrusion_detection", "web")
    type = ("info",)
    severity = "ERROR"
    defaults = {"threshold": 10, "window_s": 60}

    def matches(self, event: Event) -> bool:
        action = event.action
        return event.event_class == "security" and action is not None and action.startswith("malicious_")

    def wants(self, action: str | None) -> bool:
        return action is not None and action.startswith("malicious_")


class ScannerBurst(CountPerKey):
    """A burst of ≥ ``threshold`` requests from one source with one user agent that payload inspection
    labels an attack tool (``malicious_attack_tool``) within ``window_s``: a scanner run."""

    rule_id = "scanner_user_agent"
    rule_name = "Scanner run (attack-tool user agent burst)"
    action = "malicious_attack_tool"
    field_name = "client"
    key_field = "source.ip"
    category = ("intrusion_detection", "web")
    type = ("info",)
    severity = "ERROR"
    defaults = {"threshold": 5, "window_s": 60}

    def matches(self, event: Event) -> bool:
        return event.action == "malicious_attack_tool" and bool(event.user_agent)

    def wants(self, action: str | None) -> bool:
        return action == "malicious_attack_tool"

    def key_of(self, event: Event) -> str | None:
        return f"{event.client} {event.user_agent}" if event.client else None


class PasswordSpray(Detector):
    """One source failing logins against ≥ ``distinct_users`` different accounts in ``window_s``."""

    rule_id = "password_spraying"
    defaults = {"distinct_users": 10, "window_s": 300}

    def __init__(self, max_keys: int, on_evict: Callable[[], None], **params: float) -> None:
        super().__init__(max_keys, on_evict, **params)
        self.needed = int(self.params["distinct_users"])
        self.window_ns = int(self.params["window_s"] * NS)
        self.keys: BoundedKeys[dict[str, int]] = BoundedKeys(max_keys, dict, on_evict)
        self._quiet: dict[str, int] = {}

    def wants(self, action: str | None) -> bool:
        return action == "authn_login_fail"

    def observe(self, event: Event) -> list[Alert]:
        if event.action != "authn_login_fail" or not event.client or not event.user:
            return []
        users = self.keys.get(event.client)
        if event.ts_ns < self._quiet.get(event.client, 0):
            return []
        users.pop(event.user, None)
        users[event.user] = event.ts_ns  # insertion order = recency
        cutoff = event.ts_ns - self.window_ns
        for user in [u for u, ts in users.items() if ts <= cutoff]:
            del users[user]
        while len(users) > self.needed:  # bounded per source
            del users[next(iter(users))]
        if len(users) < self.needed:
            return []
        count = len(users)
        users.clear()
        self._quiet[event.client] = event.ts_ns + self.window_ns
        while len(self._quiet) > self.max_keys:
            del self._quiet[next(iter(self._quiet))]
        window_s = self.params["window_s"]
        return [Alert(self.rule_id, "Password spraying (one source, many accounts)", "authn_login_fail_max",
                      "security", ("authentication",), ("start",), "WARN", "source.ip", event.client, count,
                      window_s, event.ts_ns,
                      f"Password spraying: source {event.client} failed logins for {count} accounts "
                      f"within {window_s:g} s")]

    def state_size(self) -> int:
        return len(self.keys)


class SuccessAfterFailures(Detector):
    """A successful login for an account after ≥ ``failures`` failures within ``window_s``."""

    rule_id = "success_after_failures"
    defaults = {"failures": 3, "window_s": 600}

    def __init__(self, max_keys: int, on_evict: Callable[[], None], **params: float) -> None:
        super().__init__(max_keys, on_evict, **params)
        self.failures = int(self.params["failures"])
        self.window_ns = int(self.params["window_s"] * NS)
        self.keys: BoundedKeys[_Window] = BoundedKeys(max_keys, lambda: _Window(self.failures), on_evict)

    def wants(self, action: str | None) -> bool:
        return action in ("authn_login_fail", "authn_login_success")

    def observe(self, event: Event) -> list[Alert]:
        if not event.user:
            return []
        if event.action == "authn_login_fail":
            self.keys.get(event.user).add(event.ts_ns, self.window_ns)
            return []
        if event.action != "authn_login_success":
            return []
        window = self.keys.peek(event.user)
        if window is None:
            return []
        cutoff = event.ts_ns - self.window_ns
        recent = sum(1 for ts in window.times if ts > cutoff)
        self.keys.pop(event.user)
        if recent < self.failures:
            return []
        window_s = self.params["window_s"]
        return [Alert(self.rule_id, "Successful login after repeated failures (possible compromise)",
                      "authn_login_successafterfail", "security", ("authentication",), ("start",), "ERROR",
                      "user.id", event.user, recent, window_s, event.ts_ns,
                      f"Account {event.user} logged in after {recent} failed attempts within {window_s:g} s",
                      {"client.address": event.client} if event.client else {})]

    def state_size(self) -> int:
        return len(self.keys)


class _Buckets:
    __slots__ = ("baseline", "bucket", "count", "fired")

    def __init__(self) -> None:
        self.bucket = -1
        self.count = 0
        self.baseline = -1.0  # unknown until one bucket has finished
        self.fired = False


class ErrorSpike(Detector):
    """5xx per route in the current ``window_s`` bucket ≥ max(``min_errors``, ``factor`` x baseline),
    where the baseline is an exponentially weighted mean of the previous buckets (alpha 0.3), seeded
    by the first finished bucket."""

    rule_id = "error_spike"
    defaults = {"window_s": 60, "min_errors": 10, "factor": 3}

    def __init__(self, max_keys: int, on_evict: Callable[[], None], **params: float) -> None:
        super().__init__(max_keys, on_evict, **params)
        self.window_ns = int(self.params["window_s"] * NS)
        self.keys: BoundedKeys[_Buckets] = BoundedKeys(max_keys, _Buckets, on_evict)

    def observe(self, event: Event) -> list[Alert]:
        if event.status is None or not event.route:
            return []
        state = self.keys.get(event.route)
        bucket = event.ts_ns // self.window_ns
        if bucket != state.bucket:
            if state.bucket >= 0:
                gap = bucket - state.bucket - 1  # empty buckets in between pull the baseline down
                first = state.baseline < 0  # the first finished bucket seeds the baseline
                state.baseline = float(state.count) if first else 0.3 * state.count + 0.7 * state.baseline
                state.baseline *= 0.7 ** max(0, min(gap, 50))
            state.bucket, state.count, state.fired = bucket, 0, False
        if event.status < 500:
            return []
        state.count += 1
        needed = max(self.params["min_errors"], self.params["factor"] * max(state.baseline, 0.0))
        if state.fired or state.count < needed:
            return []
        state.fired = True  # one alert per route per window
        window_s = self.params["window_s"]
        return [Alert(self.rule_id, "5xx spike on a route", "sys_error_spike", "error", ("web",), ("error",),
                      "ERROR", "http.route", event.route, state.count, window_s, event.ts_ns,
                      f"5xx spike on {event.route}: {state.count} errors in {window_s:g} s "
                      f"(baseline {max(state.baseline, 0.0):.1f})", {"baseline": round(max(state.baseline, 0.0), 2)})]

    def state_size(self) -> int:
        return len(self.keys)


class _Latencies:
    __slots__ = ("fired_until", "last_eval", "samples")

    def __init__(self, cap: int) -> None:
        self.samples: deque[tuple[int, float]] = deque(maxlen=cap)
        self.last_eval = 0
        self.fired_until = 0


class LatencySlo(Detector):
    """p95 latency per route over ``window_s`` (≥ ``min_samples``) above ``threshold_ms``."""

    rule_id = "latency_slo"
    defaults = {"window_s": 300, "threshold_ms": 1000, "min_samples": 20, "max_samples": 2000}

    def __init__(self, max_keys: int, on_evict: Callable[[], None], **params: float) -> None:
        super().__init__(max_keys, on_evict, **params)
        self.window_ns = int(self.params["window_s"] * NS)
        cap = int(self.params["max_samples"])
        self.keys: BoundedKeys[_Latencies] = BoundedKeys(max_keys, lambda: _Latencies(cap), on_evict)

    def observe(self, event: Event) -> list[Alert]:
        if event.duration_ms is None or not event.route:
            return []
        state = self.keys.get(event.route)
        samples = state.samples
        samples.append((event.ts_ns, event.duration_ms))
        cutoff = event.ts_ns - self.window_ns
        while samples and samples[0][0] <= cutoff:
            samples.popleft()
        if (len(samples) < self.params["min_samples"] or event.ts_ns < state.fired_until
                or event.ts_ns - state.last_eval < NS):  # evaluate at most once a second per route
            return []
        state.last_eval = event.ts_ns
        ordered = sorted(d for _, d in samples)
        p95 = ordered[min(len(ordered) - 1, math.ceil(0.95 * len(ordered)) - 1)]
        if p95 <= self.params["threshold_ms"]:
            return []
        state.fired_until = event.ts_ns + self.window_ns  # one alert per route per window
        window_s = self.params["window_s"]
        return [Alert(self.rule_id, "Latency SLO breach on a route", "sys_latency_slo_breach", "performance",
                      ("web",), ("info",), "WARN", "http.route", event.route, round(p95, 1), window_s, event.ts_ns,
                      f"p95 latency of {event.route} is {p95:.0f} ms over {window_s:g} s "
                      f"(SLO {self.params['threshold_ms']:g} ms, {len(ordered)} requests)",
                      {"samples": len(ordered)})]

    def state_size(self) -> int:
        return len(self.keys)


DETECTORS: dict[str, type[Detector]] = {
    cls.rule_id: cls
    for cls in (BruteForceAccount, BruteForceSource, PasswordSpray, SuccessAfterFailures, Fuzzing, ErrorSpike,
                LatencySlo, AttackSource, ScannerBurst)
}
