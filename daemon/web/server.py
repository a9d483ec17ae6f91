"""`clonusd web`: the central station, a ward's alarms in a browser.

One MQTT subscription to `{prefix}/#` feeds every browser. The server keeps the latest
message of each retained topic (availability, state, status, history, evidence) and
forwards every message as it comes, with Server-Sent Events: a browser that connects (or
reconnects) first gets a snapshot of what is known, each message with its age, then the
live stream. Nothing is polled. The server is read-only: it serves GET requests only and
never publishes. Acknowledge and audio pause are the station's own (kept in the page).

Access: bound to 127.0.0.1 by default. Listening on any other address needs a token
(`--token-file`): a browser opens `/?token=...` once and keeps it in an HttpOnly cookie;
scripts send `Authorization: Bearer ...`. TLS is left to a reverse proxy (README).
"""

from __future__ import annotations

import asyncio
import contextlib
import hmac
import ipaddress
import json
import os
import signal
import sys
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import aiomqtt
import structlog
from aiohttp import web

log = structlog.get_logger("clonusd.web")

STATIC = resources.files("clonusd.daemon.web") / "static"
STATIC_TYPES = {
    "index.html": "text/html",
    "station.css": "text/css",
    "station.js": "text/javascript",
}
COOKIE = "clonusd_station"
QUEUE_MAX = 2000  # messages a slow browser may lag before it is made to reconnect
HEARTBEAT_S = 10.0


@dataclass
class Ward:
    """What the broker said, as the browsers need it."""

    prefix: str
    retained: dict[str, tuple[Any, float]] = field(default_factory=dict)  # topic -> (payload, at)
    clients: set[asyncio.Queue[str | None]] = field(default_factory=set)
    broker_connected: bool = False
    broker_detail: str = "connecting"

    def accept(self, topic: str, raw: bytes, retain_kind: bool) -> None:
        text = raw.decode(errors="replace")
        payload: Any
        if not text:
            payload = None  # a cleared retained topic
        else:
            try:
                payload = json.loads(text)
            except json.JSONDecodeError:
                payload = text  # today's availability is a bare "online" / "offline"
        if retain_kind:
            if payload is None:
                self.retained.pop(topic, None)
            else:
                self.retained[topic] = (payload, time.monotonic())
        self.broadcast("msg", {"topic": topic, "payload": payload})

    def broadcast(self, kind: str, data: dict[str, Any]) -> None:
        frame = f"event: {kind}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        for q in list(self.clients):
            try:
                q.put_nowait(frame)
            except asyncio.QueueFull:
                self.clients.discard(q)
                with contextlib.suppress(asyncio.QueueFull):
                    q.get_nowait()
                    q.put_nowait(None)  # tells that client's stream to end; it reconnects

    def broker_state(self, connected: bool, detail: str) -> None:
        self.broker_connected, self.broker_detail = connected, detail
        self.broadcast("broker", {"connected": connected, "detail": detail})

    def snapshot(self) -> str:
        now = time.monotonic()
        data = {
            "prefix": self.prefix,
            "broker": {"connected": self.broker_connected, "detail": self.broker_detail},
            "messages": [
                {"topic": t, "payload": p, "age_ms": round((now - at) * 1000)}
                for t, (p, at) in self.retained.items()
            ],
        }
        return f"event: snapshot\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"


def is_retained_kind(prefix: str, topic: str) -> bool:
    rest = topic.removeprefix(prefix + "/").split("/")
    if rest[0] == "daemon":
        return rest[-1] == "availability"
    return len(rest) >= 3 and rest[2] in ("state", "status", "history", "evidence")


