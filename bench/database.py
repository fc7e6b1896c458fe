"""The benchmark's own PostgreSQL database: dropped, recreated and migrated each run."""

import os
from urllib.parse import urlsplit, urlunsplit

import psycopg

DEFAULT_SERVER = "postgres://postgres@127.0.0.1:5432"
NAME = os.environ.get("BENCH_DATABASE", "fulfillment_bench")


def bench_url() -> str:
    """DATABASE_URL's server (or 127.0.0.1:5432) with the bench's own database name."""
    parts = urlsplit(os.environ.get("DATABASE_URL") or DEFAULT_SERVER)
    if not parts.scheme.startswith("postgres"):
        parts = urlsplit(DEFAULT_SERVER)
    return urlunsplit(parts._replace(path=f"/{NAME}"))


def server_url(url: str, database: str = "postgres") -> str:
    return urlunsplit(urlsplit(url)._replace(path=f"/{database}"))


def recreate(url: str) -> None:
    with psycopg.connect(server_url(url), autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{NAME}" WITH (FORCE)')
        conn.execute(f'CREATE DATABASE "{NAME}"')


def connect(url: str, *, autocommit: bool = True) -> psycopg.Connection:
    return psycopg.connect(url, autocommit=autocommit)


def version(url: str) -> str:
    with connect(url) as conn:
        return conn.execute("SHOW server_version").fetchone()[0]


def vacuum_analyze(url: str, *tables: str) -> None:
    with connect(url) as conn:
        for table in tables:
            conn.execute(f'VACUUM (ANALYZE) "{table}"')
        if not tables:
            conn.execute("VACUUM (ANALYZE)")
