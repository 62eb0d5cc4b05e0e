"""Who may upload how many files (demo/upload_limits.py): the counts per client and per server, the sliding
window, the client's address behind a proxy, and the HTTP 429 answer. Times are passed in, never read."""

from __future__ import annotations

import asyncio

import pytest

from demo.upload_limits import TOO_MANY, UploadLimiter, UploadLimitMiddleware, client_address


def test_one_client_past_its_limit_is_refused_and_others_still_upload():
    limiter = UploadLimiter(per_client=3, per_server=100, window_s=60)
    assert [limiter.allow("a", now=t) for t in range(5)] == [True, True, True, False, False]
    assert limiter.allow("b", now=5)


def test_the_server_limit_holds_whatever_address_a_client_claims():
    limiter = UploadLimiter(per_client=2, per_server=5, window_s=60)
    assert [limiter.allow(f"forged-{i}", now=i) for i in range(7)] == [True] * 5 + [False] * 2


def test_uploads_older_than_the_window_no_longer_count():
    limiter = UploadLimiter(per_client=2, per_server=100, window_s=60)
    assert limiter.allow("a", now=0) and limiter.allow("a", now=10)
    assert not limiter.allow("a", now=60)  # the first upload is exactly one window old: it still counts
    assert limiter.allow("a", now=60.5)  # now it does not
    assert not limiter.allow("a", now=61)


def test_the_server_counts_an_upload_for_a_full_window_too():
    limiter = UploadLimiter(per_client=10, per_server=1, window_s=60)
    assert limiter.allow("a", now=0)
    assert not limiter.allow("b", now=60)
    assert limiter.allow("b", now=60.5)


def test_the_server_window_slides_too():
    limiter = UploadLimiter(per_client=10, per_server=2, window_s=60)
    assert limiter.allow("a", now=0) and limiter.allow("b", now=30)
    assert not limiter.allow("c", now=45)
    assert limiter.allow("c", now=61)
    assert not limiter.allow("d", now=62)


def test_a_refused_upload_is_not_counted():
    limiter = UploadLimiter(per_client=1, per_server=100, window_s=60)
    assert limiter.allow("a", now=0)
    assert not any(limiter.allow("a", now=t) for t in range(1, 50))  # hammering does not extend the wait
    assert limiter.allow("a", now=60.5)


def test_a_refused_upload_uses_none_of_the_servers_window():
    limiter = UploadLimiter(per_client=1, per_server=3, window_s=60)
    assert limiter.allow("a", now=0)
    assert not limiter.allow("a", now=1) and not limiter.allow("a", now=2)
    assert limiter.allow("b", now=3) and limiter.allow("c", now=4)


def test_clients_gone_quiet_are_forgotten_so_forged_addresses_cannot_fill_memory():
    limiter = UploadLimiter(per_client=1, per_server=10**6, window_s=60)
    for i in range(1000):
        limiter.allow(f"10.0.{i // 256}.{i % 256}", now=0)
    limiter.allow("late", now=61)
    assert len(limiter._clients) == 1


def test_the_operator_sets_the_limits_in_the_environment(monkeypatch):
    monkeypatch.setenv("VQA_UPLOADS_PER_CLIENT", "2")
    monkeypatch.setenv("VQA_UPLOADS_PER_SERVER", "3")
    limiter = UploadLimiter()
    assert [limiter.allow("a", now=0) for _ in range(3)] == [True, True, False]
    assert [limiter.allow("b", now=0) for _ in range(2)] == [True, False]
    explicit = UploadLimiter(per_client=5, per_server=5)  # arguments win over the environment
    assert all(explicit.allow("a", now=0) for _ in range(5))


def test_by_default_one_client_cannot_use_up_the_whole_server(monkeypatch):
    monkeypatch.delenv("VQA_UPLOADS_PER_CLIENT", raising=False)
    monkeypatch.delenv("VQA_UPLOADS_PER_SERVER", raising=False)
    limiter = UploadLimiter()
    while limiter.allow("classroom", now=0):
        pass
    assert limiter.allow("someone else", now=0)
    assert limiter.allow("classroom", now=limiter.window_s + 1)  # and the window is a finite time


def test_without_a_time_given_the_limiter_uses_its_own_clock():
    limiter = UploadLimiter(per_client=1, per_server=10)
    assert limiter.allow("a") and not limiter.allow("a")


def test_the_client_is_the_first_forwarded_address_else_the_connection():
    headers = [(b"host", b"x"), (b"x-forwarded-for", b" 203.0.113.7 , 10.0.0.1")]
    assert client_address({"headers": headers, "client": ("127.0.0.1", 5)}) == "203.0.113.7"
    assert client_address({"headers": [(b"x-forwarded-for", b"203.0.113.7,10.0.0.1")]}) == "203.0.113.7"
    assert client_address({"headers": [(b"host", b"x")], "client": ("127.0.0.1", 5)}) == "127.0.0.1"
    assert client_address({"headers": None, "client": None}) == "unknown"
    assert client_address({}) == "unknown"


async def _call(middleware, method="POST", path="/gradio_api/upload", kind="http", client=("198.51.100.1", 1)):
    sent = []

    async def send(message):
        sent.append(message)

    async def receive():
        return {"type": "http.request"}

    await middleware(dict(type=kind, method=method, path=path, headers=[], client=client), receive, send)
    return sent


class App:
    """The app behind the middleware: it answers 200 and records what reached it."""

    def __init__(self):
        self.calls = 0
        self.seen = []

    async def __call__(self, scope, receive, send):
        self.calls += 1
        self.seen.append((scope["path"], (await receive())["type"]))
        await send({"type": "http.response.start", "status": 200, "headers": []})


def test_an_upload_past_the_limit_gets_429_with_a_message_and_a_retry_time():
    app = App()
    middleware = UploadLimitMiddleware(app, UploadLimiter(per_client=1, per_server=10))
    first = asyncio.run(_call(middleware))
    refused = asyncio.run(_call(middleware, path="/gradio_api/upload/"))
    assert first[0]["status"] == 200 and app.calls == 1
    start, body = refused
    assert start["type"] == "http.response.start" and start["status"] == 429
    assert dict(start["headers"])[b"retry-after"] == b"60"
    assert dict(start["headers"])[b"content-type"].startswith(b"text/plain")
    assert body == {"type": "http.response.body", "body": TOO_MANY}
    assert b"Too many uploads" in TOO_MANY and app.calls == 1
    assert app.seen == [("/gradio_api/upload", "http.request")]  # what it let through reached the app intact


def test_each_client_behind_the_middleware_has_its_own_count():
    app = App()
    middleware = UploadLimitMiddleware(app, UploadLimiter(per_client=1, per_server=10))
    assert asyncio.run(_call(middleware, client=("198.51.100.1", 1)))[0]["status"] == 200
    assert asyncio.run(_call(middleware, client=("198.51.100.1", 2)))[0]["status"] == 429
    assert asyncio.run(_call(middleware, client=("198.51.100.2", 1)))[0]["status"] == 200


@pytest.mark.parametrize("method, path, kind", [("GET", "/gradio_api/upload", "http"), ("POST", "/gradio_api/queue/join", "http"),
                                                ("POST", "/gradio_api/upload", "websocket")])
def test_everything_but_an_upload_passes_through_uncounted(method, path, kind):
    app = App()
    middleware = UploadLimitMiddleware(app, UploadLimiter(per_client=1, per_server=1))
    for _ in range(3):
        asyncio.run(_call(middleware, method=method, path=path, kind=kind))
    assert app.calls == 3
    assert asyncio.run(_call(middleware))[0]["status"] == 200  # the upload window is still unused
