"""How a batch's rows reach the database: one statement per table, values bound once per column.

A batch writes up to a thousand rows a table. SQLAlchemy's executemany binds every value of every row
through the column's type (a Python call each) and asyncpg then runs the statement once per row; here:

- PostgreSQL: the events by binary ``COPY`` (asyncpg's ``copy_records_to_table``, in the session's
  transaction), the other tables by one ``INSERT ... SELECT FROM unnest(<one array per column>) ... ON
  CONFLICT DO UPDATE``. JSON goes as text and is cast to the column's type by the statement.
- SQLite: the driver's executemany of ``INSERT ... ON CONFLICT DO UPDATE`` with rows as tuples.

Values are converted by the columns' own bind processors (:class:`UTCDateTime`, JSON), only for the
columns that have one, so every database stores exactly what the ORM would have stored (on SQLite times by
:func:`sqlite_utc_text`, the same text faster, which sqlite3 calls itself as the adapter of ``datetime``).
"""

from __future__ import annotations

import functools
import json
import operator
import sqlite3
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Any

import asyncpg
from sqlalchemy import JSON, Dialect, Table
from sqlalchemy.exc import IntegrityError, OperationalError
from sqlalchemy.ext.asyncio import AsyncSession

from planexe_ax.readmodel.models import JsonText, UTCDateTime

EVENTS_TABLE = "execution_events"
Row = dict[str, Any]
Convert = Callable[[Any], Any]
_SQLITE_TIME = "%04d-%02d-%02d %02d:%02d:%02d.%06d"
TIMES_KEPT = 1 << 16
"""Times whose bound value is kept (equal times bind alike, whatever their time zone object)."""

__all__ = ["insert_events", "insert_rows", "sqlite_utc_text", "upsert_rows"]


async def upsert_rows(session: AsyncSession, table: Table, rows: Sequence[Row]) -> None:
    """Insert ``rows`` or, where the primary key is taken, overwrite every other column (one statement)."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    connection = await session.connection()
    if dialect.name == "postgresql":
        await connection.exec_driver_sql(_unnest_sql(table, dialect, upsert=True), _arrays(table, dialect, rows))
    else:
        await connection.exec_driver_sql(_values_sql(table, dialect, upsert=True), _tuples(table, dialect, rows))


async def insert_rows(session: AsyncSession, table: Table, rows: Sequence[Row]) -> None:
    """Insert ``rows``, new to ``table`` (one statement; a key stored already fails it, as any INSERT)."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    connection = await session.connection()
    if dialect.name == "postgresql":
        await connection.exec_driver_sql(_unnest_sql(table, dialect, upsert=False), _arrays(table, dialect, rows))
    else:
        await connection.exec_driver_sql(_values_sql(table, dialect, upsert=False), _tuples(table, dialect, rows))


async def insert_events(session: AsyncSession, table: Table, rows: Sequence[Row]) -> None:
    """Insert new rows of ``execution_events``, their ``data`` JSON text already (on PostgreSQL by ``COPY``)."""
    if not rows:
        return
    dialect = session.get_bind().dialect
    connection = await session.connection()
    driver = (await connection.get_raw_connection()).driver_connection if dialect.name == "postgresql" else None
    if not isinstance(driver, asyncpg.Connection) or not driver.is_in_transaction():
        # COPY outside a transaction would commit on its own: the statement is in the one SQLAlchemy begins.
        await insert_rows(session, table, rows)
        return
    names = [column.name for column in table.columns]
    records = _tuples(table, dialect, rows)
    try:
        await driver.copy_records_to_table(table.name, records=records, columns=names)
    except (OSError, asyncpg.InterfaceError, asyncpg.PostgresConnectionError) as exc:
        # As SQLAlchemy reports a lost connection: the projector retries the batch, it does not dead-letter it.
        raise OperationalError(f"COPY {table.name}", None, exc) from exc
    except asyncpg.IntegrityConstraintViolationError as exc:  # an event id stored already: as an INSERT reports it
        raise IntegrityError(f"COPY {table.name}", None, exc) from exc


def _tuples(table: Table, dialect: Dialect, rows: Sequence[Row]) -> list[tuple[Any, ...]]:
    """The rows as tuples in column order, bound (converted a column at a time, as :func:`_arrays`)."""
    get, converts = _layout(table, dialect)
    if not converts:
        return list(map(get, rows))
    return list(zip(*_arrays(table, dialect, rows), strict=True))


def _arrays(table: Table, dialect: Dialect, rows: Sequence[Row]) -> tuple[list[Any], ...]:
    """One list of bound values per column, in column order (a tuple: one set of parameters, not many)."""
    get, converts = _layout(table, dialect)
    arrays = [list(values) for values in zip(*map(get, rows), strict=True)]
    for index, convert in converts:
        arrays[index] = [None if value is None else convert(value) for value in arrays[index]]
    return tuple(arrays)


@functools.cache
def _layout(table: Table, dialect: Dialect) -> tuple[Callable[[Row], tuple[Any, ...]], tuple[tuple[int, Convert], ...]]:
    """A row's values as a tuple in column order (one C call), and the converter of each column that has one."""
    names = [column.name for column in table.columns]
    assert len(names) > 1  # itemgetter of one name gives the value, not a tuple
    converts = _converters(table, dialect)
    return operator.itemgetter(*names), tuple((i, converts[name]) for i, name in enumerate(names) if name in converts)


