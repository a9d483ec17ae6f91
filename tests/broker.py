"""Real processes for end-to-end tests: a private Mosquitto, the daemon, a subscriber."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import random
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, ClassVar

import paho.mqtt.client as mqtt


def wait_for(pred: Callable[[], bool], timeout: float = 30.0) -> bool:
    """Poll `pred` until it holds or `timeout` passes; its last answer."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if pred():
            return True
        time.sleep(0.05)
    return pred()


def free_port() -> int:
    """A free loopback port below the kernel's ephemeral range. A port the kernel handed
    out could be taken by an outgoing connection between a broker's stop and start (a
    daemon retrying the broker that is down can even connect to itself on it): a
    restarted Mosquitto then failed with "Address already in use"."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 32768
    ports = list(range(max(1024, low - 10000), low))
    random.shuffle(ports)
    for port in ports:
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError(f"no free loopback port below {low}")


class Mosquitto:
    """A broker on a free loopback port; `stop()`/`start()` simulate an outage. Its log
    (connections, client-id takeovers) is kept in `log_file`; `extra` adds config lines
    to the default config (in place of `persistence false`), `config` replaces it (a
    listener on `{port}` is then its own business)."""

    def __init__(
        self,
        workdir: Path,
        name: str = "mosquitto",
        config: str | None = None,
        extra: str = "",
    ) -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.exe = exe
        self.port = free_port()
        self.conf = workdir / f"{name}.conf"
        self.log_file = workdir / f"{name}.log"
        logging = (
            "log_dest stderr\nlog_type error\nlog_type warning\n"
            "log_type notice\nlog_type information\nconnection_messages true\n"
        )
        if config is not None:  # a whole config (its listener given {port})
            self.conf.write_text(logging + config.replace("{port}", str(self.port)))
        else:
            self.conf.write_text(
                f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
                + logging
                + (extra or "persistence false\n")
            )
        self.proc: subprocess.Popen[bytes] | None = None

    def logs(self) -> str:
        return self.log_file.read_text() if self.log_file.exists() else ""

    def start(self) -> None:
        with self.log_file.open("a") as log:  # stderr is unbuffered; a log file is not
            self.proc = subprocess.Popen(
                [self.exe, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=log
            )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and self.proc.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        last = self.logs().strip().splitlines()[-1:] or ["no log"]
        raise RuntimeError(f"mosquitto did not start on port {self.port}: {last[0]}")

    def stop(self, graceful: bool = False) -> None:
        """Kill the broker (an outage), or with `graceful` let it save its persistence
        file first, as a broker restarted for maintenance does."""
        if self.proc is not None:
            if graceful:
                self.proc.terminate()
            else:
                self.proc.kill()
            self.proc.wait()
            self.proc = None


class Subscriber:
    """Collects every message under a topic filter, with arrival times. Like `Daemon`,
    every one is recorded and closed at teardown."""

    opened: ClassVar[list[Subscriber]] = []

    def __init__(
        self,
        port: int,
        topic: str = "clonusd/#",
        auth: tuple[str, str] | None = None,
        session: str | None = None,
    ) -> None:
        """`session`: a client id whose session the broker keeps (clean session off), so
        that what is published while this subscriber is away waits for it."""
        Subscriber.opened.append(self)
        self.messages: list[tuple[float, str, Any, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=session or f"test-sub-{os.getpid()}-{time.monotonic_ns()}",
            clean_session=session is None,
        )
        if auth is not None:
            self.client.username_pw_set(*auth)
        self.client.on_message = self._on_message
        self.client.on_connect = lambda c, *_: c.subscribe(topic, qos=1)
        self.client.reconnect_delay_set(0.1, 0.5)
        self.client.connect("127.0.0.1", port, keepalive=5)
        self.client.loop_start()

    def _on_message(self, _c: Any, _u: Any, msg: mqtt.MQTTMessage) -> None:
        text = msg.payload.decode(errors="replace")
        try:
            payload: Any = json.loads(text)
        except ValueError:
            payload = text
        with self._lock:
            self.messages.append((time.monotonic(), msg.topic, payload, bool(msg.retain)))

    def events(self) -> list[dict[str, Any]]:
        with self._lock:
            return [p for _, topic, p, _ in self.messages if topic.endswith("/event")]

    def on(self, topic_suffix: str) -> list[Any]:
        with self._lock:
            return [p for _, topic, p, _ in self.messages if topic.endswith(topic_suffix)]

    def availability(self, daemon: str | None = None) -> list[str]:
        """The availability states seen, oldest first (of one daemon, or of any)."""
        with self._lock:
            return [
                p.get("state") if isinstance(p, dict) else p
                for _, topic, p, _ in self.messages
                if topic.endswith("/availability")
                and (daemon is None or topic.endswith(f"/daemon/{daemon}/availability"))
            ]

    def availability_reasons(self) -> list[str]:
        return [p.get("reason", "") for p in self.on("/availability") if isinstance(p, dict)]

    def wait_for(self, pred: Callable[[], bool], timeout: float = 30.0) -> bool:
        return wait_for(pred, timeout)

    def close(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()

    @classmethod
    def reap(cls) -> None:
        while cls.opened:
            cls.opened.pop().close()


def write_config(
    path: Path,
    port: int,
    state_dir: Path,
    episodes: list[dict[str, Any]],
    source: str | None = None,
    mqtt_extra: str = "",
    daemon_id: str | None = None,
    bed: str = "bed-12",
) -> Path:
    """A one-sensor config: a simulated ankle band with `episodes`, or the given source
    block (TOML lines under [sensors.source]). No client id: the default (from the daemon
    id, itself the host name unless `daemon_id` is given) is what installs use."""
    if source is None:
        eps = ", ".join("{" + ", ".join(f"{k} = {v}" for k, v in e.items()) + "}" for e in episodes)
        source = f'kind = "simulated"\nepisodes = [{eps}]'
    path.write_text(f"""
