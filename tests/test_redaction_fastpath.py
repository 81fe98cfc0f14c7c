"""The redaction hot path (``Redactor.redact_mapping``) skips values that provably cannot change;
it must give exactly what the full path (every entry scanned, ``redact_mapping_full``) gives —
same output, same counters — over any sequence of records, whatever the memo already holds."""

from __future__ import annotations

from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redaction_corpus import HARMLESS, SECRETS

from otel_ext.redact import Redactor
from otel_ext.telemetry import Counters


class FullPath(Redactor):
    """Every mapping, nested ones too, through the full path."""

    redact_mapping = Redactor.redact_mapping_full


def _strings(values: list[Any]) -> list[str]:
    found: list[str] = []
    for v in values:
        if isinstance(v, str):
            found.append(v)
        elif isinstance(v, dict):
            found.extend(x for x in v.values() if isinstance(x, str))
    return found


SECRET_TEXTS = _strings([c.value for c in SECRETS])[:120]
HARMLESS_TEXTS = _strings(list(HARMLESS))[:80]
KEYS = ["http.route", "url.path", "client.address", "tags", "event.category", "password", "api_key",
        "session_id", "user.id", "note", "http.response.status_code", "card", "authorization", "x"]
CARD = 4111111111111111

scalars = st.one_of(
    st.sampled_from(SECRET_TEXTS), st.sampled_from(HARMLESS_TEXTS), st.text(max_size=12),
    st.sampled_from(["GET", "/api/orders", "access", "true", "null", "", "[REDACTED:password]"]),
    st.integers(-10**13, 10**13), st.sampled_from([CARD, -CARD, 10**12, 10**12 - 1, True, False]),
    st.floats(allow_nan=False), st.none(), st.binary(max_size=4))
values = st.recursive(
    scalars,
    lambda inner: st.one_of(st.tuples(inner, inner), st.lists(inner, max_size=3).map(tuple),
                            st.dictionaries(st.sampled_from(KEYS), inner, max_size=3)),
    max_leaves=8)
mappings = st.dictionaries(st.sampled_from(KEYS), values, max_size=8)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mappings, min_size=1, max_size=12), st.integers(1, 4))
def test_fast_path_equals_full_path_over_a_sequence(records: list[dict[str, Any]], max_depth: int) -> None:
    fast = Redactor(counters=Counters("fast"), max_depth=max_depth)
    full = FullPath(counters=Counters("full"), max_depth=max_depth)
    for record in records * 2:  # the second pass meets a warm memo: the skips apply
        assert fast.redact_mapping(record) == full.redact_mapping(record)
    assert fast.counters.snapshot() == full.counters.snapshot()


def test_known_clean_values_are_skipped_and_a_secret_never_is() -> None:
    redactor = Redactor(counters=Counters("r"))
    attrs = {"tags": ("access", "security"), "http.route": "/api/orders", "note": "password=hunter2 x",
             "n": CARD, "small": 4111}
    first = redactor.redact_mapping(attrs)
    second = redactor.redact_mapping(attrs)
    assert first == second
    assert first["note"] == "password=[REDACTED:password] x" and first["n"] == "[REDACTED:card]"
    assert first["tags"] is attrs["tags"] and first["small"] == 4111
    assert redactor.counters.snapshot()["redacted"] == {"password": 2, "card": 2}
