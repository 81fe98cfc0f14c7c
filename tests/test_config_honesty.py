"""Configuration honesty: explicit arguments beat env for every parameter, in-code configure()
raises one ConfigError (or continues when told to), OTEL_CONFIG_FILE is refused rather than
silently dropping our processors, and every reach into private SDK names is pinned by a test."""

from __future__ import annotations

import inspect
import logging
import re
import subprocess
import sys
from pathlib import Path

import pytest

import otel_ext
from otel_ext import _sdk_compat
from otel_ext.export import FailoverLogExporter
from otel_ext.export.testing import MemoryBackend
from otel_ext.settings import ConfigError
from otel_ext.telemetry import Counters

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(("var", "value", "kwargs", "attribute", "expected"), [
    ("OTEL_EXT_FAILOVER_POLICY", "bogus", {"policy": "priority"}, "policy_name", "priority"),
    ("OTEL_EXT_QUEUE_MAX_BYTES", "lots", {"queue_max_bytes": 4096}, "queue_max_bytes", 4096),
    ("OTEL_EXT_QUEUE_FSYNC", "sometimes", {"fsync": "always"}, "fsync", "always"),
    ("OTEL_EXT_SHUTDOWN_TIMEOUT", "-1", {"shutdown_timeout": 0.5}, "shutdown_timeout", 0.5),
    ("OTEL_EXT_TIMEOUT", "soon", {"timeout": 0.3}, "settings.timeout", 0.3),
    ("OTEL_EXT_QUEUE_DIR", "/proc/nope", {}, "queue_dir", None),
    ("OTEL_EXT_QUEUE_INSECURE_DIR", "perhaps", {"queue_insecure_dir": False}, "settings.queue_insecure_dir", False),
])
def test_explicit_arguments_beat_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, var: str, value: str,
                                     kwargs: dict[str, object], attribute: str, expected: object) -> None:
    monkeypatch.setenv(var, value)
    exp = FailoverLogExporter([MemoryBackend()], queue_dir=tmp_path / "q", counters=Counters("e"),
                              queue_counters=Counters("q"), **kwargs)  # type: ignore[arg-type]
    try:
        got: object = exp
        for part in attribute.split("."):
            got = getattr(got, part)
        assert got == (tmp_path / "q" if expected is None else expected)
    finally:
        exp.shutdown()


