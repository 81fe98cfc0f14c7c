"""Print the attack review's failing cases with a root-cause guess, as JSON (case id -> cause).

Used to write ``attack_xfail.json``; run it again after a fix to see which entries to drop.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from test_review_attack_corpus import ATTACKS, BENIGN_RECORDS, classify, labelled_as


def main() -> None:
    out: dict[str, str] = {}
    for rec in ATTACKS:
        attrs = classify(rec)
        status = rec.request.status
        good = labelled_as(attrs, rec.request.expect) and attrs.get("event.outcome") == (
            "success" if status < 400 else "failure")
        if good:
            continue
        if rec.transport == "hypercorn" and rec.request.query:
            cause = "hypercorn_no_query"
        elif rec.transport == "hypercorn":
            cause = "hypercorn_format"
        elif rec.transport == "old_semconv":
            cause = "old_semconv"
        elif rec.transport == "url_full" and attrs.get("labels.event_class") == "security":
            cause = f"url_full_only (labelled {attrs.get('event.action')})"
        elif rec.request.family == "header":
            cause = "header_attributes"
        elif rec.request.family == "scanner_ua":
            cause = "unknown_tool"
        elif rec.request.family == "probe":
            cause = "probe_pattern_bug" if "/actuator/" in rec.request.path else "unknown_probe_path"
        else:
            got = attrs.get("event.action") if attrs.get("labels.event_class") == "security" else "not security"
            cause = f"payload_gap (labelled {got})"
        out[rec.id] = cause
    for rec in BENIGN_RECORDS:
        attrs = classify(rec)
        if attrs.get("labels.event_class") == "security":
            out[rec.id] = f"benign_flagged ({attrs.get('rule.id')})"
    # the scanner-run cases (test_scanner_run_raises_an_attack_source_alert) pass on every transport
    json.dump(dict(sorted(out.items())), sys.stdout, indent=0)


if __name__ == "__main__":
    main()
