"""``autoscaler simulate SCENARIO.yaml --out DIR [--sweep KEY=V1,V2 ...] [--scheduler ADDR]``."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from simulations.report import text_table, write_report
from simulations.run import run_scenario
from simulations.scenario import parse_scenario, read_raw
from simulations.sweep import parse_sweeps, run_sweep, write_sweep


def simulate_command(
    scenario_path: str,
    out: str,
    *,
    sweeps: list[str] | None = None,
    scheduler: str | None = None,
    workers: int | None = None,
    progress: bool | None = None,
) -> int:
    """Run the scenario (or the sweep), write the report into ``out``, print the table."""
    raw = read_raw(scenario_path)
    base = Path(scenario_path).parent
    started = time.perf_counter()
    if sweeps:
        parsed = parse_sweeps(sweeps)
        results = run_sweep(
            raw, base, parsed, scheduler=scheduler, n_workers=workers, show_progress=progress
        )
        table = write_sweep(Path(out), results)
    else:
        scenario = parse_scenario(raw, base)
        report, series = run_scenario(scenario, show_progress=progress)
        table = text_table(write_report(Path(out), report, series))
    print(table)
    print(
        f"wrote {Path(out) / 'report.html'} in {time.perf_counter() - started:.1f} s",
        file=sys.stderr,
    )
    return 0
