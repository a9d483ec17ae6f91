"""The fault matrix: each way the alarm path can break, reproduced with Mosquitto and the
daemon as real processes. Each case checks that there is no traceback, nothing is lost,
nothing is left stuck (every onset has an end, the retained state is cleared), and the
failure is visible to a subscriber (a technical alarm, availability with a reason) or to
systemd (exit status, no watchdog pings, STATUS=).

Storage faults are made for real: a small tmpfs that is full, or fills during the run; a
read-only bind mount; a directory owned by root while the daemon runs as `nobody`. They
need root (as CI runs); without it they are skipped, and say so.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from broker import Daemon, Mosquitto, Subscriber, wait_for, write_config
from conftest import ROOT

SPEED = 4.0
ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs root to mount and switch user")


def _daemon_events(sub: Subscriber, kind: str) -> list[dict[str, Any]]:
    return [e for e in sub.events() if isinstance(e, dict) and e.get("event") == kind]


def _clonus(sub: Subscriber, kind: str) -> list[dict[str, Any]]:
    """Events of a kind, each once: delivery is at least once, and `id` tells repeats."""
    seen: set[str] = set()
    out = []
    for e in _daemon_events(sub, kind):
        if e["id"] not in seen:
            seen.add(e["id"])
            out.append(e)
    return out


def _no_traceback(daemon: Daemon) -> None:
    assert "Traceback" not in daemon.logs(), daemon.logs()[-3000:]


CLONUS_KINDS = ("clonus.onset", "clonus.update", "clonus.end")


def _logged(d: Daemon, *names: str) -> list[dict[str, Any]]:
    """The daemon's JSON log records whose event is one of `names`, in order."""
    records = []
    for line in d.logs().splitlines():
        if line.startswith("{") and any(f'"{n}"' in line for n in names):
            rec = json.loads(line)
            if rec.get("event") in names:
                records.append(rec)
    return records


def _every_onset_ended(sub: Subscriber) -> None:
    onsets = {e["episode"] for e in _clonus(sub, "clonus.onset")}
    ends = {e["episode"] for e in _clonus(sub, "clonus.end")}
    assert onsets <= ends, (onsets, ends)


