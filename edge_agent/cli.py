"""The `edgets` command: serve, agent, cloud, simulate, query and run (the demo of `make run`).

Parses flags, loads the configuration and hands over to the component that does the work.
"""

from __future__ import annotations

import argparse
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
    agent = sub.add_parser("agent", help="The edge agent: HTTP API + KubeEdge MQTT ingestion + "
                           "HTTP push receiver in one process.",
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=describe_options())
    _common(agent)
    agent.add_argument("--summary", type=float, default=0.0, metavar="SECONDS",
                       help="Print a status line every SECONDS (0: never).")
    run = sub.add_parser("run", help="The demo of `make run`: an edge agent fed by the mapper "
                         "simulator (through Mosquitto when installed, else over HTTP).",
                         formatter_class=argparse.RawDescriptionHelpFormatter, epilog=describe_options())
    _common(run)
    run.add_argument("--devices", type=int, default=10, help="Simulated devices (default %(default)s).")
    run.add_argument("--rate", type=float, default=1.0, help="Readings/s per device (default %(default)s).")
    run.add_argument("--summary", type=float, default=3.0, metavar="SECONDS",
                     help="Status line interval (default %(default)s).")
    from edge_agent.simulator import build_parser as simulator_parser

    simulator_parser(sub.add_parser("simulate", help="Fake KubeEdge mappers publishing the mapper "
                                    "wire formats over MQTT and HTTP."))
    cloud = sub.add_parser("cloud", help="The cloud side: receive segments from edge nodes ([cloud] "
                           "tokens), serve /query over all of them (tag node), export Parquet.",
                           formatter_class=argparse.RawDescriptionHelpFormatter, epilog=describe_options())
    _common(cloud)  # --data-dir and --bind mean cloud.cloud_dir and cloud.bind here
    query = sub.add_parser("query", help="Run InfluxQL or SQL against a server and print the result.")
    from edge_agent.query_cli import add_arguments

    add_arguments(query)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    raw = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(raw)
    if args.command == "simulate":
        from edge_agent.simulator import main as simulate

        return simulate(raw[raw.index("simulate") + 1:])
    if args.command == "query":
        from edge_agent.query_cli import run as run_query

        return run_query(args)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        config = load_config(args.config, _overrides(args))
    except ConfigError as exc:
        print(f"edgets: configuration error: {exc}", file=sys.stderr)
        return 2
    from edge_agent.edge_node import run_until_complete

    if args.command == "serve":
        from edge_agent.edge_node import run_edge_node
        from edge_agent.sync_component import sync_components

        try:
            components = sync_components(config)
        except ValueError as exc:
            print(f"edgets serve: configuration error: {exc}", file=sys.stderr)
            return 2
        run_until_complete(run_edge_node(config, components))
        return 0
    if args.command == "cloud":
        from edge_agent.cloud import run_cloud

        if args.data_dir:
            config.cloud.cloud_dir = args.data_dir
        if args.bind:
            config.cloud.bind = args.bind
        try:
            run_until_complete(run_cloud(config))
        except ValueError as exc:
            print(f"edgets cloud: configuration error: {exc}", file=sys.stderr)
            return 2
        return 0
    if args.command == "agent":
        from edge_agent.agent import agent_state, run_agent

        try:
            state = agent_state(config)  # Device YAML, topics, broker address
        except (ValueError, OSError) as exc:
            print(f"edgets agent: configuration error: {exc}", file=sys.stderr)
            return 2
        from edge_agent.sync_component import sync_components

        try:
            after = sync_components(config)
        except ValueError as exc:
            print(f"edgets agent: configuration error: {exc}", file=sys.stderr)
            return 2
        run_until_complete(run_agent(config, summary_interval_s=args.summary, state=state, after=after))
        return 0
    if args.command == "run":
        from edge_agent.demo import run_demo

        return run_demo(config, devices=args.devices, rate_hz=args.rate,
                        summary_interval_s=args.summary, bind_given=bool(args.bind))
    parser.error(f"unknown command {args.command}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
