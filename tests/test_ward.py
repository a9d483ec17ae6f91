"""A ward: many daemons on one broker, each with its own availability and last will."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pytest
from broker import Daemon, Monitor, Mosquitto, Subscriber, can_set_hostname, write_config

from clonusd.daemon.config import ConfigError, default_daemon_id, parse_config

SPEED = 4.0


def _ward(broker: Mosquitto, tmp_path: Path, names: list[str], episodes: int = 1) -> list[Daemon]:
    """One daemon per bed with the default config, each as if on its own Pi (its own host
    name). Where no process may have a host name of its own, the id is set in the config
    instead: the client id still comes from the daemon id."""
    own_host = can_set_hostname()
    daemons = []
    for i, name in enumerate(names):
        cfg = write_config(
            tmp_path / f"{name}.toml",
            broker.port,
            tmp_path / f"state-{name}",
            [{"at_s": 3 + 6 * k, "beats": 10} for k in range(episodes)],
            daemon_id=None if own_host else name,
            bed=f"bed-{i + 1}",
        )
        daemons.append(Daemon(cfg, SPEED, hostname=name if own_host else None))
    return daemons


@pytest.mark.parametrize("n", [2, 6])
def test_daemons_on_one_broker_keep_their_own_sessions_and_last_wills(
    broker: Mosquitto, tmp_path: Path, n: int
) -> None:
    names = [f"pi-bed-{i + 1}" for i in range(n)]
    sub = Subscriber(broker.port)
    daemons = _ward(broker, tmp_path, names)
    try:
        for d in daemons:
            d.start()
        assert sub.wait_for(
            lambda: all("online" in sub.availability(name) for name in names), 60
        ), [d.logs() for d in daemons]
        # Each reaches an alarm of its own bed and says whose it is.
        assert sub.wait_for(
            lambda: len([e for e in sub.events() if e["event"] == "clonus.end"]) == n, 60
        )
        by_bed = {(p["bed"], p["daemon"]) for p in sub.on("/event") + sub.on("/status")}
        assert by_bed == {(f"bed-{i + 1}", name) for i, name in enumerate(names)}
        daemons[0].kill()
        assert sub.wait_for(lambda: sub.availability(names[0])[-1:] == ["offline"], 15)
        # The others' retained availability is untouched: a monitor connecting now sees
        # bed 1's daemon offline (its last will) and every other one online.
        late = Subscriber(broker.port)
        try:
            assert late.wait_for(lambda: len(late.availability()) == n, 5)
            assert late.availability(names[0]) == ["offline"]
            assert late.on(f"{names[0]}/availability")[0]["reason"] == "connection_lost"
            for name in names[1:]:
                assert late.availability(name) == ["online"], name
        finally:
            late.close()
        assert all(d.proc is not None and d.proc.poll() is None for d in daemons[1:])
    finally:
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.terminate()
        sub.close()
    log = broker.logs()
    assert "already connected" not in log, log
    for name in names:
        assert f"as clonusd-{name} " in log, log


def test_monitor_names_the_beds_whose_daemon_died(broker: Mosquitto, tmp_path: Path) -> None:
    a, b = _ward(broker, tmp_path, ["pi-bed-1", "pi-bed-2"])
    sub = Subscriber(broker.port)
    mon = None
    try:
        a.start()
        b.start()
        assert sub.wait_for(lambda: {p.get("bed") for p in sub.on("/status")} >= {"bed-1", "bed-2"})
        mon = Monitor(broker.port)
        mon.until("daemon pi-bed-2 online", 20)
        time.sleep(0.5)  # the rest of the retained burst (bed 2's status) is in by now
        b.kill()
        mon.until("daemon pi-bed-2 offline", 20)
    finally:
        if mon is not None:
            mon.stop()
        for d in (a, b):
            if d.proc is not None and d.proc.poll() is None:
                d.terminate()
        sub.close()
    out = mon.text()
    assert "daemon pi-bed-2 offline (connection_lost): beds bed-2 unwatched" in out, out
    assert "pi-bed-1 offline" not in out, out


def test_shared_group_gets_each_event_once_and_displays_get_all(
    broker: Mosquitto, tmp_path: Path
) -> None:
    monitors = {
        "pager-1": Monitor(broker.port, share="pager"),
        "pager-2": Monitor(broker.port, share="pager"),
        "display-1": Monitor(broker.port),
        "display-2": Monitor(broker.port),
    }
    daemons = _ward(broker, tmp_path, ["pi-bed-1", "pi-bed-2"], episodes=3)
    sub = Subscriber(broker.port)
    try:
        for m in monitors.values():
            m.until("connected to", 30)
        for d in daemons:
            d.start()
        ends = lambda: [e for e in sub.events() if e["event"] == "clonus.end"]  # noqa: E731
        assert sub.wait_for(lambda: len(ends()) == 6, 60), [d.logs() for d in daemons]
        time.sleep(1.0)  # QoS 1 to every monitor: the last end is on its way
    finally:
        for m in monitors.values():
            m.stop()
        for d in daemons:
            if d.proc is not None and d.proc.poll() is None:
                d.terminate()
        sub.close()
    every = {e["id"] for e in sub.events() if e["event"] in ("clonus.onset", "clonus.end")}
    assert len(every) == 12
    got = {name: m.event_ids() for name, m in monitors.items()}
    for name in ("display-1", "display-2"):
        assert sorted(got[name]) == sorted(every), name  # all of them, none twice
    pager = got["pager-1"] + got["pager-2"]
    assert sorted(pager) == sorted(every)  # each event once across the group
    assert got["pager-1"] and got["pager-2"], got  # and the group did share the work
    # Members still see the retained context: both know both daemons.
    for name in ("pager-1", "pager-2"):
        text = monitors[name].text()
        assert "daemon pi-bed-1 online" in text and "daemon pi-bed-2 online" in text, {
            n: m.text() for n, m in monitors.items()
        }


def test_daemon_id_defaults_to_the_host_name_and_must_be_topic_safe() -> None:
    sensors = (
        '[[sensors]]\nid = "a"\nbed = "b"\nsite = "ankle"\n[sensors.source]\nkind = "simulated"\n'
    )
    cfg = parse_config(sensors)
    assert cfg.daemon.id == default_daemon_id()
    assert re.fullmatch(r"[A-Za-z0-9_.-]{1,64}", cfg.daemon.id)
    assert cfg.mqtt.client_id is None  # the publisher then uses clonusd-<daemon id>
    for bad in ("bed/12", "ward+", "#", ""):
        with pytest.raises(ConfigError, match=r"daemon\.id"):
            parse_config(f'[daemon]\nid = "{bad}"\n' + sensors)
