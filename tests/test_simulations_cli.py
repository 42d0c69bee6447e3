"""``autoscaler simulate`` end to end: reports, sweeps on a small Dask cluster, bad scenarios."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
import yaml
from distributed import LocalCluster

from autoscaler.cli import main
from simulations.scenario import POLICIES, read_raw
from simulations.sweep import run_sweep

SMALL = Path(__file__).parent.parent / "simulations" / "scenarios" / "small.yaml"


def short_scenario(tmp_path: Path, **changes: object) -> Path:
    raw = {**read_raw(SMALL), "duration": "20m", **changes}
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def test_simulate_writes_the_json_report_and_the_html_with_its_plots(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert main(["simulate", str(SMALL), "--out", str(out)]) == 0
    report = json.loads((out / "report.json").read_text())
    assert list(report["policies"]) == list(POLICIES)
    assert report["scenario"]["clusters"] == 4
    page = (out / "report.html").read_text()
    images = re.findall(r'<img src="([^"]+)"', page)
    assert len(images) == 4
    assert all((out / name).read_bytes().startswith(b"\x89PNG") for name in images)
    assert "<table>" in page and "drf" in page
    printed = capsys.readouterr()
    assert "policy" in printed.out and "unshared" in printed.out
    assert "\r" not in printed.err  # no progress bar when stderr is not a terminal


def test_sweep_on_an_existing_dask_cluster(tmp_path: Path) -> None:
    scenario = short_scenario(tmp_path, policies=["drf", "static"])
    out = tmp_path / "sweep"
    cluster = LocalCluster(
        n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None
    )
    try:
        code = main(
            ["simulate", str(scenario), "--out", str(out), "--scheduler", cluster.scheduler_address,
             "--sweep", "pool.cpu=16,32", "--sweep", "clusters.etl.weight=1,4"]
        )  # fmt: skip
    finally:
        cluster.close()
    assert code == 0
    document = json.loads((out / "report.json").read_text())
    overrides = [entry["overrides"] for entry in document["sweep"]]
    assert overrides == [
        {"pool.cpu": 16, "clusters.etl.weight": 1},
        {"pool.cpu": 16, "clusters.etl.weight": 4},
        {"pool.cpu": 32, "clusters.etl.weight": 1},
        {"pool.cpu": 32, "clusters.etl.weight": 4},
    ]
    assert [e["scenario"]["pool"]["cpu"] for e in document["sweep"]] == [16, 16, 32, 32]
    unmet = [e["policies"]["drf"]["unmet_worker_seconds"]["total"] for e in document["sweep"]]
    assert unmet[2] < unmet[0]  # a larger pool leaves less demand unmet
    assert (out / "sweep.png").exists() and 'src="sweep.png"' in (out / "report.html").read_text()


def test_sweep_on_its_own_local_cluster(tmp_path: Path) -> None:
    raw = read_raw(short_scenario(tmp_path, policies=["drf"]))
    results = run_sweep(raw, tmp_path, {"seed": [1, 2]}, n_workers=1, processes=False)
    assert [combination for combination, _ in results] == [{"seed": 1}, {"seed": 2}]
    assert [report["scenario"]["seed"] for _, report in results] == [1, 2]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("pool: [1, 2", "not valid YAML"),
        ("pool: {cpu: 4}\nclusters: {a: {worker: {cpu: 1}, wieght: 2}}", "unknown key 'wieght'"),
        ("pool: {cpu: 4}\nclusters: {a: {worker: {cpu: 1}, demand: [{kind: nope}]}}", "kind"),
        ("pool: {cpu: 4}\nclusters: {}", "at least one cluster"),
        ("pool: {cpu: 4}\nstep: fast\nclusters: {a: {worker: {cpu: 1}}}", "step"),
    ],
)
def test_a_bad_scenario_exits_2_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], content: str, message: str
) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(content)
    assert main(["simulate", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err
    assert not (tmp_path / "out").exists()


def test_a_missing_file_and_a_bad_sweep_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["simulate", str(tmp_path / "none.yaml"), "--out", str(tmp_path)]) == 2
    assert "cannot read scenario" in capsys.readouterr().err
    args = ["simulate", str(SMALL), "--out", str(tmp_path), "--sweep", "clusters.nope.weight=1,2"]
    assert main(args) == 2
    assert "no cluster 'nope'" in capsys.readouterr().err
