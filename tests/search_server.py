"""Real search servers for tests: the OpenSearch 2.19.4 and Elasticsearch 8.17.0 "integ-test"
distributions from Maven Central, started on 127.0.0.1 with free ports, as an unprivileged user
(both refuse to run as root), 512 MB heap, single node.

OpenSearch comes with its security plugin (``org.opensearch.plugin:opensearch-security``, whose
newest 2.19 build on Maven Central is 2.19.4.0 — hence 2.19.4) and the plugin's demo configuration
(demo TLS certificates, internal users): ``SearchServer("opensearch", secure=True)`` serves HTTPS
with basic authentication, otherwise the plugin is disabled and the server speaks plain HTTP. The
Elasticsearch integ-test build has no security module at all (plain HTTP only).

``ensure_distribution()`` fetches and unpacks them under the git-ignored ``.peers/`` with Maven;
Java 17 (and Java 25, for Elasticsearch 9) come with this machine kind.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import urllib3
from peers import free_port, kill_process, stop_process, wait_until

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / ".peers"
USER = "otelext-search"
SECURITY_PLUGIN = "org.opensearch.plugin:opensearch-security:2.19.4.0:zip"
# the demo configuration's admin account (a loopback test server; the script demands a strong one)
ADMIN = ("admin", "Otel-Ext_Test#2026")
_SECURE_SETTINGS = """\
plugins.security.ssl.transport.pemcert_filepath: esnode.pem
plugins.security.ssl.transport.pemkey_filepath: esnode-key.pem
plugins.security.ssl.transport.pemtrustedcas_filepath: root-ca.pem
plugins.security.ssl.transport.enforce_hostname_verification: false
plugins.security.ssl.http.enabled: true
plugins.security.ssl.http.pemcert_filepath: esnode.pem
plugins.security.ssl.http.pemkey_filepath: esnode-key.pem
plugins.security.ssl.http.pemtrustedcas_filepath: root-ca.pem
plugins.security.allow_unsafe_democertificates: true
plugins.security.allow_default_init_securityindex: true
plugins.security.authcz.admin_dn: ['CN=kirk,OU=client,O=client,L=test,C=de']
plugins.security.restapi.roles_enabled: [all_access, security_rest_api_access]
plugins.security.audit.type: noop
"""
FLAVOURS = {
    "opensearch": ("org.opensearch.distribution.integ-test-zip", "2.19.4", "OPENSEARCH"),
    "elasticsearch": ("org.elasticsearch.distribution.integ-test-zip", "8.17.0", "ES"),
}
# further versions the tests also run against (fetched by prepare_peers.py); Elasticsearch 9 needs Java 21+
EXTRA_VERSIONS = {"elasticsearch": ("9.2.0",)}


def _java_major(home: Path) -> int | None:
    """The feature version of the JDK at ``home`` (from its ``release`` file, else ``java -version``)."""
    release = home / "release"
    text = ""
    if release.is_file():
        text = release.read_text(errors="replace")
    elif (home / "bin" / "java").exists():
        done = subprocess.run([str(home / "bin" / "java"), "-version"], capture_output=True, text=True, timeout=30)
        text = done.stderr
    match = re.search(r'version[ =]"(\d+)(?:\.(\d+))?', text, re.IGNORECASE)
    if match is None:
        return None
    major = int(match.group(1))
    return int(match.group(2) or 0) if major == 1 else major  # "1.8.0" -> 8


def _java_candidates() -> list[Path]:
    found: list[Path] = []
    if os.environ.get("JAVA_HOME"):
        found.append(Path(os.environ["JAVA_HOME"]))
    jvm = Path("/usr/lib/jvm")
    if jvm.is_dir():
        found.extend(sorted(p for p in jvm.iterdir() if p.is_dir()))
    java = shutil.which("java")
    if java is not None:
        found.append(Path(java).resolve().parents[1])
    unique: dict[Path, Path] = {}
    for home in found:
        unique.setdefault(home.resolve(), home)
    return list(unique.values())


def java_home(major: int = 17) -> str:
    """A JDK of at least ``major`` (the lowest such: the search servers are tested on what their
    vendors support), looked up in ``JAVA_HOME``, ``/usr/lib/jvm/*`` and ``java`` on PATH."""
    best: tuple[int, Path] | None = None
    seen: list[str] = []
    for home in _java_candidates():
        version = _java_major(home) if (home / "bin" / "java").exists() else None
        if version is None:
            continue
        seen.append(f"{home} ({version})")
        if version >= major and (best is None or version < best[0]):
            best = (version, home)
    if best is None:
        raise RuntimeError(f"no Java {major}+ found (JAVA_HOME, /usr/lib/jvm/*, PATH; saw: {', '.join(seen) or 'none'})"
                           f" - install e.g. Debian's openjdk-{max(major, 17)}-jdk-headless")
    return str(best[1])


def _mvn_copy(artifact: str, directory: Path) -> None:
    """Fetch one artifact from Maven Central, quietly (no colour codes, no progress lines); Maven's
    own output is shown only when it fails."""
    if shutil.which("mvn") is None:
        raise RuntimeError("Maven (mvn) not found: the search servers come from Maven Central - install Debian's maven")
    done = subprocess.run(["mvn", "-q", "-B", "-ntp", "-Dstyle.color=never", "dependency:copy",
                           f"-Dartifact={artifact}", f"-DoutputDirectory={directory}"],
                          capture_output=True, text=True, timeout=600, env={**os.environ, "MAVEN_OPTS":
                          os.environ.get("MAVEN_OPTS", "") + " -Djansi.force=false"})
    if done.returncode != 0:
        raise RuntimeError(f"mvn could not fetch {artifact}:\n{done.stdout[-3000:]}{done.stderr[-2000:]}")


def _install_security(home: Path, download: Path) -> None:
    """The security plugin and its demo configuration (certificates, users) into an unpacked OpenSearch."""
    _mvn_copy(SECURITY_PLUGIN, download)
    zip_name = "opensearch-security-" + SECURITY_PLUGIN.split(":")[2] + ".zip"
    env = {"PATH": os.environ.get("PATH", ""), "JAVA_HOME": java_home(), "OPENSEARCH_JAVA_HOME": java_home()}
    tool = home / "plugins" / "opensearch-security" / "tools" / "install_demo_configuration.sh"
    for command, extra in (([str(home / "bin" / "opensearch-plugin"), "install", "--batch",
                             f"file://{download / zip_name}"], {}),
                           (["bash", str(tool), "-y", "-i", "-s"], {"OPENSEARCH_INITIAL_ADMIN_PASSWORD": ADMIN[1]})):
        done = subprocess.run(command, timeout=300, env={**env, **extra}, capture_output=True, text=True)
        if done.returncode != 0:
            raise RuntimeError(f"{command[-1]} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")


def ensure_distribution(flavour: str = "opensearch", version: str | None = None) -> Path:
    group, default_version, _ = FLAVOURS[flavour]
    version = version or default_version
    home = PEERS / f"{flavour}-{version}"
    if (home / ".otel-ext-ready").exists():
        return home
    PEERS.mkdir(exist_ok=True)
    download = PEERS / "downloads"
    _mvn_copy(f"{group}:{flavour}:{version}:zip", download)
    unpack = PEERS / f"unpack-{flavour}-{version}"
    shutil.rmtree(unpack, ignore_errors=True)
    shutil.rmtree(home, ignore_errors=True)
    with zipfile.ZipFile(download / f"{flavour}-{version}.zip") as archive:
        archive.extractall(unpack)
    shutil.move(str(unpack / f"{flavour}-{version}"), home)
    shutil.rmtree(unpack, ignore_errors=True)
    for path in (home / "bin").iterdir():
        path.chmod(0o755)
    if flavour == "opensearch":
        _install_security(home, download)
    for path in [home, *home.rglob("*")]:  # readable by the unprivileged server user
        path.chmod(path.stat().st_mode | 0o044 | (0o011 if path.is_dir() else 0))
    (home / ".otel-ext-ready").touch()
    return home


def ensure_es_client_8() -> Path:
    """The official ``elasticsearch`` client 8.x (the venv has 9.x) in its own directory, to put first
    on PYTHONPATH of a subprocess: the backend must work with both majors."""
    target = PEERS / "es-client-8"
    if (target / ".otel-ext-ready").exists():
        return target
    shutil.rmtree(target, ignore_errors=True)
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--target", str(target), "elasticsearch>=8.13,<9"],
                   check=True, timeout=600)
    (target / ".otel-ext-ready").touch()
    return target


def _run_as() -> tuple[int, int] | None:
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(USER)
    except KeyError:
        subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", USER], check=True)
        entry = pwd.getpwnam(USER)
    return entry.pw_uid, entry.pw_gid


class SearchServer:
    def __init__(self, flavour: str = "opensearch", secure: bool = False, version: str | None = None) -> None:
        if secure and flavour != "opensearch":
            raise ValueError("only the OpenSearch test build has a security plugin")
        self.flavour = flavour
        self.secure = secure
        self.version = version or FLAVOURS[flavour][1]
        self.home = ensure_distribution(flavour, self.version)
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="otel-ext-search-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.secure else 'http'}://127.0.0.1:{self.port}"

    @property
    def ca_file(self) -> Path:
        """The demo root CA that signed the secured server's certificate."""
        return self.workdir / "config" / "root-ca.pem"

    def start(self) -> SearchServer:
        conf = self.workdir / "config"
        if not conf.exists():  # first start (a restart after kill() keeps config and data)
            shutil.copytree(self.home / "config", conf)
            (conf / f"{self.flavour}.yml").write_text(
                "cluster.name: otel-ext-test\nnode.name: node-1\nnetwork.host: 127.0.0.1\n"
                f"http.port: {self.port}\ntransport.port: {free_port()}\ndiscovery.type: single-node\n"
                f"path.data: {self.workdir / 'data'}\npath.logs: {self.workdir / 'logs'}\n"
                "cluster.routing.allocation.disk.threshold_enabled: false\naction.auto_create_index: true\n"
                "action.destructive_requires_name: false\n"  # tests empty the server between cases
                # Elasticsearch 8 would auto-configure TLS + auth on first start: a loopback test server
                # runs plain HTTP (TLS: the secured OpenSearch, and a TLS terminator in front)
                + ("xpack.security.enabled: false\n" if self.flavour == "elasticsearch"
                   else _SECURE_SETTINGS if self.secure else "plugins.security.disabled: true\n"))
            jvm = conf / "jvm.options"  # its log/dump paths are relative to the distribution: point them here
            jvm.write_text(jvm.read_text().replace("file=logs/", f"file={self.workdir}/logs/")
                           .replace("-XX:HeapDumpPath=data", f"-XX:HeapDumpPath={self.workdir}/data")
                           .replace("-XX:ErrorFile=logs/", f"-XX:ErrorFile={self.workdir}/logs/"))
        owner = _run_as()
        for sub in ("logs", "data"):  # jvm.options writes logs/gc.log and heap dumps relative to cwd
            (self.workdir / sub).mkdir(exist_ok=True)
        for path in [self.workdir, *self.workdir.rglob("*")]:
            if owner:
                os.chown(path, *owner)
        # the distribution itself must be readable (and its logs/ and jdk dirs usable) by that user
        os.chmod(self.workdir, 0o755)
        prefix = FLAVOURS[self.flavour][2]
        java = java_home(21 if self.flavour == "elasticsearch" and int(self.version.split(".")[0]) >= 9 else 17)
        env = {"PATH": os.environ.get("PATH", ""), "JAVA_HOME": java, f"{prefix}_JAVA_HOME": java,
               f"{prefix}_PATH_CONF": str(conf), f"{prefix}_JAVA_OPTS": "-Xms512m -Xmx512m",
               "HOME": str(self.workdir)}
        log = (self.workdir / "server.out").open("wb")
        self.proc = subprocess.Popen([str(self.home / "bin" / self.flavour)], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
                                     user=owner[0] if owner else None, group=owner[1] if owner else None)
        http = urllib3.PoolManager(retries=False, ca_certs=str(self.ca_file) if self.secure else None)
        headers = urllib3.make_headers(basic_auth=":".join(ADMIN)) if self.secure else {}

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.flavour} exited:\n{(self.workdir / 'server.out').read_text()[-3000:]}")
            try:
                r = http.request("GET", self.url + "/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=2,
                                 headers=headers)
                return r.status == 200
            except urllib3.exceptions.HTTPError:
                return False

        if not wait_until(ready, 180, interval=0.5):
            raise RuntimeError(f"{self.flavour} did not start:\n{(self.workdir / 'server.out').read_text()[-3000:]}")
        return self

    def kill(self) -> None:
        """kill -9 (the data directory stays: start() again restarts the same node on the same port)."""
        kill_process(self.proc)

    def stop(self) -> None:
        stop_process(self.proc)
        shutil.rmtree(self.workdir, ignore_errors=True)


if __name__ == "__main__":  # fetch the distributions ahead of a test run
    for name in FLAVOURS:
        print(f"{name} ready under {ensure_distribution(name)}", file=sys.stderr)
        for extra in EXTRA_VERSIONS.get(name, ()):
            print(f"{name} {extra} ready under {ensure_distribution(name, extra)}", file=sys.stderr)
    print(f"elasticsearch client 8.x under {ensure_es_client_8()}", file=sys.stderr)
