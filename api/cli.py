"""The `ctxgraph` command: serve, migrate, db-url, export-schema."""

from __future__ import annotations

import argparse
import copy
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from api.db import DatabaseConfigError, EmbeddedPostgres, redact, to_libpq_url
from api.settings import Settings, get_settings

log = logging.getLogger("ctxgraph")


def _fail(message: str) -> int:
    print(f"ctxgraph: {message}", file=sys.stderr)
    return 1


def _resolve_url(settings: Settings) -> tuple[str, EmbeddedPostgres | None]:
    """The database URL to use; starts the embedded server when DATABASE_URL is unset."""
    if settings.database_url:
        return settings.database_url, None
    embedded = EmbeddedPostgres(settings.pgdata_dir)
    return embedded.start(), embedded


def _migrate(url: str) -> None:
    from api.migrate import upgrade_to_head

    try:
        upgrade_to_head(url)
    except DatabaseConfigError:
        raise
    except Exception as exc:
        raise DatabaseConfigError(f"migrating the database at {redact(url)} failed: {exc}") from exc


def _exit_after_shutdown(signum: int, frame: object) -> None:
    raise SystemExit(0)


LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


def _log_config(level: str) -> dict[str, Any]:
    """uvicorn's logging setup plus the ctxgraph loggers (the access log among them) at
    the server's log level. uvicorn applies it in every process that serves: worker
    processes are spawned and never run `main()`, so without it `--workers 2` wrote
    no access log lines."""
    from uvicorn.config import LOGGING_CONFIG

    config = copy.deepcopy(LOGGING_CONFIG)
    config["formatters"]["ctxgraph"] = {"format": LOG_FORMAT}
    config["handlers"]["ctxgraph"] = {
        "class": "logging.StreamHandler",
        "formatter": "ctxgraph",
        "stream": "ext://sys.stderr",
    }
    config["loggers"]["ctxgraph"] = {
        "handlers": ["ctxgraph"],
        "level": level.upper(),
        "propagate": False,
    }
    return config


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from api.http_protocol import CtxgraphProtocol
    from api.listener import REUSE_PORT, allow_open_files, worker_listener

    settings = get_settings()
    # Before any worker starts: they inherit the limit, and each caps its connections to
    # what it fits (api/http_protocol.py reads the settings again in every worker).
    if (fits := allow_open_files(settings.max_connections)) < settings.max_connections:
        print(
            f"ctxgraph: the open-files limit fits {fits} connections per process, not "
            f"CTXGRAPH_MAX_CONNECTIONS={settings.max_connections}; raise it (ulimit -n) "
            "or lower the setting",
            file=sys.stderr,
        )
    url, embedded = _resolve_url(settings)
    try:
        _migrate(url)
        # Worker processes read the same server from the environment; this
        # process keeps the embedded server's handle and stops it on exit.
        os.environ["DATABASE_URL"] = url
        print(
            f"ctxgraph: serving GraphQL on http://{args.host}:{args.port}/graphql", file=sys.stderr
        )
        from api.security.auth import open_access_warning

        if (warning := open_access_warning(args.host, settings)) is not None:
            print(warning, file=sys.stderr)
        # uvicorn drains in-flight requests on SIGTERM/SIGINT, then re-raises the signal
        # with this handler back in place: exit normally so `finally` stops the
        # embedded server (the default handler would kill the process first).
        signal.signal(signal.SIGTERM, _exit_after_shutdown)
        options: dict[str, Any] = {
            "factory": True,
            "host": args.host,
            "port": args.port,
            "workers": args.workers,
            "log_level": settings.log_level.lower(),
            "log_config": _log_config(settings.log_level),
            "proxy_headers": True,
            # httptools, with a response's head written together with its body, and
            # limits on request heads, slow requests and connections per process
            "http": CtxgraphProtocol,
            # SIGTERM: stop accepting, let in-flight requests finish for this long.
            "timeout_graceful_shutdown": settings.shutdown_timeout,
            "ws_max_size": settings.max_body_bytes,
            # ctxgraph.access logs one JSON line per request (with the request id) instead.
            "access_log": not settings.access_log,
        }
        if args.workers > 1 and REUSE_PORT:
            # uvicorn.run's supervisor, with a listening socket per worker (api/listener.py)
            from uvicorn.supervisors import Multiprocess

            config = uvicorn.Config("api.app:create_app", **options)
            Multiprocess(config, sockets=[worker_listener(args.host, args.port)]).run()
        else:
            uvicorn.run("api.app:create_app", **options)
    finally:
        if embedded is not None:
            embedded.stop()
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    settings = get_settings()
    url, embedded = _resolve_url(settings)
    try:
        _migrate(url)
    finally:
        if embedded is not None:
            embedded.stop()
    print("ctxgraph: database is at the latest migration", file=sys.stderr)
    return 0


def cmd_db_url(args: argparse.Namespace) -> int:
    from api.db import database_url_for_tools

    settings = get_settings()
    print(to_libpq_url(database_url_for_tools(settings)))
    if settings.database_url is None:
        print("ctxgraph: the embedded server answers while `ctxgraph serve` runs", file=sys.stderr)
    return 0


def cmd_export_schema(args: argparse.Namespace) -> int:
    from api.graphql.schema import build_schema

    sdl = build_schema().as_str() + "\n"
    if args.output == "-":
        sys.stdout.write(sdl)
    else:
        Path(args.output).write_text(sdl)
        print(f"ctxgraph: wrote {args.output}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ctxgraph",
        description="Versioned, forkable LLM conversation contexts over GraphQL "
        "(PostgreSQL + pgvector). Without DATABASE_URL an embedded PostgreSQL runs in "
        "CTXGRAPH_DATA_DIR (default .ctxgraph/).",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    serve = sub.add_parser(
        "serve",
        help="migrate the database to head, then serve the API",
        description="Run migrations, then serve GraphQL at /graphql.",
    )
    serve.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    serve.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    serve.add_argument("--workers", type=int, default=1, help="worker processes (default 1)")
    serve.set_defaults(func=cmd_serve)

    migrate = sub.add_parser("migrate", help="upgrade the database schema to the latest revision")
    migrate.set_defaults(func=cmd_migrate)

    db_url = sub.add_parser("db-url", help="print the URL of the database in use (for psql)")
    db_url.set_defaults(func=cmd_db_url)

    export = sub.add_parser("export-schema", help="write the GraphQL schema (SDL)")
    export.add_argument(
        "-o",
        "--output",
        default="schema.graphql",
        help="file to write, or - for stdout (default schema.graphql)",
    )
    export.set_defaults(func=cmd_export_schema)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format=LOG_FORMAT)
    for name in ("ctxgraph", "alembic.runtime.migration"):
        logging.getLogger(name).setLevel(logging.INFO)
    try:
        result: int = args.func(args)
    except DatabaseConfigError as exc:
        return _fail(str(exc))
    except ValidationError as exc:  # bad settings: one line, no traceback wall
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        return _fail(f"invalid configuration: {problems}")
    return result


if __name__ == "__main__":
    sys.exit(main())
