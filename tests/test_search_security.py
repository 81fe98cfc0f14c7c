"""Credentials and TLS against real servers.

- OpenSearch 2.19.4 with its security plugin (HTTPS with the plugin's demo certificates, internal
  users, roles) through opensearch-py: basic auth over verified TLS, an unknown CA, a wrong password,
  and a user who lacks the privilege for one index (per-item 403).
- The Elasticsearch flavour (official client) over TLS through a TLS terminator in front of the real
  Elasticsearch 8.17: its integ-test build has no security module, so the credentials the client
  sends (API key, basic; Cloud ID + API key) are checked on the wire by the loopback proxy behind
  the terminator.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
import urllib3
from es_proxy import EsProxy
from exporter_harness import make_app, queued_records
from faults import TlsProxy
from opentelemetry._logs import SeverityNumber
from opentelemetry.proto.collector.logs.v1.logs_service_pb2 import ExportLogsServiceRequest
from peers import collect
from search_server import ADMIN

from otel_ext.backends import backend_from_url
from otel_ext.backends.base import Backend
from otel_ext.backends.outcome import OutcomeKind

pytestmark = pytest.mark.peers
SHIPPER = ("shipper", "Sh1p-Logs_Quickly!")  # may write logs-* only
CLASSES = ["access", "security", "error"]


class Admin:
    def __init__(self, server: Any) -> None:
        self.url = server.url
        self.http = urllib3.PoolManager(retries=False, ca_certs=str(server.ca_file))
        self.headers = {**urllib3.make_headers(basic_auth=":".join(ADMIN)), "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: Any = None) -> Any:
        resp = self.http.request(method, self.url + path, body=json.dumps(body) if body is not None else None,
                                 headers=self.headers, timeout=30)
        assert resp.status < 300 or resp.status == 404, (path, resp.status, resp.data[:300])
        return json.loads(resp.data) if resp.data else {}

    def count(self, index: str) -> int:
        self.call("POST", f"/{index}/_refresh")
        return int(self.call("GET", f"/{index}/_count").get("count", 0))

    def grant_shipper(self, *patterns: str) -> None:
        self.call("PUT", "/_plugins/_security/api/roles/logs_writer", {
            "cluster_permissions": ["cluster_monitor", "indices:data/write/bulk"],
            "index_permissions": [{"index_patterns": list(patterns),
                                   "allowed_actions": ["create_index", "write", "indices:admin/mapping/put"]}]})


@pytest.fixture(scope="module")
def admin(secure_search_server: Any) -> Admin:
    a = Admin(secure_search_server)
    a.grant_shipper("logs-*")
    a.call("PUT", "/_plugins/_security/api/internalusers/shipper", {"password": SHIPPER[1], "backend_roles": []})
    a.call("PUT", "/_plugins/_security/api/rolesmapping/logs_writer", {"users": ["shipper"]})
    return a


def opensearch(server: Any, namespace: str, *, ca: bool = True, password: str = SHIPPER[1]) -> Backend:
    url = f"opensearch+https://127.0.0.1:{server.port}?name=os&namespace={namespace}&timeout=3s"
    if ca:
        url += f"&ca_file={server.ca_file}"
    return backend_from_url(url, env={"OTEL_EXT_ES_USERNAME": SHIPPER[0], "OTEL_EXT_ES_PASSWORD": password})


def one_record_payload() -> bytes:
    request = ExportLogsServiceRequest()
    request.resource_logs.add().scope_logs.add().log_records.add().body.string_value = "x"
    return bytes(request.SerializeToString())


def test_basic_auth_over_verified_tls_delivers_every_class(admin: Admin, secure_search_server: Any,
                                                          tmp_path: Path) -> None:
    app = make_app([opensearch(secure_search_server, "sec1")], tmp_path / "q")
    for event_class in CLASSES:
        app.emit(40, event_class=event_class)
    assert app.deliver(60)
    assert app.exporter.queue.dead_letters() == []
    app.close()
    assert [admin.count(f"logs-{c}-sec1") for c in CLASSES] == [40, 40, 40]


def test_unknown_certificate_authority_is_refused_and_data_kept(admin: Admin, secure_search_server: Any,
                                                                tmp_path: Path) -> None:
    backend = opensearch(secure_search_server, "sec2", ca=False)  # verification on, demo CA not trusted
    outcome = backend.send(one_record_payload(), 1)
    assert outcome.kind is OutcomeKind.RETRYABLE and "CERTIFICATE_VERIFY_FAILED" in outcome.message
    app = make_app([backend], tmp_path / "q", shutdown_timeout=0.2)
    app.emit(50)
    assert not app.deliver(3)
    app.close()
    assert queued_records(tmp_path / "q") == 50
    assert admin.count("logs-access-sec2") == 0


def test_wrong_password_is_an_auth_failure_that_fails_over(admin: Admin, secure_search_server: Any, receivers: Any,
                                                           tmp_path: Path) -> None:
    backend = opensearch(secure_search_server, "sec3", password="not-the-password")
    outcome = backend.send(one_record_payload(), 1)
    assert outcome.kind is OutcomeKind.AUTH and "401" in outcome.message
    assert "not-the-password" not in outcome.message
    rx = receivers("rx")
    app = make_app([backend, rx.grpc_url], tmp_path / "q")
    app.emit(120)
    assert app.deliver(30)
    app.close()
    assert len(set(collect(120, rx))) == 120
    assert admin.count("logs-access-sec3") == 0


def test_missing_index_privilege_keeps_the_entry_until_granted(admin: Admin, secure_search_server: Any,
                                                               tmp_path: Path) -> None:
    """Per-item 403 (no privilege on one index) is not a data error: nothing is dead-lettered, the
    entry waits, and once the operator grants the privilege every record lands exactly once."""
    app = make_app([opensearch(secure_search_server, "sec4")], tmp_path / "q", shutdown_timeout=0.2)
    logger = app.provider.get_logger("audit")
    for i in range(30):
        attributes: dict[str, Any] = {"labels.event_class": "security", "seq": i}
        if i % 3 == 0:
            attributes["elasticsearch.index"] = "audit-trail-sec4"  # outside logs-*: denied
        logger.emit(body=f"audit {i}", severity_number=SeverityNumber.WARN, attributes=attributes)
    try:
        assert not app.deliver(4)
        assert app.exporter.queue.dead_letters() == []
        assert queued_records(tmp_path / "q") == 30
        admin.grant_shipper("logs-*", "audit-trail-*")
        assert app.deliver(60)
        assert app.exporter.queue.dead_letters() == []
    finally:
        admin.grant_shipper("logs-*")
        app.close()
    assert admin.count("audit-trail-sec4") == 10
    assert admin.count("logs-security-sec4") == 20  # those created before the grant were not duplicated


@pytest.mark.parametrize("credentials", ["api_key", "basic", "cloud_id"])
def test_elasticsearch_client_over_tls_sends_the_configured_credentials(credentials: str, es_server: Any,
                                                                        pki: dict[str, str], tmp_path: Path) -> None:
    recorder = EsProxy(es_server.url)
    terminator = TlsProxy(recorder.port, pki["server.pem"], pki["server.key"])
    namespace = f"tls{credentials.replace('_', '')}"
    api_key = "a2V5LWlkOmtleS1zZWNyZXQ="
    env = {"OTEL_EXT_ES_API_KEY": api_key} if credentials != "basic" else {
        "OTEL_EXT_ES_USERNAME": "shipper", "OTEL_EXT_ES_PASSWORD": "s3cret"}
    url = f"elasticsearch+https://127.0.0.1:{terminator.port}?name=es&namespace={namespace}"
    if credentials == "basic":
        url += "&compression=gzip"
    if credentials == "cloud_id":
        # a Cloud ID names <es-uuid>.<domain>[:port] over HTTPS: "127" + "0.0.1" is this loopback terminator
        encoded = base64.b64encode(f"0.0.1:{terminator.port}$127$".encode()).decode()
        env["OTEL_EXT_ES_CLOUD_ID"] = f"otel-ext-test:{encoded}"
        url = f"elasticsearch+https://?name=es&namespace={namespace}"
    try:
        untrusted = backend_from_url(url + "&timeout=2s", env=env)
        assert untrusted.send(one_record_payload(), 1).kind is OutcomeKind.RETRYABLE  # verification on
        assert recorder.requests == 0
        app = make_app([backend_from_url(url + f"&ca_file={pki['ca.pem']}", env=env)], tmp_path / "q")
        app.emit(100)
        assert app.deliver(30)
        app.close()
    finally:
        terminator.close()
        recorder.close()
    expected = (f"ApiKey {api_key}" if credentials != "basic"
                else "Basic " + base64.b64encode(b"shipper:s3cret").decode())
    assert recorder.requests > 0 and set(recorder.authorization) == {expected}
    # gzip when asked for, and by the client's default for Elastic Cloud
    assert (recorder.gzipped > 0) == (credentials in ("basic", "cloud_id"))
    http = urllib3.PoolManager()
    http.request("POST", f"{es_server.url}/logs-access-{namespace}/_refresh")
    count = json.loads(http.request("GET", f"{es_server.url}/logs-access-{namespace}/_count").data)["count"]
    assert count == 100
