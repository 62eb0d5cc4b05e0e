"""How many files a visitor may make the server store: uploads counted per client and per server.

Gradio stores every upload (`/gradio_api/upload`) in its cache folder before any event runs, so a
script could fill the disk with 10 MB files without ever asking a question. This ASGI middleware
counts uploads in a sliding window, per client and for the whole server, and answers HTTP 429
("too many uploads, try again in a minute") past either limit. The cache itself is emptied of old
files by `gr.Blocks(delete_cache=...)` (see demo/ui.py), so what is stored is bounded by both.

A client is the first address in X-Forwarded-For (what a Hugging Face Space's proxy reports) or
the connection's address. A forged header only buys a new per-client window: the per-server limit still holds.
The operator sets both limits with VQA_UPLOADS_PER_CLIENT and VQA_UPLOADS_PER_SERVER (uploads per minute).
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque

UPLOAD_PATH_SUFFIX = "/upload"
#: Uploads one client may make per window. A visitor trying pictures makes a few per minute; a
#: classroom behind one school address shares one client's window, hence the headroom.
PER_CLIENT = 60
#: Uploads the whole server accepts per window, whoever sends them (300 × 10 MB at most: 3 GB per minute).
PER_SERVER = 300
WINDOW_S = 60.0
TOO_MANY = b"Too many uploads from here in the last minute. Please wait a minute and try again."


class UploadLimiter:
    """Sliding-window counts of uploads per client and per server (thread-safe)."""

    def __init__(self, per_client: int | None = None, per_server: int | None = None, window_s: float = WINDOW_S):
        """Limits per window: the arguments, else $VQA_UPLOADS_PER_CLIENT / $VQA_UPLOADS_PER_SERVER, else the defaults."""
        self.per_client = per_client if per_client is not None else int(os.environ.get("VQA_UPLOADS_PER_CLIENT", PER_CLIENT))
        self.per_server = per_server if per_server is not None else int(os.environ.get("VQA_UPLOADS_PER_SERVER", PER_SERVER))
        self.window_s = window_s
        self._clients: dict[str, deque[float]] = {}
        self._server: deque[float] = deque()
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> bool:
        """Count one upload from `client`, or return False (and count nothing) when a limit is reached."""
        now = time.monotonic() if now is None else now
        with self._lock:
            self._forget_before(now - self.window_s)
            mine = self._clients.setdefault(client, deque())
            if len(mine) >= self.per_client or len(self._server) >= self.per_server:
                return False
            mine.append(now)
            self._server.append(now)
            return True

    def _forget_before(self, cutoff: float) -> None:
        while self._server and self._server[0] < cutoff:
            self._server.popleft()
        for client in list(self._clients):
            times = self._clients[client]
            while times and times[0] < cutoff:
                times.popleft()
            if not times:
                del self._clients[client]  # the table holds only clients seen within the window


def client_address(scope: dict) -> str:
    for name, value in scope.get("headers") or []:
        if name == b"x-forwarded-for":
            return value.decode("latin-1").split(",")[0].strip()
    client = scope.get("client")
    return client[0] if client else "unknown"


class UploadLimitMiddleware:
    """ASGI middleware: a POST to Gradio's upload route past the limiter's limits gets HTTP 429."""

    def __init__(self, app, limiter: UploadLimiter):
        self.app = app
        self.limiter = limiter

    async def __call__(self, scope, receive, send):
        if (
            scope["type"] == "http"
            and scope.get("method") == "POST"
            and scope.get("path", "").rstrip("/").endswith(UPLOAD_PATH_SUFFIX)
            and not self.limiter.allow(client_address(scope))
        ):
            await send({"type": "http.response.start", "status": 429,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"), (b"retry-after", b"60")]})
            await send({"type": "http.response.body", "body": TOO_MANY})
            return
        await self.app(scope, receive, send)
