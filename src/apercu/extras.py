"""Which optional part of the package (`pip install apercu[EXTRA]`) a setting needs, and the one line that says so.

The wheel installs only what every deployment runs (SQLite catalog and broker, files on local disk). PostgreSQL,
S3 and Redis are chosen by settings, and their client libraries come with extras: `postgres` (psycopg), `s3`
(boto3) and `redis` (redis-py). A setting that chooses a backend whose library is not installed is refused when
the settings are read, naming the extra to install, rather than failing later with an ImportError from deep inside
SQLAlchemy, boto3's loader or kombu. The libraries themselves are imported only where a backend is opened.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from importlib.util import find_spec


@dataclass(frozen=True)
class Extra:
    """A setting (`field` of `Settings`) whose value starting with one of `schemes` needs `module` from `extra`."""

    field: str
    schemes: tuple[str, ...]
    backend: str
    module: str
    extra: str


EXTRAS = (
    Extra("database_url", ("postgresql:", "postgresql+psycopg:", "postgres:", "sqla+postgresql:"), "PostgreSQL",
          "psycopg", "postgres"),
    Extra("broker_url", ("sqla+postgresql:",), "PostgreSQL", "psycopg", "postgres"),
    Extra("storage_url", ("s3:",), "S3", "boto3", "s3"),
    Extra("broker_url", ("redis:", "rediss:"), "Redis", "redis", "redis"),
)


def missing(settings: object, env_name: Callable[[str], str]) -> list[str]:
    """One line per setting of `settings` (a `Settings`; `env_name` gives a field's environment variable) that
    chooses a backend whose library is not installed."""
    problems = []
    for extra in EXTRAS:
        value = str(getattr(settings, extra.field))
        if value.lower().startswith(extra.schemes) and find_spec(extra.module) is None:
            problems.append(f"{env_name(extra.field)} names {extra.backend}, whose client library ({extra.module}) "
                            f"is not installed: install apercu[{extra.extra}]")
    return problems
