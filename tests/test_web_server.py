"""The central station's server: read-only, token rules, what it tells browsers."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from conftest import clonusd

aiohttp = pytest.importorskip("aiohttp")
from aiohttp.test_utils import TestClient, TestServer  # noqa: E402

from clonusd.daemon.web.server import Ward, is_retained_kind, make_app  # noqa: E402

TOKEN = "s3cret-token-of-the-ward"


async def _with_client(ward: Ward, token: str | None, body) -> None:  # type: ignore[no-untyped-def]
    async with TestClient(TestServer(make_app(ward, token))) as client:
        await body(client)


def test_token_is_required_and_the_server_is_read_only() -> None:
    async def body(client: TestClient) -> None:  # type: ignore[type-arg]
        assert (await client.get("/")).status == 401
        assert (await client.get("/events")).status == 401
        assert (await client.get("/?token=wrong")).status == 401
        ok = await client.get(f"/?token={TOKEN}")
        assert ok.status == 200 and "central station" in await ok.text()
        # The cookie set by that visit lets the page load its script and its stream.
        assert (await client.get("/static/station.js")).status == 200
        auth = {"Authorization": f"Bearer {TOKEN}"}
        assert (await client.get("/healthz", headers=auth)).status == 200
        assert (await client.post("/", headers=auth)).status == 405
        assert (await client.get("/static/../server.py", headers=auth)).status == 404

    asyncio.run(_with_client(Ward("clonusd"), TOKEN, body))


def test_a_browser_gets_a_snapshot_of_retained_topics_then_live_messages() -> None:
    ward = Ward("clonusd")
    ward.broker_connected = True
    ward.accept("clonusd/daemon/pi-1/availability", b'{"state": "online"}', True)
    ward.accept("clonusd/bed-1/ankle/status", b'{"link": "connected"}', True)
    ward.accept("clonusd/bed-1/ankle/evidence/x", b'{"samples": []}', True)
    ward.accept("clonusd/bed-1/ankle/evidence/x", b"", True)  # cleared: forgotten

    async def body(client: TestClient) -> None:  # type: ignore[type-arg]
        resp = await client.get("/events")
        assert resp.headers["Content-Type"] == "text/event-stream"
        text = ""
        while "event: snapshot" not in text or not text.endswith("\n\n"):
            text += (await resp.content.readany()).decode()
        snap = json.loads(text.split("event: snapshot\ndata: ")[1].split("\n")[0])
        topics = {m["topic"] for m in snap["messages"]}
        assert topics == {"clonusd/daemon/pi-1/availability", "clonusd/bed-1/ankle/status"}
        ward.accept("clonusd/bed-1/ankle/event", b'{"event": "clonus.onset"}', False)
        live = (await resp.content.readany()).decode()
        assert "event: msg" in live and "clonus.onset" in live
        resp.close()

    asyncio.run(_with_client(ward, None, body))
    assert is_retained_kind("clonusd", "clonusd/b/s/history")
    assert not is_retained_kind("clonusd", "clonusd/b/s/event")


def test_serving_beyond_loopback_needs_a_token_file(tmp_path: Path) -> None:
    r = clonusd("web", "--listen", "0.0.0.0:0", timeout=30)
    assert r.returncode == 2 and "needs --token-file" in r.stderr
    short = tmp_path / "token"
    short.write_text("abc\n")
    r = clonusd("web", "--listen", "0.0.0.0:0", "--token-file", str(short), timeout=30)
    assert r.returncode == 2 and "at least 16 characters" in r.stderr
