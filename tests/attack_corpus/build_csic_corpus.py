"""Derive tests/attack_corpus/csic_normal.jsonl.gz from the HTTP CSIC 2010 data set's normal traffic.

    python tests/attack_corpus/build_csic_corpus.py normalTrafficTraining.txt normalTrafficTest.txt

Each raw request (request line, headers, blank line, form body for POST/PUT) becomes one row with
method, URI (scheme and host stripped), User-Agent and body; identical rows are kept once. The
CSIC 2010 set (Spanish National Research Council) is public; its normal part is benign traffic to
an e-shop, with Latin-1 percent-encoded values, e-mail addresses, street addresses and free text.
"""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path
from urllib.parse import urlsplit

OUT = Path(__file__).with_name("csic_normal.jsonl.gz")


def requests(text: str) -> list[dict[str, str | None]]:
    rows: list[dict[str, str | None]] = []
    lines = text.splitlines()
    i = 0
    while i < len(lines):
        parts = lines[i].split(" ")
        if len(parts) == 3 and parts[0] in {"GET", "POST", "PUT"} and parts[2].startswith("HTTP/"):
            method, url = parts[0], parts[1]
            split = urlsplit(url)
            uri = split.path + (f"?{split.query}" if split.query else "")
            ua: str | None = None
            i += 1
            while i < len(lines) and lines[i]:
                name, _, value = lines[i].partition(": ")
                if name.lower() == "user-agent":
                    ua = value
                i += 1
            body: str | None = None
            if method != "GET" and i + 1 < len(lines) and lines[i + 1]:
                body = lines[i + 1]
                i += 1
            rows.append({"method": method, "uri": uri, "ua": ua, "body": body})
        i += 1
    return rows


def main(argv: list[str]) -> None:
    seen: dict[str, None] = {}
    for name in argv[1:]:
        for row in requests(Path(name).read_text(encoding="latin-1")):
            seen.setdefault(json.dumps(row, ensure_ascii=False, sort_keys=True), None)
    with gzip.open(OUT, "wt", encoding="utf-8") as out:
        for line in seen:
            out.write(line + "\n")
    print(f"{len(seen)} distinct requests -> {OUT}")


if __name__ == "__main__":
    main(sys.argv)
