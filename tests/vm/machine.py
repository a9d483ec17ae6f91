"""The test VM: QEMU booting the image that build-image.sh made (TCG: no KVM needed).

The guest gets three virtio serial ports, each a unix socket on the host:
  ctl   the guest agent's commands and answers, one a line (guest/agent.sh);
  hci   HCI between the guest kernel's /dev/vhci and the host's virtual controllers;
  mqtt  what a subscriber on the guest's Mosquitto receives, one JSON object a line;
and a 9p share: the wheel and the agent in, the guest's logs out. The root disk is
opened with snapshot=on, so every boot starts from the same image and runs can share it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
PORTS = ("ctl", "hci", "mqtt")
QEMU = "qemu-system-x86_64"


class BootError(RuntimeError):
    """The VM did not come up to the point where the test can talk to it."""


class Machine:
    def __init__(self, image: Path, workdir: Path) -> None:
        self.image = image
        self.share = workdir / "share"
        self.sockets = workdir / "sockets"
        self.share.mkdir(parents=True, exist_ok=True)
        self.sockets.mkdir(parents=True, exist_ok=True)
        self.console = self.share / "console.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.started = 0.0
        self.answers: list[tuple[float, str]] = []
        self.mqtt: asyncio.StreamReader | None = None
        self._ctl: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self._writers: list[asyncio.StreamWriter] = []

    def socket(self, name: str) -> Path:
        return self.sockets / f"{name}.sock"

    def command(self) -> list[str]:
        # CLONUSD_VM_ACCEL=kvm where KVM runs a stock guest kernel (it does not on every
        # machine that has a /dev/kvm); TCG works everywhere, about 20x slower.
        kvm = os.environ.get("CLONUSD_VM_ACCEL") == "kvm"
        disk = f"file={self.image / 'rootfs.img'},if=virtio,format=raw,snapshot=on,cache=unsafe"
        share = f"local,path={self.share},mount_tag=host0,security_model=none,id=host0"
        cmd = [QEMU, "-accel", "kvm" if kvm else "tcg,thread=multi"]
        cmd += ["-cpu", "host" if kvm else "max", "-smp", "2", "-m", "1536"]
        cmd += ["-kernel", str(self.image / "vmlinux"), "-initrd", str(self.image / "initrd.img")]
        cmd += ["-append", "root=/dev/vda rw console=ttyS0 panic=-1 quiet loglevel=4"]
        cmd += ["-drive", disk, "-virtfs", share, "-device", "virtio-serial-pci,id=vser"]
        for name in PORTS:
            chardev = f"socket,id={name},path={self.socket(name)},server=on,wait=off"
            cmd += ["-chardev", chardev]
            cmd += ["-device", f"virtserialport,bus=vser.0,chardev={name},name={name}"]
        cmd += ["-nic", "none", "-display", "none", "-no-reboot", "-monitor", "none"]
        cmd += ["-serial", f"file:{self.console}"]
        return cmd

    def prepare(self, wheel: Path) -> None:
        (self.share / "wheel").mkdir(exist_ok=True)
        shutil.copy(wheel, self.share / "wheel" / wheel.name)
        for f in ("agent.sh", "hci-relay.py"):
            shutil.copy(HERE / "guest" / f, self.share / f)
        (self.share / "cmd.sh").write_text("exec bash /mnt/host/agent.sh\n")

    def start(self) -> None:
        if shutil.which(QEMU) is None:
            raise BootError(f"{QEMU} is not installed (apt-get install qemu-system-x86)")
        for name in PORTS:
            self.socket(name).unlink(missing_ok=True)
        self.started = time.monotonic()
        self.proc = subprocess.Popen(
            self.command(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        deadline = time.monotonic() + 20
        while not all(self.socket(n).exists() for n in PORTS):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                out = self.proc.stdout.read().decode(errors="replace") if self.proc.stdout else ""
                self.stop(timeout=0)
                raise BootError(f"QEMU did not start: {out.strip() or 'no output'}")
            time.sleep(0.05)

    async def connect(self) -> None:
        """Open ctl and mqtt (hci is the virtual air's) and wake the agent up."""
        self._ctl = await asyncio.open_unix_connection(str(self.socket("ctl")))
        self.mqtt, mqtt_w = await asyncio.open_unix_connection(
            str(self.socket("mqtt")), limit=1 << 20
        )
        self._writers = [self._ctl[1], mqtt_w]
        await self.send("hello")

    async def send(self, line: str) -> None:
        assert self._ctl is not None
        self._ctl[1].write(line.encode() + b"\n")
        await self._ctl[1].drain()

    async def answer(self, word: str, timeout: float) -> list[str]:
        """The words after the agent's next answer that starts with `word`; an answer
        starting with "error" raises BootError."""
        assert self._ctl is not None
        async with asyncio.timeout(timeout):
            while True:
                raw = await self._ctl[0].readline()
                if not raw:
                    raise BootError(f"the VM closed its control port (waiting for {word!r})")
                line = raw.decode(errors="replace").strip()
                self.answers.append((round(time.monotonic() - self.started, 2), line))
                if line.startswith("error"):
                    raise BootError(f"guest agent: {line}")
                if line.split()[:1] == [word]:
                    return line.split()[1:]

    def console_tail(self, lines: int = 30) -> str:
        try:
            text = self.console.read_text(errors="replace")
        except OSError:
            return "(no console output)"
        return "\n".join(text.splitlines()[-lines:]) or "(no console output)"

    def stop(self, timeout: float = 15.0) -> int | None:
        """Wait for the guest to power off (it does after "bye"), else kill QEMU."""
        for w in self._writers:
            with contextlib.suppress(Exception):
                w.close()
        if self.proc is None:
            return None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            return None


async def read_mqtt(reader: asyncio.StreamReader, into: list[tuple[float, str, Any]]) -> None:
    """Collect mosquitto_sub's JSON lines as (arrival time, topic, payload)."""
    while True:
        raw = await reader.readline()
        if not raw:
            return
        try:
            msg = json.loads(raw)
        except json.JSONDecodeError:
            continue
        into.append((time.monotonic(), str(msg.get("topic", "")), msg.get("payload")))