def test_env_still_applies_to_what_is_not_given(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("OTEL_EXT_QUEUE_MAX_BYTES", "12345")
    exp = FailoverLogExporter([MemoryBackend()], queue_dir=tmp_path / "q", counters=Counters("e"),
                              queue_counters=Counters("q"))
    assert exp.queue_max_bytes == 12345
    exp.shutdown()


def test_configure_raises_one_config_error_without_traceback_noise(monkeypatch: pytest.MonkeyPatch,
                                                                   tmp_path: Path) -> None:
    monkeypatch.setenv("OTEL_EXT_QUEUE_DIR", str(tmp_path / "q"))
    for var, value, named in [("OTEL_EXT_BACKENDS", "kafka://broker:9092", "OTEL_EXT_BACKENDS"),
                              ("OTEL_EXT_FAILOVER_POLICY", "random", "OTEL_EXT_FAILOVER_POLICY")]:
        monkeypatch.setenv(var, value)
        with pytest.raises(ConfigError) as info:
            otel_ext.configure()
        assert type(info.value) is ConfigError and named in str(info.value) and "\n" not in str(info.value)
        assert info.value.__cause__ is None and info.value.__suppress_context__
        monkeypatch.delenv(var)
    unsafe = tmp_path / "shared"
    unsafe.mkdir(mode=0o777)
    unsafe.chmod(0o777)
    with pytest.raises(ConfigError, match=f"queue directory {unsafe} is writable"):
        otel_ext.configure(queue_dir=str(unsafe))


def test_configure_continues_without_otel_ext_when_told(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setenv("OTEL_EXT_BACKENDS", "kafka://broker:9092")
    monkeypatch.setenv("OTEL_EXT_ON_CONFIG_ERROR", "continue")
    monkeypatch.setenv("OTEL_EXT_QUEUE_DIR", str(tmp_path / "q"))
    pipeline = otel_ext.configure()
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith("otel-ext: configuration error:")]
    assert len(lines) == 1 and "OTEL_EXT_BACKENDS" in lines[0] and "continuing without otel-ext" in lines[0]
    assert pipeline.exporters == [] and otel_ext.current_pipeline() is not pipeline
    pipeline.shutdown()


CONFIGURE = "from otel_ext.auto.configurator import OtelExtConfigurator; OtelExtConfigurator().configure(); print('up')"


@pytest.mark.parametrize("choice", ["exit", "continue"])
def test_otel_config_file_is_refused_not_silently_ignored(tmp_path: Path, choice: str) -> None:
    env = {"PATH": "/usr/bin:/bin", "OTEL_CONFIG_FILE": str(tmp_path / "otel.yaml"),
           "OTEL_EXT_QUEUE_DIR": str(tmp_path / "q"), "OTEL_EXT_ON_CONFIG_ERROR": choice,
           "OTEL_TRACES_EXPORTER": "none", "OTEL_METRICS_EXPORTER": "none", "OTEL_LOGS_EXPORTER": "none",
           "PYTHONPATH": str(ROOT)}
    (tmp_path / "otel.yaml").write_text("file_format: '0.3'\n")
    done = subprocess.run([sys.executable, "-c", CONFIGURE], env=env, capture_output=True, text=True, timeout=60)
    errors = [line for line in done.stderr.splitlines() if line.startswith("otel-ext: configuration error:")]
    assert len(errors) == 1 and "OTEL_CONFIG_FILE" in errors[0], done.stderr
    if choice == "exit":
        assert done.returncode == 2 and "up" not in done.stdout and "Traceback" not in done.stderr
    else:  # handed to the SDK's own file configuration (which needs opentelemetry-configuration)
        assert done.returncode != 2 and "opentelemetry" in done.stderr.split("\n", 1)[1]


def test_private_sdk_names_we_rely_on_still_exist_and_behave() -> None:
    """If this fails after an SDK upgrade, fix otel_ext/_sdk_compat.py — nowhere else reaches in."""
    from opentelemetry import context

    token = context.attach(context.set_value(_sdk_compat.SUPPRESS_INSTRUMENTATION_KEY, True))
    try:
        from opentelemetry.instrumentation.utils import is_instrumentation_enabled

        assert not is_instrumentation_enabled()  # the SDK reads the very key we set
    finally:
        context.detach(token)
    params = inspect.signature(_sdk_compat.SDKConfigurator._configure).parameters
    assert "kwargs" in params
    from opentelemetry.sdk import _configuration

    hooks = inspect.signature(_configuration._initialize_components).parameters
    assert {"log_record_processors", "export_log_record_processor"} <= set(hooks)
    # nothing outside _sdk_compat imports the SDK's private configuration module
    offenders = [p for p in (ROOT / "otel_ext").rglob("*.py") if p.name != "_sdk_compat.py"
                 and ("sdk._configuration" in p.read_text() or "_SUPPRESS_INSTRUMENTATION_KEY" in p.read_text())]
    assert offenders == []


def test_private_contrib_handler_names_our_handler_builds_on_still_exist() -> None:
    """otel_ext/handler.py builds on a few private members of the contrib LoggingHandler (and the SDK
    provider's limits), reached only through otel_ext/_sdk_compat.py: if this fails after an
    upgrade, fix _sdk_compat.py."""
    import contextvars

    from opentelemetry.instrumentation.logging.handler import LoggingHandler
    from opentelemetry.sdk._logs import LoggerProvider, LogRecordLimits

    from otel_ext.handler import OtelExtLoggingHandler

    provider = LoggerProvider()
    contrib = LoggingHandler(logger_provider=provider)
    for name in _sdk_compat.CONTRIB_HANDLER_PRIVATE_NAMES:
        assert hasattr(contrib, name), f"contrib LoggingHandler lost {name}"
    # the re-entry guard is one ContextVar shared by the contrib handlers and ours
    flag = _sdk_compat.handler_emitting_flag()
    assert isinstance(flag, contextvars.ContextVar) and flag is contrib._is_emitting and flag.get() is False
    ours = OtelExtLoggingHandler(logger_provider=provider)
    assert _sdk_compat.handler_provider(ours) is provider is ours.provider
    # attributes: extras kept, the event name promoted, exception.* filled
    try:
        raise KeyError("boom")
    except KeyError:
        record = logging.LogRecord("app", logging.ERROR, __file__, 1, "m", None, sys.exc_info())
    record.__dict__.update({"tenant.id": "t1", "otel.event.name": "signup"})
    attributes, event_name = _sdk_compat.handler_attributes(contrib, record)
    assert attributes["tenant.id"] == "t1" and event_name == "signup" and "otel.event.name" not in attributes
    assert attributes["exception.type"] == "KeyError"
    # the SDK provider's limits, defaults for a provider that has none
    assert isinstance(_sdk_compat.provider_limits(provider), LogRecordLimits)
    assert _sdk_compat.provider_limits(provider) is provider._log_record_limits
    assert isinstance(_sdk_compat.provider_limits(object()), LogRecordLimits)
    # the instrumentation's hook for installing its handler, swapped and put back
    from opentelemetry.instrumentation import logging as instrumentation

    original = instrumentation._setup_logging_handler
    previous = _sdk_compat.swap_instrumentation_handler_setup(_sdk_compat.swap_instrumentation_handler_setup)  # type: ignore[arg-type]
    try:
        assert previous is original
        assert instrumentation._setup_logging_handler is _sdk_compat.swap_instrumentation_handler_setup
    finally:
        instrumentation._setup_logging_handler = original
    from opentelemetry.instrumentation.logging import handler as contrib_module

    assert callable(contrib_module._overwrite_logging_config_fns)
    # the contrib's translation is overridden by ours (so contrib code calling it gets the safe one)
    assert OtelExtLoggingHandler._translate is OtelExtLoggingHandler.translate
    # and handler.py itself names none of those private members
    source = (ROOT / "otel_ext" / "handler.py").read_text()
    reaches = [n for n in (*_sdk_compat.CONTRIB_HANDLER_PRIVATE_NAMES, "_log_record_limits",
                           "_overwrite_logging_config_fns", "_setup_logging_handler")
               if re.search(rf"\.{n}\b", source)]
    assert reaches == []
