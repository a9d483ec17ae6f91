"""`clonusd monitor`: a terminal bedside view of every sensor under a topic prefix.

It shows each sensor's link and signal health from the retained status, and a clear
alarm while sustained clonus is on (from the retained state, so an alarm that started
before the monitor did is shown too), with the beats and frequency the detector measured.
On a ward many daemons share the broker: each bed whose daemon is offline (its last will)
says so. `--plain` prints one line per change instead of redrawing: for logs and tests.

Display monitors each get every event. `--share GROUP` is for processing that must happen
once per event (a pager gateway, an archive): events come through the shared subscription
`$share/GROUP/{prefix}/+/+/event` (Mosquitto 2), so the broker hands each event to one
member of the group; availability, state and status still reach every member.
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
# A daemon publishes each sensor's status at least every 5 s. Three periods without one
# and the bed is not being watched from here, whatever its availability says: a bridged
# Pi that lost power or its network cannot get its last will to this broker.
SILENT_AFTER_S = 15.0
# MQTT QoS 1 is at least once: a bridge whose link fails between a PUBLISH and its PUBACK
# sends that event again. Events carry a unique id; the ids of this many recent events are
# kept to drop such repeats (a repeat comes within the bridge's in-flight window).
SEEN_IDS = 4096


def _num(value: object, fmt: str = ".1f") -> str:
    """A number as `fmt`, or "?" for anything that is not one (a monitor shows what came)."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return "?"
    try:
        return format(value, fmt)
    except (ValueError, OverflowError):
        return "?"


def _text(value: object, limit: int = 40) -> str:
    """A short printable rendering of any JSON value (no terminal control characters)."""
    shown = value if isinstance(value, str) else json.dumps(value)
    return "".join(c if c.isprintable() else "?" for c in shown)[:limit]