class Notify:
    """A NOTIFY_SOCKET of our own: what the daemon tells systemd, with arrival times."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self.sock.bind(self.path)
        self.sock.settimeout(0.2)
        self.got: list[tuple[float, str]] = []
        self._run = True
        self._thread = threading.Thread(target=self._listen, daemon=True)
        self._thread.start()

    def _listen(self) -> None:
        while self._run:
            with contextlib.suppress(TimeoutError, OSError):
                self.got.append((time.monotonic(), self.sock.recv(4096).decode()))

    def env(self) -> dict[str, str]:
        return {**os.environ, "NOTIFY_SOCKET": self.path, "WATCHDOG_USEC": "2000000"}

    def messages(self, prefix: str) -> list[tuple[float, str]]:
        return [(t, m) for t, m in list(self.got) if m.startswith(prefix)]

    def close(self) -> None:
        self._run = False
        self._thread.join()
        self.sock.close()


@pytest.fixture
def notify(tmp_path: Path) -> Iterator[Notify]:
    n = Notify(tmp_path / "notify.sock")
    yield n
    n.close()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.stop()


@contextlib.contextmanager
def tmpfs(path: Path, size_kib: int) -> Iterator[Path]:
    path.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size_kib}k,mode=0755", "tmpfs", str(path)],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=False)


def _fill(path: Path) -> None:
    """Fill the file system under `path` to the last byte."""
    fd = os.open(path / "filler", os.O_WRONLY | os.O_CREAT | os.O_APPEND)
    try:
        for block in (65536, 4096, 1):
            with contextlib.suppress(OSError):
                while True:
                    os.write(fd, b"\0" * block)
    finally:
        os.close(fd)


# -- 1. an episode cut by a crash ----------------------------------------------------------


def test_sigkill_mid_episode_is_ended_on_restart_and_ids_stay_unique(
    broker: Mosquitto, tmp_path: Path, daemons: list[Daemon]
) -> None:
    sub = Subscriber(broker.port)
    state = tmp_path / "state"
    first = Daemon(
        write_config(tmp_path / "a.toml", broker.port, state, [{"at_s": 2, "beats": 200}]), SPEED
    )
    daemons.append(first)
    first.start()
    assert sub.wait_for(lambda: bool(_clonus(sub, "clonus.onset")), 30), first.logs()
    first.kill()  # SIGKILL mid-episode: no end is sent by this process
    onset = _clonus(sub, "clonus.onset")[0]
    assert not _clonus(sub, "clonus.end")
    second = Daemon(
        write_config(tmp_path / "b.toml", broker.port, state, [{"at_s": 2, "beats": 12}]), SPEED
    )
    daemons.append(second)
    second.start()
    try:
        assert sub.wait_for(lambda: len(_clonus(sub, "clonus.end")) >= 2, 40), second.logs()
    finally:
        assert second.terminate() == 0
    ends = _clonus(sub, "clonus.end")
    restarted = [e for e in ends if e["episode"] == onset["episode"]]
    assert len(restarted) == 1 and restarted[0]["end_reason"] == "daemon_restarted"
    assert restarted[0]["sensor"] == "ankle-l" and restarted[0]["beats"] >= 6
    new_onsets = [e for e in _clonus(sub, "clonus.onset") if e["id"] != onset["id"]]
    assert new_onsets and all(e["episode"] != onset["episode"] for e in new_onsets)
    _every_onset_ended(sub)
    assert sub.wait_for(lambda: sub.on("/state")[-1]["clonus"] is False, 5)
    _no_traceback(first)
    _no_traceback(second)
    sub.close()


# -- 2. storage -----------------------------------------------------------------------------


def _start_failure(
    broker: Mosquitto,
    tmp_path: Path,
    state: Path,
    wrapper: list[str] | None = None,
    notify: Notify | None = None,
) -> tuple[int, str, Subscriber]:
    sub = Subscriber(broker.port)
    cfg = write_config(tmp_path / "c.toml", broker.port, state, [{"at_s": 2, "beats": 12}])
    cfg.chmod(0o644)
    d = Daemon(cfg, SPEED, env=notify.env() if notify else None, wrapper=wrapper)
    d.start()
    try:
        rc = d.wait(timeout=30)
    finally:
        d.stop()
    return rc, d.logs(), sub


def _assert_one_line_start_error(rc: int, logs: str, sub: Subscriber, words: str) -> None:
    assert rc == 2
    errors = [ln for ln in logs.splitlines() if ln.startswith("clonusd: error:")]
    assert len(errors) == 1 and words in errors[0], logs
    assert "Traceback" not in logs
    assert sub.wait_for(lambda: bool(_daemon_events(sub, "daemon.storage_unusable")), 10)
    alarm = _daemon_events(sub, "daemon.storage_unusable")[0]
    assert alarm["priority"] == "technical_alarm" and words in alarm["detail"]
    assert sub.wait_for(lambda: sub.availability_reasons()[-1:] == ["storage_unusable"], 5)
    sub.close()


def test_state_dir_that_is_a_file(broker: Mosquitto, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.write_text("not a directory")
    rc, logs, sub = _start_failure(broker, tmp_path, state)
    _assert_one_line_start_error(rc, logs, sub, "state_dir")


@ROOT_ONLY
def test_state_dir_full_at_start(broker: Mosquitto, tmp_path: Path, notify: Notify) -> None:
    with tmpfs(tmp_path / "state", 512) as state:
        _fill(state)
        rc, logs, sub = _start_failure(broker, tmp_path, state, notify=notify)
    _assert_one_line_start_error(rc, logs, sub, "state_dir")
    assert not notify.messages("READY=1")


@ROOT_ONLY
def test_state_dir_on_a_read_only_mount(broker: Mosquitto, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    subprocess.run(["mount", "--bind", str(state), str(state)], check=True)
    try:
        subprocess.run(["mount", "-o", "remount,bind,ro", str(state)], check=True)
        rc, logs, sub = _start_failure(broker, tmp_path, state)
    finally:
        subprocess.run(["umount", "-l", str(state)], check=False)
    _assert_one_line_start_error(rc, logs, sub, "read-only")


def _as_nobody(tmp_path: Path) -> list[str]:
    for p in [tmp_path, *tmp_path.parents]:
        with contextlib.suppress(PermissionError):
            p.chmod(p.stat().st_mode | 0o005)  # the config must be readable by nobody
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


@ROOT_ONLY
def test_state_dir_owned_by_another_user(broker: Mosquitto, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o700)  # root's; the daemon runs as nobody
    rc, logs, sub = _start_failure(broker, tmp_path, state, wrapper=_as_nobody(tmp_path))
    _assert_one_line_start_error(rc, logs, sub, "Permission denied")


@ROOT_ONLY
def test_outbox_file_owned_by_another_user(broker: Mosquitto, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o777)
    (state / "outbox.sqlite3").write_bytes(b"")
    (state / "outbox.sqlite3").chmod(0o600)  # root's file in a directory nobody can write
    rc, logs, sub = _start_failure(broker, tmp_path, state, wrapper=_as_nobody(tmp_path))
    _assert_one_line_start_error(rc, logs, sub, "outbox")


def _garbled_outbox(path: Path) -> bytes:
    """A real outbox with pending events, one of its pages then overwritten."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute(
        "CREATE TABLE outbox (seq INTEGER PRIMARY KEY AUTOINCREMENT, topic TEXT NOT NULL,"
        " payload TEXT NOT NULL, qos INTEGER NOT NULL, retain INTEGER NOT NULL)"
    )
    for i in range(200):
        db.execute(
            "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, 1, 0)",
            ("clonusd/x/y/event", json.dumps({"i": i, "pad": "x" * 300})),
        )
    db.commit()
    db.close()
    data = bytearray(path.read_bytes())
    for off in range(4096 * 3, 4096 * 3 + 2500):
        data[off] = (off * 131) & 0xFF
    path.write_bytes(bytes(data))
    return bytes(data)


