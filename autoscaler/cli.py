"""The ``autoscaler`` command line."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence

from autoscaler.errors import ConfigError

Command = Callable[[argparse.Namespace], int]


def _demo(args: argparse.Namespace) -> int:
    from autoscaler.demo import run

    return run(duration=args.duration, interval=args.interval)


def _serve(args: argparse.Namespace) -> int:
    from autoscaler.serve import build_settings, serve

    return serve(build_settings(args))


def _db_upgrade(args: argparse.Namespace) -> int:
    from autoscaler.serve import build_settings, upgrade_database

    return upgrade_database(build_settings(args))


def _simulate(args: argparse.Namespace) -> int:
    from simulations.cli import simulate_command

    return simulate_command(
        args.scenario, args.out, sweeps=args.sweep, scheduler=args.scheduler, workers=args.workers
    )


def build_parser() -> argparse.ArgumentParser:
    from autoscaler.serve import add_database_argument, add_server_arguments

    parser = argparse.ArgumentParser(prog="autoscaler", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    demo = sub.add_parser("demo", help="run the demo on this machine")
    demo.add_argument(
        "--duration", type=float, default=160.0, help="seconds before it stops (default 160)"
    )
    demo.add_argument("--interval", type=float, default=2.0, help="seconds between cycles")
    demo.set_defaults(run=_demo)

    serve = sub.add_parser("serve", help="run the REST API (and the control loop)")
    add_server_arguments(serve)
    serve.set_defaults(run=_serve)

    simulate = sub.add_parser("simulate", help="offline fairness simulation of a scenario file")
    simulate.add_argument("scenario", help="scenario YAML (see simulations/scenarios/)")
    simulate.add_argument("--out", required=True, help="directory for report.json/.html")
    simulate.add_argument("--sweep", action="append", metavar="KEY=V1,V2", help="sweep a key")
    simulate.add_argument("--scheduler", help="Dask scheduler for sweeps (default: LocalCluster)")
    simulate.add_argument("--workers", type=int, help="LocalCluster workers for sweeps")
    simulate.set_defaults(run=_simulate)

    db = sub.add_parser("db", help="database maintenance")
    db_sub = db.add_subparsers(dest="db_command", required=True)
    upgrade = db_sub.add_parser("upgrade", help="apply the schema migrations")
    add_database_argument(upgrade)
    upgrade.set_defaults(run=_db_upgrade)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run: Command = args.run
    try:
        return run(args)
    except ConfigError as exc:
        print(f"autoscaler: error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
