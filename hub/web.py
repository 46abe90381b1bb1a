"""The hub's HTTP endpoint: Prometheus ``/metrics``, the status page and ``/status.json``.

One small threaded ``http.server``; ``/metrics`` is prometheus_client's own
``MetricsHandler``, so the exposition (formats, compression) is the library's.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from html import escape
from http.server import ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import urlparse

from prometheus_client import MetricsHandler

from hub.status import COLUMNS, summary

log = logging.getLogger(__name__)

REFRESH_SECONDS = 5

PAGE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="refresh" content="{refresh}">
<title>Exchange hub status</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 1.5rem; color: #1f2933; background: #f5f7fa; }}
h1 {{ font-size: 1.5rem; margin: 0 0 .5rem; }}
p {{ color: #52606d; }}
table {{ border-collapse: collapse; background: #fff; box-shadow: 0 1px 3px #0002; font-size: .9rem; }}
th, td {{ padding: .45rem .7rem; border-bottom: 1px solid #e4e7eb; text-align: right; }}
th {{ background: #243b53; color: #fff; font-weight: 600; vertical-align: bottom; max-width: 7rem; }}
td {{ white-space: nowrap; }}
th:first-child, td:first-child {{ text-align: left; }}
td:first-child {{ font-family: ui-monospace, monospace; }}
td.yes {{ color: #0e7c3a; font-weight: 600; }}
td.no {{ color: #c81e1e; font-weight: 600; }}
</style>
</head>
<body>
<h1>Exchange hub</h1>
<p>{summary} &middot; refreshes every {refresh} s &middot; <a href="/status.json">JSON</a> &middot; <a href="/metrics">metrics</a></p>
<table id="agencies">
<thead><tr>{headers}</tr></thead>
<tbody>
{rows}
</tbody>
</table>
</body>
</html>
"""


def page(result: dict[str, Any]) -> str:
    """The HTML status page of a status report."""
    headers = "".join(f"<th>{escape(header)}</th>" for header, _ in COLUMNS)
    rows = "\n".join(_row(r) for r in result["agencies"]) or (
        f'<tr><td colspan="{len(COLUMNS)}">No agency has published yet.</td></tr>'
    )
    return PAGE.format(refresh=REFRESH_SECONDS, summary=escape(summary(result)), headers=headers, rows=rows)


def _row(row: dict[str, Any]) -> str:
    cells = []
    for _, show in COLUMNS:
        text = show(row)
        css = f' class="{text}"' if text in ("yes", "no") else ""
        cells.append(f"<td{css}>{escape(text)}</td>")
    return f'<tr data-agency="{escape(row["agency"])}">{"".join(cells)}</tr>'


class _Handler(MetricsHandler):
    status: Callable[[], dict[str, Any]]

    def do_GET(self) -> None:
        path = urlparse(self.path).path
        if path == "/metrics":
            super().do_GET()
        elif path in ("/", "/status", "/status.json"):
            try:
                result = self.status()
            except Exception:
                log.exception("cannot build the status report")
                self._send(500, "text/plain; charset=utf-8", b"status unavailable; see the hub's log\n")
                return
            if path == "/status.json":
                self._send(200, "application/json", json.dumps(result, ensure_ascii=False).encode())
            else:
                self._send(200, "text/html; charset=utf-8", page(result).encode())
        else:
            self._send(404, "text/plain; charset=utf-8", b"not found: try /status, /status.json or /metrics\n")

    def _send(self, code: int, content_type: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def serve(address: str, port: int, status: Callable[[], dict[str, Any]]) -> ThreadingHTTPServer | None:
    """Serve ``/metrics``, ``/status`` (also ``/``) and ``/status.json`` on
    ``address:port`` in a background thread; None when port is 0.
    ``status()`` gives the report; stop with ``shutdown()``."""
    if not port:
        return None
    family = socket.getaddrinfo(address, port, type=socket.SOCK_STREAM)[0][0]
    server_class = type("HubHTTPServer", (ThreadingHTTPServer,), {"address_family": family})
    handler = type("HubHandler", (_Handler,), {"status": staticmethod(status)})
    server = server_class((address, port), handler)
    threading.Thread(target=server.serve_forever, name="hub-http", daemon=True).start()
    return server
