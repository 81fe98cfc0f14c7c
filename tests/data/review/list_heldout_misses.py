"""Print the held-out corpora's failing cases with a root cause, as JSON (case id -> cause).

``python list_heldout_misses.py attack > heldout_attack_xfail.json`` and ``... redaction >
heldout_redaction_xfail.json``; run it again after a fix to see which entries to drop.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# the root cause of what stays unfixed, by family (attacks) or by shape (redaction)
ATTACK_CAUSES = {"ldap": "ldap_injection", "actuator": "bare_actuator_path"}
# list entries that are fragments or templates, not an attack on their own
NOT_ALONE = frozenset({"admin*", "%2A%7C", '{"&exists":false}', "..%uEFC8{FILE}", "users.db.php",
                       "<![CDATA[<test></test>]]>"})
REDACTION_CAUSES = {"env_vendor_key": "vendor_name_key", "json_vendor_object": "vendor_name_key",
                    "json_escaped_twice": "nested_escaping"}


def attack() -> dict[str, str]:
    from review_attack_cases import ANY
    from test_heldout_attack_corpus import ATTACKS, BENIGN_RECORDS, CORPUS, classify, labelled_as

    out: dict[str, str] = {}
    for rec in ATTACKS:
        if not labelled_as(classify(rec), ANY):
            family, index = rec.id.split("/")[0], int(rec.id.split("/")[1].split("@")[0])
            if CORPUS["attacks"][family][index] in NOT_ALONE:
                out[rec.id] = "not_an_attack_alone"
            else:
                out[rec.id] = ATTACK_CAUSES.get(family, "payload_gap")
    for rec in BENIGN_RECORDS:
        attrs = classify(rec)
        if attrs.get("labels.event_class") == "security":
            out[rec.id] = f"benign_flagged ({attrs.get('rule.id')})"
    return out


def redaction() -> dict[str, str]:
    from heldout_redaction_cases import benign_cases
    from test_heldout_redaction_corpus import CASES, redact, survivors

    out: dict[str, str] = {}
    for case in CASES:
        if survivors(case):
            out[case.id] = REDACTION_CAUSES.get(case.shape, "unknown_format_in_prose" if case.kind == "unique" else
                                                "other")
    for name, value in benign_cases():
        if redact(value) != value:
            out[f"benign/{name}"] = "benign_changed"
    return out


def main() -> None:
    found = attack() if sys.argv[1] == "attack" else redaction()
    sys.stdout.write("{\n" + ",\n".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in sorted(found.items()))
                     + "\n}\n")


if __name__ == "__main__":
    main()
