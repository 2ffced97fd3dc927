"""The `edgets` command: serve, agent, cloud, simulate, query and run (the demo of `make run`).

Parses flags, loads the configuration and hands over to the component that does the work.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from typing import Any

from edge_agent.config import ConfigError, describe_options, load_config


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-c", "--config", help="TOML configuration file (see the options below).")
    parser.add_argument("--data-dir", help="Shortcut for storage.data_dir.")
    parser.add_argument("--bind", help="Shortcut for http.bind, e.g. 127.0.0.1:8086 (port 0: any free port).")
    parser.add_argument("--fsync", help="Shortcut for storage.fsync: always | interval:<ms> | never.")
    parser.add_argument("--set", action="append", default=[], metavar="SECTION.KEY=VALUE",
                        help="Set any option, e.g. --set http.auth_enabled=true (repeatable).")
    parser.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR.")


def _overrides(args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if args.data_dir:
        out["storage.data_dir"] = args.data_dir
    if args.bind:
        out["http.bind"] = args.bind
    if args.fsync:
        out["storage.fsync"] = args.fsync
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or "." not in key:
            raise ConfigError(f"--set expects SECTION.KEY=VALUE, got {item!r}")
        out[key.strip()] = value
    return out


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="edgets",
        description="Edge time-series ingestion: InfluxDB-compatible writes and queries, a durable "
        "WAL, compact columnar storage and edge-to-cloud sync.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=describe_options(),
    )
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="Run an edge storage node with the HTTP API.",
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=describe_options())
    _common(serve)
    run = sub.add_parser("run", help="The demo of `make run`: an edge node fed by the mapper simulator.",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=describe_options())
    _common(run)
    query = sub.add_parser("query", help="Run InfluxQL or SQL against a server and print the result.")
    from edge_agent.query_cli import add_arguments

    add_arguments(query)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command == "query":
        from edge_agent.query_cli import run as run_query

        return run_query(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, _overrides(args))
    except ConfigError as exc:
        print(f"edgets: configuration error: {exc}", file=sys.stderr)
        return 2
    if args.command in ("serve", "run"):
        from edge_agent.edge_node import run_edge_node

        asyncio.run(run_edge_node(config))
        return 0
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
