"""Every combination of ``--sweep KEY=V1,V2`` values, run in parallel on Dask.

A ``LocalCluster`` by default, or an existing cluster given by its scheduler address: the same
code moves a large sweep to a real cluster. Each task simulates one combination (all policies)
and sends back its report without series; combinations are checked here before any is sent.
"""

from __future__ import annotations

import itertools
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from simulations.report import COLUMNS, _figure, _save, text_table, write_page
from simulations.run import Series, progress_bar, run_scenario
from simulations.scenario import ScenarioError, override, parse_scenario

Combination = dict[str, Any]
PLOTTED = ["job mean s", "unmet worker-h", "Jain (contended)", "cpu util"]


def parse_sweeps(items: list[str]) -> dict[str, list[Any]]:
    """``["pool.cpu=32,64", "seed=1,2"]`` -> ``{"pool.cpu": [32, 64], "seed": [1, 2]}``."""
    sweeps: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        if not sep or not key.strip() or not values.strip():
            raise ScenarioError(f"--sweep {item!r}: expected KEY=V1,V2,...")
        try:
            sweeps[key.strip()] = [yaml.safe_load(v) for v in values.split(",")]
        except yaml.YAMLError as exc:
            raise ScenarioError(f"--sweep {item!r}: a value is not valid YAML") from exc
    return sweeps


def combinations(sweeps: dict[str, list[Any]]) -> list[Combination]:
    keys = list(sweeps)
    return [dict(zip(keys, values, strict=True)) for values in itertools.product(*sweeps.values())]


def label(combination: Combination) -> str:
    return ", ".join(f"{k}={v}" for k, v in combination.items())


def apply(raw: dict[str, Any], combination: Combination) -> dict[str, Any]:
    for key, value in combination.items():
        raw = override(raw, key, value)
    return raw


def run_combination(raw: dict[str, Any], base: str, combination: Combination) -> dict[str, Any]:
    """One task: the report of the scenario with this combination (runs on a Dask worker)."""
    scenario = parse_scenario(apply(raw, combination), Path(base))
    report, _series = run_scenario(scenario, show_progress=False)
    return report


def run_sweep(
    raw: dict[str, Any],
    base: Path,
    sweeps: dict[str, list[Any]],
    *,
    scheduler: str | None = None,
    n_workers: int | None = None,
    processes: bool = True,
    show_progress: bool | None = None,
) -> list[tuple[Combination, dict[str, Any]]]:
    """Reports of every combination, in the order of ``combinations(sweeps)``."""
    from distributed import Client, LocalCluster, as_completed

    combos = combinations(sweeps)
    for combination in combos:  # fail before starting anything
        parse_scenario(apply(raw, combination), base)
    cluster = None
    if scheduler is None:
        workers = n_workers or min(len(combos), os.cpu_count() or 1)
        cluster = LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=processes, dashboard_address=None
        )
    client = Client(scheduler if cluster is None else cluster, set_as_default=False)
    try:
        futures = [
            client.submit(run_combination, raw, str(base), c, key=f"simulate-{i}", pure=False)
            for i, c in enumerate(combos)
        ]
        index = {f.key: i for i, f in enumerate(futures)}
        reports: list[dict[str, Any] | None] = [None] * len(combos)
        with progress_bar(len(combos), "sweep", show_progress) as advance:
            for future in as_completed(futures, loop=client.loop):
                reports[index[future.key]] = future.result()
                advance(1)
    finally:
        client.close()
        if cluster is not None:
            cluster.close()
    return [(c, r) for c, r in zip(combos, reports, strict=True) if r is not None]


def sweep_rows(results: list[tuple[Combination, dict[str, Any]]]) -> list[dict[str, Any]]:
    return [
        {"combination": label(c), "policy": p, **{col: read(fig) for col, read in COLUMNS}}
        for c, report in results
        for p, fig in report["policies"].items()
    ]


def plot_sweep(out: Path, rows: list[dict[str, Any]]) -> str:
    labels = list(dict.fromkeys(r["combination"] for r in rows))
    policies = list(dict.fromkeys(r["policy"] for r in rows))
    fig, axes = _figure(len(PLOTTED), height=2.4)
    width = 0.8 / len(policies)
    x = np.arange(len(labels))
    for ax, metric in zip(axes, PLOTTED, strict=True):
        for k, policy in enumerate(policies):
            values = [
                next(
                    (r[metric] for r in rows if r["combination"] == c and r["policy"] == policy),
                    None,
                )
                for c in labels
            ]
            ax.bar(x + k * width, [np.nan if v is None else v for v in values], width, label=policy)
        ax.set_ylabel(metric, fontsize="small")
    axes[0].legend(ncol=len(policies), fontsize="x-small")
    axes[-1].set_xticks(x + 0.4 - width / 2, labels, rotation=30, ha="right", fontsize="x-small")
    return _save(fig, out / "sweep.png")


def write_sweep(out: Path, results: list[tuple[Combination, dict[str, Any]]]) -> str:
    """report.json, sweep.png and report.html for a sweep; returns the terminal table."""
    out.mkdir(parents=True, exist_ok=True)
    document = {
        "scenario": results[0][1]["scenario"]["name"] if results else None,
        "sweep": [{"overrides": c, **report} for c, report in results],
    }
    (out / "report.json").write_text(json.dumps(document, indent=2) + "\n")
    rows = sweep_rows(results)
    image = plot_sweep(out, rows)
    title = f"Sweep: {document['scenario']}"
    write_page(out, title, f"{len(results)} combinations", rows, [("Comparison", image)])
    return text_table(rows)


__all__ = ["Series", "parse_sweeps", "run_sweep", "write_sweep"]
