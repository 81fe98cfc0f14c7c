"""Label vocabularies the classifier speaks: ECS ``event.*`` allowed values and the OWASP
Application Logging Vocabulary.

ECS values follow the ECS 8.x "event" field set (allowed values of ``event.kind``,
``event.category``, ``event.type``, ``event.outcome`` and, per category, the expected types).
The OWASP table gives each vocabulary name (without its ``:parameters``) the labels it implies.
"""

from __future__ import annotations

from dataclasses import dataclass

EVENT_CLASSES: tuple[str, ...] = ("security", "error", "performance", "access", "application")
"""Primary-class priority, highest first."""

CLASS_PRIORITY: dict[str, int] = {name: rank for rank, name in enumerate(EVENT_CLASSES)}

ECS_KINDS = frozenset({"alert", "asset", "enrichment", "event", "metric", "state", "pipeline_error", "signal"})
ECS_OUTCOMES = frozenset({"success", "failure", "unknown"})

# ECS 8.x: event.category allowed values -> expected event.type values.
ECS_CATEGORY_TYPES: dict[str, frozenset[str]] = {
    "api": frozenset(
        {"access", "admin", "allowed", "change", "creation", "deletion", "denied", "end", "info", "start", "user"}
    ),
    "authentication": frozenset({"start", "end", "info"}),
    "configuration": frozenset({"access", "change", "creation", "deletion", "info"}),
    "database": frozenset({"access", "change", "info", "error"}),
    "driver": frozenset({"change", "end", "info", "start"}),
    "email": frozenset({"info"}),
    "file": frozenset({"access", "change", "creation", "deletion", "info"}),
    "host": frozenset({"access", "change", "end", "info", "start"}),
    "iam": frozenset({"admin", "change", "creation", "deletion", "group", "info", "user"}),
    "intrusion_detection": frozenset({"allowed", "denied", "info"}),
    "library": frozenset({"start"}),
    "malware": frozenset({"info"}),
    "network": frozenset({"access", "allowed", "connection", "denied", "end", "info", "protocol", "start"}),
    "package": frozenset({"access", "change", "deletion", "info", "installation", "start"}),
    "process": frozenset({"access", "change", "end", "info", "start"}),
    "registry": frozenset({"access", "change", "creation", "deletion"}),
    "session": frozenset({"start", "end", "info"}),
    "threat": frozenset({"indicator"}),
    "vulnerability": frozenset({"info"}),
    "web": frozenset({"access", "error", "info"}),
}

ECS_TYPES = frozenset().union(*ECS_CATEGORY_TYPES.values())


@dataclass(frozen=True)
class OwaspEvent:
    """Labels implied by one OWASP logging-vocabulary name."""

    event_class: str
    category: tuple[str, ...]
    type: tuple[str, ...]
    outcome: str
    severity: str  # the cheat sheet's level: INFO, WARN or CRITICAL (CRITICAL raises to FATAL)


def _e(cls: str, cat: str, typ: str, outcome: str, sev: str) -> OwaspEvent:
    return OwaspEvent(cls, tuple(c for c in cat.split(",") if c), tuple(t for t in typ.split(",") if t), outcome, sev)