@pytest.mark.parametrize("how", ["random_bytes", "garbled_pages"])
def test_corrupt_outbox_is_moved_aside_and_alarmed(
    broker: Mosquitto, tmp_path: Path, daemons: list[Daemon], how: str
) -> None:
    state = tmp_path / "state"
    box = state / "outbox.sqlite3"
    if how == "random_bytes":
        state.mkdir()
        box.write_bytes(os.urandom(50_000))
        original = box.read_bytes()
    else:
        original = _garbled_outbox(box)
    sub = Subscriber(broker.port)
    d = Daemon(
        write_config(tmp_path / "c.toml", broker.port, state, [{"at_s": 2, "beats": 12}]), SPEED
    )
    daemons.append(d)
    d.start()
    try:
        assert sub.wait_for(lambda: bool(_clonus(sub, "clonus.end")), 30), d.logs()
    finally:
        assert d.terminate() == 0
    alarm = _daemon_events(sub, "daemon.outbox_replaced")
    assert len(alarm) == 1 and alarm[0]["priority"] == "technical_alarm"
    kept = Path(alarm[0]["moved_to"])
    assert kept.parent == state and kept.read_bytes() == original  # kept, never deleted
    assert sqlite3.connect(box).execute("PRAGMA quick_check").fetchone()[0] == "ok"
    _every_onset_ended(sub)
    _no_traceback(d)
    sub.close()


