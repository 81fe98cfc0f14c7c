"""Build ``heldout_secrets.json``: a second, held-out secret corpus from TruffleHog's detector catalogue.

Source: trufflehog (github.com/trufflesecurity/trufflehog, AGPL-3.0) at commit 3ab759fe,
``pkg/detectors/<name>/<name>.go`` (the detector's ``regexp.MustCompile`` patterns) and
``<name>_test.go`` (its ``valid*`` example strings and ``keyword``). Nothing of it is copied into
the corpus: for every detector we take its pattern and one example only to learn the *format*, and
write a fresh, random token of that format (every character after the format's literal prefix
replaced by a random one of the same class, the result checked against the detector's own pattern
with RE2, which speaks Go's regex syntax). So the corpus holds secrets none of our rules were
written from, of ~800 real formats.

Per detector: ``kind`` — ``unique`` when the format has a literal prefix of 3+ characters and is
not keyword-gated (``detectors.PrefixRegex``): recognisable anywhere; ``context`` otherwise (a
random string a scanner finds only near the vendor's name). ``keyword``: the vendor word.

Usage: ``python build_heldout_secrets.py /path/to/trufflehog > heldout_secrets.json``
"""

from __future__ import annotations

import hashlib
import json
import random
import re
import string
import subprocess
import sys
from typing import Any

import re2

_MUST = re.compile(r"regexp\.MustCompile\(((?:[^()`\"]|`[^`]*`|\"(?:[^\"\\]|\\.)*\"|\([^()]*\))*)\)")
_BACKTICK = re.compile(r"`([^`]*)`")
_VALID = re.compile(r"\b(valid\w*)\s*=\s*(?:`([^`]*)`|\"((?:[^\"\\]|\\.)*)\")")
_TOKEN = re.compile(r"(?:https://)?[A-Za-z0-9_\-.+/=~:]+")  # a token (or a webhook URL), not a text
_KEYWORD = re.compile(r"\bkeyword\s*=\s*\"([^\"]+)\"")


def git_show(repo: str, path: str) -> str:
    return subprocess.run(["git", "-C", repo, "show", f"HEAD:{path}"], capture_output=True, text=True).stdout


def patterns(source: str) -> list[tuple[bool, str]]:
    """(keyword-gated, Go regex) for every MustCompile call built from backtick literals."""
    out = []
    for call in _MUST.finditer(source):
        args = call.group(1)
        literals = _BACKTICK.findall(args)
        if not literals:
            continue
        out.append(("PrefixRegex" in args, "".join(literals)))
    return out


def _randomise(rnd: random.Random, text: str) -> str:
    out = []
    for c in text:
        if c.isdigit():
            out.append(rnd.choice(string.digits))
        elif c in "abcdef":
            out.append(rnd.choice("abcdef0123456789" if rnd.random() < 0.3 else "abcdef"))
        elif c.islower():
            out.append(rnd.choice(string.ascii_lowercase))
        elif c in "ABCDEF":
            out.append(rnd.choice("ABCDEF"))
        elif c.isupper():
            out.append(rnd.choice(string.ascii_uppercase))
        else:
            out.append(c)
    return "".join(out)


def fresh_secret(rnd: random.Random, rx: Any, example: str, secret: str) -> tuple[str, int] | None:
    """A random token of ``secret``'s format: the shortest literal prefix kept, the rest random."""
    for keep in range(0, len(secret) - 7):
        made = []
        for _ in range(12):
            candidate = secret[:keep] + _randomise(rnd, secret[keep:])
            m = rx.search(example.replace(secret, candidate))
            if candidate != secret and m is not None and candidate in (m.group(1) if rx.groups else m.group(0)):
                made.append(candidate)
        if len(made) >= 9:  # the format's literal prefix is kept: nearly every random rest fits
            return made[0], keep
    return None


def main() -> None:
    repo = sys.argv[1]
    skip = {"ldap", "uri", "postgres", "jdbc", "mongodb", "redis", "sqlserver", "ftp", "privatekey"}  # DSN shapes
    names = subprocess.run(["git", "-C", repo, "ls-tree", "--name-only", "HEAD", "pkg/detectors/"],
                           capture_output=True, text=True).stdout.split()
    result: dict[str, dict[str, Any]] = {}
    for path in sorted(names):
        name = path.rsplit("/", 1)[-1]
        source, test = git_show(repo, f"{path}/{name}.go"), git_show(repo, f"{path}/{name}_test.go")
        if not source or not test or name in skip:
            continue
        examples = [bytes(a or b, "utf-8").decode("unicode_escape") if b else a
                    for _, a, b in _VALID.findall(test)]
        kw = _KEYWORD.search(test)
        keyword = kw.group(1) if kw else name
        rnd = random.Random(int(hashlib.sha256(name.encode()).hexdigest()[:12], 16))
        found: list[tuple[str, str]] = []
        for gated, pattern in patterns(source):
            try:
                rx = re2.compile(pattern)
            except Exception:  # noqa: BLE001 - a pattern RE2 cannot compile: skip it
                continue
            for example in examples:
                for m in rx.finditer(example):
                    secret = m.group(1) if rx.groups else m.group(0)
                    if not secret or len(secret) < 12 or not _TOKEN.fullmatch(secret) or \
                            any(s == secret for s, _ in found):
                        continue
                    made = fresh_secret(rnd, rx, example, secret)
                    if made is None:
                        continue
                    token, keep = made
                    prefix = secret[:keep]
                    unique = not gated and keep >= 3 and any(c.isalpha() for c in prefix)
                    found.append((secret, json.dumps({"token": token, "kind": "unique" if unique else "context"})))
        if not found:
            continue
        tokens = [json.loads(f) for _, f in found][:2]
        result[name] = {"keyword": keyword, "kind": tokens[0]["kind"], "secrets": [t["token"] for t in tokens]}
    json.dump(result, sys.stdout, indent=0, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
