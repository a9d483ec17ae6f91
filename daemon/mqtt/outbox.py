"""A durable on-disk outbox (SQLite): an event is stored before it is published and removed
only after the broker acknowledged it, so a broker outage, a network drop or a SIGKILL of
the daemon loses no event. Rows come back out in the order they went in.
"""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    topic: str
    payload: str
    qos: int
    retain: bool


class Outbox:
    """Thread-safe; call it from `asyncio.to_thread` so an fsync never stalls the loop."""

    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")  # committed means on disk
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS outbox ("
            " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
            " topic TEXT NOT NULL, payload TEXT NOT NULL,"
            " qos INTEGER NOT NULL, retain INTEGER NOT NULL)"
        )

    def put(self, topic: str, payload: str, qos: int = 1, retain: bool = False) -> int:
        with self._lock:
            cur = self._db.execute(
                "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                (topic, payload, qos, int(retain)),
            )
            return int(cur.lastrowid or 0)

    def pending(self, limit: int = 100) -> list[OutboxRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT seq, topic, payload, qos, retain FROM outbox ORDER BY seq LIMIT ?",
                (limit,),
            ).fetchall()
        return [OutboxRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows]

    def ack(self, seq: int) -> None:
        with self._lock:
            self._db.execute("DELETE FROM outbox WHERE seq = ?", (seq,))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])

    def close(self) -> None:
        with self._lock:
            self._db.close()
