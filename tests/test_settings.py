"""The settings module is the ground floor: the only reader of the environment, the one table of
variables (name, type, default, validation, documentation), and nothing above it is imported by
the layers below."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
from pathlib import Path

import pytest

import otel_ext
from otel_ext import settings as settings_module
from otel_ext.settings import VARIABLES, ConfigError, explicit_or_env, load_settings

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "otel_ext"
NAMES = {v.name for v in VARIABLES}

# Modules that may touch os.environ / os.getenv, each with the reason. Empty: nothing needs to.
ENVIRON_ALLOWED: dict[str, str] = {
    "otel_ext/settings.py": "the ground floor itself",
}


def _modules() -> list[tuple[str, ast.Module]]:
    return [(str(p.relative_to(ROOT)), ast.parse(p.read_text(encoding="utf-8"), str(p)))
            for p in sorted(PACKAGE.rglob("*.py"))]


def _environ_touches(tree: ast.Module) -> list[int]:
    lines = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Attribute) and node.attr in ("environ", "environb", "getenv", "putenv",
                                                              "unsetenv")) or (isinstance(node, ast.ImportFrom) and node.module == "os" and (
                {a.name for a in node.names} & {"environ", "environb", "getenv", "putenv", "unsetenv"})):
            lines.append(node.lineno)
    return sorted(lines)


def test_no_module_but_settings_touches_the_environment() -> None:
    offenders = {path: lines for path, tree in _modules()
                 if path not in ENVIRON_ALLOWED and (lines := _environ_touches(tree))}
    assert offenders == {}, f"read env through otel_ext.settings instead: {offenders}"
    # the detector sees what it should (so the empty result above means something)
    assert _environ_touches(ast.parse("import os\nos.environ.get('X')\nfrom os import getenv\n")) == [2, 3]


def test_every_variable_name_in_the_code_is_declared_in_settings() -> None:
    """A string constant that is a whole variable name (``"OTEL_EXT_TIMEOUT"``) must be declared."""
    pattern = re.compile(r"^(OTEL_[A-Z0-9_]*[A-Z0-9]|XDG_[A-Z_]*[A-Z])$")
    undeclared = {}
    for path, tree in _modules():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Constant) and isinstance(node.value, str) and pattern.match(node.value)
                    and node.value not in NAMES):
                undeclared.setdefault(path, []).append(node.value)
    assert undeclared == {}


def test_settings_imports_no_other_layer() -> None:
    tree = ast.parse((PACKAGE / "settings.py").read_text(encoding="utf-8"))
    imported = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module}
    imported |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in imported if m.startswith("otel_ext")}, imported


@pytest.mark.parametrize(("module", "forbidden"), [
    ("otel_ext.export", "otel_ext.auto"),
    ("otel_ext.settings", "otel_ext."),
    ("otel_ext.backends", "otel_ext.auto"),
    ("otel_ext.queue.store", "otel_ext.auto"),
    ("otel_ext.classify", "otel_ext.auto"),
    ("otel_ext.detect.engine", "otel_ext.auto"),
])
def test_a_lower_layer_imports_nothing_above_it(module: str, forbidden: str) -> None:
    code = (f"import sys, {module}\n"
            f"print('\\n'.join(m for m in sys.modules if m.startswith({forbidden!r}) and m != {module!r}"
            f" and not {module!r}.startswith(m + '.')))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    assert done.stdout.strip() == "", f"importing {module} imported {done.stdout.split()}"


def test_the_public_api_still_imports_from_the_package() -> None:
    assert set(otel_ext.__all__) <= set(dir(otel_ext))
    for name in otel_ext.__all__:
        assert getattr(otel_ext, name) is not None
    from otel_ext.auto.settings import ConfigError as Old  # the thin re-export keeps old imports working

    assert Old is ConfigError


# --- one ConfigError naming the variable, for every family -----------------------------------

BAD_VALUES = [
    # exporter / queue (Settings keys)
    ("OTEL_EXT_FAILOVER_POLICY", "random"),
    ("OTEL_EXT_TIMEOUT", "-1"),
    ("OTEL_EXT_SHUTDOWN_TIMEOUT", "soon"),
    ("OTEL_EXT_MAX_REQUEST_RECORDS", "0"),
    ("OTEL_EXT_MAX_REQUEST_BYTES", "3MB"),
    ("OTEL_EXT_QUEUE_MAX_BYTES", "lots"),
    ("OTEL_EXT_QUEUE_FSYNC", "sometimes"),
    ("OTEL_EXT_QUEUE_INSECURE_DIR", "maybe"),
    ("OTEL_EXT_BACKENDS", "mq://broker:9092"),
    # processing
    ("OTEL_EXT_PROCESSING", "lazy"),
    ("OTEL_EXT_BUFFER_SIZE", "0"),
    ("OTEL_EXT_OVERLOAD", "panic"),
    ("OTEL_EXT_ON_CONFIG_ERROR", "ignore"),
    ("OTEL_EXT_CONFIG_FILE", "/nonexistent/otel-ext.yaml"),
    # classification / volume / detection
    ("OTEL_EXT_RULES_FILE", "/nonexistent/rules.yaml"),
    ("OTEL_EXT_SAMPLE", "access=lots"),
    ("OTEL_EXT_MIN_SEVERITY", "application=LOUD"),
    ("OTEL_EXT_DETECTORS", "no_such_detector=on"),
    ("OTEL_EXT_ALERT_WEBHOOK", "ftp://hooks.example/secret-token"),
    # usage metrics
    ("OTEL_EXT_USAGE_METRICS", "maybe"),
    ("OTEL_EXT_USAGE_TOP_N", "many"),
    # the SDK's variables we interpret
    ("OTEL_BLRP_SCHEDULE_DELAY", "soon"),
    ("OTEL_BLRP_MAX_EXPORT_BATCH_SIZE", "-3"),
]


@pytest.mark.parametrize(("name", "value"), BAD_VALUES, ids=[n for n, _ in BAD_VALUES])
def test_a_wrong_value_gives_one_config_error_naming_the_variable(
        name: str, value: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert name in NAMES
    for var in NAMES:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    monkeypatch.setenv("OTEL_EXT_BACKENDS", f"file://{tmp_path / 'out'}")
    monkeypatch.setenv(name, value)
    with pytest.raises(ConfigError) as info:
        otel_ext.configure()
    message = str(info.value)
    assert type(info.value) is ConfigError and name in message and "\n" not in message, message
    assert otel_ext.current_pipeline() is None or otel_ext.current_pipeline().closed  # nothing started
    if name == "OTEL_EXT_ALERT_WEBHOOK":
        assert "secret-token" not in message  # a webhook URL is a secret


@pytest.mark.parametrize(("env", "named"), [
    ({"OTEL_EXT_ES_USERNAME": "u"}, "OTEL_EXT_ES_PASSWORD"),
    ({"OTEL_EXT_ES_CLOUD_ID": "c:abc"}, "OTEL_EXT_ES_CLOUD_ID"),
    ({"OTEL_EXPORTER_OTLP_COMPRESSION": "br"}, "OTEL_EXPORTER_OTLP_COMPRESSION"),
    ({"OTEL_EXPORTER_OTLP_LOGS_COMPRESSION": "zstd"}, "OTEL_EXPORTER_OTLP_LOGS_COMPRESSION"),
    ({"OTEL_EXPORTER_OTLP_HEADERS": "no-equals-sign"}, "OTEL_EXPORTER_OTLP_HEADERS"),
])
def test_backend_variables_are_read_through_settings_and_named(env: dict[str, str], named: str) -> None:
    from otel_ext.backends.urls import backend_from_url

    url = "elasticsearch+http://127.0.0.1:9" if next(iter(env)).startswith("OTEL_EXT_ES") else "otlp+grpc://127.0.0.1:9"
    with pytest.raises(ValueError, match=named) as info:  # BackendConfigError or ConfigError, both ValueErrors
        backend_from_url(url, env=env)
    assert "\n" not in str(info.value)


def test_a_file_value_is_named_by_its_file_and_key(tmp_path: Path) -> None:
    config = tmp_path / "otel-ext.yaml"
    config.write_text("buffer_size: -4\n")
    with pytest.raises(ConfigError, match=rf"{re.escape(str(config))}: buffer_size: expected a positive integer"):
        load_settings({"OTEL_EXT_CONFIG_FILE": str(config)})


def test_an_explicit_argument_wins_and_its_variable_is_not_read() -> None:
    env = {"OTEL_EXT_TIMEOUT": "soon", "OTEL_EXT_FAILOVER_POLICY": "bogus", "OTEL_EXT_BUFFER_SIZE": "7"}
    settings = load_settings(env, timeout=3.0, failover_policy="replicate")
    assert settings.timeout == 3.0 and settings.failover_policy == "replicate" and settings.buffer_size == 7
    assert settings.source("buffer_size") == "OTEL_EXT_BUFFER_SIZE"
    assert settings.source("timeout") == "configure(timeout=...)"
    assert explicit_or_env(9.5, "OTEL_EXT_TIMEOUT", env) == 9.5
    with pytest.raises(ConfigError, match="OTEL_EXT_TIMEOUT"):
        explicit_or_env(None, "OTEL_EXT_TIMEOUT", env)
    # an explicit value is checked too, and named as such
    with pytest.raises(ConfigError, match=r"configure\(buffer_size=...\)"):
        load_settings({}, buffer_size=-1)


def test_defaults_of_the_table_are_the_defaults_of_settings() -> None:
    """The README table shows VARIABLES' defaults; Settings() must use the same ones."""
    defaults = settings_module.Settings()
    for var in VARIABLES:
        if var.key and var.key != "backends":
            assert getattr(defaults, var.key) == var.default, var.name
        if var.default is not None and var.default != "" and var.kind not in ("path",):
            assert var.convert(var.default) == var.default or var.kind in ("urls", "list"), var.name


