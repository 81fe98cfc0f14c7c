"""The ground floor: every environment variable otel-ext reads, in one table, and the only module
that touches ``os.environ``.

Owns, per variable: its name, type, default, validation (a wrong value raises one
:class:`ConfigError` naming the variable, or the file key it came from) and its one-line
documentation. The README's "Environment variables" table is generated from :data:`VARIABLES`
(``python -m otel_ext.settings``) and a test keeps the two equal.

Rules:
- **An explicit argument beats the environment**, parameter by parameter (as in the SDK's own
  exporters): :func:`explicit_or_env` and :func:`load_settings` do not even read the variable of a
  parameter given in code, so a bad env value for it cannot fail the call.
- ``OTEL_EXT_CONFIG_FILE`` (YAML) may hold the :class:`Settings` keys; env wins over the file.
- Variables that are not :class:`Settings` keys (credentials, detector tuning, the ``OTEL_*`` ones
  of the SDK we interpret) are read where they are used, through :func:`env_value`.

Imports nothing from other otel_ext layers: every layer (export, auto, classify, detect, backends,
queue, redaction, handler, cli) reads its configuration from here.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import yaml

__all__ = [
    "POLICIES",
    "VARIABLES",
    "ConfigError",
    "Settings",
    "Variable",
    "env_value",
    "environ",
    "explicit_or_env",
    "load_settings",
    "markdown_table",
    "on_config_error",
    "set_env_default",
    "split_backend_urls",
    "state_dir",
]

T = TypeVar("T")

POLICIES = ("priority", "round_robin", "replicate")


class ConfigError(ValueError):
    """Configuration is wrong; the message names the variable or file and the problem."""


@dataclass(frozen=True)
class Variable:
    """One environment variable: ``kind`` says how its text is read and checked.

    Kinds: ``str``, ``path``, ``secret`` (never printed), ``url`` (http/https), ``urls`` (backend URL
    list), ``list`` (comma-separated), ``choice`` (one of ``choices``), ``int`` / ``float`` (positive),
    ``bool`` (true/false, 1/0, yes/no, on/off), ``pairs`` (``name=value,…``, checked by its user)."""

    name: str
    kind: str
    default: Any
    doc: str
    key: str | None = None  # the Settings field (and config-file key), None: read with env_value()
    choices: tuple[str, ...] = ()
    family: str = "exporter"

    def convert(self, value: Any, source: str | None = None) -> Any:
        return _convert(self, value, source or self.name)


_SPS = "OTEL_EXPORTER_OTLP_"
VARIABLES: tuple[Variable, ...] = (
    # --- exporter and queue (Settings keys, also accepted in OTEL_EXT_CONFIG_FILE) ---------------
    Variable("OTEL_EXT_BACKENDS", "urls", (), "backend URLs in priority order (see Failover exporter); default "
             "`file://<state dir>/otel-ext/logs`", "backends"),
    Variable("OTEL_EXT_FAILOVER_POLICY", "choice", "priority", "how backends share the traffic",
             "failover_policy", POLICIES),
    Variable("OTEL_EXT_QUEUE_DIR", "path", "", "queue directory (default `<state dir>/otel-ext/queue`), refused "
             "if a symlink, another user's or group/world-writable", "queue_dir", family="queue"),
    Variable("OTEL_EXT_QUEUE_MAX_BYTES", "int", 256 * 1024 * 1024, "disk bound of the queue; overflow drops by "
             "class, security last, counted", "queue_max_bytes", family="queue"),
    Variable("OTEL_EXT_QUEUE_FSYNC", "choice", "process", "`process`: durable against a process crash; `always`: "
             "every batch fsync'd", "queue_fsync", ("process", "always"), family="queue"),
    Variable("OTEL_EXT_QUEUE_INSECURE_DIR", "bool", False, "accept a queue dir that is a symlink, another "
             "user's or group/world-writable (never chmod-ed; foreign files never adopted)", "queue_insecure_dir",
             family="queue"),
    Variable("OTEL_EXT_TIMEOUT", "float", 2.0, "seconds per delivery attempt", "timeout"),
    Variable("OTEL_EXT_SHUTDOWN_TIMEOUT", "float", 5.0, "bound of `shutdown()` in seconds, the final in-flight "
             "request included", "shutdown_timeout"),
    Variable("OTEL_EXT_MAX_REQUEST_RECORDS", "int", 10_000, "records coalesced into one request per lane: also "
             "the at-least-once window (what a kill -9 may deliver twice) per lane", "max_request_records"),
    Variable("OTEL_EXT_MAX_REQUEST_BYTES", "int", 3 * 1024 * 1024, "bytes coalesced into one request per lane "
             "(the same window in bytes)", "max_request_bytes"),
    # --- processing ------------------------------------------------------------------------------
    Variable("OTEL_EXT_PROCESSING", "choice", "deferred", "`deferred`: classification/redaction/volume on the "
             "batch worker; `inline`: before it", "processing", ("deferred", "inline"), family="processing"),
    Variable("OTEL_EXT_BUFFER_SIZE", "int", 16384, "records held in memory between the app and the disk queue",
             "buffer_size", family="processing"),
    Variable("OTEL_EXT_OVERLOAD", "choice", "spill", "buffer full: `spill` to disk (nothing lost) or `drop` "
             "access/performance/application (counted)", "overload", ("spill", "drop"), family="processing"),
    Variable("OTEL_EXT_ON_CONFIG_ERROR", "choice", "exit", "a bad setting: `exit` (one line, exit code 2; "
             "`configure()` raises `ConfigError`) or `continue` without otel-ext", "on_config_error",
             ("exit", "continue"), family="processing"),
    Variable("OTEL_EXT_CONFIG_FILE", "path", None, "YAML holding the keys above in lower case without the "
             "prefix (`backends`, `failover_policy`, …); env wins", family="processing"),
    # --- classification, volume, detection, redaction --------------------------------------------
    Variable("OTEL_EXT_RULES_FILE", "path", None, "YAML rules extending/overriding the built-ins",
             "rules_file", family="classify"),
    Variable("OTEL_EXT_SAMPLE", "pairs", None, "per-class keep ratio, e.g. `access=0.1,performance=0.5`",
             "sample", family="classify"),
    Variable("OTEL_EXT_MIN_SEVERITY", "pairs", None, "per-class minimum severity, e.g. `application=WARN`",
             "min_severity", family="classify"),
    Variable("OTEL_EXT_DETECTORS", "pairs", None, "detector switches and tuning, e.g. "
             "`latency_slo=off,brute_force_account.threshold=5`; `off` = none", family="detect"),
    Variable("OTEL_EXT_ALERT_WEBHOOK", "url", None, "Slack-compatible webhook for alerts (a secret: never "
             "logged)", family="detect"),
    Variable("OTEL_EXT_REDACT_HASH_KEY", "secret", None, "HMAC key of the stable `[HASH:…]` values (the same "
             "on every instance; default: a fixed key)", family="redact"),
    # --- usage metrics ---------------------------------------------------------------------------
    Variable("OTEL_EXT_USAGE_METRICS", "choice", "on", "`otel_ext.usage.*` metrics from access records",
             "usage_metrics", ("on", "off"), family="usage"),
    Variable("OTEL_EXT_USAGE_CLIENT_ATTRIBUTE", "str", "client.address", "the client dimension; any other "
             "attribute is exported hashed", "usage_client_attribute", family="usage"),
    Variable("OTEL_EXT_USAGE_TOP_N", "int", 50, "clients with their own label per 60 s window; the rest are "
             "`other`", "usage_top_n", family="usage"),
    # --- backend credentials (only from env) -----------------------------------------------------
    Variable("OTEL_EXT_ES_API_KEY", "secret", None, "Elasticsearch/OpenSearch API key", family="backends"),
    Variable("OTEL_EXT_ES_USERNAME", "str", None, "Elasticsearch/OpenSearch basic-auth user (with the password)",
             family="backends"),
    Variable("OTEL_EXT_ES_PASSWORD", "secret", None, "Elasticsearch/OpenSearch basic-auth password",
             family="backends"),
    Variable("OTEL_EXT_ES_CLOUD_ID", "str", None, "Elastic Cloud deployment id (with an API key)",
             family="backends"),
    Variable("OTEL_EXT_KAFKA_USERNAME", "str", None, "Kafka SASL user (with the password)", family="backends"),
    Variable("OTEL_EXT_KAFKA_PASSWORD", "secret", None, "Kafka SASL password", family="backends"),
    # --- variables of the OpenTelemetry SDK / XDG that we interpret --------------------------------
    Variable("OTEL_LOGS_EXPORTER", "list", (), "`failover` selects our exporter (the distro's default)",
             family="sdk"),
    Variable("OTEL_PYTHON_CONFIGURATOR", "str", "", "`otel_ext` selects our configurator (the distro's "
             "default)", family="sdk"),
    Variable("OTEL_CONFIG_FILE", "path", None, "the SDK's file configuration, which would drop our "
             "processors: refused at start-up", family="sdk"),
    Variable("OTEL_SERVICE_NAME", "str", "", "named in webhook alerts", family="sdk"),
    Variable("OTEL_BLRP_SCHEDULE_DELAY", "float", 100.0, "milliseconds before a batch leaves the in-memory "
             "buffer", family="sdk"),
    Variable("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "int", 512, "records per batch made durable at once",
             family="sdk"),
    *(Variable(f"{_SPS}{scope}{name}", kind, None, f"{what} of OTLP backends{' (logs only)' if scope else ''}",
               choices=("gzip", "none") if kind == "choice" else (), family="sdk")
      for scope in ("LOGS_", "")
      for name, kind, what in (("HEADERS", "secret", "headers (`k=v,…`, URL-encoded)"),
                               ("COMPRESSION", "choice", "compression"),
                               ("CERTIFICATE", "path", "CA file"),
                               ("CLIENT_CERTIFICATE", "path", "client certificate"),
                               ("CLIENT_KEY", "path", "client key"))),
    Variable("XDG_STATE_HOME", "path", "~/.local/state", "the state dir's parent (queue, default file backend)",
             family="sdk"),
)
BY_NAME: dict[str, Variable] = {v.name: v for v in VARIABLES}
BY_KEY: dict[str, Variable] = {v.key: v for v in VARIABLES if v.key}
FILE_KEYS = frozenset(BY_KEY)
ENV_KEYS: dict[str, tuple[str, str]] = {v.name: (v.key, v.kind) for v in VARIABLES if v.key}  # old shape


def environ() -> Mapping[str, str]:
    """The process environment, for code that hands a mapping on (backend URL parsing reads the
    backends' credential variables from it through :func:`env_value`)."""
    return os.environ


def set_env_default(name: str, value: str) -> None:
    """Set a declared variable only if the user left it unset (the distro's defaults for the SDK)."""
    if name not in BY_NAME:
        raise KeyError(f"{name} is not declared in otel_ext.settings.VARIABLES")
    os.environ.setdefault(name, value)


def env_value(name: str, env: Mapping[str, str] | None = None) -> Any:
    """The declared variable ``name``, converted and checked; its default when unset or empty."""
    var = BY_NAME[name]  # KeyError: every variable we read is declared above
    text = (os.environ if env is None else env).get(name)
    if text is None or not text.strip():
        return var.default
    return var.convert(text)


def explicit_or_env(explicit: T | None, name: str, env: Mapping[str, str] | None = None) -> T:
    """An explicit argument wins; only without one is ``name`` read (so its bad value cannot fail)."""
    if explicit is not None:
        return explicit
    value: T = env_value(name, env)
    return value


def on_config_error(explicit: str | None = None, env: Mapping[str, str] | None = None) -> str:
    """``exit`` or ``continue``: what a configuration error does. Never raises: a bad value of
    ``OTEL_EXT_ON_CONFIG_ERROR`` itself means ``exit`` (and is reported by :func:`load_settings`)."""
    try:
        choice = explicit_or_env(explicit, "OTEL_EXT_ON_CONFIG_ERROR", env)
    except ConfigError:
        return "exit"
    return "continue" if choice == "continue" else "exit"


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "otel-ext"


_URL_START = re.compile(r"^\s*[A-Za-z][A-Za-z0-9+.-]*://")


def split_backend_urls(text: str) -> tuple[str, ...]:
    """``OTEL_EXT_BACKENDS`` -> URLs. Commas separate URLs, but a comma not followed by ``scheme://``
    belongs to the URL before it (``kafka://b1:9092,b2:9092/topic``)."""
    urls: list[str] = []
    for piece in text.split(","):
        if not piece.strip():
            continue
        if urls and not _URL_START.match(piece):
            urls[-1] += "," + piece.strip()
        else:
            urls.append(piece.strip())
    return tuple(urls)


_TRUE, _FALSE = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _convert(var: Variable, value: Any, source: str) -> Any:
    kind = var.kind
    try:
        if kind == "urls":
            if isinstance(value, str):
                return split_backend_urls(value)
            return tuple(str(v).strip() for v in value if str(v).strip())
        if kind == "list":
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(v).strip() for v in items if str(v).strip())
        if kind == "int":
            if isinstance(value, bool) or (isinstance(value, float) and not value.is_integer()):
                raise ValueError
            number = int(value)
            if number <= 0:
                raise ValueError
            return number
        if kind == "float":
            if isinstance(value, bool):
                raise ValueError
            seconds = float(value)
            if not seconds > 0 or seconds == float("inf"):
                raise ValueError
            return seconds
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in _TRUE:
                return True
            if text in _FALSE:
                return False
            raise ValueError
        if isinstance(value, (Mapping, list, tuple, set)):
            raise ValueError
        text = str(value).strip()
        if kind == "choice" and text not in var.choices:
            raise ConfigError(f"{source}: unknown value {text!r} (use one of {', '.join(var.choices)})")
        if kind == "url" and not re.match(r"^https?://[^/\s]+", text):
            raise ConfigError(f"{source}: expected an http(s) URL")  # no value: it may hold a secret
        return text
    except (TypeError, ValueError, OverflowError) as exc:
        if isinstance(exc, ConfigError):
            raise
        expected = {"bool": "true or false", "int": "a positive integer", "float": "a positive number"}.get(
            kind, "a string")
        shown = "<hidden>" if kind in ("secret", "url") else repr(value)
        raise ConfigError(f"{source}: expected {expected}, got {shown}") from None