[daemon]
state_dir = "{state_dir}"
{f'id = "{daemon_id}"' if daemon_id else ""}
[mqtt]
host = "127.0.0.1"
port = {port}
keepalive_s = 5
{mqtt_extra}
[[sensors]]
id = "ankle-l"
bed = "{bed}"
site = "ankle"
side = "left"
[sensors.source]
{source}
""")
    return path


def can_set_hostname() -> bool:
    """Whether a process can get a host name of its own (a private UTS namespace)."""
    if shutil.which("unshare") is None:
        return False
    probe = subprocess.run(
        ["unshare", "--user", "--map-root-user", "--uts", "hostname", "probe"],
        capture_output=True,
        check=False,
    )
    return probe.returncode == 0


class Daemon:
    """`clonusd run` as a separate process; with `hostname`, in a private UTS namespace
    whose host name is that (as if on its own Raspberry Pi), so its defaults follow that
    name. Every one started is recorded, so that the test's teardown (`reap()`, called by
    an autouse fixture in conftest) ends it whatever the test's outcome: a failed
    assertion must not leave a daemon running."""

    started: ClassVar[list[Daemon]] = []

    def __init__(
        self,
        config: Path,
        speed: float = 1.0,
        hostname: str | None = None,
        env: dict[str, str] | None = None,
        wrapper: list[str] | None = None,
    ) -> None:
        self.config = config
        self.speed = speed
        self.hostname = hostname
        self.env = env
        self.wrapper = wrapper or []  # e.g. setpriv to run as another user
        self.proc: subprocess.Popen[str] | None = None
        self.log = config.with_suffix(".log")

    @classmethod
    def reap(cls) -> None:
        """Kill every daemon a test started and did not stop."""
        while cls.started:
            d = cls.started.pop()
            if d.proc is not None and d.proc.poll() is None:
                d.proc.kill()
                d.proc.wait()

    def start(self) -> None:
        cmd = [
            sys.executable,
            "-m",
            "clonusd.daemon.cli",
            "run",
            "--config",
            str(self.config),
            "--speed",
            str(self.speed),
        ]
        if self.hostname is not None:
            # unshare execs sh, which execs the daemon: proc.pid is the daemon itself.
            script = 'hostname "$0" && exec "$@"'
            cmd = [
                "unshare",
                "--user",
                "--map-root-user",
                "--uts",
                "sh",
                "-c",
                script,
                self.hostname,
                *cmd,
            ]
        self.proc = subprocess.Popen(
            [*self.wrapper, *cmd],
            stdout=subprocess.DEVNULL,
            stderr=self.log.open("a"),
            text=True,
            env=self.env,
        )
        Daemon.started.append(self)

    def wait(self, timeout: float) -> int:
        assert self.proc is not None
        return self.proc.wait(timeout=timeout)

    def stop(self) -> None:
        """Teardown: end the process whatever state it is in."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def terminate(self, timeout: float = 15.0) -> int:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout=timeout)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait()

    def logs(self) -> str:
        return self.log.read_text() if self.log.exists() else ""


