"""Desired state in SQLite: the nodes (their specs, whether suspended or being deleted) and a
bounded log of events. What actually runs is asked of the backends, never stored as truth."""

from __future__ import annotations

import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from checkpoint2svc.control.models import AliasSpec, Event, NodeSpec, NodeStatus
from checkpoint2svc.errors import Checkpoint2SvcError

SCHEMA = """
CREATE TABLE IF NOT EXISTS nodes (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    image TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    suspended INTEGER NOT NULL DEFAULT 0,
    deleting INTEGER NOT NULL DEFAULT 0,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    node TEXT NOT NULL,
    instance TEXT NOT NULL,
    message TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_node ON events (node, id);
CREATE TABLE IF NOT EXISTS aliases (
    name TEXT PRIMARY KEY,
    spec TEXT NOT NULL,
    created REAL NOT NULL,
    updated REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS unused_images (
    image TEXT PRIMARY KEY
);
"""
MAX_EVENTS_PER_NODE = 200


class NodeNotFoundError(Checkpoint2SvcError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no node named {name!r}; `checkpoint2svc node list` shows the nodes")


class NodeExistsError(Checkpoint2SvcError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"a node named {name!r} already exists; choose another name, or change it with "
            f"`checkpoint2svc node update {name}`"
        )


class AliasNotFoundError(Checkpoint2SvcError):
    def __init__(self, name: str) -> None:
        super().__init__(f"no alias named {name!r}; `checkpoint2svc alias list` shows the aliases")


class AliasExistsError(Checkpoint2SvcError):
    def __init__(self, name: str) -> None:
        super().__init__(
            f"an alias named {name!r} already exists; change it with "
            f"`checkpoint2svc alias update {name} --node NODE=WEIGHT ...`"
        )


@dataclass
class NodeRow:
    spec: NodeSpec
    image: str
    status: NodeStatus
    suspended: bool
    deleting: bool
    created: float
    updated: float

    @property
    def name(self) -> str:
        return self.spec.name


class Store:
    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _row(self, row: tuple[str, str, str, int, int, float, float]) -> NodeRow:
        spec, image, status, suspended, deleting, created, updated = row
        return NodeRow(
            NodeSpec.from_json(spec), image, NodeStatus(status), bool(suspended),
            bool(deleting), created, updated,
        )  # fmt: skip

    def add_node(self, spec: NodeSpec) -> NodeRow:
        now = time.time()
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO nodes (name, spec, status, created, updated) VALUES (?,?,?,?,?)",
                    (spec.name, spec.to_json(), NodeStatus.CREATED, now, now),
                )
            except sqlite3.IntegrityError:
                raise NodeExistsError(spec.name) from None
        return self.node(spec.name)

    def node(self, name: str) -> NodeRow:
        with self._lock:
            row = self._db.execute(
                "SELECT spec, image, status, suspended, deleting, created, updated FROM nodes "
                "WHERE name = ?",
                (name,),
            ).fetchone()
        if row is None:
            raise NodeNotFoundError(name)
        return self._row(row)

    def nodes(self) -> list[NodeRow]:
        with self._lock:
            rows = self._db.execute(
                "SELECT spec, image, status, suspended, deleting, created, updated FROM nodes "
                "ORDER BY name"
            ).fetchall()
        return [self._row(r) for r in rows]

    def update_node(
        self,
        name: str,
        *,
        spec: NodeSpec | None = None,
        image: str | None = None,
        status: NodeStatus | None = None,
        suspended: bool | None = None,
        deleting: bool | None = None,
    ) -> None:
        sets: list[str] = []
        values: list[object] = []
        for column, value in (
            ("spec", spec.to_json() if spec else None), ("image", image),
            ("status", status), ("suspended", suspended), ("deleting", deleting),
        ):  # fmt: skip
            if value is not None:
                sets.append(f"{column} = ?")
                values.append(int(value) if isinstance(value, bool) else value)
        if not sets:
            return
        with self._lock:
            cursor = self._db.execute(
                f"UPDATE nodes SET {', '.join(sets)}, updated = ? WHERE name = ?",
                (*values, time.time(), name),
            )
        if cursor.rowcount == 0:
            raise NodeNotFoundError(name)

    def remove_node(self, name: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM nodes WHERE name = ?", (name,))
            self._db.execute("DELETE FROM events WHERE node = ?", (name,))

    def add_event(self, event: Event) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO events (time, node, instance, message) VALUES (?,?,?,?)",
                (event.time, event.node, event.instance, event.message),
            )
            self._db.execute(
                "DELETE FROM events WHERE node = ? AND id NOT IN "
                "(SELECT id FROM events WHERE node = ? ORDER BY id DESC LIMIT ?)",
                (event.node, event.node, MAX_EVENTS_PER_NODE),
            )

    def events(self, node: str, limit: int = 20) -> list[Event]:
        with self._lock:
            rows = self._db.execute(
                "SELECT time, node, message, instance FROM events WHERE node = ? "
                "ORDER BY id DESC LIMIT ?",
                (node, limit),
            ).fetchall()
        return [Event(*row) for row in reversed(rows)]

    # --- aliases ------------------------------------------------------------------------------
    def add_alias(self, spec: AliasSpec) -> None:
        now = time.time()
        with self._lock:
            try:
                self._db.execute(
                    "INSERT INTO aliases (name, spec, created, updated) VALUES (?,?,?,?)",
                    (spec.name, spec.to_json(), now, now),
                )
            except sqlite3.IntegrityError:
                raise AliasExistsError(spec.name) from None

    def alias(self, name: str) -> AliasSpec:
        with self._lock:
            row = self._db.execute("SELECT spec FROM aliases WHERE name = ?", (name,)).fetchone()
        if row is None:
            raise AliasNotFoundError(name)
        return AliasSpec.from_json(row[0])

    def aliases(self) -> list[AliasSpec]:
        with self._lock:
            rows = self._db.execute("SELECT spec FROM aliases ORDER BY name").fetchall()
        return [AliasSpec.from_json(r[0]) for r in rows]

    def update_alias(self, spec: AliasSpec) -> None:
        with self._lock:
            cursor = self._db.execute(
                "UPDATE aliases SET spec = ?, updated = ? WHERE name = ?",
                (spec.to_json(), time.time(), spec.name),
            )
        if cursor.rowcount == 0:
            raise AliasNotFoundError(spec.name)

    def add_unused_image(self, image: str) -> None:
        """An image the controller built that no node needs any more (to be removed)."""
        with self._lock:
            self._db.execute("INSERT OR IGNORE INTO unused_images (image) VALUES (?)", (image,))

    def unused_images(self) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT image FROM unused_images ORDER BY image").fetchall()
        return [str(image) for (image,) in rows]

    def forget_unused_image(self, image: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM unused_images WHERE image = ?", (image,))

    def remove_alias(self, name: str) -> None:
        with self._lock:
            cursor = self._db.execute("DELETE FROM aliases WHERE name = ?", (name,))
        if cursor.rowcount == 0:
            raise AliasNotFoundError(name)