@dataclass(frozen=True)
class Settings:
    """The settings of one pipeline / exporter; defaults are those of :data:`VARIABLES`."""

    backends: tuple[str, ...] = ()
    failover_policy: str = "priority"
    queue_dir: str = ""
    queue_max_bytes: int = 256 * 1024 * 1024
    queue_fsync: str = "process"
    queue_insecure_dir: bool = False
    timeout: float = 2.0
    shutdown_timeout: float = 5.0
    max_request_records: int = 10_000
    max_request_bytes: int = 3 * 1024 * 1024
    processing: str = "deferred"
    buffer_size: int = 16384
    overload: str = "spill"
    on_config_error: str = "exit"
    rules_file: str | None = None
    sample: str | None = None
    min_severity: str | None = None
    usage_metrics: str = "on"
    usage_client_attribute: str = "client.address"
    usage_top_n: int = 50
    state_dir: str = field(default_factory=lambda: str(state_dir()))
    sources: Mapping[str, str] = field(default_factory=dict, compare=False)

    @property
    def effective_backends(self) -> tuple[str, ...]:
        """The configured backends, or the embedded default (a file backend in the state dir)."""
        if self.backends:
            return self.backends
        return (f"file://{Path(self.state_dir) / 'logs'}",)

    @property
    def effective_queue_dir(self) -> Path:
        return Path(self.queue_dir) if self.queue_dir else Path(self.state_dir) / "queue"

    def source(self, key: str) -> str:
        """Where ``key`` came from (variable, file key or ``configure(key=...)``), for error messages."""
        return self.sources.get(key) or BY_KEY[key].name


