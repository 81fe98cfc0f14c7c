"""Kept for imports written before the settings moved to the ground floor: :mod:`otel_ext.settings`
owns every variable; this module only re-exports its public names."""

from otel_ext.settings import (
    ENV_KEYS,
    FILE_KEYS,
    POLICIES,
    ConfigError,
    Settings,
    load_settings,
    state_dir,
)

__all__ = ["ENV_KEYS", "FILE_KEYS", "POLICIES", "ConfigError", "Settings", "load_settings", "state_dir"]
