"""Settings from env vars and an optional YAML file (``OTEL_EXT_CONFIG_FILE``); env wins, explicit
overrides win over both. Every error names the variable or file key it came from."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

POLICIES = ("priority", "round_robin", "replicate")


class ConfigError(ValueError):
    """Configuration is wrong; the message names the variable or file and the problem."""


def state_dir(env: Mapping[str, str] | None = None) -> Path:
    env = os.environ if env is None else env
    base = env.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "otel-ext"


# env var -> (settings key, kind)
ENV_KEYS: dict[str, tuple[str, str]] = {
    "OTEL_EXT_BACKENDS": ("backends", "urls"),
    "OTEL_EXT_FAILOVER_POLICY": ("failover_policy", "str"),
    "OTEL_EXT_QUEUE_DIR": ("queue_dir", "str"),
    "OTEL_EXT_QUEUE_MAX_BYTES": ("queue_max_bytes", "int"),
    "OTEL_EXT_QUEUE_FSYNC": ("queue_fsync", "str"),
    "OTEL_EXT_TIMEOUT": ("timeout", "float"),
    "OTEL_EXT_SHUTDOWN_TIMEOUT": ("shutdown_timeout", "float"),
    "OTEL_EXT_RULES_FILE": ("rules_file", "str"),
    "OTEL_EXT_SAMPLE": ("sample", "str"),
    "OTEL_EXT_MIN_SEVERITY": ("min_severity", "str"),
    "OTEL_EXT_PROCESSING": ("processing", "str"),
    "OTEL_EXT_BUFFER_SIZE": ("buffer_size", "int"),
    "OTEL_EXT_OVERLOAD": ("overload", "str"),
    "OTEL_EXT_ON_CONFIG_ERROR": ("on_config_error", "str"),
    "OTEL_EXT_QUEUE_INSECURE_DIR": ("queue_insecure_dir", "bool"),
    "OTEL_EXT_USAGE_METRICS": ("usage_metrics", "str"),
    "OTEL_EXT_USAGE_CLIENT_ATTRIBUTE": ("usage_client_attribute", "str"),
    "OTEL_EXT_USAGE_TOP_N": ("usage_top_n", "int"),
}
FILE_KEYS = {key for key, _ in ENV_KEYS.values()}


@dataclass(frozen=True)
class Settings:
    backends: tuple[str, ...] = ()
    failover_policy: str = "priority"
    queue_dir: str = ""
    queue_max_bytes: int = 256 * 1024 * 1024
    queue_fsync: str = "process"
    timeout: float = 2.0
    shutdown_timeout: float = 5.0
    rules_file: str | None = None
    sample: str | None = None
    min_severity: str | None = None
    processing: str = "deferred"  # or "inline"
    buffer_size: int = 16384  # in-memory records between the app and the queue (first hop)
    overload: str = "spill"  # first-hop policy when the buffer is full: "spill" or "drop" (see export/firsthop.py)
    on_config_error: str = "exit"  # or "continue"
    queue_insecure_dir: bool = False  # accept a queue dir that is a symlink / shared / not ours
    usage_metrics: str = "on"  # or "off": otel_ext.usage.* metrics from access records (otel_ext/usage.py)
    usage_client_attribute: str = "client.address"  # any other attribute is exported hashed
    usage_top_n: int = 50  # clients with their own label per window; the rest are "other"
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


def _convert(value: Any, kind: str, source: str) -> Any:
    try:
        if kind == "urls" and isinstance(value, str):  # a comma inside kafka://b1:9092,b2:9092/t stays
            from otel_ext.backends.urls import split_backend_urls

            return split_backend_urls(value)
        if kind in ("list", "urls"):
            items = value.split(",") if isinstance(value, str) else list(value)
            return tuple(str(v).strip() for v in items if str(v).strip())
        if kind == "int":
            number = int(value)
            if number <= 0:
                raise ValueError
            return number
        if kind == "bool":
            if isinstance(value, bool):
                return value
            text = str(value).strip().lower()
            if text in ("1", "true", "yes", "on"):
                return True
            if text in ("0", "false", "no", "off"):
                return False
            raise ValueError
        if kind == "float":
            seconds = float(value)
            if seconds <= 0:
                raise ValueError
            return seconds
        return str(value)
    except (TypeError, ValueError):
        expected = "true or false" if kind == "bool" else f"a positive {kind}"
        raise ConfigError(f"{source}: expected {expected}, got {value!r}") from None


def load_settings(env: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
    env = os.environ if env is None else env
    values: dict[str, Any] = {}
    sources: dict[str, str] = {}
    config_file = overrides.pop("config_file", None) or env.get("OTEL_EXT_CONFIG_FILE")
    explicit = {key for key, value in overrides.items() if value is not None}
    if config_file:
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
            raise ConfigError(f"{config_file}: unknown key(s) {sorted(unknown)} (allowed: {sorted(FILE_KEYS)})")
        kinds = {key: kind for key, kind in ENV_KEYS.values()}
        for key, value in doc.items():
            if key in explicit:
                continue
            values[key] = _convert(value, kinds[key], f"{config_file}: {key}")
            sources[key] = f"{config_file}: {key}"
    for var, (key, kind) in ENV_KEYS.items():
        if key in explicit:
            continue  # an explicit argument wins; a bad env value for it is not even read
        if env.get(var):
            values[key] = _convert(env[var], kind, var)
            sources[key] = var
    for key, value in overrides.items():
        if key not in FILE_KEYS:
            raise ConfigError(f"configure(): unknown setting {key!r} (allowed: {sorted(FILE_KEYS)})")
        if value is not None:
            kinds = {k: kd for k, kd in ENV_KEYS.values()}
            values[key] = _convert(value, kinds[key], f"configure({key}=...)")
            sources[key] = f"configure({key}=...)"
    settings = Settings(**values, state_dir=str(state_dir(env)), sources=sources)
    if settings.failover_policy not in POLICIES:
        raise ConfigError(f"{sources.get('failover_policy', 'OTEL_EXT_FAILOVER_POLICY')}: unknown policy "
                          f"{settings.failover_policy!r} (use one of {', '.join(POLICIES)})")
    if settings.queue_fsync not in ("process", "always"):
        raise ConfigError(f"{sources.get('queue_fsync', 'OTEL_EXT_QUEUE_FSYNC')}: use 'process' or 'always'")
    if settings.processing not in ("deferred", "inline"):
        raise ConfigError(f"{sources.get('processing', 'OTEL_EXT_PROCESSING')}: use 'deferred' or 'inline', "
                          f"got {settings.processing!r}")
    if settings.overload not in ("spill", "drop"):
        raise ConfigError(f"{sources.get('overload', 'OTEL_EXT_OVERLOAD')}: use 'spill' or 'drop', "
                          f"got {settings.overload!r}")
    if settings.on_config_error not in ("exit", "continue"):
        raise ConfigError(f"{sources.get('on_config_error', 'OTEL_EXT_ON_CONFIG_ERROR')}: use 'exit' or 'continue'")
    if settings.usage_metrics not in ("on", "off"):
        raise ConfigError(f"{sources.get('usage_metrics', 'OTEL_EXT_USAGE_METRICS')}: use 'on' or 'off'")
    return settings
