"""The ``otel-ext`` command. Never prints secrets: it shows rule ids, labels and counts only."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from otel_ext.classify import RuleFileError, build_ruleset


def _cmd_rules(args: argparse.Namespace) -> int:
    ruleset = build_ruleset(rules_file=args.rules)
    s = ruleset.settings
    print(f"slow_request_ms={s.slow_request_ms:g} slow_routes={dict(s.slow_routes)}")
    print(f"access_loggers={list(s.access_loggers)}")
    print(f"{'id':36} {'class':12} {'action':28} when")
    for rule in ruleset.rules:
        when = ", ".join(str(k) for k in rule.source.get("when", {}))
        print(f"{rule.id:36} {rule.event_class:12} {rule.action or '-':28} {when}")
    print(f"{len(ruleset.rules)} rules")
    return 0


def _cmd_check_rules(args: argparse.Namespace) -> int:
    ruleset = build_ruleset(rules_file=args.file, use_env=False)
    print(f"{args.file}: ok ({len(ruleset.rules)} effective rules)")
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="otel-ext", description="otel-ext: OpenTelemetry extensions for API services")
    sub = parser.add_subparsers(dest="command", required=True)
    rules = sub.add_parser("rules", help="list the effective classification rules")
    rules.add_argument("--rules", help="a YAML rule file (default: $OTEL_EXT_RULES_FILE)")
    rules.set_defaults(func=_cmd_rules)
    check = sub.add_parser("check-rules", help="validate a YAML rule file")
    check.add_argument("file")
    check.set_defaults(func=_cmd_check_rules)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except (RuleFileError, ValueError) as exc:
        print(f"otel-ext: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
