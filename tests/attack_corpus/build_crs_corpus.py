"""Derive tests/attack_corpus/crs.jsonl from the OWASP Core Rule Set's regression tests.

Run once against a checkout (or a bare mirror with --git) of coreruleset/coreruleset:

    python tests/attack_corpus/build_crs_corpus.py /path/to/coreruleset [--git]

For every test of the families we inspect (scanner, LFI, RFI, RCE, PHP, generic, XSS, SQLi) it
keeps only what an access log or a request-aware logger would carry: method, URI, User-Agent,
Referer and (truncated) body, the CRS rule id, its paranoia level and whether CRS expects the rule
to fire (``expect``) or not (``no_expect``). The YAML of the suite itself is not copied.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

FAMILIES = {
    "913": "scanner", "930": "lfi", "931": "rfi", "932": "rce", "933": "php", "934": "generic",
    "941": "xss", "942": "sqli",
}
OUT = Path(__file__).with_name("crs.jsonl")
BODY_MAX = 2048


def _files(root: Path, git: bool) -> list[tuple[str, str]]:
    base = "tests/regression/tests"
    if git:
        names = subprocess.run(["git", "-C", str(root), "ls-tree", "-r", "--name-only", "HEAD", base + "/"],
                               check=True, capture_output=True, text=True).stdout.split()
        return [(n, subprocess.run(["git", "-C", str(root), "show", f"HEAD:{n}"], check=True,
                                   capture_output=True, text=True).stdout) for n in names]
    return [(str(p), p.read_text()) for p in sorted((root / base).rglob("*.yaml"))]


def _rule_levels(root: Path, git: bool) -> dict[int, int]:
    levels: dict[int, int] = {}
    for prefix in FAMILIES:
        if git:
            names = subprocess.run(["git", "-C", str(root), "ls-tree", "--name-only", "HEAD", "rules/"],
                                   check=True, capture_output=True, text=True).stdout.split()
            texts = [subprocess.run(["git", "-C", str(root), "show", f"HEAD:{n}"], check=True,
                                    capture_output=True, text=True).stdout
                     for n in names if n.startswith(f"rules/REQUEST-{prefix}")]
        else:
            texts = [p.read_text() for p in (root / "rules").glob(f"REQUEST-{prefix}-*.conf")]
        for text in texts:
            for block in re.split(r"\n(?=SecRule|SecAction)", text):
                rid = re.search(r"id:(\d+)", block)
                pl = re.search(r"paranoia-level/(\d)", block)
                if rid and pl:
                    levels[int(rid[1])] = int(pl[1])
    return levels


def main(argv: list[str]) -> None:
    root = Path(argv[1])
    git = "--git" in argv
    levels = _rule_levels(root, git)
    rows: list[dict[str, Any]] = []
    for name, text in _files(root, git):
        family = FAMILIES.get(Path(name).name[:3])
        if family is None:
            continue
        doc = yaml.safe_load(text)
        for test in doc.get("tests", []):
            for stage in test.get("stages", []):
                inp = stage.get("input", {})
                out = (stage.get("output") or {}).get("log") or {}
                if "uri" not in inp and "data" not in inp and not inp.get("headers"):
                    continue
                headers = {str(k).lower(): str(v) for k, v in (inp.get("headers") or {}).items()}
                expect = out.get("expect_ids")
                rid = int(doc["rule_id"])
                if expect is None and out.get("no_expect_ids") is None:
                    continue
                data = inp.get("data")
                if isinstance(data, list):
                    data = "\n".join(str(d) for d in data)
                rows.append({
                    "family": family, "rule": rid, "test": test.get("test_id"), "pl": levels.get(rid, 0),
                    "expect": bool(expect) and rid in expect,
                    "method": str(inp.get("method", "GET")), "uri": str(inp.get("uri", "/")),
                    "ua": headers.get("user-agent"), "referer": headers.get("referer"),
                    "body": None if data is None else str(data)[:BODY_MAX],
                })
    with OUT.open("w") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
    print(f"{len(rows)} requests -> {OUT}")


if __name__ == "__main__":
    main(sys.argv)
