"""Opening the project's databases: the catalog (``catalog_url``), and the accounts store and the
portal's search log (``accounts_url``, one database). SQLite on a station, PostgreSQL for a site; the
same rules for each, so a mistake in any URL reads the same way."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from evidence.errors import ConfigError, EvidenceError, StorageUnavailable
from storage.sqlite_files import BUSY_SECONDS, use_write_ahead_log


def open_engine(url: str, setting: str, *, private: bool = False) -> Engine:
    """An engine for ``url``, the value of the setting named ``setting``; a ``ConfigError`` naming it
    for a URL that is not SQLite or PostgreSQL, or whose driver is missing. A ``private`` SQLite file
    is created readable by its owner alone."""
    try:
        parsed = sa.engine.make_url(url)
    except sa.exc.ArgumentError as err:
        raise ConfigError(f"{setting} {url!r} is not a database URL: {err}") from err
    if parsed.get_backend_name() not in ("sqlite", "postgresql"):
        raise ConfigError(
            f"{setting} uses {parsed.get_backend_name()!r}: use sqlite:///PATH or postgresql://HOST/DB"
        )
    try:
        if parsed.get_backend_name() == "sqlite":
            if parsed.database and parsed.database != ":memory:":
                path = Path(parsed.database)
                path.parent.mkdir(parents=True, exist_ok=True)
                if private:
                    _create_private_file(path)
            engine = sa.create_engine(parsed, connect_args={"timeout": BUSY_SECONDS})
            sa.event.listen(engine, "connect", _sqlite_pragmas)
            return engine
        return sa.create_engine(parsed, pool_pre_ping=True)
    except (ImportError, sa.exc.NoSuchModuleError) as err:
        raise ConfigError(
            f"{setting} needs a database driver that is not installed ({err}); for PostgreSQL "
            "install psycopg (pip install 'psycopg[binary]') and use postgresql+psycopg://..."
        ) from err


@contextmanager
def translated_errors(
    what: str, *, fix: str, passing: tuple[type[BaseException], ...] = ()
) -> Iterator[None]:
    """Database failures become the project's errors, so a person sees what to do, not a driver trace:
    ``what`` names the database ("catalog at sqlite:///..."), ``fix`` says what to check when it cannot
    be used. Errors in ``passing`` reach the caller as they are (a unique row already taken)."""
    try:
        yield
    except EvidenceError:
        raise
    except passing:
        raise
    except (sa.exc.OperationalError, sa.exc.InterfaceError, sa.exc.TimeoutError) as error:
        raise StorageUnavailable(f"{what} is unavailable ({first_line(error)}); try again") from error
    except sa.exc.SQLAlchemyError as error:
        raise ConfigError(f"{what} cannot be used ({first_line(error)}); {fix}") from error


def first_line(error: BaseException) -> str:
    """The database's own words for a failure, one line, for a message a person reads."""
    text = str(getattr(error, "orig", None) or error)
    return text.splitlines()[0][:200] if text else type(error).__name__


def _create_private_file(path: Path) -> None:
    # password hashes and TOTP secrets: owner-only from the first byte (SQLite gives its -wal and -shm
    # files the same permissions as the database file)
    with suppress(FileExistsError):
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL: readers (a listing) never wait for a writer (an ingest recording its items), and the
    # other way round; several processes then share one file safely
    use_write_ahead_log(dbapi_connection)
    dbapi_connection.execute("PRAGMA synchronous=NORMAL")
