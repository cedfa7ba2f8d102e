"""Statements of the ingest path (and the instance lookup of every retrieve, and the
computed attributes of every search), compiled once per dialect and run on the DB-API
cursor.

Why: storing an instance runs a few small statements in the index writer thread (is
the SOP Instance UID there, insert the row), and that one thread serializes every
association's writes.  Run through ``Connection.execute``, each statement costs far
more in SQLAlchemy's Python (cache key, execution context, result object) than in the
database itself: most of the writer's time during an ingest of small instances.  Run
here (with the writer's other changes), the writer's CPU per small instance halves
(0.26 to 0.11 ms on SQLite, 0.55 to 0.2 ms on PostgreSQL, on the benchmark machine).

Here the statement is still SQLAlchemy Core, built from index.py's tables (the one
definition of the schema, nothing written by hand), compiled once per dialect and per
set of columns; only its execution is direct: the compiled SQL and its parameters, in
the dialect's paramstyle (positional for SQLite's qmark, named for psycopg's
pyformat), with the bind processors SQLAlchemy would apply (e.g. DATETIME as text on
SQLite), on the cursor of the connection and transaction the job was given.  Errors
are raised as SQLAlchemy's (IntegrityError, OperationalError…), a connection the
database dropped is invalidated, as ``Connection.execute`` does, and the engine's
``before_cursor_execute`` and ``after_cursor_execute`` listeners see each statement.
A statement whose result columns need processing is refused: rows come back as the
DB-API's tuples.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.sql.compiler import Compiled


class _Compiled:
    """One statement compiled for one dialect (and one set of columns)."""

    __slots__ = ("sql", "names", "positional", "processors")

    def __init__(self, compiled: Compiled, dialect: Dialect) -> None:
        if any(
            entry.type.dialect_impl(dialect).result_processor(dialect, None) is not None
            for entry in getattr(compiled, "_result_columns", ())
        ):
            raise ValueError(f"result columns need processing: {compiled.string}")
        if compiled.escaped_bind_names:  # type: ignore[attr-defined]
            raise ValueError(f"bind names need escaping: {compiled.string}")
        self.sql = compiled.string
        self.positional: bool = compiled.positional  # type: ignore[attr-defined]
        self.names: tuple[str, ...] = tuple(
            compiled.positiontup  # type: ignore[attr-defined]
            if self.positional
            else dict.fromkeys(compiled.bind_names.values())  # type: ignore[attr-defined]
        )
        bind = compiled._bind_processors  # type: ignore[attr-defined]
        self.processors: tuple[tuple[int, str, Callable[[Any], Any]], ...] = tuple(
            (n, name, bind[name]) for n, name in enumerate(self.names) if name in bind
        )

    def parameters(self, values: Mapping[str, Any]) -> Sequence[Any] | dict[str, Any]:
        """The DB-API parameters for `values` (bind name → value)."""
        if self.positional:
            listed = [values[name] for name in self.names]
            for n, _name, process in self.processors:
                listed[n] = process(listed[n])
            return listed
        named = {name: values[name] for name in self.names}
        for _n, name, process in self.processors:
            named[name] = process(named[name])
        return named


class Prepared:
    """A Core statement to run many times with different values, cheaply.

    `statement` is the statement, or makes it for a dialect's name (INSERT … ON
    CONFLICT is dialect-specific).  `per_columns`: compile for the columns present in
    the values (an INSERT or UPDATE whose values are a row's dict, as
    ``conn.execute(insert, row)`` does); otherwise the values are the statement's bind
    parameters, by name."""

    def __init__(
        self, statement: sa.Executable | Callable[[str], sa.Executable], per_columns: bool = False
    ) -> None:
        self.statement = statement
        self.per_columns = per_columns
        self._compiled: weakref.WeakKeyDictionary[Dialect, dict[Any, _Compiled]] = (
            weakref.WeakKeyDictionary()
        )
        self._last: tuple[Dialect | None, dict[Any, _Compiled]] = (None, {})  # a fast path

    def first(self, conn: Connection, values: Mapping[str, Any]) -> tuple[Any, ...] | None:
        """Run with `values`; the first row of the result (None when there is none)."""
        rows = self._run(conn, values, everything=False)
        return tuple(rows[0]) if rows else None

    def all(self, conn: Connection, values: Mapping[str, Any]) -> list[tuple[Any, ...]]:
        """Run with `values`; every row of the result."""
        return [tuple(row) for row in self._run(conn, values, everything=True)]

    def _run(self, conn: Connection, values: Mapping[str, Any], everything: bool) -> list[Any]:
        compiled = self._compile(conn.dialect, values)
        parameters = compiled.parameters(values)
        if not conn.in_transaction():
            conn.begin()  # as Connection.execute would (autobegin)
        cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
        events = conn._has_events or conn.engine._has_events
        try:
            if events:  # what listens to the engine's statements sees these too
                conn.dispatch.before_cursor_execute(
                    conn, cursor, compiled.sql, parameters, None, False
                )
            cursor.execute(compiled.sql, parameters)
            if events:
                conn.dispatch.after_cursor_execute(
                    conn, cursor, compiled.sql, parameters, None, False
                )
            if cursor.description is None:
                return []
            if everything:
                return list(cursor.fetchall())
            row = cursor.fetchone()
            return [] if row is None else [row]
        except conn.dialect.loaded_dbapi.Error as exc:
            raise _wrapped(conn, compiled.sql, parameters, exc, cursor) from exc
        finally:
            cursor.close()

    def _compile(self, dialect: Dialect, values: Mapping[str, Any]) -> _Compiled:
        last_dialect, by_columns = self._last
        if last_dialect is not dialect:
            by_columns = self._compiled.setdefault(dialect, {})
            self._last = (dialect, by_columns)
        columns = tuple(values) if self.per_columns else None
        compiled = by_columns.get(columns)
        if compiled is None:
            compiled = by_columns[columns] = self._compiled_for(dialect, columns, values)
        return compiled

    def _compiled_for(
        self, dialect: Dialect, columns: tuple[str, ...] | None, values: Mapping[str, Any]
    ) -> _Compiled:
        statement = self.statement
        if not isinstance(statement, sa.Executable):
            statement = statement(dialect.name)
        compiled = _Compiled(
            statement.compile(  # type: ignore[attr-defined]
                dialect=dialect, column_keys=list(columns) if columns else None
            ),
            dialect,
        )
        missing = set(compiled.names).difference(values)
        if missing:  # e.g. a column default SQLAlchemy would compute: not done here
            raise ValueError(f"no values for {sorted(missing)}: {compiled.sql}")
        return compiled


def _wrapped(
    conn: Connection, sql: str, parameters: Any, exc: Exception, cursor: Any
) -> sa.exc.StatementError:
    """The DB-API error as SQLAlchemy raises it; a lost connection is invalidated so
    that the pool does not hand it out again."""
    dialect = conn.dialect
    lost = dialect.is_disconnect(exc, conn.connection.dbapi_connection, cursor)  # type: ignore[arg-type]
    if lost:
        conn.invalidate(exc)
    return sa.exc.DBAPIError.instance(
        sql,
        parameters,
        exc,
        dialect.loaded_dbapi.Error,
        connection_invalidated=lost,
        dialect=dialect,
    )
