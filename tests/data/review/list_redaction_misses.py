"""Print the redaction review's failing cases with a root-cause guess, as JSON (case id -> cause).

Used to write ``redaction_xfail.json``; run it again after a fix to see which entries to drop:
``.venv/bin/python tests/data/review/list_redaction_misses.py > /tmp/now.json`` and compare.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from review_redaction_cases import HARMLESS, api_cases, gitleaks_cases, gitleaks_fp_cases
from test_review_redaction_corpus import _GLUED, flat, redact, survivors

API_CAUSES = {
    "bearer_prose_one_lower": "bearer_prose", "xml_password": "xml_element", "xml_attr_password": "xml_element",
    "soap_token": "xml_element", "cli_password_flag": "cli_flag", "cli_p_flag": "cli_flag",
    "redis_cli_auth": "cli_flag", "prose_password_is": "prose_keyword",
    "secret_under_neutral_key_prose": "prose_keyword", "plural_key_attr": "plural_key",
    "plural_key_json": "plural_key", "graphql_variables": "single_letter_key",
    "json_escaped_twice": "nested_escaping", "urlencoded_json_in_query": "nested_escaping",
    "double_urlencoded": "nested_escaping", "bytes_attr_body": "bytes_value", "iban_prose": "pii",
    "aws_secret_in_prose": "random_under_neutral_word", "oauth_code_in_callback": "oauth_code",
    "password_reset_path": "secret_in_path", "telegram_bot_url": "secret_in_path",
    "stripe_client_secret": "stripe_client_secret", "openai_legacy_prose": "openai_legacy",
    "unquoted_value_with_spaces": "unquoted_value_with_spaces", "saml_response_form": "secret_key_vocabulary",
    "cas_service_ticket": "secret_key_vocabulary", "oauth1_verifier": "secret_key_vocabulary",
    "oauth1_consumer_key": "secret_key_vocabulary", "pin_field": "secret_key_vocabulary",
    "csrf_field": "secret_key_vocabulary", "ssn_field": "pii",
    "symbol_rich_password_braces": "value_starting_with_bracket", "password_in_braces": "value_starting_with_bracket",
    "secret_in_brackets": "value_starting_with_bracket", "backtick_quoted_password": "value_delimiters",
    "angle_bracket_password": "value_delimiters", "unquoted_password_with_spaces":
    "unquoted_value_with_spaces",
}
OVERRIDES = {
    "1password-secret-key/env_line/0": "key_starts_with_digit", "1password-secret-key/json_body/0": "key_starts_with_digit",
    "cloudflare-global-api-key/gitleaks_tp/0": "vendor_name_key", "sidekiq-secret/gitleaks_tp/2": "vendor_name_key",
    "jwt-base64/gitleaks_tp/5": "base64_wrapped_jwt", "telegram-bot-api-token/gitleaks_tp/1": "vendor_pattern_narrower",
}
NARROWER = {"vault-service-token", "sendgrid-api-token", "square-access-token", "openai-api-key",
            "telegram-bot-api-token"}
BARE_SHAPES = {"prose", "neutral_json", "list_attr", "exception", "headers_repr", "url_encoded"}


def main() -> None:
    cases = gitleaks_cases() + api_cases()
    failing = {c.id: c for c in cases if survivors(c)}
    unknown_rules = {c.rule for c in failing.values() if c.shape == "prose"}
    out: dict[str, str] = {}
    for cid, case in failing.items():
        text = flat(redact(case.value))
        if cid.startswith("api/"):
            cause = API_CAUSES.get(case.rule, "other")
        elif case.shape in ("url_encoded", "exception") and case.rule not in unknown_rules:
            cause = "percent_encoded_boundary"
        elif any(s not in text and s[-10:] in text for s in case.secrets if len(s) >= 20):
            cause = "partial_tail"
        elif case.rule == "curl-auth-user":
            cause = "cli_flag"
        elif cid in OVERRIDES:
            cause = OVERRIDES[cid]
        elif case.shape == "gitleaks_tp":
            raw = str(case.value)
            if "</" in raw:
                cause = "xml_element"
            elif any(op in raw for op in ("::=", "?=", ".=", "`", " string =", "setProperty", ":= ")):
                cause = "code_assignment_operator"
            elif case.rule in NARROWER:
                cause = "vendor_pattern_narrower"
            elif case.rule in unknown_rules:
                cause = "unknown_vendor_prefix"
            else:
                cause = "other"
        elif case.rule in NARROWER and (case.shape in BARE_SHAPES or case.shape == "gitleaks_tp"):
            cause = "vendor_pattern_narrower"
        elif case.rule in unknown_rules and case.shape in BARE_SHAPES:
            cause = "unknown_vendor_prefix"
        elif case.shape == "url_encoded":
            cause = "percent_encoded_boundary"
        else:
            cause = "other"
        out[cid] = cause
    for name, value in HARMLESS:
        if redact(value) != value:
            out[f"harmless/{name}"] = "damaged: " + repr(redact(value))[:160]
    for cid, text in gitleaks_fp_cases():
        damaged = redact(text)
        if _GLUED.search(damaged) or (("$(" in text or "${" in text) and (
                damaged.count("(") - damaged.count(")") != text.count("(") - text.count(")")
                or damaged.count("{") - damaged.count("}") != text.count("{") - text.count("}"))):
            out[cid] = "damaged: " + repr(damaged)[:160]
    json.dump(dict(sorted(out.items())), sys.stdout, indent=0)


if __name__ == "__main__":
    main()
