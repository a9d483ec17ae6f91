"""A durable on-disk outbox (SQLite): an event is stored before it is published and removed
only after the broker acknowledged it, so a broker outage, a network drop or a SIGKILL of
the daemon loses no event. Rows come back out in the order they went in.

The same file keeps what must survive a crash besides the events: the episodes that are
open (so a restarted daemon can end them) and the counter that makes episode ids unique
across restarts. Every failure to use the file is a `StorageError`; a file that is not a
sound SQLite database is moved aside (kept, never deleted) and a fresh one started.
"""

from __future__ import annotations

import contextlib
import errno
import os
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

# A state directory with less free space than this cannot hold a night of events.
MIN_FREE_BYTES = 1 << 20
_CORRUPT = {"SQLITE_CORRUPT", "SQLITE_NOTADB"}


class StorageError(Exception):
    """The state directory or the outbox cannot be used; the message says which and why."""


@dataclass(frozen=True)
class OutboxRow:
    seq: int
    topic: str
    payload: str
    qos: int
    retain: bool


@dataclass(frozen=True)
class OpenEpisode:
    """An episode whose end was not stored: what the last stored event of it said."""

    sensor: str  # "<bed>/<sensor>"
    episode: int
    topic: str
    payload: str


def check_state_dir(path: Path) -> None:
    """Raise StorageError unless `path` is (or can be made) a writable directory with room."""
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise StorageError(f"state_dir {path}: cannot create it: {_why(exc)}") from None
    if not path.is_dir():
        raise StorageError(f"state_dir {path}: not a directory")
    probe = path / f".write-probe-{os.getpid()}"
    try:
        with probe.open("wb") as fh:
            fh.write(b"\0" * 65536)
            fh.flush()
            os.fsync(fh.fileno())
    except OSError as exc:
        raise StorageError(f"state_dir {path}: cannot write to it: {_why(exc)}") from None
    finally:
        with contextlib.suppress(OSError):
            probe.unlink()
    st = os.statvfs(path)
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE_BYTES:
        raise StorageError(
            f"state_dir {path}: only {free // 1024} KiB free, at least {MIN_FREE_BYTES // 1024}"
            " KiB needed"
        )


def _why(exc: OSError) -> str:
    if exc.errno in (errno.EROFS,):
        return "read-only file system"
    return exc.strerror or str(exc)


def _storage_error(path: Path, action: str, exc: sqlite3.Error) -> StorageError:
    return StorageError(f"outbox {path}: cannot {action}: {exc}")