@ROOT_ONLY
def test_disk_filling_during_the_run(
    broker: Mosquitto, tmp_path: Path, daemons: list[Daemon], notify: Notify
) -> None:
    """The file system fills mid-episode: a storage alarm and every event the outbox
    cannot take (the episode's end at least) are published directly, no event the daemon
    made is lost, the daemon says offline (storage_failed), stops feeding the watchdog
    and exits non-zero. Which write fails first (the next update, or removing a sent
    event from the outbox) depends on timing, so the test does not assume it."""
    sub = Subscriber(broker.port)
    with tmpfs(tmp_path / "state", 4096) as state:
        cfg = write_config(tmp_path / "c.toml", broker.port, state, [{"at_s": 2, "beats": 300}])
        d = Daemon(cfg, 2.0, env=notify.env())
        daemons.append(d)
        d.start()
        assert sub.wait_for(lambda: bool(_clonus(sub, "clonus.onset")), 30), d.logs()
        # The daemon may meet the full disk while the last bytes are still being
        # written: its failure comes after the filling began, not after it ended.
        filling = time.monotonic()
        _fill(state)
        rc = d.wait(timeout=60)
    assert rc == 1, d.logs()
    _no_traceback(d)
    assert sub.wait_for(lambda: bool(_daemon_events(sub, "daemon.storage_failed")), 5)
    alarm = _daemon_events(sub, "daemon.storage_failed")[0]
    assert alarm["priority"] == "technical_alarm" and "full" in alarm["detail"]
    _every_onset_ended(sub)  # the end could not be stored: it went out directly
    assert sub.wait_for(lambda: sub.on("/state")[-1]["clonus"] is False, 5)
    assert sub.wait_for(lambda: sub.availability_reasons()[-1:] == ["storage_failed"], 5)
    made = sorted((r["event"], r["beats"]) for r in _logged(d, *CLONUS_KINDS))

    def got() -> list[tuple[str, int]]:
        return sorted((e["event"], e["beats"]) for k in CLONUS_KINDS for e in _clonus(sub, k))

    assert made and sub.wait_for(lambda: got() == made, 5), (made, got())
    pings = [t for t, _ in notify.messages("WATCHDOG=1")]
    failed_at = max(t for t, _ in notify.messages("STOPPING=1"))
    assert pings and max(pings) < failed_at and failed_at > filling
    assert any("storage failed" in m for _, m in notify.messages("STATUS="))
    sub.close()


# -- 3./4. a dead publisher, files the config names -----------------------------------------


