"""The commit bell: a waiter on an SQLite file wakes when another connection commits to it, and only then."""

from __future__ import annotations

import sqlite3
import threading
import time
import uuid
from pathlib import Path

import pytest

from apercu.storage.catalog import Catalog
from apercu.storage.catalog.engine import Database
from apercu.storage.change_feed import announce_settled
from apercu.storage.commit_bell import CommitBell, SettleBell
from apercu.storage.migrations.schema import create_schema


def wal_database(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("CREATE TABLE IF NOT EXISTS t (x)")
    return db


def test_a_commit_rings_at_once_and_silence_does_not(tmp_path: Path) -> None:
    db = wal_database(tmp_path / "a.sqlite")
    bell = CommitBell(str(tmp_path / "a.sqlite"))
    try:
        assert bell.listening
        assert bell.wait(0.05) is False  # nothing written
        timer = threading.Timer(0.2, lambda: db.execute("INSERT INTO t VALUES (1)"))
        started = time.monotonic()
        timer.start()
        assert bell.wait(30) is True
        assert time.monotonic() - started < 10  # woken by the write, long before the timeout
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 1
    finally:
        bell.close()
        db.close()


def test_another_file_in_the_folder_does_not_ring(tmp_path: Path) -> None:
    ours, other = wal_database(tmp_path / "a.sqlite"), wal_database(tmp_path / "b.sqlite")
    bell = CommitBell(str(tmp_path / "a.sqlite"))
    try:
        other.execute("INSERT INTO t VALUES (1)")
        (tmp_path / "note.txt").write_text("written")
        assert bell.wait(0.2) is False
        ours.execute("INSERT INTO t VALUES (2)")
        assert bell.wait(30) is True
    finally:
        bell.close()
        ours.close()
        other.close()


def test_a_database_in_memory_has_no_bell_and_only_sleeps() -> None:
    bell = CommitBell(":memory:")
    started = time.monotonic()
    assert bell.wait(0.05) is False and not bell.listening
    assert time.monotonic() - started >= 0.04


def test_the_settle_bell_rings_once_a_settling_commit_is_made_and_only_then(tmp_path: Path) -> None:
    """The `?wait` pollers' bell on SQLite: a commit that settles nothing (an upload's insert, a claim), or a
    settling transaction rolled back, does not ring it; a settle does, after its commit (what it settled is there
    to be read when the bell rings)."""
    database = str(tmp_path / "catalog.sqlite")
    catalog = Catalog.from_url(f"sqlite:///{database}")
    create_schema(catalog.engine)
    bell = SettleBell(database)
    try:
        assert bell.listening
        image_id = uuid.uuid4().hex
        catalog.images.add(image_id, None)
        catalog.leases.claim(image_id, "task", 60, 3)
        assert bell.wait(0.2) is False
        with pytest.raises(RuntimeError), Database(catalog.engine).begin() as conn:
            announce_settled(conn, image_id)
            raise RuntimeError("rolled back")
        assert bell.wait(0.2) is False
        timer = threading.Timer(0.2, lambda: catalog.leases.fail(image_id, "broken", webhook_url=""))
        timer.start()
        assert bell.wait(30) is True
        outline = catalog.images.outline(image_id)
        assert outline is not None and outline.settled
        timer.join()
    finally:
        bell.close()