class Outbox:
    """Thread-safe; call it from `asyncio.to_thread` so an fsync never stalls the loop.

    `replaced` is set when a corrupt file was moved aside at open: the path it was moved to.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self.replaced: Path | None = None
        self._lock = threading.Lock()
        try:
            self._db = self._open()
        except sqlite3.DatabaseError as exc:
            if getattr(exc, "sqlite_errorname", "") not in _CORRUPT:
                raise _storage_error(path, "open it", exc) from None
            self.replaced = self._move_aside()
            try:
                self._db = self._open()
            except sqlite3.Error as exc2:
                raise _storage_error(path, "start a fresh one", exc2) from None

    def _open(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        try:
            # Checked before anything is written, so a corrupt file is kept as it was.
            check = db.execute("PRAGMA quick_check").fetchone()
            if check is None or check[0] != "ok":
                raise _Corrupt(f"quick_check: {check[0] if check else 'no answer'}")
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")  # committed means on disk
            db.execute(
                "CREATE TABLE IF NOT EXISTS outbox ("
                " seq INTEGER PRIMARY KEY AUTOINCREMENT,"
                " topic TEXT NOT NULL, payload TEXT NOT NULL,"
                " qos INTEGER NOT NULL, retain INTEGER NOT NULL)"
            )
            db.execute(
                "CREATE TABLE IF NOT EXISTS open_episode ("
                " sensor TEXT NOT NULL, episode INTEGER NOT NULL,"
                " topic TEXT NOT NULL, payload TEXT NOT NULL,"
                " PRIMARY KEY (sensor, episode))"
            )
            db.execute("CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER)")
            # Episode ids of a fresh file start at the wall clock in ms, so they never repeat
            # those of a file that was moved aside.
            db.execute(
                "INSERT OR IGNORE INTO meta (key, value) VALUES ('episode', ?)",
                (int(time.time() * 1000),),
            )
        except BaseException:
            db.close()
            raise
        return db

    def _move_aside(self) -> Path:
        stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime())
        target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while any(Path(str(target) + x).exists() for x in ("", "-wal", "-shm")):
            n += 1
            target = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
        try:
            for suffix in ("", "-wal", "-shm"):
                src = Path(str(self.path) + suffix)
                if src.exists():
                    src.rename(Path(str(target) + suffix))
        except OSError as exc:
            raise StorageError(
                f"outbox {self.path}: corrupt, and cannot be moved aside: {_why(exc)}"
            ) from None
        return target

    def _write(self, action: str, sql: str, args: tuple[object, ...] = ()) -> sqlite3.Cursor:
        try:
            return self._db.execute(sql, args)
        except sqlite3.Error as exc:
            raise _storage_error(self.path, action, exc) from None

    def put(
        self,
        topic: str,
        payload: str,
        qos: int = 1,
        retain: bool = False,
        *,
        episode: tuple[str, int, bool] | None = None,
    ) -> int:
        """Store one event. `episode` = (sensor, id, still open): the open-episode record is
        kept (or removed, at its end) in the same transaction as the event."""
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE")
                cur = self._db.execute(
                    "INSERT INTO outbox (topic, payload, qos, retain) VALUES (?, ?, ?, ?)",
                    (topic, payload, qos, int(retain)),
                )
                if episode is not None:
                    sensor, ep, still_open = episode
                    if still_open:
                        self._db.execute(
                            "INSERT OR REPLACE INTO open_episode VALUES (?, ?, ?, ?)",
                            (sensor, ep, topic, payload),
                        )
                    else:
                        self._db.execute(
                            "DELETE FROM open_episode WHERE sensor = ? AND episode = ?",
                            (sensor, ep),
                        )
                self._db.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise _storage_error(self.path, "store an event", exc) from None
            return int(cur.lastrowid or 0)

    def _rollback(self) -> None:
        try:
            if self._db.in_transaction:
                self._db.execute("ROLLBACK")
        except sqlite3.Error:
            pass

    def next_episode(self) -> int:
        with self._lock:
            row = self._write(
                "number an episode",
                "UPDATE meta SET value = value + 1 WHERE key = 'episode' RETURNING value",
            ).fetchone()
        return int(row[0])

    def open_episodes(self) -> list[OpenEpisode]:
        with self._lock:
            rows = self._write(
                "read open episodes",
                "SELECT sensor, episode, topic, payload FROM open_episode ORDER BY episode",
            ).fetchall()
        return [OpenEpisode(r[0], int(r[1]), r[2], r[3]) for r in rows]

    def heartbeat(self) -> None:
        """A small committed write: proves the file is still writable (disk, mount, owner)."""
        with self._lock:
            self._write(
                "write a heartbeat",
                "INSERT OR REPLACE INTO meta (key, value) VALUES ('heartbeat', ?)",
                (int(time.time()),),
            )

    def pending(self, limit: int = 100, skip: frozenset[int] = frozenset()) -> list[OutboxRow]:
        """The oldest rows not in `skip` (rows the broker refused, waiting for a retry)."""
        with self._lock:
            try:
                rows = self._db.execute(
                    "SELECT seq, topic, payload, qos, retain FROM outbox ORDER BY seq LIMIT ?",
                    (limit + len(skip),),
                ).fetchall()
            except sqlite3.Error as exc:
                raise _storage_error(self.path, "read pending events", exc) from None
        out = [OutboxRow(r[0], r[1], r[2], r[3], bool(r[4])) for r in rows if r[0] not in skip]
        return out[:limit]

    def ack(self, seq: int) -> None:
        with self._lock:
            self._write("remove a delivered event", "DELETE FROM outbox WHERE seq = ?", (seq,))

    def __len__(self) -> int:
        with self._lock:
            try:
                return int(self._db.execute("SELECT COUNT(*) FROM outbox").fetchone()[0])
            except sqlite3.Error:
                return -1  # unknown; only ever logged

    def close(self) -> None:
        with self._lock, contextlib.suppress(sqlite3.Error):
            self._db.close()


class _Corrupt(sqlite3.DatabaseError):
    sqlite_errorname = "SQLITE_CORRUPT"
