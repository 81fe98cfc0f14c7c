"""Build ``heldout_attacks.json``: a held-out attack and benign-text corpus from sources the
attack patterns were not written from.

- Attacks: payload lists of PayloadsAllTheThings (github.com/swisskyrepo/PayloadsAllTheThings, MIT)
  at commit ``PATT_COMMIT``, the ``Intruder``/``Intruders`` word lists fuzzers and scanners send, up
  to 30 lines per list (seeded sample). Lines shorter than 6 characters are dropped: a lone ``'`` or
  ``| `` is a probe no one can label by itself.
- Benign free text: paragraphs of the Requests documentation (github.com/psf/requests, Apache-2.0)
  at commit ``REQUESTS_COMMIT`` (``docs/**/*.rst``, ``README.md``, ``HISTORY.md``): prose with inline
  code, parentheses, backticks, URLs and shell lines — what users paste into support tickets,
  comments and issue bodies.

Usage: ``python build_heldout_attacks.py PATT_DIR REQUESTS_DIR > heldout_attacks.json``
"""

from __future__ import annotations

import json
import random
import re
import subprocess
import sys

LISTS: dict[str, list[str]] = {
    "sqli": ["SQL Injection/Intruder/Auth_Bypass.txt", "SQL Injection/Intruder/Generic_ErrorBased.txt",
             "SQL Injection/Intruder/Generic_TimeBased.txt", "SQL Injection/Intruder/Generic_UnionSelect.txt",
             "SQL Injection/Intruder/SQLi_Polyglots.txt", "SQL Injection/Intruder/FUZZDB_MYSQL.txt",
             "SQL Injection/Intruder/FUZZDB_MSSQL.txt", "SQL Injection/Intruder/FUZZDB_Oracle.txt",
             "SQL Injection/Intruder/FUZZDB_Postgres_Enumeration.txt"],
    "nosqli": ["NoSQL Injection/Intruder/NoSQL.txt", "NoSQL Injection/Intruder/MongoDB.txt"],
    "xss": ["XSS Injection/Intruders/IntrudersXSS.txt", "XSS Injection/Intruders/JHADDIX_XSS.txt",
            "XSS Injection/Intruders/xss_payloads_quick.txt", "XSS Injection/Intruders/XSS_Polyglots.txt",
            "XSS Injection/Intruders/BRUTELOGIC-XSS-STRINGS.txt", "XSS Injection/Intruders/RSNAKE_XSS.txt"],
    "cmdi": ["Command Injection/Intruder/command_exec.txt", "Command Injection/Intruder/command-execution-unix.txt"],
    "traversal": ["Directory Traversal/Intruder/directory_traversal.txt", "Directory Traversal/Intruder/deep_traversal.txt",
                  "Directory Traversal/Intruder/traversals-8-deep-exotic-encoding.txt",
                  "File Inclusion/Intruders/JHADDIX_LFI.txt", "File Inclusion/Intruders/Linux-files.txt",
                  "File Inclusion/Intruders/Windows-files.txt", "File Inclusion/Intruders/php-filter-iconv.txt"],
    "ssti": ["Server Side Template Injection/Intruder/ssti.fuzz"],
    "xxe": ["XXE Injection/Intruders/xml-attacks.txt", "XXE Injection/Intruders/XXE_Fuzzing.txt"],
    "ldap": ["LDAP Injection/Intruder/LDAP_FUZZ.txt"],
    "actuator": ["Insecure Management Interface/Intruder/springboot_actuator.txt"],
}
PER_LIST = 30


def show(repo: str, path: str) -> str:
    return subprocess.run(["git", "-C", repo, "show", f"HEAD:{path}"], capture_output=True, text=True,
                          errors="replace").stdout


def head(repo: str) -> str:
    return subprocess.run(["git", "-C", repo, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()


def attacks(repo: str) -> dict[str, list[str]]:
    rnd = random.Random(20261127)
    out: dict[str, list[str]] = {}
    for family, paths in LISTS.items():
        seen: list[str] = []
        for path in paths:
            lines = [ln.strip("\r\n") for ln in show(repo, path).splitlines()]
            lines = [ln for ln in lines if len(ln.strip()) >= 6 and len(ln) <= 400 and not ln.startswith("#")
                     and ln not in seen]
            seen += rnd.sample(lines, min(PER_LIST, len(lines)))
        out[family] = seen
    return out


_RST_NOISE = re.compile(r"^(\.\. |[=\-~^*#]{3,}$|:[a-z]+:|\s*$)")


def paragraphs(repo: str) -> list[str]:
    files = subprocess.run(["git", "-C", repo, "ls-tree", "-r", "--name-only", "HEAD"], capture_output=True,
                           text=True).stdout.split()
    docs = [f for f in files if (f.startswith("docs/") and f.endswith(".rst")) or f in ("README.md", "HISTORY.md")]
    out: list[str] = []
    for path in sorted(docs):
        for block in re.split(r"\n\s*\n", show(repo, path)):
            lines = [ln for ln in block.splitlines() if not _RST_NOISE.match(ln)]
            text = "\n".join(lines).strip()
            if 40 <= len(text) <= 1500 and sum(c.isalpha() for c in text) > len(text) // 2:
                out.append(text)
    rnd = random.Random(7)
    return rnd.sample(out, min(400, len(out)))


def main() -> None:
    patt, requests_repo = sys.argv[1], sys.argv[2]
    doc = {"sources": {"PayloadsAllTheThings": head(patt), "requests": head(requests_repo)},
           "attacks": attacks(patt), "benign_paragraphs": paragraphs(requests_repo)}
    json.dump(doc, sys.stdout, indent=0)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
