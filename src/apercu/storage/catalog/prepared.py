"""Reads on the hottest paths, compiled once and run on the driver's own connection.

A `?wait` on a settled image, a rendition's look at its image and the `?wait` poller's look after each commit
each run one small SELECT. Through a SQLAlchemy `Connection` that cost ten times what the database spends on it
(0.13 ms against 0.01 ms on SQLite: the connection's events, the execution context, the expansion of an `IN`
list, the result's machinery). `Prepared` keeps the statement as it is written with SQLAlchemy (one statement,
every dialect) and does once, per dialect and per length of each expanding list, what SQLAlchemy does per
execution: the SQL text, the order and processing of its parameters (`construct_expanded_state`), and each
column's result processor (DateTime from SQLite's text, JSON). A query is then the driver's `execute` on a
pooled connection, which the pool resets on its return as usual (no transaction is left open).

`PreparedWrite` does the same for a write on the hottest path, the upload's INSERT, on the caller's connection
and inside its transaction (SQLAlchemy's execution of it was ~0.4 ms of the web's CPU per upload, a tenth of
that on the driver). Both raise the driver's errors as SQLAlchemy does, so that `storage.outages` still knows a
catalog that is away or full.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

Values = Mapping[str, Any]  # a bound parameter's value by name; a list for an expanding one
Processor = Callable[[Any], Any] | None
Query = sa.Select[Any] | sa.CompoundSelect[Any]
Write = sa.Insert | sa.Update | sa.Delete


class _Compiled:
    """One statement's text for one dialect and one length of each expanding list."""

    def __init__(self, statement: Query | Write, dialect: sa.Dialect, values: Values) -> None:
        # (a write's VALUES are the columns given, as SQLAlchemy compiles them for an execution)
        compiled = statement.compile(dialect=dialect, column_keys=None if isinstance(statement, Query) else [*values])
        state = compiled.construct_expanded_state(values)
        self.sql = state.statement
        self._order = state.positiontup  # None for a dialect of named parameters (psycopg)
        processors = {  # each parameter's type's (a JSON path's on SQLite), an expanded list's items' too
            **{name: bind.type.dialect_impl(dialect).bind_processor(dialect) for name, bind in compiled.binds.items()},
            **state.processors,
        }
        self._constants = {  # what the statement holds itself (IN_PROGRESS's statuses, JSON paths), processed once
            name: _processed(processors.get(name), value)
            for name, value in state.parameters.items() if not _given(name, values)
        }
        self._processors = {name: processors.get(name) for name in state.parameters if _given(name, values)}

    def parameters(self, values: Values) -> Sequence[Any] | dict[str, Any]:
        """The driver's parameters for these values: a tuple in the text's order, or a dict by name."""
        given = dict(self._constants)
        for name, value in values.items():
            if isinstance(value, list | tuple):
                given.update((f"{name}_{n}", item) for n, item in enumerate(value, 1))
            else:
                given[name] = value
        for name, processor in self._processors.items():
            given[name] = _processed(processor, given[name])
        return given if self._order is None else tuple(given[name] for name in self._order)


def _given(name: str, values: Values) -> bool:
    """Whether the expanded parameter `name` is one of the caller's (`names_3` of an expanding `names`)."""
    if name in values:
        return True
    stem, _, number = name.rpartition("_")
    return number.isdigit() and isinstance(values.get(stem), list | tuple)


def _processed(processor: Processor, value: Any) -> Any:
    return value if processor is None else processor(value)


class Prepared:
    """A SELECT run cheaply on one engine (see the module docstring); its rows as tuples, each column processed
    as SQLAlchemy would."""

    def __init__(self, statement: Query, engine: sa.Engine) -> None:
        self._statement = statement
        self._engine = engine
        dialect = engine.dialect
        self._results: list[Processor] = [
            column.type.dialect_impl(dialect).result_processor(dialect, None) for column in statement.selected_columns
        ]
        self._texts: dict[tuple[tuple[str, int], ...], _Compiled] = {}  # by the length of each expanding list
        self.columns = tuple(str(column.key) for column in statement.selected_columns)

    def _compiled(self, values: Values) -> _Compiled:
        """The text for these values' lists' lengths, compiled with the first values of that shape."""
        lengths = tuple(sorted((name, len(v)) for name, v in values.items() if isinstance(v, list | tuple)))
        found = self._texts.get(lengths)
        if found is None:
            found = self._texts[lengths] = _Compiled(self._statement, self._engine.dialect, values)
        return found

    def rows(self, values: Values) -> list[tuple[Any, ...]]:
        """Every row for these parameter values (an expanding parameter's given as a list). The driver's errors are
        raised as SQLAlchemy raises them (`sqlalchemy.exc.OperationalError`...: what `storage.outages` knows for
        the catalog's outage), and a connection the dialect finds disconnected is dropped from the pool."""
        compiled = self._compiled(values)
        dialect = self._engine.dialect
        with _as_sqlalchemy_errors(dialect, compiled.sql):
            pooled = self._engine.raw_connection()
        try:
            with _as_sqlalchemy_errors(dialect, compiled.sql, pooled):
                found = _run(pooled.driver_connection, compiled.sql, compiled.parameters(values), fetch=True)
        finally:
            pooled.close()  # back to the pool, which rolls back what a SELECT began (psycopg)
        return [self._row(row) for row in found]

    def first(self, values: Values) -> tuple[Any, ...] | None:
        """The first row, or None."""
        found = self.rows(values)
        return found[0] if found else None

    def _row(self, row: Sequence[Any]) -> tuple[Any, ...]:
        return tuple(_processed(process, value) for process, value in zip(self._results, row, strict=True))


class PreparedWrite:
    """A write run cheaply inside the caller's transaction (see the module docstring), compiled once per dialect
    and set of columns given."""

    def __init__(self, statement: Write) -> None:
        self._statement = statement
        self._texts: dict[tuple[str, tuple[str, ...]], _Compiled] = {}

    def execute(self, conn: sa.Connection, values: Values) -> None:
        dialect, shape = conn.dialect, (conn.dialect.name, tuple(values))
        compiled = self._texts.get(shape)
        if compiled is None:
            compiled = self._texts[shape] = _Compiled(self._statement, dialect, values)
        with _as_sqlalchemy_errors(dialect, compiled.sql):  # (the transaction's end handles a lost connection)
            _run(conn.connection.driver_connection, compiled.sql, compiled.parameters(values), fetch=False)


def _run(driver: Any, sql: str, parameters: Sequence[Any] | dict[str, Any], *, fetch: bool) -> list[Any]:
    cursor = driver.cursor()
    try:
        cursor.execute(sql, parameters)
        return cursor.fetchall() if fetch else []
    finally:
        cursor.close()


@contextlib.contextmanager
def _as_sqlalchemy_errors(dialect: sa.Dialect, sql: str, pooled: Any = None) -> Iterator[None]:
    """The driver's errors raised as SQLAlchemy raises them (`sqlalchemy.exc.OperationalError`...: what
    `storage.outages` classifies); a `pooled` connection the dialect finds disconnected is dropped from the pool."""
    try:
        yield
    except dialect.loaded_dbapi.Error as exc:
        lost = pooled is not None and dialect.is_disconnect(exc, pooled.driver_connection, None)
        if lost:
            pooled.invalidate(exc)
        raise sa.exc.DBAPIError.instance(
            sql, None, exc, dialect.loaded_dbapi.Error, connection_invalidated=lost, dialect=dialect,
        ) from exc