@pytest.mark.parametrize("key", ["password_file", "tls_ca"])
def test_missing_file_named_by_the_config(tmp_path: Path, notify: Notify, key: str) -> None:
    from conftest import clonusd

    missing = tmp_path / f"no-{key}"
    extra = 'username = "clonusd"\n' if key == "password_file" else ""
    cfg = write_config(
        tmp_path / "c.toml", 1, tmp_path / "state", [], mqtt_extra=f'{extra}{key} = "{missing}"'
    )
    chk = clonusd("check-config", str(cfg))
    assert chk.returncode == 2 and f"mqtt.{key}" in chk.stderr and str(missing) in chk.stderr
    run = subprocess.run(
        [*_cli(), "run", "--config", str(cfg)],
        env=notify.env(),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert run.returncode == 2 and str(missing) in run.stderr and "Traceback" not in run.stderr
    assert not notify.messages("READY=1") and not notify.messages("WATCHDOG=1")


def _cli() -> list[str]:
    import sys

    return [sys.executable, "-m", "clonusd.daemon.cli"]


# -- 5. events the broker's ACL refuses ------------------------------------------------------


def _secure_broker(tmp_path: Path, deny: str = "") -> tuple[Mosquitto, Path]:
    """Mosquitto with the shipped ACL and a password file made as the README says."""
    mosquitto_passwd = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    passwd = tmp_path / "mosquitto.passwd"
    for i, user in enumerate(("clonusd", "monitor")):
        create = ["-c"] if i == 0 else []
        subprocess.run(
            [mosquitto_passwd, *create, "-b", str(passwd), user, f"{user}-secret"], check=True
        )
    acl = tmp_path / "acl"
    acl.write_text((ROOT / "config" / "mosquitto" / "acl").read_text() + deny)
    conf = (ROOT / "config" / "mosquitto" / "clonusd.conf").read_text()
    conf = conf.replace("/etc/mosquitto/clonusd.passwd", str(passwd))
    conf = conf.replace("/etc/mosquitto/clonusd.acl", str(acl))
    if os.geteuid() == 0:
        conf = "user root\n" + conf  # else it drops to "mosquitto", who cannot read tmp_path
    broker = Mosquitto(tmp_path, extra="persistence false\n" + conf)
    secret = tmp_path / "mqtt.password"
    secret.write_text("clonusd-secret\n")
    return broker, secret


def test_publish_refused_by_the_acl_stays_in_the_outbox_and_alarms(
    tmp_path: Path, daemons: list[Daemon]
) -> None:
    broker, secret = _secure_broker(
        tmp_path, deny="\nuser clonusd\ntopic deny clonusd/bed-12/ankle-l/event\n"
    )
    broker.start()
    try:
        sub = Subscriber(broker.port, auth=("monitor", "monitor-secret"))
        state = tmp_path / "state"
        cfg = write_config(
            tmp_path / "c.toml",
            broker.port,
            state,
            [{"at_s": 2, "beats": 12}],
            mqtt_extra=f'username = "clonusd"\npassword_file = "{secret}"',
        )
        d = Daemon(cfg, SPEED)
        daemons.append(d)
        d.start()
        assert sub.wait_for(lambda: bool(_daemon_events(sub, "daemon.publish_denied")), 30), (
            d.logs()
        )
        alarm = _daemon_events(sub, "daemon.publish_denied")[0]
        assert alarm["topic"] == "clonusd/bed-12/ankle-l/event"
        assert alarm["priority"] == "technical_alarm" and alarm["reason_code"] == 0x87
        assert sub.wait_for(lambda: any(s.get("clonus") for s in sub.on("/state")), 30)
        assert sub.wait_for(lambda: sub.on("/state")[-1]["clonus"] is False, 30)
        assert d.terminate() == 0
        rows = sqlite3.connect(state / "outbox.sqlite3").execute(
            "SELECT topic, payload FROM outbox"
        )
        kinds = [json.loads(p)["event"] for t, p in rows]
        assert "clonus.onset" in kinds and "clonus.end" in kinds  # kept, not lost
        assert not _clonus(sub, "clonus.onset")  # the refused topic delivered nothing
        assert "mqtt_publish_denied" in d.logs() and "clonusd/bed-12/ankle-l/event" in d.logs()
        _no_traceback(d)
        sub.close()
    finally:
        broker.stop()


# -- 6. the return after an outage ------------------------------------------------------------


def test_backlog_leaves_after_the_brokers_return_with_no_wait_over_2_s(
    broker: Mosquitto, tmp_path: Path, daemons: list[Daemon]
) -> None:
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "c.toml", broker.port, state, [{"at_s": 8, "beats": 10}])
    d = Daemon(cfg, 2.0)
    daemons.append(d)
    d.start()
    sub = Subscriber(broker.port)
    assert sub.wait_for(lambda: "online" in sub.availability(), 20), d.logs()
    sub.close()
    broker.stop()
    box = state / "outbox.sqlite3"

    def stored() -> int:
        with contextlib.closing(sqlite3.connect(box)) as db:
            return int(db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def retries() -> list[float]:
        return [r["retry_in_s"] for r in _logged(d, "mqtt_unavailable")]

    # Onset .. end waiting, and five retries: doubling from 0.5 s, the fourth and fifth
    # waits would be 2-4 s and 4-8 s without the cap, however busy the machine.
    assert wait_for(lambda: stored() >= 2 and len(retries()) >= 5, 60), d.logs()
    broker.start()
    back = time.monotonic()
    sub = Subscriber(broker.port)
    assert sub.wait_for(lambda: stored() == 0, 30), d.logs()
    print(f"backlog gone {time.monotonic() - back:.1f} s after the broker's return")
    # The cause, not the clock: however long the outage, no retry waited over 2 s.
    assert max(retries()) <= 2.0, retries()
    assert d.terminate() == 0
    _no_traceback(d)
    sub.close()


# -- 10. a loaded machine is not a stalled band -------------------------------------------------


@pytest.mark.slow
def test_a_daemon_held_up_by_the_machine_raises_no_false_stall(
    broker: Mosquitto, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """SIGSTOP for 5 s (longer than stall_after_s), then SIGCONT: the samples the band
    made meanwhile are only late, and no stall may be declared for them; the daemon
    says the loop was held up."""
    sub = Subscriber(broker.port)
    cfg = write_config(tmp_path / "c.toml", broker.port, tmp_path / "state", [])
    d = Daemon(cfg, 2.0)
    daemons.append(d)
    d.start()
    assert sub.wait_for(lambda: any(s.get("rate_hz") for s in sub.on("/status")), 30), d.logs()
    assert d.proc is not None
    for _ in range(1):
        d.proc.send_signal(signal.SIGSTOP)
        time.sleep(5.0)
        d.proc.send_signal(signal.SIGCONT)
        time.sleep(3.0)
    assert d.terminate() == 0
    assert not _daemon_events(sub, "sensor.stall"), d.logs()[-2000:]
    assert "event_loop_held_up" in d.logs()
    sub.close()


def four_band_config(path: Path, port: int, state: Path, extra_source: str = "") -> Path:
    """Four simulated bands on two beds, with random episodes (soak and load cases)."""
    sensors = ""
    for i, (bed, sid, side) in enumerate(
        [
            ("bed-1", "ankle-l", "left"),
            ("bed-1", "ankle-r", "right"),
            ("bed-2", "ankle-l", "left"),
            ("bed-2", "ankle-r", "right"),
        ]
    ):
        sensors += f"""
[[sensors]]
id = "{sid}"
bed = "{bed}"
site = "ankle"
side = "{side}"
[sensors.source]
kind = "simulated"
random_every_s = 20
seed = {i}
{extra_source}
"""
    path.write_text(f"""
[daemon]
id = "soak"
state_dir = "{state}"
[mqtt]
host = "127.0.0.1"
port = {port}
keepalive_s = 5
{sensors}""")
    return path


@pytest.mark.slow
def test_a_daemon_short_of_cpu_raises_no_false_stall(
    broker: Mosquitto, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """Four bands faster than the CPU can follow (a loaded machine): the sources fall
    behind, but every band still delivers, so none may be called stalled."""
    sub = Subscriber(broker.port)
    cfg = four_band_config(tmp_path / "c.toml", broker.port, tmp_path / "state")
    d = Daemon(cfg, 60.0)
    daemons.append(d)
    d.start()
    assert sub.wait_for(lambda: len(sub.on("/status")) >= 4, 30), d.logs()
    sub.wait_for(lambda: False, 12.0)
    assert d.terminate() == 0
    stalls = _daemon_events(sub, "sensor.stall")
    assert not stalls, [(s["bed"], s["sensor"]) for s in stalls]
    assert len(_clonus(sub, "clonus.onset")) >= 4  # it was working, not idle
    _no_traceback(d)
    sub.close()


@pytest.mark.slow
def test_repeated_sigkills_mid_episode_leave_no_episode_open(
    broker: Mosquitto, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """Six SIGKILLs, each at a different point of a long episode, then a clean stop:
    every onset a subscriber saw has exactly one end, and no episode id repeats."""
    sub = Subscriber(broker.port)
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "c.toml", broker.port, state, [{"at_s": 2, "beats": 400}])
    for i in range(6):
        d = Daemon(cfg, SPEED)
        daemons.append(d)
        d.start()
        n = len(_clonus(sub, "clonus.onset"))
        assert sub.wait_for(lambda n=n: len(_clonus(sub, "clonus.onset")) > n, 30), d.logs()
        time.sleep(0.3 * i)  # a different point of the episode each time
        d.kill()
        _no_traceback(d)
    last = Daemon(write_config(tmp_path / "d.toml", broker.port, state, []), SPEED)
    daemons.append(last)
    last.start()
    assert sub.wait_for(lambda: len(_clonus(sub, "clonus.end")) >= 6, 30), [
        (e["event"], e["episode"], e.get("end_reason")) for e in sub.events()
    ]
    assert last.terminate() == 0
    onsets = [e["episode"] for e in _clonus(sub, "clonus.onset")]
    ends = [e["episode"] for e in _clonus(sub, "clonus.end")]
    assert len(onsets) == len(set(onsets)) == 6
    assert sorted(ends) == sorted(onsets)  # exactly one end each
    assert all(e["end_reason"] == "daemon_restarted" for e in _clonus(sub, "clonus.end"))
    assert sub.wait_for(lambda: sub.on("/state")[-1]["clonus"] is False, 5)
    sub.close()


@pytest.mark.slow
def test_a_frozen_broker_is_reported_and_loses_nothing(
    broker: Mosquitto, tmp_path: Path, daemons: list[Daemon], notify: Notify
) -> None:
    """SIGSTOP on Mosquitto: TCP still accepts, nothing is acknowledged. The daemon says
    so in STATUS=, keeps the events, and delivers them all once the broker answers."""
    sub = Subscriber(broker.port)
    state = tmp_path / "state"
    cfg = write_config(tmp_path / "c.toml", broker.port, state, [{"at_s": 10, "beats": 12}])
    d = Daemon(cfg, 1.0, env=notify.env())
    daemons.append(d)
    d.start()
    assert sub.wait_for(lambda: "online" in sub.availability(), 20), d.logs()
    assert broker.proc is not None
    broker.proc.send_signal(signal.SIGSTOP)
    try:
        # Frozen until the daemon has said so and the whole episode has happened
        # meanwhile, however long a busy machine takes to get there.
        def frozen_through() -> bool:
            said = any("unreachable" in m for _, m in notify.messages("STATUS="))
            return said and '"clonus.end"' in d.logs()

        assert wait_for(frozen_through, 90), d.logs()
    finally:
        broker.proc.send_signal(signal.SIGCONT)
    assert sub.wait_for(lambda: bool(_clonus(sub, "clonus.end")), 40), d.logs()
    assert d.terminate() == 0
    assert any("unreachable" in m for _, m in notify.messages("STATUS="))
    assert len(_clonus(sub, "clonus.onset")) == 1
    _every_onset_ended(sub)
    _no_traceback(d)
    sub.close()


# -- 3. a crash leaves "offline" behind --------------------------------------------------------


def test_a_client_that_leaves_on_an_exception_leaves_its_will(broker: Mosquitto) -> None:
    """aiomqtt disconnects cleanly on any exception, and a clean DISCONNECT makes the
    broker drop the will; the daemon's client disconnects "with will message" instead."""
    import asyncio

    from clonusd.daemon.config import MqttConfig
    from clonusd.daemon.mqtt.publisher import make_client

    sub = Subscriber(broker.port)
    cfg = MqttConfig(host="127.0.0.1", port=broker.port)

    async def crash() -> None:
        async with make_client(cfg, "crasher", "clonusd-crasher", None) as client:
            await client.publish_checked(
                "clonusd/daemon/crasher/availability", '{"state": "online"}', retain=True
            )
            raise RuntimeError("a bug")

    with pytest.raises(RuntimeError):
        asyncio.run(crash())
    assert sub.wait_for(lambda: sub.availability()[-1:] == ["offline"], 10)
    assert sub.availability_reasons()[-1] == "connection_lost"
    sub.close()


def test_a_tls_file_gone_at_run_time_is_logged_with_its_path(
    broker: Mosquitto, tmp_path: Path, daemons: list[Daemon]
) -> None:
    """The CA file passes the checks at start, then disappears: the next connection
    attempt names the file, and the daemon stops non-zero instead of retrying blind."""
    ca = tmp_path / "ca.crt"
    subprocess.run(
        [
            "openssl",
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "2",
            "-subj",
            "/CN=test-ca",
            "-keyout",
            str(tmp_path / "ca.key"),
            "-out",
            str(ca),
        ],
        check=True,
        capture_output=True,
    )
    # The broker speaks plain MQTT, so every TLS handshake fails and the client retries.
    cfg = write_config(
        tmp_path / "c.toml", broker.port, tmp_path / "state", [], mqtt_extra=f'tls_ca = "{ca}"'
    )
    d = Daemon(cfg, SPEED)
    daemons.append(d)
    d.start()
    assert wait_for(lambda: "mqtt_unavailable" in d.logs(), 30), d.logs()
    ca.unlink()
    assert d.wait(timeout=30) == 1
    logs = d.logs()
    assert "mqtt_tls_files_unusable" in logs and str(ca) in logs
    _no_traceback(d)
