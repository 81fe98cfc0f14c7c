"""A minimal WSGI app for gunicorn sync workers: one stdlib log record per request."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Iterable
from typing import Any

logging.getLogger().setLevel(logging.INFO)
log = logging.getLogger("wsgi.app")


def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
    path = environ.get("PATH_INFO", "/")
    status = 403 if path.startswith("/admin") else 200
    log.info("%s %s %d", environ["REQUEST_METHOD"], path, status,
             extra={"http.request.method": environ["REQUEST_METHOD"], "url.path": path, "http.route": path,
                    "http.response.status_code": status, "worker.pid": os.getpid(),
                    "request.seq": int(environ.get("HTTP_X_SEQ", "-1"))})
    start_response(f"{status} {'OK' if status == 200 else 'Forbidden'}", [("Content-Type", "text/plain")])
    return [b"ok\n"]
