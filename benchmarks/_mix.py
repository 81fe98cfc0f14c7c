"""A realistic mix of API-service log events, shared by the benchmarks."""

from __future__ import annotations

import logging
import random
from collections.abc import Callable

Event = Callable[[], None]


def _failing_handler() -> None:
    def load_cart(cart_id: int) -> dict[str, int]:
        raise KeyError(f"cart {cart_id} vanished")

    load_cart(42)


def make_events(seed: int = 7, exceptions: bool = False) -> list[Event]:
    """2,000 events: ~70 % access (incl. uvicorn lines), ~10 % 4xx (401 on /login, 403, 422, 429),
    ~3 % 5xx, ~5 % slow, ~12 % app messages, ~5 % warnings carrying secrets. ``exceptions``: each
    5xx is logged with a real traceback (``exc_info``), as an API framework does."""
    rnd = random.Random(seed)
    app = logging.getLogger("shop.api")
    access = logging.getLogger("uvicorn.access")
    routes = ["/api/orders", "/api/orders/{id}", "/api/items", "/api/cart", "/api/login", "/api/admin/users"]

    def req(status: int, route: str, method: str = "GET", dur: float = 0.02) -> Event:
        extra = {
            "http.request.method": method,
            "http.route": route,
            "url.path": route.replace("{id}", str(rnd.randint(1, 99999))),
            "http.response.status_code": status,
            "client.address": f"10.0.{rnd.randint(0, 255)}.{rnd.randint(1, 254)}",
            "user.id": f"user{rnd.randint(1, 500)}",
            "user_agent.original": "Mozilla/5.0 (X11; Linux x86_64)",
            "http.server.request.duration": dur,
        }
        if exceptions and status >= 500:
            def failed() -> None:
                try:
                    _failing_handler()
                except KeyError:
                    app.error("request failed", exc_info=True, extra=extra)
            return failed
        return lambda: app.info("request completed", extra=extra)

    events: list[Event] = []
    for _ in range(2000):
        p = rnd.random()
        if p < 0.55:
            events.append(req(200, rnd.choice(routes[:4])))
        elif p < 0.62:
            line = (f'10.1.2.{rnd.randint(1, 254)}:{rnd.randint(1024, 65000)} - "GET /api/items?page='
                    f'{rnd.randint(1, 9)} HTTP/1.1" 200')
            events.append(lambda line=line: access.info(line))
        elif p < 0.67:
            events.append(req(401, "/api/login", "POST"))
        elif p < 0.70:
            events.append(req(403, "/api/admin/users"))
        elif p < 0.72:
            events.append(req(429, "/api/orders"))
        elif p < 0.75:
            events.append(req(422, "/api/orders", "POST"))
        elif p < 0.78:
            events.append(req(500, "/api/cart", "POST"))
        elif p < 0.83:
            events.append(req(200, "/api/orders", dur=1.8))
        elif p < 0.95:
            n = rnd.randint(1, 9999)
            events.append(lambda n=n: app.info("cache refreshed for tenant %d in %d ms", n, n % 97))
        else:
            events.append(lambda: app.warning("upstream call failed password=hunter2 token=abcd1234efgh"))
    return events


def make_scanner_events(seed: int = 11) -> list[Event]:
    """A scanner-heavy mix: a third attack payloads in access lines (CRS regression payloads), a
    tenth probes of sensitive paths and attack-tool user agents, the rest ordinary traffic."""
    import json
    from pathlib import Path

    rnd = random.Random(seed)
    access = logging.getLogger("gunicorn.access")
    corpus = Path(__file__).resolve().parents[1] / "tests" / "attack_corpus" / "crs.jsonl"
    uris = [row["uri"] for row in map(json.loads, corpus.read_text().splitlines())
            if row["expect"] and " " not in row["uri"] and '"' not in row["uri"]]
    probes = ["/.env", "/.git/config", "/wp-login.php", "/phpmyadmin/index.php", "/backup.zip", "/server-status"]
    agents = ["Mozilla/5.0 (X11; Linux x86_64)", "sqlmap/1.7.2#stable",
              "Mozilla/5.0 (compatible; Nmap Scripting Engine)", "Mozilla/5.0 (compatible; w3af.org)"]
    ordinary = make_events(seed)
    events: list[Event] = []
    for _ in range(2000):
        p = rnd.random()
        client = f"203.0.113.{rnd.randint(1, 20)}"
        if p < 0.33:
            uri, status, agent = rnd.choice(uris), rnd.choice([200, 403, 404]), agents[0]
        elif p < 0.43:
            uri, status, agent = rnd.choice(probes), 404, rnd.choice(agents)
        else:
            events.append(rnd.choice(ordinary))
            continue
        line = f'{client} - - [26/Nov/2026:10:00:00 +0000] "GET {uri} HTTP/1.1" {status} 0 "-" "{agent}"'
        events.append(lambda line=line: access.info(line))
    return events