# --- documentation generated from / checked against the module -------------------------------

def test_readme_table_is_generated_from_the_settings_module() -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    block = re.search(r"<!-- settings-table:begin -->\n(.*?)\n<!-- settings-table:end -->", readme, re.S)
    assert block, "README.md lost its settings-table markers"
    assert block[1] == settings_module.markdown_table(), "regenerate it: python -m otel_ext.settings"


def test_every_otel_ext_variable_the_readme_names_exists() -> None:
    """…and vice versa (the table above): no README variable is a typo or a removed one. Variables of
    the collector configs are read by the collector, and two by the test harness."""
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    collector = set()
    for path in [*(ROOT / "collector_configs").rglob("*.yaml"), PACKAGE / "collector" / "templates.py"]:
        collector |= set(re.findall(r"\$\{env:(OTEL_EXT_[A-Z0-9_]+)", path.read_text(encoding="utf-8")))
    harness = {"OTEL_EXT_PEERS_CACHE": "collector.py", "OTEL_EXT_SKIP_KAFKA_CLUSTER": "test_kafka_cluster.py"}
    for name, user in harness.items():  # read by the test harness, not by otel_ext
        assert name in (ROOT / "tests" / user).read_text(encoding="utf-8"), (name, user)
    named = set(re.findall(r"\bOTEL_EXT_[A-Z0-9_]*[A-Z0-9]\b", readme))
    assert named - NAMES - collector - set(harness) == set()


def test_architecture_names_only_declared_variables() -> None:
    text = (ROOT / "docs" / "architecture.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| `(OTEL_[A-Z0-9_]+)`", text, re.M)
    assert rows and set(rows) - NAMES == set()