@dataclass
class Board:
    prefix: str
    daemons: dict[str, dict[str, Any]] = field(default_factory=dict)  # availability by id
    status: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    state: dict[tuple[str, str], dict[str, Any]] = field(default_factory=dict)
    last_event_id: str = ""
    heard: dict[tuple[str, str], float] = field(default_factory=dict)  # last status, monotonic
    silent: set[tuple[str, str]] = field(default_factory=set)

    def silent_for(self, key: tuple[str, str], now: float) -> float | None:
        """Seconds since this sensor's last status, if that is too long (and its daemon
        did not say it went offline)."""
        if key not in self.heard or self.offline(key) is not None:
            return None
        quiet = now - self.heard[key]
        return quiet if quiet > SILENT_AFTER_S else None

    def newly_silent(self, now: float) -> list[str]:
        """A line for each sensor that has just gone silent."""
        lines = []
        for key in sorted(self.heard):
            quiet = self.silent_for(key, now)
            if quiet is not None and key not in self.silent:
                self.silent.add(key)
                lines.append(f"NO STATUS from {key[0]} ({key[1]}) for {quiet:.0f} s: not watched")
        return lines

    malformed: int = 0
    repeats: int = 0  # events seen again under an id already shown (QoS 1 resends)
    seen_ids: dict[str, None] = field(default_factory=dict)  # insertion-ordered, bounded
    technical: list[str] = field(default_factory=list)

    def _repeat(self, event_id: object) -> bool:
        """Whether this event id was already shown; remembers it if not."""
        if not isinstance(event_id, str) or not event_id:
            return False  # an event without an id cannot be told apart: show it
        if event_id in self.seen_ids:
            self.repeats += 1
            return True
        self.seen_ids[event_id] = None
        if len(self.seen_ids) > SEEN_IDS:
            del self.seen_ids[next(iter(self.seen_ids))]
        return False

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
        """Apply one message; returns a one-line description of what changed, if notable.

        Anything may arrive on a broker: what is not a message of the topic contract is
        counted and reported as malformed, never trusted and never fatal."""
        try:
            return self._update(topic, payload)
        except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
            return self._malformed(topic, f"unexpected content ({type(exc).__name__})")

    def _malformed(self, topic: str, why: str) -> str:
        self.malformed += 1
        return f"MALFORMED message on {_text(topic, 80)}: {why}"

    def _update(self, topic: str, payload: bytes) -> str | None:
        rest = topic.removeprefix(self.prefix + "/").split("/")
        if len(rest) != 3:
            return None
        try:
            data = json.loads(payload.decode(errors="replace"))
        except (ValueError, RecursionError):
            return self._malformed(topic, "not JSON")
        if not isinstance(data, dict):
            return self._malformed(topic, f"a JSON {type(data).__name__}, not an object")
        if rest[0] == "daemon":
            return self._daemon(topic, rest[1], rest[2], data)
        key = (rest[0], rest[1])
        side, site = _text(data.get("side", "")), _text(data.get("site", ""))
        where = f"{_text(rest[0])} {side} {site} ({_text(rest[1])})"
        if rest[2] == "status":
            self.status[key] = data
            self.heard[key] = time.monotonic()
            if key in self.silent:
                self.silent.discard(key)
                return f"status again from {rest[0]} ({rest[1]})"
            return None
        if rest[2] == "state":
            self.state[key] = data
            return None
        if rest[2] != "event" or self._repeat(data.get("id")):
            return None
        self.last_event_id = _text(data.get("id", ""), 80)
        kind = data.get("event")
        if kind == "clonus.onset":
            return self._episode(
                "ALARM sustained clonus", topic, where, data, ("beats", "frequency_hz")
            )
        if kind == "clonus.end":
            return self._episode(
                "ended", topic, where, data, ("beats", "duration_s", "frequency_hz")
            )
        if kind == "clonus.update":
            return None
        if kind == "sensor.stall":
            return f"TECHNICAL: {where}: no samples (stall)"
        if kind == "sensor.stall_cleared":
            return f"samples flowing again: {where}"
        if data.get("priority") == "technical_alarm":
            line = f"TECHNICAL: {where}: {_text(kind)} {_text(data.get('detail', ''), 120)}"
            self.technical = [*self.technical[-4:], line]
            return line
        return self._malformed(topic, f"unknown event {_text(kind)}")

    def _episode(
        self, label: str, topic: str, where: str, data: dict[str, Any], keys: tuple[str, ...]
    ) -> str:
        bad = [
            k
            for k in keys
            if isinstance(data.get(k), bool) or not isinstance(data.get(k), int | float)
        ]
        if bad:
            # An alarm with unreadable figures is still an alarm: show it, and say so.
            return f"{label}: {where}: figures unreadable ({', '.join(bad)}); " + self._malformed(
                topic, "missing or non-numeric " + ", ".join(bad)
            )
        if label == "ended":
            return (
                f"ended: {where}: {_num(data['beats'], 'd')} beats, "
                f"{_num(data['duration_s'])} s, {_num(data['frequency_hz'])} Hz"
                + (f", {_text(data['end_reason'])}" if "end_reason" in data else "")
            )
        return (
            f"ALARM sustained clonus: {where}: {_num(data['beats'], 'd')} beats at "
            f"{_num(data['frequency_hz'])} Hz"
        )

    def _daemon(self, topic: str, daemon: str, kind: str, data: dict[str, Any]) -> str | None:
        if kind == "availability":
            if not isinstance(data.get("state"), str):
                self.daemons[daemon] = {"state": "unknown", "reason": "malformed availability"}
                return self._malformed(topic, "availability is not {state, reason}")
            self.daemons[daemon] = data
            beds = sorted(
                {k[0] for k in set(self.status) | set(self.state) if self.daemon_of(k) == daemon}
            )
            line = f"daemon {_text(daemon)} {_text(data['state'])} ({_text(data.get('reason'))})"
            if data["state"] != "online" and beds:
                line += ": beds " + ", ".join(_text(b) for b in beds) + " unwatched"
            return line
        if kind == "event":
            if self._repeat(data.get("id")):
                return None
            self.last_event_id = _text(data.get("id", ""), 80)
            line = (
                f"TECHNICAL: daemon {_text(daemon)}: {_text(data.get('event'))}"
                f" {_text(data.get('detail', ''), 160)}"
            )
            self.technical = [*self.technical[-4:], line]
            return line
        return None

    def render(self, broker: str, now: float | None = None) -> str:
        now = time.monotonic() if now is None else now
        online = sum(1 for a in self.daemons.values() if a.get("state") == "online")
        lines = [
            f"{BOLD}clonusd bedside monitor{RESET}   broker {broker}   daemons: "
            f"{online}/{len(self.daemons)} online   {time.strftime('%H:%M:%S')}",
            "",
        ]
        for line in self.technical:
            lines.append(f"{RED} {line} {RESET}")
        if self.malformed:
            lines.append(f"{DIM}{self.malformed} malformed message(s) ignored{RESET}")
        if self.repeats:
            lines.append(f"{DIM}{self.repeats} repeated event(s) shown once{RESET}")
        keys = sorted(set(self.status) | set(self.state))
        if not keys:
            lines.append("waiting for sensors…")
        for key in keys:
            st, ss = self.status.get(key, {}), self.state.get(key, {})
            side = _text(st.get("side", ss.get("side", "")))
            site = _text(st.get("site", ss.get("site", "")))
            kind = _text(st.get("sensor_kind", "?"))
            lines.append(f"{BOLD}{_text(key[0])}  {side} {site}{RESET}  ({_text(key[1])}, {kind})")
            down = self.offline(key)
            if down is not None:
                lines.append(
                    f"  {RED}  DAEMON {_text(self.daemon_of(key))} OFFLINE"
                    f" ({_text(down.get('reason'))}): this bed is not watched  {RESET}"
                )
            quiet = self.silent_for(key, now)
            if quiet is not None:
                lines.append(
                    f"  {RED}  NO STATUS FOR {quiet:.0f} s: this bed is not watched  {RESET}"
                )
            if ss.get("clonus"):
                lines.append(
                    f"  {RED}  SUSTAINED CLONUS  {_num(ss.get('beats'), 'd')} beats at "
                    f"{_num(ss.get('frequency_hz'))} Hz  {RESET}"
                )
            else:
                lines.append("  no clonus")
            if st:
                stall = f"  {RED} STALLED {RESET}" if st.get("stalled") else ""
                loss = st.get("packet_loss")
                loss_pct = "?"
                if isinstance(loss, int | float) and not isinstance(loss, bool):
                    loss_pct = _num(100 * loss)
                lines.append(
                    f"  {DIM}link {_text(st.get('link'))}  rate {_num(st.get('rate_hz'))} Hz "
                    f"(nominal {_num(st.get('nominal_rate_hz'))})  loss "
                    f"{loss_pct} %  battery "
                    f"{_num(st.get('battery_pct'), 'd')} %  quality {_text(st.get('quality'))}"
                    f"{RESET}{stall}"
                )
            lines.append("")
        return "\n".join(lines)


