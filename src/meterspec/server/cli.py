"""`meterspec serve` and `meterspec keys create`, as meterspec.cli runs them. Imported at every
start of `meterspec` (to register the commands): Starlette and uvicorn load only when `serve`
runs, and say which extra to install when they are missing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from meterspec.store.cli import URL_HELP

EXIT_OK, EXIT_USAGE = 0, 2
SERVE_MORE = (
    "Serves the HTTP binding (specs/http.md, schemas/openapi.json) on 127.0.0.1 by default. "
    "Every request but GET /v1/health needs a key from `meterspec keys create` (a DuckDB store "
    "is one writer's file: create keys before serving, or stop the server first). A batch is "
    "answered once committed; SIGTERM or Ctrl-C lets the batches in progress finish.")


def register(commands: Any) -> None:
    """Add `serve` and `keys` to meterspec's commands."""
    serve = commands.add_parser("serve", help="Serve the HTTP binding from a store.",
                                description="Serve the HTTP binding from a store. " + SERVE_MORE)
    serve.add_argument("--store", required=True, metavar="URL", help=URL_HELP)
    serve.add_argument("--host", default="127.0.0.1", help="default 127.0.0.1 (loopback)")
    serve.add_argument("--port", type=int, default=8080, help="default 8080")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="worker processes (PostgreSQL stores only; default 1)")
    serve.add_argument("--rate-limit", default="1000/second,20000/minute", metavar="LIMITS",
                       help="requests per key, e.g. 1000/second,20000/minute (MS-HTTP-012)")
    serve.add_argument("--body-timeout", type=float, default=30.0, metavar="SECONDS",
                       help="time to receive the header section, and the body, before "
                       "408 (default 30)")
    serve.add_argument("--log-level", default="warning",
                       choices=("critical", "error", "warning", "info", "debug"))

    keys = commands.add_parser("keys", help="Create API keys for `meterspec serve`.",
                               description="Create API keys for `meterspec serve`.")
    action = keys.add_subparsers(dest="action", required=True)
    create = action.add_parser("create", help="Create a key; it is printed once, and only "
                               "the hash of its secret is stored (MS-HTTP-010).")
    create.add_argument("--store", required=True, metavar="URL", help=URL_HELP)
    create.add_argument("--workspace", required=True)
    create.add_argument("--universe", required=True)
    create.add_argument("--scope", required=True, choices=("ingest", "read", "admin"))


def _rate(text: str) -> Any:
    from meterspec.ratelimit import RateLimit, RateLimitPolicy, policy_problems

    limits = []
    for part in text.split(","):
        count, _, window = part.strip().partition("/")
        if not count.isdigit() or window not in ("second", "minute", "hour"):
            raise ValueError(f"--rate-limit: {part!r} is not COUNT/second|minute|hour")
        limits.append(RateLimit(window, int(count)))  # type: ignore[arg-type]
    policy = RateLimitPolicy(limits)
    problems = policy_problems(policy)
    if problems:
        raise ValueError(f"--rate-limit: {problems[0].message}")
    return policy


def run(args: argparse.Namespace) -> int:
    """Run `serve` or `keys create`; refusals in one line on stderr, exit status 2."""
    from meterspec.store.base import StoreError

    try:
        if args.command == "keys":
            return _create_key(args)
        return _serve(args)
    except (StoreError, ValueError) as error:
        print(f"meterspec {args.command}: {error}", file=sys.stderr)
        return EXIT_USAGE


def _create_key(args: argparse.Namespace) -> int:
    from meterspec.server import registry
    from meterspec.store import open_store

    _prepare(args.store)
    store = open_store(args.store)
    try:
        key = registry.create_key(store, args.workspace, args.universe, args.scope)
    finally:
        store.close()
    print(key)
    return EXIT_OK


def _prepare(url: str) -> None:
    from meterspec.server import registry
    from meterspec.store import open_store

    store = open_store(url)
    try:
        registry.prepare(store)
    finally:
        store.close()


def _serve(args: argparse.Namespace) -> int:
    try:
        import uvicorn
    except ImportError:
        raise ValueError("needs the server extra: pip install 'meterspec[server]'") from None
    from meterspec.server.app import ENVIRONMENT, Settings, create_app

    rate = _rate(args.rate_limit)
    if args.workers < 1 or (args.workers > 1 and args.store.startswith("duckdb:")):
        raise ValueError("--workers N > 1 needs a PostgreSQL store (DuckDB: one writer)")
    settings = Settings(args.store, rate, body_seconds=args.body_timeout)
    _prepare(args.store)  # a store that cannot be opened: one line, exit 2, no traceback
    from meterspec.server.protocol import with_deadline

    options: dict[str, Any] = {
        "host": args.host, "port": args.port, "log_level": args.log_level,
        "http": with_deadline(args.body_timeout),
        "h11_max_incomplete_event_size": 64 * 1024, "timeout_keep_alive": 5,
        "timeout_graceful_shutdown": None, "lifespan": "on"}
    if args.workers > 1:
        import msgspec

        os.environ[ENVIRONMENT] = json.dumps({
            "store": settings.store, "rate": msgspec.to_builtins(rate),
            "max_body": settings.max_body, "body_seconds": settings.body_seconds,
            "connections": settings.connections})
        from meterspec.server.protocol import HeaderDeadline  # its deadline: from ENVIRONMENT

        uvicorn.run("meterspec.server.app:app_from_environment", factory=True,
                    workers=args.workers, **{**options, "http": HeaderDeadline})
    else:
        uvicorn.run(create_app(settings), **options)
    return EXIT_OK
