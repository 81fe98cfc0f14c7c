"""Build ``gitleaks_cases.json``: gitleaks' own true-positive / false-positive examples per rule.

Source: gitleaks (github.com/gitleaks/gitleaks, MIT) at commit b58d3f10, ``cmd/generate/config/rules/*.go``.
Each rule there calls ``utils.Validate(rule, tps, fps)``; we ran the generator
(``go run ./cmd/generate/config out.toml`` in ``cmd/generate/config``) with ``Validate`` patched to
append, for every tp, the text and the secrets gitleaks' detector finds in it (``finding.Secret``),
and every fp, as JSON lines to ``$GL_DUMP``. This script reduces that dump (6,710 lines, 1.3 MB) to
a small labelled file:

- per rule: ``kind`` — ``unique`` (a token with a distinctive prefix, gitleaks' unique-token regex:
  recognisable anywhere, even in prose), ``context`` (a random string recognisable only next to a
  keyword such as ``adafruit``: gitleaks' semi-generic regex), ``identifier`` (client/app ids, not
  secrets in a log), or ``other`` (structural rules: private keys, JWT, curl, generic);
- up to 3 distinct secrets, up to 6 of gitleaks' own tp texts, and every fp text.

Usage: ``python build_gitleaks_cases.py DUMP.jsonl GENERATED.toml > gitleaks_cases.json``
(values are public test fixtures of gitleaks, synthetic, never live credentials).
"""

from __future__ import annotations

import json
import random
import sys
from collections import defaultdict

import tomllib


def rule_kind(rule_id: str, regex: str) -> str:
    if rule_id.endswith(("client-id", "-id", "app-id")) and "secret" not in rule_id:
        return "identifier"
    if regex.startswith(("(?i)[\\w.-]{0,50}?", "[\\w.-]{0,50}?")):
        return "context"
    if regex.startswith(("\\b(", "(?i)\\b(")):
        return "unique"
    return "other"


def main() -> None:
    dump, toml = sys.argv[1], sys.argv[2]
    with open(toml, "rb") as f:
        regexes = {r["id"]: r.get("regex", "") for r in tomllib.load(f)["rules"]}
    rnd = random.Random(20261126)
    tps: dict[str, list[dict[str, object]]] = defaultdict(list)
    fps: dict[str, list[str]] = defaultdict(list)
    with open(dump) as f:
        for line in f:
            row = json.loads(line)
            (tps if row["tp"] else fps)[row["rule"]].append(row)  # type: ignore[index]
    out: dict[str, dict[str, object]] = {}
    for rule_id in sorted(set(tps) | set(fps)):
        secrets: list[str] = []
        for row in tps[rule_id]:
            for s in row["secrets"] or []:  # type: ignore[union-attr]
                if s not in secrets:
                    secrets.append(s)
        rows = [r for r in tps[rule_id] if len(r["text"]) < 600]  # type: ignore[arg-type]
        rnd.shuffle(rows)
        picked = []
        for row in rows:
            if len(picked) >= 6:
                break
            if row["text"] not in [p["text"] for p in picked]:
                picked.append({"text": row["text"], "secrets": row["secrets"]})
        out[rule_id] = {
            "kind": rule_kind(rule_id, regexes.get(rule_id, "")),
            "secrets": secrets[:3],
            "tps": picked,
            "fps": sorted({r["text"] for r in fps[rule_id]} if isinstance(fps[rule_id][0], dict) else set())
            if fps[rule_id] else [],
        }
    json.dump(out, sys.stdout, indent=0, sort_keys=True, ensure_ascii=False)


if __name__ == "__main__":
    main()