def subscriptions(prefix: str, share: str | None = None) -> list[str]:
    """The topic filters of a display monitor (everything), or of a member of a shared
    group (events shared, the retained context not)."""
    if share is None:
        return [f"{prefix}/#"]
    return [
        f"$share/{share}/{prefix}/+/+/event",
        f"{prefix}/daemon/+/availability",
        f"{prefix}/+/+/state",
        f"{prefix}/+/+/status",
    ]


async def run_monitor(
    host: str,
    port: int,
    prefix: str,
    plain: bool,
    duration: float | None,
    out: TextIO = sys.stdout,
    share: str | None = None,
) -> int:
    board = Board(prefix)
    deadline = None if duration is None else time.monotonic() + duration
    broker = f"{host}:{port}"
    while deadline is None or time.monotonic() < deadline:
        try:
            async with aiomqtt.Client(
                host, port, identifier=f"clonusd-monitor-{os.getpid()}"
            ) as client:
                for topic in subscriptions(prefix, share):
                    await client.subscribe(topic, qos=1)
                if plain:
                    group = f" (shared group {share})" if share else ""
                    print(f"connected to {broker}{group}", file=out, flush=True)
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
    # One pending read, kept across redraw timeouts: cancelling aiomqtt's __anext__ on a
    # timeout (wait_for) can drop a message it has just taken off the queue.
    pending: asyncio.Future[aiomqtt.Message] = asyncio.ensure_future(messages.__anext__())
    try:
        while deadline is None or time.monotonic() < deadline:
            timeout = 0.5 if deadline is None else max(0.0, min(0.5, deadline - time.monotonic()))
            done, _ = await asyncio.wait({pending}, timeout=timeout)
            if done:
                msg = pending.result()  # a lost connection raises MqttError here
                pending = asyncio.ensure_future(messages.__anext__())
                topic = str(msg.topic)
                line = board.update(topic, bytes(msg.payload))
                if plain and line:
                    if topic.endswith("/event"):
                        line += f"  [{board.last_event_id}]"
                    print(f"{time.strftime('%H:%M:%S')} {line}", file=out, flush=True)
            if plain:
                for line in board.newly_silent(time.monotonic()):
                    print(f"{time.strftime('%H:%M:%S')} {line}", file=out, flush=True)
            if not plain and time.monotonic() - last_draw > 0.25:
                last_draw = time.monotonic()
                out.write("\x1b[2J\x1b[H" + board.render(broker) + "\n")
                out.flush()
    finally:
        pending.cancel()
