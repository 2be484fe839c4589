"""Creating the catalog's schema: processes starting together on a fresh database all come up."""

from __future__ import annotations

import multiprocessing
import multiprocessing.synchronize
from pathlib import Path

import pytest
import sqlalchemy as sa

from apercu.storage.catalog import Catalog
from apercu.storage.catalog.tables import metadata_obj
from apercu.storage.migrations.schema import create_schema

STARTERS = 4
ROUNDS = 12


def create_in_rounds(url: str, barrier: multiprocessing.synchronize.Barrier) -> None:
    """Each round: wait for a fresh database, then create the schema together with the other starters."""
    catalog = Catalog.from_url(url)
    for _ in range(ROUNDS):
        barrier.wait(60)
        create_schema(catalog.engine)
        barrier.wait(60)


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_processes_creating_the_schema_at_once_all_succeed(backend: str, tmp_path: Path,
                                                           request: pytest.FixtureRequest) -> None:
    """The web and the worker of `apercu serve` start together on an empty data directory: one of them used to
    die with "table apercu_workers already exists" when it lost the race halfway through the tables."""
    url = f"sqlite:///{tmp_path / 'catalog.sqlite'}"
    if backend == "postgres":
        url = request.getfixturevalue("fresh_postgres_url")
    engine = Catalog.from_url(url).engine
    context = multiprocessing.get_context("spawn")
    barrier = context.Barrier(STARTERS + 1)
    starters = [context.Process(target=create_in_rounds, args=(url, barrier)) for _ in range(STARTERS)]
    for process in starters:
        process.start()
    try:
        for _ in range(ROUNDS):
            metadata_obj.drop_all(engine)
            barrier.wait(60)  # go
            barrier.wait(60)  # every starter is through (or dead, which breaks the barrier)
            assert all(sa.inspect(engine).has_table(table) for table in metadata_obj.tables)
    finally:
        for process in starters:
            process.join(10)
            if process.is_alive():
                process.kill()
    assert [p.exitcode for p in starters] == [0] * STARTERS
