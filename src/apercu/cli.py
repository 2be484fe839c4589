"""`apercu serve | web | worker | inspect`.

`serve` is the one-command deployment: a small supervisor (`apercu.supervisor`) that runs the web server and a
Celery worker as two child processes sharing one data directory and the embedded broker, restarts either when
it dies, and stops both on Ctrl-C / SIGTERM. `web` and `worker` are those same two halves, for running them on
separate machines against PostgreSQL and Redis/RabbitMQ.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from apercu import __version__
from apercu.config import Settings


def _settings(args: argparse.Namespace) -> Settings:
    return Settings.from_env(
        host=getattr(args, "host", None),
        port=getattr(args, "port", None),
        data_dir=getattr(args, "data_dir", None),
        worker_concurrency=getattr(args, "concurrency", None),
    )


def cmd_web(args: argparse.Namespace) -> int:
    from apercu.api.server import serve

    serve(_settings(args))
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    from apercu.tasks.worker import run_worker

    settings = _settings(args)
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    run_worker(settings)
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    from apercu.supervisor import supervise

    settings = _settings(args)
    env = {**os.environ, **settings.to_env()}
    print(f"apercu {__version__} serving on http://{settings.host}:{settings.port}, data in {settings.data_dir}")
    return supervise(["worker", "web"], env, settings.restart_backoff_max)


def cmd_inspect(args: argparse.Namespace) -> int:
    from apercu.inspect import inspect_paths

    return inspect_paths([Path(p) for p in args.paths], Settings.from_env(), as_json=args.json)


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
    inspect = commands.add_parser("inspect", help="print the metadata of image files, as the API would")
    inspect.set_defaults(handler=cmd_inspect)
    inspect.add_argument("paths", nargs="+", help="files or directories (searched recursively)")
    inspect.add_argument("--json", action="store_true", help="JSON Lines output")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.handler(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
