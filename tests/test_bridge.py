"""Store and forward: the shipped bridge config carries a ward through a 60 s network cut.

Two real brokers on loopback: the Pi's local Mosquitto, running config/mosquitto-bridge.conf
as shipped (only its listener port, persistence folder and ward address changed), and
the ward broker. Between them, a relay that partitions the link for 60 s in the middle of
a long episode: bytes dropped both ways, nothing closed, as when the ward network fails.
The daemon publishes to the local broker; a subscriber on the local broker records what
it published, in order; a subscriber on the ward broker must get exactly that, in that
order, with nothing lost. QoS 1 is at least once, so an event in flight when the link
failed may come twice; `clonusd monitor` on the ward must show every event once, and say
that the bed was not watched while the link was down.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

import pytest
from broker import Daemon, LinkProxy, Monitor, Mosquitto, Subscriber, write_config
from conftest import ROOT

CUT_S = 60.0


def _local_config(state: Path, ward_port: int) -> str:
    shipped = (ROOT / "config" / "mosquitto-bridge.conf").read_text()
    changes = {
        "listener 1883 127.0.0.1": "listener {port} 127.0.0.1",
        "persistence_location /var/lib/mosquitto/": f"persistence_location {state}/",
        "address ward-broker.local:1883": f"address 127.0.0.1:{ward_port}",
    }
    for old, new in changes.items():
        assert shipped.count(old) == 1, f"the shipped bridge config no longer has {old!r}"
        shipped = shipped.replace(old, new)
    # Started as root, Mosquitto drops to the user `mosquitto`, who cannot write the
    # test's private folder; as anyone else it stays who it is.
    return ("user root\n" if os.geteuid() == 0 else "") + shipped


def _arrivals(sub: Subscriber) -> list[tuple[float, str, str]]:
    """(arrival time, event id, kind) of every event, in arrival order."""
    with sub._lock:
        return [
            (at, p["id"], p["event"])
            for at, topic, p, _ in sub.messages
            if topic.endswith("/event")
        ]


@pytest.mark.slow
def test_a_60_s_ward_network_cut_loses_nothing_and_keeps_the_order(tmp_path: Path) -> None:
    (tmp_path / "ward").mkdir()
    (tmp_path / "local").mkdir()
    ward = Mosquitto(tmp_path / "ward", name="ward")
    ward.start()
    link = LinkProxy(ward.port)
    local = Mosquitto(
        tmp_path / "local", name="local", config=_local_config(tmp_path / "local", link.port)
    )
    local.start()
    # One long episode that the cut falls inside (onset ~4 s, end ~84 s), and a short one
    # after the link is back.
    eps = [{"at_s": 3, "beats": 400, "frequency_hz": 5.0}, {"at_s": 88, "beats": 10}]
    cfg = write_config(tmp_path / "c.toml", local.port, tmp_path / "state", eps)
    truth = Subscriber(local.port)  # what the daemon published, in its order
    at_ward = Subscriber(ward.port)
    link_state = Subscriber(ward.port, "$SYS/broker/connection/+/state")  # the bridge's
    monitor = Monitor(ward.port)
    daemon = Daemon(cfg, 1.0)
    try:
        monitor.until("connected to", 30)
        daemon.start()
        updates = lambda s: [a for a in _arrivals(s) if a[2] == "clonus.update"]  # noqa: E731
        assert at_ward.wait_for(lambda: len(updates(at_ward)) >= 2, 40), local.logs()
        link.cut()
        cut_at = time.monotonic()
        time.sleep(CUT_S)
        during = len(_arrivals(at_ward))
        link.restore()
        restored_at = time.monotonic()
        ends = lambda s: [a for a in _arrivals(s) if a[2] == "clonus.end"]  # noqa: E731
        assert truth.wait_for(lambda: len(ends(truth)) == 2, 60), daemon.logs()
        assert at_ward.wait_for(lambda: len(_arrivals(at_ward)) >= len(_arrivals(truth)), 40)
        time.sleep(1.0)  # anything extra (a duplicate) would be here by now
        assert daemon.terminate() == 0
    finally:
        monitor.stop()
        if daemon.proc is not None and daemon.proc.poll() is None:
            daemon.kill()
        truth.close()
        at_ward.close()
        link_state.close()
        local.stop()
        link.close()
        ward.stop()
    published, received = _arrivals(truth), _arrivals(at_ward)
    # The cut was real and in the middle of the episode: the onset had reached the ward,
    # the daemon went on deciding updates that the ward got only after the link was back.
    in_cut = [eid for at, eid, _ in published if cut_at < at < restored_at]
    assert len(in_cut) >= 10, [(round(at - cut_at, 1), kind) for at, _, kind in published]
    assert during == len([a for a in received if a[0] < cut_at + 1.0])
    late = {eid: at for at, eid, _ in received}
    assert all(late[eid] > restored_at for eid in in_cut)
    backlog_s = min(late[eid] for eid in in_cut) - restored_at
    print(
        f"{len(in_cut)} events decided during the cut; the first reached the ward "
        f"{backlog_s:.1f} s after the link was back"
    )
    assert backlog_s < 30
    first_end = next(i for i, a in enumerate(published) if a[2] == "clonus.end")
    assert published[0][2] == "clonus.onset" and published[first_end][0] > restored_at
    # Nothing lost, the same order. QoS 1 is at least once: an event whose PUBACK the cut
    # swallowed is sent again when the link is back, and only such an event.
    first: dict[str, float] = {}
    repeats = []
    for at, eid, _ in received:
        if eid in first:
            repeats.append(eid)
        else:
            first[eid] = at
    assert list(first) == [eid for _, eid, _ in published]
    assert all(first[eid] < cut_at + 1.0 for eid in repeats), repeats
    assert len(repeats) <= 20  # the bridge's max_inflight_messages
    print(f"{len(repeats)} event(s) in flight at the cut came twice")
    # The nurse's monitor on the ward broker showed every alarm and end, once.
    shown = [eid for _, eid, kind in published if kind in ("clonus.onset", "clonus.end")]
    assert monitor.event_ids() == shown
    # ... and while the link was cut, that this bed was not being watched from the ward
    # (no last will can cross a cut link; the status stopped), then that it was back.
    text = monitor.text()
    assert "NO STATUS from bed-12 (ankle-l)" in text, text
    assert text.index("NO STATUS from bed-12") < text.index("status again from bed-12")
    # At the ward, the link's own state (the bridge's last will there) went 1, 0, 1.
    with link_state._lock:
        states = [(at, p) for at, _, p, _ in link_state.messages]
    assert [p for _, p in states][-3:] == [1, 0, 1], states
    assert cut_at < states[-2][0] < restored_at
    # The bridge reconnected, to a session the ward broker kept (clean session 0), and
    # the local broker kept its queue on disk as configured.
    assert local.logs().count("Connecting bridge (step 1) ward") >= 2, local.logs()
    sessions = re.findall(r"as \S+\.ward \(p\d+, c(\d)", ward.logs())
    assert len(sessions) >= 2 and set(sessions) == {"0"}, ward.logs()
    assert "Error" not in local.logs(), local.logs()
