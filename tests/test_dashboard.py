"""The dashboard in a real headless Chromium, served by uvicorn over real HTTP.

The first test runs real control loop cycles against real Dask schedulers; the others record
decisions into the store with ``Store.record_decisions`` (what the loop's record stage does),
to control the numbers the table and the charts must show.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from distributed import Client
from playwright.async_api import Browser, ConsoleMessage, Page, expect

from autoscaler.api import create_app
from autoscaler.demo.processes import start_worker, stop_process
from autoscaler.domain import ClusterSpec, Decision, Pool
from autoscaler.loop import ControlLoop
from autoscaler.observe import Observer
from autoscaler.settings import Settings
from autoscaler.store import ObservationRow, Store
from tests.browser import ARTIFACTS, chromium, screenshot, serve, sign_in
from tests.db_fixtures import ADMIN_TOKEN
from tests.test_loop import cluster, slow, wait_for_demand, wait_for_workers

GIB = 2**30
WAIT = {"timeout": 20_000}  # ms a condition may take to appear (polls are every second)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    async with chromium() as browser:
        yield browser


@pytest.fixture
async def page(browser: Browser) -> AsyncIterator[Page]:
    """A fresh tab; a JavaScript error or a CSP violation on it fails the test."""
    context = await browser.new_context(viewport={"width": 1500, "height": 1000})
    page = await context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"page error: {error}"))

    def console(message: ConsoleMessage) -> None:
        if "Content Security Policy" in message.text:
            problems.append(message.text)

    page.on("console", console)
    yield page
    await context.close()
    assert not problems


@pytest.fixture
def dash_store(tmp_path: Path) -> Iterator[Store]:
    store = Store(f"sqlite:///{tmp_path / 'dashboard.db'}")
    store.upgrade()
    store.set_pool(Pool(capacity={"cpu": 64, "memory": 256 * GIB}))
    yield store
    store.close()


def spec(
    name: str, *, group: str = "default", tier: int = 0, backend: str = "local"
) -> ClusterSpec:
    return ClusterSpec(
        name=name,
        scheduler_url=f"http://127.0.0.1:9/{name}",
        backend=backend,
        worker={"cpu": 1, "memory": 4 * GIB},
        group=group,
        tier=tier,
    )


def decision(name: str, at: float, **values: Any) -> Decision:
    fields = {"desired": 2, "allocated": 2, "target": 2, "current": 2, "dominant_share": 0.03}
    fields.update(values)
    return Decision(cluster=name, reason="satisfied", decided_at=at, **fields)


async def cell(page: Page, cluster: str, column: str) -> str:
    return await page.locator(f'tr[data-cluster="{cluster}"] td[data-col="{column}"]').inner_text()


def share(value: float) -> str:
    return f"{value * 100:.1f}%"


async def test_after_real_loop_cycles_the_table_chart_and_cluster_page_show_the_decisions(
    tmp_path: Path, dask_scheduler_factory: Any, page: Page
) -> None:
    a, b = dask_scheduler_factory(), dask_scheduler_factory()
    settings = Settings(
        admin_token=ADMIN_TOKEN,
        database_url=f"sqlite:///{tmp_path / 'loop.db'}",
        dry_run=True,  # decide and record; the one worker is started by the test
        usage_interval=0,
    )
    store = Store(settings.database_url)
    store.upgrade()
    store.set_pool(Pool(capacity={"cpu": 3, "memory": 8 * GIB}))
    store.create_cluster(cluster("busy", a))
    store.create_cluster(cluster("idle", b, minimum=1))
    worker = start_worker(a.address, name="busy-worker-0")
    try:
        async with (
            Observer.from_settings(settings) as observer,
            Client(a.address, asynchronous=True) as client,
        ):
            loop = ControlLoop(settings, store, observer)
            work = client.map(slow, range(500))
            await wait_for_workers(a, 1)
            await wait_for_demand(loop, "busy")
            report = await loop.run_cycle()
            app = create_app(settings, store)
            app.state.loop = loop
            with serve(app) as url:
                await sign_in(page, url + "/", ADMIN_TOKEN)
                rows = page.locator("#clusters tbody tr")
                await expect(rows).to_have_count(2, **WAIT)
                for d in report.decisions:
                    assert await cell(page, d.cluster, "desired") == str(d.desired)
                    assert await cell(page, d.cluster, "allocated") == str(d.allocated)
                    assert await cell(page, d.cluster, "target") == str(d.target)
                    assert await cell(page, d.cluster, "current") == str(d.current)
                    assert await cell(page, d.cluster, "dominant_share") == share(d.dominant_share)
                    assert await cell(page, d.cluster, "reason") == d.reason
                    starved = await page.locator(f'tr.starved[data-cluster="{d.cluster}"]').count()
                    assert starved == (d.allocated < d.desired)
                by_name = {d.cluster: d for d in report.decisions}
                assert by_name["idle"].reason == "minimum" and by_name["idle"].allocated == 1
                # the pool: allocation from the decisions, usage from the one running worker
                cpu = page.locator(".bar-row", has=page.locator('[data-resource="cpu"]'))
                allocated_cpu = sum(d.allocated for d in report.decisions)
                await expect(cpu).to_contain_text(f"{allocated_cpu} of 3 allocated")
                await expect(cpu).to_contain_text("1 running")
                # the charts: one area per cluster (and the rest), one share line per cluster
                areas = page.locator("#chart-allocated polygon")
                await expect(areas).to_have_count(3, **WAIT)
                names = {await area.get_attribute("data-series") for area in await areas.all()}
                assert names == {"busy", "idle", "other clusters"}
                points = await page.locator("#chart-allocated").get_attribute("data-points")
                assert points is not None and int(points) >= 1
                await expect(page.locator("#chart-share path[data-series]")).to_have_count(2)
                shot = await screenshot(page, "dashboard-real-loop")
                assert shot.stat().st_size > 10_000

                await page.get_by_role("link", name="busy", exact=True).click()
                await expect(page.locator("#detail-name")).to_contain_text("busy", **WAIT)
                decisions = page.locator("#detail-decisions tbody tr")
                await expect(decisions.first).to_contain_text(by_name["busy"].reason)
                assert await decisions.count() == len(store.history("busy"))
                await expect(page.locator("#detail-settings")).to_contain_text(a.http_url)
                await expect(page.locator("#detail-usage")).to_contain_text("busy-worker-0")
                await expect(page.locator("#chart-detail path[data-series]")).to_have_count(3)
                await screenshot(page, "dashboard-cluster-page")
            await client.cancel(work)
            await loop.stop()
    finally:
        stop_process(worker)
        store.close()


async def test_a_bad_token_is_refused_and_a_group_token_sees_only_its_group(
    dash_store: Store, page: Page
) -> None:
    """Decisions recorded directly into the store (no loop)."""
    now = time.time()
    mine = ["a-1", "a-2", "a-3"]
    for name in mine:
        dash_store.create_cluster(spec(name, group="team-a"))
    for name in ["b-1", "b-2"]:
        dash_store.create_cluster(spec(name, group="team-b"))
    dash_store.record_decisions([decision(n, now) for n in [*mine, "b-1", "b-2"]])
    token = dash_store.create_token("team-a")
    with serve(create_app(Settings(admin_token=ADMIN_TOKEN), dash_store)) as url:
        await sign_in(page, url + "/", "not-a-token")
        await expect(page.locator("#login-error")).to_have_text("This token was refused.")
        await expect(page.locator("#overview")).to_be_hidden()
        async with httpx.AsyncClient(base_url=url) as http:
            for headers in ({}, {"Authorization": "Bearer not-a-token"}):
                answer = await http.get("/api/v1/dashboard/clusters", headers=headers)
                assert answer.status_code == 401

        await page.locator("#token").fill(token)
        await page.get_by_role("button", name="Sign in").click()
        rows = page.locator("#clusters tbody tr")
        await expect(rows).to_have_count(3, **WAIT)
        assert [await row.get_attribute("data-cluster") for row in await rows.all()] == mine
        options = page.locator("#f-group option")
        assert await options.evaluate_all("os => os.map(o => o.value)") == ["", "team-a"]
        await expect(page.locator("#status")).to_contain_text("3 clusters")
        areas = page.locator("#chart-allocated polygon")
        await expect(areas).to_have_count(4, **WAIT)
        names = {await area.get_attribute("data-series") for area in await areas.all()}
        assert names == {*mine, "other clusters"}

        await page.goto(f"{url}/#/clusters/b-1")  # another group's cluster
        await expect(page.locator("#status")).to_contain_text("404", **WAIT)
        await expect(page.locator("#detail-name")).to_have_text("")
        await page.goto(f"{url}/#/clusters/a-1")
        await expect(page.locator("#detail-name")).to_contain_text("a-1", **WAIT)

        await page.get_by_role("button", name="Sign out").click()
        await expect(page.locator("#login")).to_be_visible()
        assert await page.evaluate("sessionStorage.length") == 0


async def test_the_page_updates_itself_without_reloading(dash_store: Store, page: Page) -> None:
    """Decisions recorded directly into the store while the page is open (no loop)."""
    now = time.time()
    dash_store.create_cluster(spec("alpha"))
    dash_store.record_decisions([decision("alpha", now - 60, desired=3, allocated=3)])
    with serve(create_app(Settings(admin_token=ADMIN_TOKEN), dash_store)) as url:
        await sign_in(page, url + "/?refresh=1", ADMIN_TOKEN)
        await expect(page.locator('tr[data-cluster="alpha"]')).not_to_have_class("starved", **WAIT)
        assert await cell(page, "alpha", "allocated") == "3"
        await page.evaluate("window.__sameDocument = true")

        dash_store.record_decisions([decision("alpha", now, desired=9, allocated=5)])
        allocated = page.locator('tr[data-cluster="alpha"] td[data-col="allocated"]')
        await expect(allocated).to_have_text("5", **WAIT)
        assert await cell(page, "alpha", "desired") == "9"
        await expect(page.locator('tr[data-cluster="alpha"]')).to_have_class("starved")
        assert await page.evaluate("window.__sameDocument") is True


def two_thousand_clusters(store: Store, now: float) -> list[Decision]:
    """2,000 clusters in 10 groups, 20 recorded cycles over the last hour; the last cycle."""
    store.set_pool(Pool(capacity={"cpu": 4000, "memory": 16000 * GIB}))
    names = [f"c{i:04d}" for i in range(2000)]
    for i, name in enumerate(names):
        backend = "kubernetes" if i % 4 == 0 else "local"
        store.create_cluster(spec(name, group=f"team-{i % 10}", tier=i % 3, backend=backend))
    last: list[Decision] = []
    for k in range(20):
        at = now - 3600 + 90 + k * 180
        last = [
            decision(
                n,
                at,
                desired=i % 7,
                allocated=min(i % 7, (i + k) % 5),
                target=min(i % 7, (i + k) % 5),
                current=i % 5,
                dominant_share=round(((i * 37) % 1000) / 1e5, 5),
            )
            for i, n in enumerate(names)
        ]
        store.record_decisions(last)
    store.record_observations(
        [ObservationRow(cluster=n, observed_at=now, error="timeout") for n in names[:7]]
    )
    return last


async def test_two_thousand_clusters_are_paged_filtered_and_sorted_on_the_server(
    dash_store: Store, page: Page
) -> None:
    """Decisions recorded directly into the store (no loop)."""
    last = two_thousand_clusters(dash_store, time.time())
    with serve(create_app(Settings(admin_token=ADMIN_TOKEN), dash_store)) as url:
        await sign_in(page, url + "/?refresh=60", ADMIN_TOKEN)
        rows = page.locator("#clusters tbody tr")
        await expect(rows).to_have_count(50, **WAIT)
        # measured, not asserted: open the page again (token kept) until table and chart show
        started = time.perf_counter()
        await page.reload()
        await expect(rows).to_have_count(50, **WAIT)
        await expect(page.locator("#chart-allocated polygon")).to_have_count(9, **WAIT)
        seconds = time.perf_counter() - started
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "dashboard-load-2000.txt").write_text(f"{seconds:.3f} s\n")
        print(f"dashboard with 2,000 clusters shown in {seconds:.3f} s")

        await expect(page.locator("#counts")).to_have_text("2000 of 2000")
        assert await rows.first.get_attribute("data-cluster") == "c0000"
        assert await page.locator("#chart-allocated").get_attribute("data-points") == "20"
        await screenshot(page, "dashboard-2000-clusters")
        await page.get_by_role("button", name="Next ›").click()
        await expect(rows.first).to_have_attribute("data-cluster", "c0050", **WAIT)
        await expect(page.locator("#page-info")).to_have_text("page 2 of 40")

        await page.locator("#f-group").select_option("team-3")
        await expect(page.locator("#counts")).to_have_text("200 of 2000", **WAIT)
        groups = await page.locator("#clusters tbody tr td:nth-child(2)").all_inner_texts()
        assert set(groups) == {"team-3"} and len(groups) == 50

        in_group = [d for i, d in enumerate(last) if i % 10 == 3]
        starved = [d for d in in_group if d.allocated < d.desired and int(d.cluster[1:]) >= 7]
        await page.locator("#f-state").select_option("starved")
        await expect(page.locator("#counts")).to_have_text(f"{len(starved)} of 2000", **WAIT)
        assert await page.locator("#clusters tbody tr:not(.starved)").count() == 0

        await page.locator("#f-state").select_option("error")
        errors = [d for d in in_group if int(d.cluster[1:]) < 7]  # the 7 failed polls
        await expect(page.locator("#counts")).to_have_text(f"{len(errors)} of 2000", **WAIT)
        await expect(rows.first.locator("td.errors")).to_have_text("timeout")

        await page.locator("#f-state").select_option("")
        header = page.locator('th[data-sort="dominant_share"]')
        await header.click()
        await expect(header).to_have_attribute("aria-sort", "ascending", **WAIT)
        await header.click()
        await expect(header).to_have_attribute("aria-sort", "descending", **WAIT)
        top = max(in_group, key=lambda d: (d.dominant_share, d.cluster))
        await expect(rows.first).to_have_attribute("data-cluster", top.cluster, **WAIT)
        assert await cell(page, top.cluster, "dominant_share") == share(top.dominant_share)

        await page.locator("#f-search").fill("c19")
        matches = [d for d in in_group if d.cluster.startswith("c19")]
        await expect(page.locator("#counts")).to_have_text(f"{len(matches)} of 2000", **WAIT)

    # the server sends one page, not 2,000 lines
    with serve(create_app(Settings(admin_token=ADMIN_TOKEN), dash_store)) as url:
        async with httpx.AsyncClient(
            base_url=url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"}
        ) as http:
            answer = (await http.get("/api/v1/dashboard/clusters?offset=1950&limit=100")).json()
    assert answer["total"] == answer["matched"] == 2000
    assert [c["name"] for c in answer["clusters"]] == [f"c{i:04d}" for i in range(1950, 2000)]


async def test_the_page_and_its_files_are_served_without_internet(dash_store: Store) -> None:
    with serve(create_app(Settings(admin_token=ADMIN_TOKEN), dash_store)) as url:
        async with httpx.AsyncClient(base_url=url) as http:
            index = await http.get("/")
            assets = [await http.get(f"/dashboard/static/{n}") for n in ("app.js", "app.css")]
            missing = await http.get("/dashboard/static/index.html")
    assert index.status_code == 200 and "text/html" in index.headers["content-type"]
    assert "connect-src 'self'" in index.headers["content-security-policy"]
    assert all(a.status_code == 200 for a in assets)
    for text in (index.text, *(a.text for a in assets)):
        assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
        assert "https://" not in text
    assert missing.status_code == 404


async def test_chart_data_follows_the_recorded_history(
    store: Store, api: httpx.AsyncClient, api_client_factory: Any
) -> None:
    """No browser: the chart's JSON over SQLite and PostgreSQL, from recorded decisions."""
    now = time.time()
    names = [f"k{i:02d}" for i in range(10)]
    for i, name in enumerate(names):
        store.create_cluster(spec(name, group="team-a" if i < 6 else "team-b"))
    cycles = [now - 3000, now - 1500, now - 20]
    store.record_decisions(
        [decision("k00", now - 7200, allocated=99)]
    )  # first, older than the hour
    for k, at in enumerate(cycles):
        store.record_decisions(
            [
                decision(n, at, allocated=i + k, dominant_share=(i + k) / 100)
                for i, n in enumerate(names)
            ]
        )
    chart = (await api.get("/dashboard/chart")).json()
    series = {s["name"]: s for s in chart["series"]}
    top = [f"k{i:02d}" for i in range(9, 1, -1)]  # 8 largest by latest allocation
    assert list(series) == [*top, "other clusters"]
    for k, at in enumerate(cycles):
        slot = int((at - chart["since"]) // chart["step"])
        for i in range(2, 10):
            assert series[f"k{i:02d}"]["allocated"][slot] == i + k
            assert series[f"k{i:02d}"]["dominant_share"][slot] == pytest.approx((i + k) / 100)
        assert series["other clusters"]["allocated"][slot] == (0 + k) + (1 + k)
    filled = [i for i, v in enumerate(series["k09"]["allocated"]) if v is not None]
    assert len(filled) == len(cycles)

    team_a = api_client_factory(store.create_token("team-a"))
    mine = (await team_a.get("/dashboard/chart")).json()
    assert [s["name"] for s in mine["series"]] == [
        *[f"k{i:02d}" for i in range(5, -1, -1)],
        "other clusters",
    ]
    theirs = (await team_a.get("/dashboard/chart?group=team-b")).json()
    assert all(v is None for s in theirs["series"] for v in s["allocated"])
    page = (await team_a.get("/dashboard/clusters?group=team-b")).json()
    assert page["total"] == 6 and page["matched"] == 0
    assert (await team_a.get("/dashboard/clusters/k09")).status_code == 404
