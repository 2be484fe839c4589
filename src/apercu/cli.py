"""`apercu serve | web | worker | config | inspect | upload | db | sign | keys`.

`serve` is the one-command deployment: a small supervisor (`apercu.supervisor`) that runs the web server and a
Celery worker as two child processes sharing one data directory and the embedded broker, restarts either when
it dies, and stops both on Ctrl-C / SIGTERM. `web` and `worker` are those same two halves, for running them on
separate machines against PostgreSQL and Redis/RabbitMQ. `db upgrade` migrates the catalog's schema, which those
refuse to start on when it is older than they are (`db current` tells). `sign` prints a rendition's signed URL.
`keys create | list | revoke` manage the API keys kept in the catalog (see `api.access` for how they are used).
`config` prints the settings in force, secrets masked, and where each came from.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from apercu import __version__, upload_command
from apercu.config import SettingError, Settings, Source

if TYPE_CHECKING:
    from apercu.storage.catalog import Catalog


# The settings a command-line flag overrides: setting -> (argparse's name for it, the flag as typed).
FLAGS = {
    "host": ("host", "--host"),
    "port": ("port", "--port"),
    "data_dir": ("data_dir", "--data-dir"),
    "worker_concurrency": ("concurrency", "--concurrency"),
}


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    return {name: getattr(args, dest, None) for name, (dest, _flag) in FLAGS.items()}


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(**_overrides(args))


def _observed(args: argparse.Namespace, role: str) -> Settings:
    """A web's or worker's settings, with logging configured and the process's metrics directory set up: first,
    before anything imports prometheus_client (see apercu.metrics_multiprocess)."""
    from apercu import logs, metrics_multiprocess

    settings = _settings(args)
    logs.configure(settings)
    metrics_multiprocess.prepare(settings.data_dir, role)
    return settings


def cmd_web(args: argparse.Namespace) -> int:
    settings = _observed(args, "web")
    from apercu.api.server import serve
    from apercu.storage.migrations.schema import SchemaError
    from apercu.supervisor import announce_ready

    try:
        serve(settings, on_ready=announce_ready)
    except SchemaError as exc:  # a schema this version does not run on: say so, without a traceback
        print(f"apercu web: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    settings = _observed(args, "worker")
    from celery.signals import worker_ready

    from apercu.storage.migrations.schema import SchemaError
    from apercu.supervisor import announce_ready
    from apercu.tasks.runner import run_worker

    worker_ready.connect(lambda **_: announce_ready(), weak=False)  # its catalog, heartbeat and broker are up
    try:
        run_worker(settings)
    except SchemaError as exc:
        print(f"apercu worker: {exc}", file=sys.stderr)
        return 1
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from apercu.supervisor import supervise

    settings = _settings(args)
    env = settings.child_environment(os.environ)
    print(f"apercu {__version__} serving on http://{settings.host}:{settings.port}, data in {settings.data_dir}")
    return supervise(["worker", "web"], env, settings.restart_backoff_max)


def cmd_inspect(args: argparse.Namespace) -> int:
    from apercu.inspect import inspect_paths

    paths = [Path(p) for p in args.paths]
    return inspect_paths(paths, Settings.from_env(), as_json=args.json, progress=not args.no_progress)


CONFIG_VALUE_WIDTH = 40


def cmd_config(args: argparse.Namespace) -> int:
    """The settings a `serve`, `web` or `worker` started here with these flags would run with: each one's value
    (secrets masked) and where it came from; or, as for those, the one-line refusal and exit 2 (`main`)."""
    import json

    from apercu.config import describe

    shown = describe(*Settings.traced(**_overrides(args)))
    if args.json:
        print(json.dumps([{"variable": s.variable, "value": s.value, "secret": s.secret, "set": s.set,
                           "source": s.source.kind, "from": _origin(s.source)} for s in shown], indent=2))
        return 0
    rows = [(s.variable, s.value if s.set else "(empty)", f"{s.source.kind} {_origin(s.source)}".rstrip())
            for s in shown]
    widths = [max(len(row[column]) for row in rows) for column in (0, 1)]
    widths[1] = min(widths[1], CONFIG_VALUE_WIDTH)  # a long value (presets) shifts its own line's source only
    for variable, value, source in rows:
        print(f"{variable.ljust(widths[0])}  {value.ljust(widths[1])}  {source}")
    return 0


def _origin(source: Source) -> str:
    """What a source names: the variable, the file, or the flag as typed."""
    return FLAGS[source.detail][1] if source.kind == "flag" else source.detail


def cmd_upload(args: argparse.Namespace) -> int:
    return upload_command.run_from_args(args)


def cmd_db(args: argparse.Namespace) -> int:
    from apercu.storage.catalog import create_engine
    from apercu.storage.migrations.schema import SchemaError, migrate, schema_state

    settings = _settings(args)
    if not settings.database_url:  # the embedded catalog, in the data directory
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = create_engine(settings.resolved_database_url)
    where = engine.url.render_as_string(hide_password=True)
    try:
        if args.action == "upgrade":
            before, after = migrate(engine, upgrade=True)
            if before == after:
                print(f"{where}: the catalog's schema is already at revision {after} (head)")
            else:
                print(f"{where}: upgraded the catalog's schema from revision {before or 'none (empty database)'} "
                      f"to {after} (head)")
            return 0
        state = schema_state(engine)
        if state.revision is None:
            print(f"none (empty database; head is {state.head})")
            return 0
        notes = [] if state.versioned else ["unversioned: from before migrations"]
        if state.revision == state.head:
            notes.append("head")
        else:
            notes.append(f"behind head {state.head}: run `apercu db upgrade`")
        print(f"{state.revision} ({'; '.join(notes)})")
        return 0
    except SchemaError as exc:
        print(f"apercu db {args.action}: {where}: {exc}", file=sys.stderr)
        return 1
    finally:
        engine.dispose()


def cmd_sign(args: argparse.Namespace) -> int:
    """The signed URL path of a rendition (`/w:400/<id>.avif` -> `/r/<signature>/w:400/<id>.avif`), checked as the
    web would check it; `--ttl` adds an `exp` that many seconds from now."""
    import time

    from apercu.imaging.renditions.options import BadOption, parse, split_path
    from apercu.rendition_urls import url_for

    settings = Settings.from_env()
    path = "/" + args.path.strip("/")
    if args.ttl is not None:
        *options, last = path.split("/")
        path = "/".join([*options, f"exp:{int(time.time()) + args.ttl}", last])
    try:
        segments, _image_id, ext = split_path(path)
        parse(segments, ext, settings.rendition_presets, settings.max_rendition_pixels)
    except BadOption as exc:
        print(f"apercu sign: {exc}", file=sys.stderr)
        return 2
    with _catalog(settings) as catalog:  # whether keys are required, without a URL key: the catalog may hold some
        url = url_for(settings, catalog.keys, path)
    if url is None:
        print("apercu sign: API keys are required and APERCU_URL_KEY is not set: no URL can be signed",
              file=sys.stderr)
        return 2
    print(url)
    return 0


@contextlib.contextmanager
def _catalog(settings: Settings) -> Iterator[Catalog]:
    """The deployment's catalog, its schema brought to head as a web's start would (SQLite), or refused
    (SchemaError) when behind on PostgreSQL."""
    from apercu.storage.catalog import Catalog
    from apercu.storage.migrations.schema import create_schema

    if not settings.database_url:  # the embedded catalog, in the data directory
        settings.data_dir.mkdir(parents=True, exist_ok=True)
    catalog = Catalog.from_url(settings.resolved_database_url)
    try:
        create_schema(catalog.engine)
        yield catalog
    finally:
        catalog.engine.dispose()


def cmd_keys(args: argparse.Namespace) -> int:
    """`keys create`: a new key, printed once (only its SHA-256 is kept); `keys list`: every key but the key itself;
    `keys revoke`: a key that every web stops accepting within seconds (`storage.catalog.keys.RELOAD_EVERY`)."""
    from apercu.storage.migrations.schema import SchemaError

    try:
        with _catalog(_settings(args)) as catalog:
            return KEY_ACTIONS[args.action](catalog, args)
    except SchemaError as exc:
        print(f"apercu keys {args.action}: {exc}", file=sys.stderr)
        return 1


def _create_key(catalog: Catalog, args: argparse.Namespace) -> int:
    import hashlib
    import secrets

    from apercu.api.caller import BadIdentity, checked_name, parse_scopes
    from apercu.storage.catalog.keys import KeyNameTaken

    try:
        name, tenant = checked_name(args.name, "the name"), checked_name(args.tenant, "the tenant")
        scopes = parse_scopes(args.scopes)
        key = secrets.token_urlsafe(32)
        catalog.keys.create(name, tenant, scopes, hashlib.sha256(key.encode()).hexdigest())
    except (BadIdentity, KeyNameTaken) as exc:
        print(f"apercu keys create: {exc}", file=sys.stderr)
        return 2
    print(key)
    print(f"API key {name!r} (tenant {tenant!r}, scopes {','.join(scopes)}) created: this is the only time the key "
          "is shown", file=sys.stderr)
    return 0


def _list_keys(catalog: Catalog, _args: argparse.Namespace) -> int:
    rows = [("NAME", "TENANT", "SCOPES", "CREATED", "REVOKED")]
    for key in catalog.keys.all():
        revoked = key.revoked_at.isoformat(" ", "seconds") if key.revoked_at else "-"
        rows.append((key.name, key.tenant, ",".join(key.scopes), key.created_at.isoformat(" ", "seconds"), revoked))
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip())
    return 0


def _revoke_key(catalog: Catalog, args: argparse.Namespace) -> int:
    revoked = catalog.keys.revoke(args.name)
    if revoked is None:
        print(f"apercu keys revoke: no key is named {args.name!r}", file=sys.stderr)
        return 1
    print(f"API key {args.name!r} " + ("revoked" if revoked else "was revoked already"))
    return 0


KEY_ACTIONS = {"create": _create_key, "list": _list_keys, "revoke": _revoke_key}


def add_keys_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from apercu.storage.catalog.tables import DEFAULT_TENANT  # (not via apercu.api: see `_observed`)

    keys = commands.add_parser("keys", help="API keys kept in the catalog: create, list, revoke")
    actions = keys.add_subparsers(dest="action", required=True)
    create = actions.add_parser("create", help="make a key and print it (once: the catalog keeps its SHA-256)")
    create.add_argument("--name", required=True, help="the key's name (in logs, `keys list`, `keys revoke`)")
    create.add_argument("--tenant", default=DEFAULT_TENANT, help=f"its images' tenant (default: {DEFAULT_TENANT})")
    create.add_argument("--scopes", required=True, help="comma list of read, write, delete, admin")
    actions.add_parser("list", help="every key's name, tenant, scopes, creation and revocation (never the key)")
    revoke = actions.add_parser("revoke", help="stop accepting a key (every web, within seconds)")
    revoke.add_argument("name", help="the key's name")
    for sub in actions.choices.values():
        sub.set_defaults(handler=cmd_keys)
        sub.add_argument("--data-dir", help="where the embedded catalog lives (without APERCU_DATABASE_URL)")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="apercu", description="Image ingestion service.")
    parser.add_argument("--version", action="version", version=f"apercu {__version__}")
    commands = parser.add_subparsers(dest="command", required=True)
    for name, handler, help_text in (
        ("serve", cmd_serve, "web server + worker + embedded broker, one command"),
        ("web", cmd_web, "the HTTP API alone"),
        ("worker", cmd_worker, "the Celery worker alone"),
    ):
        sub = commands.add_parser(name, help=help_text)
        sub.set_defaults(handler=handler)
        sub.add_argument("--data-dir", help="where originals, thumbnails and the embedded databases live")
        if name != "worker":
            sub.add_argument("--host", help="address to listen on (default 127.0.0.1)")
            sub.add_argument("--port", type=int, help="port to listen on (default 5000)")
        if name != "web":
            sub.add_argument("--concurrency", type=int, help="worker processes (default: one per CPU)")
    config = commands.add_parser("config", help="print the settings in force here (secrets masked) and their source")
    config.set_defaults(handler=cmd_config)
    config.add_argument("--json", action="store_true", help="a JSON list: variable, value, secret, set, source, from")
    config.add_argument("--data-dir", help="as `serve --data-dir` would set it")
    config.add_argument("--host", help="as `serve --host` would set it")
    config.add_argument("--port", type=int, help="as `serve --port` would set it")
    config.add_argument("--concurrency", type=int, help="as `serve --concurrency` would set it")
    inspect = commands.add_parser("inspect", help="print the metadata of image files, as the API would")
    inspect.set_defaults(handler=cmd_inspect)
    inspect.add_argument("paths", nargs="+", help="files or directories (searched recursively)")
    inspect.add_argument("--json", action="store_true", help="JSON Lines output")
    inspect.add_argument("--no-progress", action="store_true", help="no progress bar, even on a terminal")
    upload = commands.add_parser("upload", help="send files or folders to a running apercu and wait for the results")
    upload.set_defaults(handler=cmd_upload)
    upload_command.add_arguments(upload)
    sign = commands.add_parser("sign", help="print the signed URL path of a rendition (with APERCU_URL_KEY)")
    sign.set_defaults(handler=cmd_sign)
    sign.add_argument("path", help="options and file, e.g. w:400/h:300/fit:cover/<id>.avif")
    sign.add_argument("--ttl", type=int, help="the URL expires this many seconds from now (adds exp:<time>)")
    db = commands.add_parser("db", help="the catalog's schema (APERCU_DATABASE_URL, or the data directory's SQLite)")
    actions = db.add_subparsers(dest="action", required=True)
    for action, help_text in (
        ("upgrade", "migrate the catalog's schema to this version's revision (creating it in an empty database)"),
        ("current", "print the catalog's schema revision"),
    ):
        sub = actions.add_parser(action, help=help_text)
        sub.set_defaults(handler=cmd_db)
        sub.add_argument("--data-dir", help="where the embedded catalog lives (without APERCU_DATABASE_URL)")
    add_keys_parser(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.handler(args) or 0)
    except SettingError as exc:  # the operator's to fix, and the message says how: no traceback
        print(f"apercu {args.command}: {exc}", file=sys.stderr)
        return 2  # as for a flag argparse refuses: the command was given what it cannot run with


if __name__ == "__main__":
    sys.exit(main())
