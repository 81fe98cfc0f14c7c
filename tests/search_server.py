"""Real search servers for tests: the OpenSearch 2.19.6 and Elasticsearch 8.17.0 "integ-test"
distributions from Maven Central (free modules only, no security: plain HTTP), started once per
test session on 127.0.0.1 with free ports, as an unprivileged user (both refuse to run as root),
512 MB heap, single node.

``ensure_distribution()`` fetches and unpacks them under the git-ignored ``.peers/`` with Maven;
Java 17 comes with this machine kind.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import urllib3
from peers import free_port, wait_until

ROOT = Path(__file__).resolve().parents[1]
PEERS = ROOT / ".peers"
USER = "otelext-search"
FLAVOURS = {
    "opensearch": ("org.opensearch.distribution.integ-test-zip", "2.19.6", "OPENSEARCH"),
    "elasticsearch": ("org.elasticsearch.distribution.integ-test-zip", "8.17.0", "ES"),
}


def java_home() -> str:
    for candidate in ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/openjdk-17"):
        if Path(candidate, "bin", "java").exists():
            return candidate
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("no Java found: OpenSearch 2.19 needs Java 17")
    return str(Path(java).resolve().parents[1])


def ensure_distribution(flavour: str = "opensearch") -> Path:
    group, version, _ = FLAVOURS[flavour]
    home = PEERS / f"{flavour}-{version}"
    if (home / "bin" / flavour).exists():
        return home
    PEERS.mkdir(exist_ok=True)
    download = PEERS / "downloads"
    subprocess.run(["mvn", "-q", "dependency:copy", f"-Dartifact={group}:{flavour}:{version}:zip",
                    f"-DoutputDirectory={download}"], check=True, timeout=600)
    unpack = PEERS / f"unpack-{flavour}"
    with zipfile.ZipFile(download / f"{flavour}-{version}.zip") as archive:
        archive.extractall(unpack)
    shutil.move(str(unpack / f"{flavour}-{version}"), home)
    shutil.rmtree(unpack, ignore_errors=True)
    for path in (home / "bin").iterdir():
        path.chmod(0o755)
    for path in [home, *home.rglob("*")]:  # readable by the unprivileged server user
        path.chmod(path.stat().st_mode | 0o044 | (0o011 if path.is_dir() else 0))
    return home


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
    def __init__(self, flavour: str = "opensearch") -> None:
        self.flavour = flavour
        self.version = FLAVOURS[flavour][1]
        self.home = ensure_distribution(flavour)
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="otel-ext-search-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SearchServer:
        conf = self.workdir / "config"
        shutil.copytree(self.home / "config", conf)
        (conf / f"{self.flavour}.yml").write_text(
            "cluster.name: otel-ext-test\nnode.name: node-1\nnetwork.host: 127.0.0.1\n"
            f"http.port: {self.port}\ntransport.port: {free_port()}\ndiscovery.type: single-node\n"
            f"path.data: {self.workdir / 'data'}\npath.logs: {self.workdir / 'logs'}\n"
            "cluster.routing.allocation.disk.threshold_enabled: false\naction.auto_create_index: true\n"
            "action.destructive_requires_name: false\n"  # tests empty the server between cases
            # Elasticsearch 8 would auto-configure TLS + auth on first start: a loopback test server
            # runs plain HTTP (TLS verification is tested on the OTLP path)
            + ("xpack.security.enabled: false\n"
               if self.flavour == "elasticsearch" else ""))
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
        env = {"PATH": os.environ.get("PATH", ""), "JAVA_HOME": java_home(), f"{prefix}_JAVA_HOME": java_home(),
               f"{prefix}_PATH_CONF": str(conf), f"{prefix}_JAVA_OPTS": "-Xms512m -Xmx512m",
               "HOME": str(self.workdir)}
        log = (self.workdir / "server.out").open("wb")
        self.proc = subprocess.Popen([str(self.home / "bin" / self.flavour)], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
                                     user=owner[0] if owner else None, group=owner[1] if owner else None)
        http = urllib3.PoolManager(retries=False)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"{self.flavour} exited:\n{(self.workdir / 'server.out').read_text()[-3000:]}")
            try:
                r = http.request("GET", self.url + "/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=2)
                return r.status == 200
            except urllib3.exceptions.HTTPError:
                return False

        if not wait_until(ready, 180, interval=0.5):
            raise RuntimeError(f"{self.flavour} did not start:\n{(self.workdir / 'server.out').read_text()[-3000:]}")
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(10)
        shutil.rmtree(self.workdir, ignore_errors=True)


if __name__ == "__main__":  # fetch the distributions ahead of a test run
    for name in FLAVOURS:
        print(f"{name} ready under {ensure_distribution(name)}", file=sys.stderr)