async def follow_broker(ward: Ward, host: str, port: int, stop: asyncio.Event) -> None:
    """Subscribe and feed the ward until `stop`; reconnect with backoff."""
    backoff = 0.5
    while not stop.is_set():
        try:
            async with aiomqtt.Client(
                host, port, identifier=f"clonusd-web-{os.getpid()}", keepalive=10
            ) as client:
                await client.subscribe(f"{ward.prefix}/#", qos=1)
                ward.broker_state(True, f"{host}:{port}")
                log.info("broker_connected", host=host, port=port)
                backoff = 0.5
                async for msg in client.messages:
                    topic = str(msg.topic)
                    raw = (
                        msg.payload if isinstance(msg.payload, bytes) else str(msg.payload).encode()
                    )
                    ward.accept(topic, raw, is_retained_kind(ward.prefix, topic))
        except aiomqtt.MqttError as exc:
            ward.broker_state(False, f"{host}:{port} unavailable: {exc}")
            log.warning("broker_unavailable", error=str(exc), retry_in_s=backoff)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=backoff)
            backoff = min(backoff * 2, 5.0)


def _authorised(request: web.Request, token: str | None) -> bool:
    if token is None:
        return True
    offered = request.cookies.get(COOKIE) or request.query.get("token") or ""
    auth = request.headers.get("Authorization", "")
    if auth.startswith("Bearer "):
        offered = auth.removeprefix("Bearer ")
    return hmac.compare_digest(offered.encode(), token.encode())


def make_app(ward: Ward, token: str | None) -> web.Application:
    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.method not in ("GET", "HEAD"):
            raise web.HTTPMethodNotAllowed(request.method, ["GET", "HEAD"])
        if not _authorised(request, token):
            raise web.HTTPUnauthorized(text="clonusd central station: token required\n")
        response: web.StreamResponse = await handler(request)
        if token is not None and request.query.get("token"):
            response.set_cookie(COOKIE, token, httponly=True, samesite="Strict")
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'"
        )
        return response

    async def page(request: web.Request) -> web.StreamResponse:
        name = request.match_info.get("name", "index.html")
        if name not in STATIC_TYPES:
            raise web.HTTPNotFound()
        body = (STATIC / name).read_bytes()
        return web.Response(body=body, content_type=STATIC_TYPES[name], charset="utf-8")

    async def events(request: web.Request) -> web.StreamResponse:
        resp = web.StreamResponse(
            headers={"Content-Type": "text/event-stream", "X-Accel-Buffering": "no"}
        )
        await resp.prepare(request)
        q: asyncio.Queue[str | None] = asyncio.Queue(QUEUE_MAX)
        ward.clients.add(q)
        try:
            await resp.write(b"retry: 1000\n\n" + ward.snapshot().encode())
            while True:
                try:
                    frame = await asyncio.wait_for(q.get(), timeout=HEARTBEAT_S)
                except TimeoutError:
                    frame = ": heartbeat\n\n"
                if frame is None:
                    break
                await resp.write(frame.encode())
        except ConnectionResetError:
            pass  # the browser went away; it reconnects by itself if it is still there
        finally:
            ward.clients.discard(q)
        return resp

    async def health(_request: web.Request) -> web.StreamResponse:
        return web.json_response(
            {
                "broker": ward.broker_connected,
                "topics": len(ward.retained),
                "browsers": len(ward.clients),
            }
        )

    app = web.Application(middlewares=[guard])
    app.router.add_get("/", page)
    app.router.add_get("/static/{name}", page)
    app.router.add_get("/events", events)
    app.router.add_get("/healthz", health)
    return app


def read_token(path: Path) -> str:
    token = path.read_text().strip()
    if len(token) < 16:
        raise ValueError(f"{path}: the token must be at least 16 characters")
    return token


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


async def run_web(
    broker_host: str,
    broker_port: int,
    listen_host: str,
    listen_port: int,
    prefix: str,
    token: str | None,
) -> int:
    ward = Ward(prefix)
    stop = asyncio.Event()
    runner = web.AppRunner(make_app(ward, token), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, listen_host, listen_port)
    await site.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    # The address actually bound (port 0 picks a free one), on stdout for scripts.
    addresses = runner.addresses  # port 0 picks a free one: say which, for scripts
    bound = addresses[0][1] if addresses else listen_port
    print(f"clonusd web: http://{listen_host}:{bound}/  broker {broker_host}:{broker_port}")
    sys.stdout.flush()
    follower = asyncio.create_task(follow_broker(ward, broker_host, broker_port, stop))
    try:
        await stop.wait()
    finally:
        follower.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await follower
        for q in list(ward.clients):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(None)
        await runner.cleanup()
    return 0
