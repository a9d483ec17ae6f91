"""Real processes for end-to-end tests: a private Mosquitto, the daemon, a subscriber."""

from __future__ import annotations

import json
import os
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
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """A broker on a free loopback port; `stop()`/`start()` simulate an outage. Its log
    (connections, client-id takeovers) is kept in `log_file`; `extra` adds config lines."""

    def __init__(self, workdir: Path, extra: str = "", name: str = "mosquitto") -> None:
        exe = shutil.which("mosquitto") or "/usr/sbin/mosquitto"
        if not Path(exe).exists():
            raise RuntimeError("mosquitto is not installed (apt-get install mosquitto)")
        self.exe = exe
        self.port = free_port()
        self.conf = workdir / f"{name}.conf"
        self.log_file = workdir / f"{name}.log"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\n"
            f"log_dest stderr\nlog_type error\nlog_type warning\n"
            f"log_type notice\nlog_type information\nconnection_messages true\n"
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
        while time.monotonic() < deadline:
            try:
                socket.create_connection(("127.0.0.1", self.port), timeout=0.2).close()
                return
            except OSError:
                time.sleep(0.05)
        raise RuntimeError("mosquitto did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


class Subscriber:
    """Collects every message under a topic filter, with arrival times. Like `Daemon`,
    every one is recorded and closed at teardown."""

    opened: ClassVar[list[Subscriber]] = []

    def __init__(
        self, port: int, topic: str = "clonusd/#", auth: tuple[str, str] | None = None
    ) -> None:
        Subscriber.opened.append(self)
        self.messages: list[tuple[float, str, Any, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=f"test-sub-{os.getpid()}-{time.monotonic_ns()}",
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
    """`clonusd run` as a process; with `hostname`, in a private UTS namespace whose host
    name is that (as if on its own Raspberry Pi), so its defaults follow that name. Every
    one started is recorded, so that the test's teardown (`reap()`, called by an autouse
    fixture in conftest) ends it whatever the test's outcome: a failed assertion must not
    leave a daemon running."""

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
