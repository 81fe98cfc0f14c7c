"""The detection engine skips a detector for records whose ``event.action`` it declared it does not
want (``Detector.wants``). Property: for any event sequence, a detector fed only the events it wants
raises exactly the alerts, and keeps exactly the state, of one fed every event."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from otel_ext.detect.detectors import DETECTORS, Event

NS = 1_000_000_000
SMALL = {"threshold": 2, "window_s": 5, "distinct_users": 2, "failures": 1, "min_errors": 2, "factor": 1.5,
         "min_samples": 2, "threshold_ms": 100}
ACTIONS = [None, "authn_login_fail", "authn_login_success", "malicious_attack_tool", "malicious_sqli",
           "authz_fail", "request", "malicious_"]

events = st.lists(st.tuples(
    st.integers(0, 3 * NS), st.sampled_from(["security", "access", "error", "performance"]),
    st.sampled_from(ACTIONS), st.sampled_from([None, 200, 401, 403, 404, 500, 503]),
    st.sampled_from([None, "/a", "/b"]), st.sampled_from([None, "", "10.0.0.1", "10.0.0.2"]),
    st.sampled_from([None, "", "alice", "bob", "carol"]), st.sampled_from([None, 5.0, 150.0, 900.0]),
    st.sampled_from([None, "", "sqlmap/1.7", "Mozilla/5.0"])), max_size=80)


def _params(cls: type[Any]) -> dict[str, float]:
    return {k: v for k, v in SMALL.items() if k in cls.defaults}


@settings(max_examples=200, deadline=None)
@given(events)
def test_skipping_unwanted_actions_changes_no_alert_and_no_state(rows: list[tuple[Any, ...]]) -> None:
    ts = 0
    sequence = []
    for step, *rest in rows:
        ts += step
        sequence.append(Event(ts, *rest))
    for name, cls in DETECTORS.items():
        every, skipping = cls(1000, lambda: None, **_params(cls)), cls(1000, lambda: None, **_params(cls))
        for event in sequence:
            expected = every.observe(event)
            got = skipping.observe(event) if skipping.wants(event.action) else []
            assert got == expected, name
        assert every.state_size() == skipping.state_size(), name