# OWASP Application Logging Vocabulary Cheat Sheet (OWASP/CheatSheetSeries,
# cheatsheets/Logging_Vocabulary_Cheat_Sheet.md, read 2026-11-26): every name, with the level the
# cheat sheet gives it. `upload_validation` is "INFO|CRITICAL" there (by scan result): INFO here.
OWASP_VOCABULARY: dict[str, OwaspEvent] = {
    "authn_login_success": _e("security", "authentication", "start", "success", "INFO"),
    "authn_login_successafterfail": _e("security", "authentication", "start", "success", "INFO"),
    "authn_login_fail": _e("security", "authentication", "start", "failure", "WARN"),
    "authn_login_fail_max": _e("security", "authentication", "start", "failure", "WARN"),
    "authn_login_lock": _e("security", "authentication,iam", "start,user", "failure", "WARN"),
    "authn_password_change": _e("security", "iam", "change,user", "success", "INFO"),
    "authn_password_change_fail": _e("security", "iam", "change,user", "failure", "CRITICAL"),
    "authn_impossible_travel": _e("security", "authentication", "info", "unknown", "CRITICAL"),
    "authn_token_created": _e("security", "authentication", "info", "success", "INFO"),
    "authn_token_revoked": _e("security", "authentication", "end", "success", "INFO"),
    "authn_token_reuse": _e("security", "authentication,intrusion_detection", "info", "failure", "CRITICAL"),
    "authn_token_delete": _e("security", "authentication", "end", "success", "WARN"),
    "authz_fail": _e("security", "iam", "info", "failure", "CRITICAL"),
    "authz_change": _e("security", "iam", "change", "success", "WARN"),
    "authz_admin": _e("security", "iam", "admin", "success", "WARN"),
    "crypt_decrypt_fail": _e("security", "", "", "failure", "WARN"),
    "crypt_encrypt_fail": _e("security", "", "", "failure", "WARN"),
    "excess_rate_limit_exceeded": _e("security", "intrusion_detection", "denied", "failure", "WARN"),
    "excess_sessions_exceeded": _e("security", "intrusion_detection,session", "denied,info", "failure", "WARN"),
    "upload_complete": _e("application", "file", "creation", "success", "INFO"),
    "upload_stored": _e("application", "file", "creation", "success", "INFO"),
    "upload_validation": _e("security", "file,intrusion_detection", "info", "unknown", "INFO"),
    "upload_delete": _e("application", "file", "deletion", "success", "INFO"),
    "input_validation_fail": _e("security", "intrusion_detection", "denied", "failure", "WARN"),
    "input_validation_discrete_fail": _e("security", "intrusion_detection", "denied", "failure", "WARN"),
    "malicious_excess_404": _e("security", "intrusion_detection", "denied", "failure", "WARN"),
    "malicious_extraneous": _e("security", "intrusion_detection", "denied", "failure", "CRITICAL"),
    "malicious_attack_tool": _e("security", "intrusion_detection", "denied", "failure", "CRITICAL"),
    "malicious_cors": _e("security", "intrusion_detection", "denied", "failure", "CRITICAL"),
    "malicious_direct_reference": _e("security", "intrusion_detection", "denied", "failure", "CRITICAL"),
    "malicious_sqli": _e("security", "intrusion_detection", "denied", "failure", "CRITICAL"),
    "malicious_csrf": _e("security", "intrusion_detection", "denied", "failure", "WARN"),
    "malicious_csp_violation": _e("security", "intrusion_detection", "denied", "failure", "WARN"),
    "mcp_prompt_injection": _e("security", "intrusion_detection", "info", "unknown", "WARN"),
    "mcp_resource_exhaustion": _e("security", "intrusion_detection", "info", "unknown", "WARN"),
    "mcp_tool_poisoning": _e("security", "intrusion_detection", "info", "unknown", "WARN"),
    "privilege_permissions_changed": _e("security", "iam", "change", "success", "WARN"),
    "sensitive_create": _e("security", "file", "creation", "success", "WARN"),
    "sensitive_read": _e("security", "file", "access", "success", "WARN"),
    "sensitive_update": _e("security", "file", "change", "success", "WARN"),
    "sensitive_delete": _e("security", "file", "deletion", "success", "WARN"),
    "sequence_fail": _e("security", "intrusion_detection", "denied", "failure", "CRITICAL"),
    "session_created": _e("security", "session", "start", "success", "INFO"),
    "session_renewed": _e("security", "session", "info", "success", "INFO"),
    "session_expired": _e("security", "session", "end", "success", "INFO"),
    "session_logout": _e("security", "session", "end", "success", "INFO"),
    "session_use_after_expire": _e("security", "session,intrusion_detection", "denied", "failure", "CRITICAL"),
    "sys_startup": _e("application", "host", "start", "success", "WARN"),
    "sys_shutdown": _e("application", "host", "end", "success", "WARN"),
    "sys_restart": _e("application", "host", "start", "success", "WARN"),
    "sys_crash": _e("error", "host", "end", "failure", "WARN"),
    "sys_monitor_disabled": _e("security", "configuration", "change", "success", "WARN"),
    "sys_monitor_enabled": _e("security", "configuration", "change", "success", "WARN"),
    "user_created": _e("security", "iam", "creation,user", "success", "WARN"),
    "user_updated": _e("security", "iam", "change,user", "success", "WARN"),
    "user_archived": _e("security", "iam", "change,user", "success", "WARN"),
    "user_deleted": _e("security", "iam", "deletion,user", "success", "WARN"),
}


# otel-ext extensions in the same style, for attack families the OWASP vocabulary has no name for
# (payload inspection sets them; an app may log them too). Levels as OWASP gives malicious_sqli.
OTEL_EXT_VOCABULARY: dict[str, OwaspEvent] = {
    name: _e("security", "intrusion_detection", "denied", "failure", "CRITICAL")
    for name in (
        "malicious_xss",
        "malicious_path_traversal",
        "malicious_rfi",
        "malicious_cmdi",
        "malicious_code_injection",
        "malicious_ssrf",
        "malicious_template_injection",
    )
}
