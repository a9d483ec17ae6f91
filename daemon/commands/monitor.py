"""`clonusd monitor`: a terminal bedside view of every sensor under a topic prefix.

It shows each sensor's link and signal health from the retained status, and a clear
alarm while sustained clonus is on (from the retained state, so an alarm that started
before the monitor did is shown too), with the beats and frequency the detector measured.
On a ward many daemons share the broker: each bed whose daemon is offline (its last will)
says so. `--plain` prints one line per change instead of redrawing: for logs and tests.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from dataclasses import dataclass, field
from typing import Any, TextIO

import aiomqtt

RED, BOLD, DIM, RESET = "\x1b[41;97;1m", "\x1b[1m", "\x1b[2m", "\x1b[0m"


@dataclass
class Board:
    prefix: str
    daemons: dict[str, dict[str, Any]] = field(default_factory=dict)  # availability by id
    status: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    state: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)

    def daemon_of(self, key: tuple[str, str]) -> str | None:
        for held in (self.status.get(key), self.state.get(key)):
            if held and isinstance(held.get("daemon"), str):
                return str(held["daemon"])
        return None

    def offline(self, key: tuple[str, str]) -> dict[str, Any] | None:
        """The availability of this sensor's daemon if that daemon is offline."""
        daemon = self.daemon_of(key)
        avail = self.daemons.get(daemon) if daemon else None
        return avail if avail and avail.get("state") != "online" else None

    def update(self, topic: str, payload: bytes) -> str | None:
        """Apply one message; returns a one-line description of what changed, if notable."""
        rest = topic.removeprefix(self.prefix + "/").split("/")
        text = payload.decode(errors="replace")
        try:
            data = json.loads(text)
        except json.JSONDecodeError:
            return None
        if not isinstance(data, dict):
            return None
        if len(rest) == 3 and rest[0] == "daemon" and rest[2] == "availability":
            self.daemons[rest[1]] = data
            beds = sorted(
                {k[0] for k in set(self.status) | set(self.state) if self.daemon_of(k) == rest[1]}
            )
            line = f"daemon {rest[1]} {data.get('state')} ({data.get('reason')})"
            if data.get("state") != "online" and beds:
                line += ": beds " + ", ".join(beds) + " unwatched"
            return line
        if len(rest) != 3:
            return None
        key = (rest[0], rest[1])
        where = f"{rest[0]} {data.get('side', '')} {data.get('site', '')} ({rest[1]})"
        if rest[2] == "status":
            self.status[key] = data
            return None
        if rest[2] == "state":
            self.state[key] = data
            return None
        if rest[2] == "event":
            kind = data.get("event")
            if kind == "clonus.onset":
                return (
                    f"ALARM sustained clonus: {where}: {data['beats']} beats at "
                    f"{data['frequency_hz']:.1f} Hz"
                )
            if kind == "clonus.end":
                return (
                    f"ended: {where}: {data['beats']} beats, {data['duration_s']:.1f} s, "
                    f"{data['frequency_hz']:.1f} Hz"
                )
            if kind == "sensor.stall":
                return f"TECHNICAL: {where}: no samples (stall)"
            if kind == "sensor.stall_cleared":
                return f"samples flowing again: {where}"
        return None

    def render(self, broker: str) -> str:
        online = sum(1 for a in self.daemons.values() if a.get("state") == "online")
        lines = [
            f"{BOLD}clonusd bedside monitor{RESET}   broker {broker}   daemons: "
            f"{online}/{len(self.daemons)} online   {time.strftime('%H:%M:%S')}",
            "",
        ]
        keys = sorted(set(self.status) | set(self.state))
        if not keys:
            lines.append("waiting for sensors…")
        for key in keys:
            st, ss = self.status.get(key, {}), self.state.get(key, {})
            side = st.get("side", ss.get("side", ""))
            site = st.get("site", ss.get("site", ""))
            lines.append(
                f"{BOLD}{key[0]}  {side} {site}{RESET}  ({key[1]}, {st.get('sensor_kind', '?')})"
            )
            down = self.offline(key)
            if down is not None:
                lines.append(
                    f"  {RED}  DAEMON {self.daemon_of(key)} OFFLINE ({down.get('reason')}): "
                    f"this bed is not watched  {RESET}"
                )
            if ss.get("clonus"):
                lines.append(
                    f"  {RED}  SUSTAINED CLONUS  {ss.get('beats')} beats at "
                    f"{ss.get('frequency_hz', 0):.1f} Hz  {RESET}"
                )
            else:
                lines.append("  no clonus")
            if st:
                stall = f"  {RED} STALLED {RESET}" if st.get("stalled") else ""
                lines.append(
                    f"  {DIM}link {st.get('link')}  rate {st.get('rate_hz')} Hz "
                    f"(nominal {st.get('nominal_rate_hz')})  loss "
                    f"{100 * (st.get('packet_loss') or 0):.1f} %  battery "
                    f"{st.get('battery_pct', '?')} %  quality {st.get('quality')}{RESET}{stall}"
                )
            lines.append("")
        return "\n".join(lines)


async def run_monitor(
    host: str, port: int, prefix: str, plain: bool, duration: float | None, out: TextIO = sys.stdout
) -> int:
    board = Board(prefix)
    deadline = None if duration is None else time.monotonic() + duration
    broker = f"{host}:{port}"
    while deadline is None or time.monotonic() < deadline:
        try:
            async with aiomqtt.Client(
                host, port, identifier=f"clonusd-monitor-{os.getpid()}"
            ) as client:
                await client.subscribe(f"{prefix}/#", qos=1)
                if plain:
                    print(f"connected to {broker}", file=out, flush=True)
                await _consume(client, board, plain, broker, deadline, out)
                return 0
        except aiomqtt.MqttError as exc:
            print(f"monitor: broker {broker} unavailable ({exc}); retrying", file=sys.stderr)
            await asyncio.sleep(1.0)
    # --duration ran out before any broker answered: that is not a successful watch.
    print(f"monitor: never reached the broker at {broker}", file=sys.stderr)
    return 1


async def _consume(
    client: aiomqtt.Client,
    board: Board,
    plain: bool,
    broker: str,
    deadline: float | None,
    out: TextIO,
) -> None:
    messages = client.messages.__aiter__()
    last_draw = 0.0
    while deadline is None or time.monotonic() < deadline:
        timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
        try:
            msg = await asyncio.wait_for(messages.__anext__(), timeout=timeout)
        except TimeoutError:
            msg = None
        if msg is not None:
            line = board.update(str(msg.topic), bytes(msg.payload))
            if plain and line:
                print(f"{time.strftime('%H:%M:%S')} {line}", file=out, flush=True)
        if not plain and time.monotonic() - last_draw > 0.25:
            last_draw = time.monotonic()
            out.write("\x1b[2J\x1b[H" + board.render(broker) + "\n")
            out.flush()
