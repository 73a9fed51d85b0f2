"""Pure parts of the projector: UTC columns and ISO text."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from sqlalchemy.dialects import postgresql, sqlite

from planexe_ax.readmodel.models import UTCDateTime
from planexe_ax.readmodel.schemas import iso

PARIS = timezone(timedelta(hours=1))


def test_sqlite_stores_naive_utc_and_reads_aware_utc() -> None:
    column, dialect = UTCDateTime(), sqlite.dialect()
    stored = column.process_bind_param(datetime(2025, 1, 1, 10, 0, tzinfo=PARIS), dialect)
    assert stored == datetime(2025, 1, 1, 9, 0, tzinfo=UTC).replace(tzinfo=None)
    read = column.process_result_value(stored, dialect)
    assert read == datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
    assert read is not None
    assert read.tzinfo is UTC


def test_postgres_keeps_aware_values_in_utc() -> None:
    # SQLAlchemy's PostgreSQL dialect classes have an unannotated __init__.
    column, dialect = UTCDateTime(), postgresql.dialect()  # type: ignore[no-untyped-call]
    stored = column.process_bind_param(datetime(2025, 1, 1, 10, 0, tzinfo=PARIS), dialect)
    assert stored == datetime(2025, 1, 1, 9, 0, tzinfo=UTC)
    assert stored is not None
    assert stored.tzinfo is UTC
    read = column.process_result_value(datetime(2025, 1, 1, 10, 0, tzinfo=PARIS), dialect)
    assert read is not None
    assert read.tzinfo is UTC
    assert read.hour == 9


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="naive"):
        UTCDateTime().process_bind_param(datetime(2025, 1, 1), sqlite.dialect())  # noqa: DTZ001 - naive on purpose


def test_none_passes_through() -> None:
    assert UTCDateTime().process_bind_param(None, sqlite.dialect()) is None
    assert UTCDateTime().process_result_value(None, sqlite.dialect()) is None


def test_iso_is_utc_with_z() -> None:
    assert iso(datetime(2025, 1, 1, 10, 0, 0, 500, tzinfo=PARIS)) == "2025-01-01T09:00:00.000500Z"
    assert iso(None) is None
