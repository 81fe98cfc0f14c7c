"""Traffic generator for the example service: a realistic mix (browsing, orders, logins that
succeed and fail, admin probing, rate-limit bursts, slow reports, errors, invalid input) and a
burst of failed logins against one account from one source.

    python -m examples.api_service.traffic --url http://127.0.0.1:8000 --requests 400
"""

from __future__ import annotations

import argparse
import json
import random
from collections import Counter

import urllib3


def run(url: str, requests: int, seed: int = 1, burst: bool = True) -> Counter[int]:
    rnd = random.Random(seed)
    http = urllib3.PoolManager(retries=False, timeout=urllib3.Timeout(connect=2, read=10))
    statuses: Counter[int] = Counter()

    def call(method: str, path: str, body: dict[str, object] | None = None, **headers: str) -> None:
        hdrs = {"User-Agent": "shop-traffic/1.0", **{k.replace("_", "-"): v for k, v in headers.items()}}
        data = json.dumps(body).encode() if body is not None else None
        if data is not None:
            hdrs["Content-Type"] = "application/json"
        resp = http.request(method, url + path, body=data, headers=hdrs)
        statuses[resp.status] += 1

    for i in range(requests):
        client = f"198.51.100.{rnd.randint(1, 40)}"
        p = rnd.random()
        if burst and i == requests // 3:  # credential stuffing against one account
            for _ in range(12):
                call("POST", "/api/login", {"username": "admin", "password": f"guess{rnd.randint(0, 9999)}"},
                     x_forwarded_for="203.0.113.66")
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
    args = parser.parse_args()
    print(dict(sorted(run(args.url.rstrip("/"), args.requests, args.seed).items())))


if __name__ == "__main__":
    main()