def _read_file(config_file: str) -> Mapping[str, Any]:
    try:
        doc = yaml.safe_load(Path(config_file).read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ConfigError(f"OTEL_EXT_CONFIG_FILE: cannot read {config_file}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"OTEL_EXT_CONFIG_FILE: {config_file}: invalid YAML: {exc}") from None
    if not isinstance(doc, Mapping):
        raise ConfigError(f"OTEL_EXT_CONFIG_FILE: {config_file}: top level must be a mapping")
    unknown = set(doc) - FILE_KEYS
    if unknown:
        raise ConfigError(f"{config_file}: unknown key(s) {sorted(map(str, unknown))} (allowed: {sorted(FILE_KEYS)})")
    return doc


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    """Settings from ``overrides`` (explicit, they win), then env, then ``OTEL_EXT_CONFIG_FILE``, then
    the defaults. A value that is given explicitly is the only one read for its key."""
    env = os.environ if env is None else env
    config_file = overrides.pop("config_file", None) or env.get("OTEL_EXT_CONFIG_FILE")
    unknown = set(overrides) - FILE_KEYS
    if unknown:
        raise ConfigError(f"configure(): unknown setting(s) {sorted(unknown)} (allowed: {sorted(FILE_KEYS)})")
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    doc = _read_file(config_file) if config_file else {}
    for key, var in BY_KEY.items():
        explicit = overrides.get(key)
        if explicit is not None:
            source, raw = f"configure({key}=...)", explicit
        elif (env.get(var.name) or "").strip():
            source, raw = var.name, env[var.name]
        elif doc.get(key) is not None:
            source, raw = f"{config_file}: {key}", doc[key]
        else:
            continue
        values[key] = var.convert(raw, source)
        sources[key] = source
    return Settings(**values, state_dir=str(state_dir(env)), sources=sources)


def markdown_table() -> str:
    """The README's table of every variable (kept equal by ``tests/test_settings.py``)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for var in VARIABLES:
        if var.choices:
            default = " / ".join(f"**{c}**" if c == var.default else c for c in var.choices)
        elif var.default in (None, "", ()):
            default = "—"
        elif var.kind == "bool":
            default = "true / **false**" if not var.default else "**true** / false"
        elif isinstance(var.default, float) and var.default.is_integer():
            default = str(int(var.default))
        elif isinstance(var.default, int) and var.default >= 1 << 20 and var.default % (1 << 20) == 0:
            default = f"{var.default >> 20} MiB"
        elif isinstance(var.default, int):
            default = f"{var.default:,}"
        else:
            default = str(var.default)
        rows.append(f"| `{var.name}` | {default} | {var.doc} |")
    return "\n".join(rows)


if __name__ == "__main__":
    print(markdown_table())