class LinkProxy:
    """A TCP relay standing for the ward network between a Pi and the ward broker.

    `cut()` is a partition: from then on bytes are dropped both ways and nothing closes,
    as when a cable is pulled or a switch dies; each side finds out only by its MQTT
    keepalive. New connections during the cut are accepted and go nowhere, like packets
    into a dead segment. `restore()` ends the partition: the connections it stranded are
    reset and new ones reach the broker again."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._lock = threading.Lock()
        self._cut = False
        self._open: list[socket.socket] = []
        self._closed = False
        threading.Thread(target=self._accept, daemon=True).start()

    def cut(self) -> None:
        with self._lock:
            self._cut = True

    def restore(self) -> None:
        with self._lock:
            self._cut = False
            stranded, self._open = self._open, []
        for s in stranded:
            _reset(s)

    def close(self) -> None:
        self._closed = True
        self.restore()
        self._listener.close()

    def _accept(self) -> None:
        while not self._closed:
            try:
                down, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                cut = self._cut
                self._open.append(down)
            if cut:  # into the void: read and drop until restore() resets it
                threading.Thread(target=self._pump, args=(down, None), daemon=True).start()
                continue
            try:
                up = socket.create_connection(("127.0.0.1", self.target_port), timeout=5)
            except OSError:
                _reset(down)
                continue
            up.settimeout(None)
            with self._lock:
                self._open.append(up)
            threading.Thread(target=self._pump, args=(down, up), daemon=True).start()
            threading.Thread(target=self._pump, args=(up, down), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket | None) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            with self._lock:
                cut = self._cut
            if not data:
                if not cut and dst is not None:  # a close passes only while linked
                    _reset(dst)
                return
            if cut or dst is None:
                continue
            try:
                dst.sendall(data)
            except OSError:
                _reset(src)
                return


def _reset(s: socket.socket) -> None:
    with contextlib.suppress(OSError):
        s.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(OSError):
        s.close()


class Monitor:
    """`clonusd monitor --plain` as a process, its lines collected as they come."""

    def __init__(self, port: int, share: str | None = None) -> None:
        cmd = [sys.executable, "-m", "clonusd.daemon.cli", "monitor", "--plain"]
        cmd += ["--broker", f"127.0.0.1:{port}", *(["--share", share] if share else [])]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: list[str] = []
        self._new: queue.Queue[str] = queue.Queue()
        assert self.proc.stdout is not None
        out = self.proc.stdout
        self._reader = threading.Thread(target=lambda: [self._new.put(ln) for ln in out])
        self._reader.start()

    def _drain(self) -> None:
        while True:
            try:
                self.lines.append(self._new.get_nowait())
            except queue.Empty:
                return

    def until(self, text: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self._drain()
            if any(text in ln for ln in self.lines):
                return
            time.sleep(0.05)
        raise AssertionError(f"monitor never said {text!r}: {self.lines}")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # Ctrl-C: the monitor exits cleanly
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._reader.join(5)
        self._drain()

    def text(self) -> str:
        self._drain()
        return "".join(self.lines)

    def event_ids(self) -> list[str]:
        """The event id of every alarm/event line (the monitor prints it in brackets)."""
        return [
            ln.rstrip().rsplit("[", 1)[1].rstrip("]")
            for ln in self.text().splitlines()
            if ln.rstrip().endswith("]") and "[" in ln
        ]
