"""``report.json``, PNG plots (matplotlib, Agg) and ``report.html`` with a comparison table."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

Row = dict[str, Any]

# (column, how to read it from a policy's figures)
COLUMNS: list[tuple[str, Callable[[dict[str, Any]], Any]]] = [
    ("cpu util", lambda p: p["utilization"].get("cpu")),
    ("memory util", lambda p: p["utilization"].get("memory")),
    ("peak granted/pool", lambda p: max(p["peak_granted"].values())),
    ("Jain (contended)", lambda p: p["jain"]["mean"]),
    ("alloc/desired", lambda p: p["allocated_over_desired"]["mean"]),
    ("worst alloc/desired", lambda p: p["allocated_over_desired"]["min"]),
    ("unmet worker-h", lambda p: p["unmet_worker_seconds"]["total"] / 3600),
    ("job mean s", lambda p: p["jobs"]["mean"]),
    ("job p95 s", lambda p: p["jobs"]["p95"]),
    ("jobs done", lambda p: f"{p['jobs']['completed']}/{p['jobs']['arrived']}"),
    ("task mean s", lambda p: p["tasks"]["mean"]),
    ("pipeline mean s", lambda p: p["pipelines"].get("mean")),
    ("scale actions", lambda p: p["scale"]["actions"]),
    ("demand→workers s", lambda p: p["time_to_workers"]["mean"]),
]


def table_rows(report: dict[str, Any]) -> list[Row]:
    return [
        {"policy": name, **{column: read(figures) for column, read in COLUMNS}}
        for name, figures in report["policies"].items()
    ]


def _cell(value: Any) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 10 else f"{value:,.0f}"
    return html.escape(str(value))


def html_table(rows: Sequence[Row]) -> str:
    if not rows:
        return "<p>No results.</p>"
    head = "".join(f"<th>{html.escape(k)}</th>" for k in rows[0])
    body = "".join(
        "<tr>" + "".join(f"<td>{_cell(v)}</td>" for v in r.values()) + "</tr>" for r in rows
    )
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def text_table(rows: Sequence[Row]) -> str:
    """The comparison for the terminal."""
    if not rows:
        return ""
    cells = [[str(k) for k in rows[0]]] + [
        [html.unescape(_cell(v)) for v in r.values()] for r in rows
    ]
    widths = [max(len(row[i]) for row in cells) for i in range(len(cells[0]))]
    return "\n".join(
        "  ".join(c.rjust(w) for c, w in zip(row, widths, strict=True)) for row in cells
    )


def _figure(rows: int, cols: int = 1, height: float = 2.6) -> tuple[Any, np.ndarray]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(rows, cols, figsize=(10, height * rows), squeeze=False, sharex=True)
    return fig, axes.ravel()


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path.name


def plot_all(out: Path, series: dict[str, dict[str, Any]]) -> list[tuple[str, str]]:
    """Write the PNGs; return (title, file name) pairs."""
    policies = list(series)
    first = series[policies[0]]
    resources = first["utilization"].shape[1]
    images = []

    fig, axes = _figure(resources)
    for r, ax in enumerate(axes):
        for name in policies:
            s = series[name]
            ax.plot(s["time"] / 3600, s["utilization"][:, r], label=name, linewidth=1)
        ax.axhline(1.0, color="black", linewidth=0.5, linestyle=":")
        ax.set_ylabel(["cpu", "memory", "gpu"][r] if r < 3 else f"resource {r}")
    axes[0].legend(ncol=len(policies), fontsize="small")
    axes[-1].set_xlabel("hours")
    images.append(
        ("Utilization of the pool (held / capacity)", _save(fig, out / "utilization.png"))
    )

    fig, axes = _figure(len(policies))
    for ax, name in zip(axes, policies, strict=True):
        s = series[name]
        colors = [f"C{k}" for k in range(len(s["stack_labels"]))]
        if s["stack_labels"][-1:] == ["other"]:
            colors[-1] = "lightgrey"
        ax.stackplot(
            s["time"] / 3600, s["stack"].T, labels=s["stack_labels"], colors=colors, linewidth=0
        )
        ax.set_ylabel(name)
    axes[0].legend(ncol=4, fontsize="x-small", loc="upper right")
    axes[-1].set_xlabel("hours")
    images.append(
        (
            "Allocations stacked: dominant share of the pool each holds (sums may pass 1)",
            _save(fig, out / "allocations.png"),
        )
    )

    fig, axes = _figure(len(policies) + 1)
    for ax, name in zip(axes, policies, strict=False):
        s = series[name]
        for k, label in enumerate(s["share_labels"]):
            ax.plot(s["time"] / 3600, s["shares"][:, k], label=label, linewidth=1)
        ax.set_ylabel(name)
    axes[0].legend(ncol=5, fontsize="x-small", loc="upper right")
    for name in policies:
        axes[-1].plot(series[name]["time"] / 3600, series[name]["jain"], label=name, linewidth=1)
    axes[-1].set_ylabel("Jain")
    axes[-1].set_ylim(0, 1.05)
    axes[-1].legend(ncol=len(policies), fontsize="small")
    axes[-1].set_xlabel("hours")
    images.append(("Weighted dominant shares, and Jain's index among clusters that want more",
                   _save(fig, out / "dominant_shares.png")))  # fmt: skip

    fig, axes = _figure(1, height=3.5)
    ax = axes[0]
    for name in policies:
        values = series[name]["completion"]
        if values.size:
            ax.step(
                np.maximum(values, 1e-3), np.arange(1, values.size + 1) / values.size, label=name
            )
    ax.set_xscale("log")
    ax.set_xlabel("job completion time (s)")
    ax.set_ylabel("fraction of jobs")
    ax.legend(fontsize="small")
    images.append(("Job completion times (ECDF)", _save(fig, out / "completion.png")))
    return images


PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>{title}</title>
<style>body{{font-family:sans-serif;margin:2em;max-width:1100px}}
table{{border-collapse:collapse;font-size:13px}}
td,th{{border:1px solid #ccc;padding:3px 6px;text-align:right}}
th{{background:#f4f4f4}}img{{max-width:100%}}</style></head><body>
<h1>{title}</h1><p>{subtitle}</p>{table}{images}</body></html>
"""


def write_page(
    out: Path, title: str, subtitle: str, rows: Sequence[Row], images: Sequence[tuple[str, str]]
) -> Path:
    parts = "".join(
        f'<h2>{html.escape(t)}</h2><img src="{html.escape(f)}" alt="{html.escape(t)}">'
        for t, f in images
    )
    page = PAGE.format(
        title=html.escape(title),
        subtitle=html.escape(subtitle),
        table=html_table(rows),
        images=parts,
    )
    path = out / "report.html"
    path.write_text(page)
    return path


def write_report(out: Path, report: dict[str, Any], series: dict[str, dict[str, Any]]) -> list[Row]:
    """Write report.json, the PNGs and report.html into ``out``; return the table rows."""
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.json").write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
    rows = table_rows(report)
    images = plot_all(out, series)
    s = report["scenario"]
    subtitle = (
        f"{s['clusters']} clusters, pool {s['pool']}, {s['duration'] / 3600:g} h at "
        f"{s['step']:g} s steps, seed {s['seed']}, start-up {s['startup_delay']:g} s, "
        f"retire {s['retire_delay']:g} s, damping {s['damping']}"
    )
    write_page(out, f"Simulation: {s['name']}", subtitle, rows, images)
    return rows
