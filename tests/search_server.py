"""A real search server for tests: the OpenSearch 2.19.6 "integ-test" distribution from Maven
Central (no security plugin: plain HTTP), started once per test session on 127.0.0.1 with free
ports, as an unprivileged user (OpenSearch refuses to run as root), 512 MB heap, single node.

``ensure_distribution()`` fetches and unpacks it under the git-ignored ``.peers/`` (``.ci/run``
calls it too); Java 17 comes with this machine kind.
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
VERSION = "2.19.6"
ARTIFACT = f"org.opensearch.distribution.integ-test-zip:opensearch:{VERSION}:zip"
PEERS = ROOT / ".peers"
HOME = PEERS / f"opensearch-{VERSION}"
USER = "otelext-search"


def java_home() -> str:
    for candidate in ("/usr/lib/jvm/java-17-openjdk-amd64", "/usr/lib/jvm/openjdk-17"):
        if Path(candidate, "bin", "java").exists():
            return candidate
    java = shutil.which("java")
    if java is None:
        raise RuntimeError("no Java found: OpenSearch 2.19 needs Java 17")
    return str(Path(java).resolve().parents[1])


def ensure_distribution() -> Path:
    if (HOME / "bin" / "opensearch").exists():
        return HOME
    PEERS.mkdir(exist_ok=True)
    download = PEERS / "downloads"
    subprocess.run(["mvn", "-q", "dependency:copy", f"-Dartifact={ARTIFACT}", f"-DoutputDirectory={download}"],
                   check=True, timeout=600)
    with zipfile.ZipFile(download / f"opensearch-{VERSION}.zip") as archive:
        archive.extractall(PEERS / "unpack")
    shutil.move(str(PEERS / "unpack" / f"opensearch-{VERSION}"), HOME)
    shutil.rmtree(PEERS / "unpack", ignore_errors=True)
    for path in (HOME / "bin").iterdir():
        path.chmod(0o755)
    return HOME


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
    def __init__(self) -> None:
        self.home = ensure_distribution()
        self.port = free_port()
        self.workdir = Path(tempfile.mkdtemp(prefix="otel-ext-search-"))
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> SearchServer:
        conf = self.workdir / "config"
        shutil.copytree(self.home / "config", conf)
        (conf / "opensearch.yml").write_text(
            "cluster.name: otel-ext-test\nnode.name: node-1\nnetwork.host: 127.0.0.1\n"
            f"http.port: {self.port}\ntransport.port: {free_port()}\ndiscovery.type: single-node\n"
            f"path.data: {self.workdir / 'data'}\npath.logs: {self.workdir / 'logs'}\n"
            "cluster.routing.allocation.disk.threshold_enabled: false\naction.auto_create_index: true\n")
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
        env = {"PATH": os.environ.get("PATH", ""), "JAVA_HOME": java_home(), "OPENSEARCH_JAVA_HOME": java_home(),
               "OPENSEARCH_PATH_CONF": str(conf), "OPENSEARCH_JAVA_OPTS": "-Xms512m -Xmx512m",
               "HOME": str(self.workdir)}
        log = (self.workdir / "server.out").open("wb")
        self.proc = subprocess.Popen([str(self.home / "bin" / "opensearch")], env=env, stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
                                     user=owner[0] if owner else None, group=owner[1] if owner else None)
        http = urllib3.PoolManager(retries=False)

        def ready() -> bool:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"OpenSearch exited:\n{(self.workdir / 'server.out').read_text()[-3000:]}")
            try:
                r = http.request("GET", self.url + "/_cluster/health?wait_for_status=yellow&timeout=1s", timeout=2)
                return r.status == 200
            except urllib3.exceptions.HTTPError:
                return False

        if not wait_until(ready, 180, interval=0.5):
            raise RuntimeError(f"OpenSearch did not start:\n{(self.workdir / 'server.out').read_text()[-3000:]}")
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


if __name__ == "__main__":  # used by .ci/run to fetch the distribution before the tests
    ensure_distribution()
    print(f"OpenSearch {VERSION} ready under {HOME}", file=sys.stderr)