@functools.cache
def _converters(table: Table, dialect: Dialect) -> dict[str, Convert]:
    """Column name to the function that binds a (non-null) value, for the columns that need one.

    The events' ``data`` is JSON text already (:func:`planexe_ax.readmodel.fold.event_row`). Other JSON
    columns are dumped as the dialect dumps them (on PostgreSQL to text, which the statement casts), but for a
    :class:`JsonText`, bound as it is.
    """
    converts: dict[str, Convert] = {}
    for column in table.columns:
        if isinstance(column.type, JSON) and table.name == EVENTS_TABLE:
            continue
        if isinstance(column.type, JSON):
            pg = dialect.name == "postgresql"
            dump = json.dumps if pg else column.type.dialect_impl(dialect).bind_processor(dialect)
            assert dump is not None  # SQLAlchemy's JSON types serialize on every dialect
            converts[column.name] = functools.partial(_json_text, dump)
            continue
        if isinstance(column.type, UTCDateTime):
            if dialect.name != "sqlite":  # on SQLite, sqlite3 binds a time through the adapter registered below
                converts[column.name] = _utc_times(dialect)
            continue
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        if process is not None:
            converts[column.name] = process
    return converts


def _json_text(dump: Convert, value: Any) -> Any:
    """``value`` dumped to JSON text by ``dump``, unless it is :class:`JsonText` already."""
    return value if type(value) is JsonText else dump(value)


@functools.cache
def _utc_times(dialect: Dialect) -> Convert:
    """:class:`UTCDateTime`'s bind processor on ``dialect``, its results kept as :data:`_sqlite_times` keeps them."""
    process = UTCDateTime().dialect_impl(dialect).bind_processor(dialect)
    assert process is not None  # a TypeDecorator binds through process_bind_param
    return functools.lru_cache(maxsize=TIMES_KEPT)(process)


def sqlite_utc_text(value: datetime) -> str:
    """A time as :class:`UTCDateTime` and SQLite's ``DATETIME`` bind it (naive UTC, ``YYYY-MM-DD HH:MM:SS.ffffff``).

    The same text as SQLAlchemy's two processors give, in a tenth of the time (a test holds them equal): the
    fields formatted by one ``%`` of integers, where ``isoformat`` formats through C's ``printf`` machinery and
    ``astimezone`` and ``replace`` each parse keyword arguments. Every event has a time of its own: this is called
    once per event of a replay.

    Raises:
        ValueError: for a naive datetime, as :class:`UTCDateTime` does.
    """
    offset = value.utcoffset()
    if offset is None:
        raise ValueError("naive datetime given to a UTC column; pass a timezone-aware datetime")
    if offset:
        value -= offset  # the UTC wall-clock time (the fields are all that is formatted)
    fields = (value.year, value.month, value.day, value.hour, value.minute, value.second, value.microsecond)
    return _SQLITE_TIME % fields


@functools.cache
def _values_sql(table: Table, dialect: Dialect, *, upsert: bool) -> str:
    names = [column.name for column in table.columns]
    quote = dialect.identifier_preparer.quote
    sql = f"INSERT INTO {table.name} ({', '.join(map(quote, names))}) VALUES ({', '.join('?' for _ in names)})"
    return sql + _on_conflict(table, quote) if upsert else sql


@functools.cache
def _unnest_sql(table: Table, dialect: Dialect, *, upsert: bool) -> str:
    """``INSERT INTO t (a, b) SELECT a, CAST(b AS jsonb) FROM unnest($1::varchar[], $2::text[]) AS u(a, b)``.

    A JSON column's values go as text, cast to the column's type: ``jsonb``, or ``json`` for
    :data:`~planexe_ax.readmodel.models.DocumentJSON`.
    """
    quote = dialect.identifier_preparer.quote
    names = [quote(column.name) for column in table.columns]
    arrays, selected = [], []
    for number, (column, name) in enumerate(zip(table.columns, names, strict=True), 1):
        column_type = column.type.compile(dialect=dialect)
        json_column = isinstance(column.type, JSON)
        arrays.append(f"${number}::{'text' if json_column else column_type}[]")
        selected.append(f"CAST({name} AS {column_type})" if json_column else name)
    sql = (
        f"INSERT INTO {table.name} ({', '.join(names)}) SELECT {', '.join(selected)} "
        f"FROM unnest({', '.join(arrays)}) AS u({', '.join(names)})"
    )
    return sql + _on_conflict(table, quote) if upsert else sql


def _on_conflict(table: Table, quote: Callable[[str], str]) -> str:
    keys = [quote(column.name) for column in table.primary_key]
    others = [quote(column.name) for column in table.columns if not column.primary_key]
    return f" ON CONFLICT ({', '.join(keys)}) DO UPDATE SET " + ", ".join(
        f"{name} = excluded.{name}" for name in others
    )


_sqlite_times = functools.lru_cache(maxsize=TIMES_KEPT)(sqlite_utc_text)
"""Each time's text, kept: a time is bound more than once (an event's ``ts`` is also its subtask's ``updated_at``)."""

# sqlite3 binds a datetime by this adapter (a naive one raises the ValueError of sqlite_utc_text): the time
# columns of the bulk writes need no conversion of their own, and rows without a JSON column go to executemany as
# they are (no transposing). SQLAlchemy's own statements bind times as text already and never reach it.
sqlite3.register_adapter(datetime, _sqlite_times)
