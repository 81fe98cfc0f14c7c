"""Classification memoises what provably depends on the body alone (body rules whose conditions
read only the body). Property: over any sequence of records, the memoised rule set labels every
record exactly as a rule set that checks every anchored body rule on every record."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from otel_ext.classify.builtin import (
    ACCESS_DENIED_PHRASES,
    ATTACK_PHRASES,
    FAILED_LOGIN_PHRASES,
    LOGIN_SUCCESS_PHRASES,
    RATE_LIMIT_PHRASES,
    SLOW_PHRASES,
    builtin_rules,
)
from otel_ext.classify.engine import RuleSet
from otel_ext.classify.fields import RecordFields
from otel_ext.classify.rules import Rule

# a rule that reads the body and another field: it must still be checked per record
MIXED = {"id": "test.denied_admin", "class": "security", "action": "authz_fail", "category": ["iam"],
         "when": {"body": {"contains": "access denied"}, "route": {"prefix": "/admin"}}}


class EveryRecord(RuleSet):
    """Reference: no body memo, every anchored body rule checked against the record."""

    def _anchor_hits(self, body: str) -> tuple[tuple[Rule, ...], tuple[Rule, ...]]:
        low = body.lower()
        found = tuple(dict.fromkeys(r for anchor, rs in self._anchors.items() if anchor in low for r in rs))
        return (), found


PHRASES = (FAILED_LOGIN_PHRASES + LOGIN_SUCCESS_PHRASES + ACCESS_DENIED_PHRASES + RATE_LIMIT_PHRASES
           + ATTACK_PHRASES + SLOW_PHRASES + ["request completed", "Login", "ACCESS", "slow"])
bodies = st.lists(st.sampled_from(PHRASES) | st.text(max_size=6), min_size=1, max_size=3).map(" ".join)
records = st.lists(st.tuples(bodies, st.sampled_from([None, "/admin/users", "/api/orders"]),
                             st.sampled_from([None, 200, 401, 403, 500]),
                             st.sampled_from([9, 13, 17])), min_size=1, max_size=15)


@settings(max_examples=200, deadline=None)
@given(records)
def test_memoised_body_rules_label_like_the_full_check(rows: list[tuple[Any, ...]]) -> None:
    specs = [*builtin_rules(), MIXED]
    fast, full = RuleSet(specs), EveryRecord(specs)
    for body, route, status, severity in rows * 2:  # twice: the second pass meets a warm memo
        attrs: dict[str, Any] = {}
        if route is not None:
            attrs["http.route"] = route
        if status is not None:
            attrs["http.response.status_code"] = status
        got = fast.classify(RecordFields(attrs, body, severity, "shop.api", fast.settings))
        expected = full.classify(RecordFields(attrs, body, severity, "shop.api", full.settings))
        assert got == expected
