// The dashboard: vanilla JavaScript, inline SVG, no library. Data from /api/v1/dashboard/*,
// polled; the page itself never reloads. Text is set with textContent only (no HTML injection).
"use strict";

const API = "/api/v1/dashboard";
const TOKEN_KEY = "autoscaler-token";
// seconds between two polls: 5, or ?refresh=N (at least 1)
const REFRESH_MS = 1000 * Math.max(1, Number(new URLSearchParams(location.search).get("refresh")) || 5);
const CHART_EVERY = 3; // charts are refreshed every third poll
const PAGE_SIZE = 50;
const COLORS = ["#2f6fdf", "#e8890c", "#12b76a", "#9e77ed", "#f04438", "#0ba5ec",
  "#ee46bc", "#854d0e", "#98a2b3"];
const SVGNS = "http://www.w3.org/2000/svg";

const view = { sort: "name", descending: false, offset: 0, polls: 0, busy: false, again: false };
const $ = (id) => document.getElementById(id);

class Unauthorized extends Error {}

async function api(path) {
  const token = sessionStorage.getItem(TOKEN_KEY);
  const headers = token ? { Authorization: `Bearer ${token}` } : {};
  const response = await fetch(API + path, { headers });
  if (response.status === 401) throw new Unauthorized("token refused");
  if (!response.ok) throw new Error(`${response.status} ${response.statusText}`);
  return response.json();
}

function el(tag, attrs = {}, text) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    // style via the CSSOM: the page's CSP forbids inline style attributes
    if (key === "style") Object.assign(node.style, value);
    else node.setAttribute(key, value);
  }
  if (text !== undefined && text !== null) node.textContent = String(text);
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVGNS, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// --- formatting ---
function amount(resource, value) {
  if (value === null || value === undefined) return "–";
  if (resource === "memory") return `${(value / 2 ** 30).toFixed(1)} GiB`;
  return Number.isInteger(value) ? String(value) : value.toFixed(2);
}
const pct = (v) => (v === null || v === undefined ? "–" : `${(v * 100).toFixed(1)}%`);
const num = (v) => (v === null || v === undefined ? "–" : String(v));
const age = (s) => (s === null || s === undefined ? "never" : s < 120 ? `${Math.round(s)} s ago` : `${Math.round(s / 60)} min ago`);
const clock = (t) => new Date(t * 1000).toLocaleTimeString();

// --- login ---
function showLogin(message) {
  $("overview").hidden = true;
  $("detail").hidden = true;
  $("logout").hidden = true;
  $("login").hidden = false;
  $("login-error").textContent = message || "";
  $("token").focus();
}

async function signIn(event) {
  event.preventDefault();
  sessionStorage.setItem(TOKEN_KEY, $("token").value.trim());
  try {
    await api("/pool");
  } catch (error) {
    sessionStorage.removeItem(TOKEN_KEY);
    showLogin(error instanceof Unauthorized ? "This token was refused." : String(error));
    return;
  }
  $("token").value = "";
  $("login").hidden = true;
  route();
}

function signOut() {
  sessionStorage.removeItem(TOKEN_KEY);
  showLogin("");
}

// --- the overview ---
function query() {
  const params = new URLSearchParams({
    sort: view.sort, descending: view.descending, offset: view.offset, limit: PAGE_SIZE,
  });
  for (const [id, key] of [["f-search", "search"], ["f-group", "group"], ["f-tier", "tier"],
    ["f-backend", "backend"], ["f-state", "state"]]) {
    const value = $(id).value.trim();
    if (value) params.set(key, value);
  }
  return params;
}

function renderPool(pool) {
  const box = $("pool");
  box.replaceChildren();
  if (!pool.capacity) {
    box.append(el("p", {}, "No pool is set yet (PUT /api/v1/pool)."));
    return;
  }
  for (const [resource, capacity] of Object.entries(pool.capacity)) {
    const allocated = pool.allocated[resource] || 0;
    const used = pool.used && resource in pool.used ? pool.used[resource] : null;
    const running = pool.running && resource in pool.running ? pool.running[resource] : null;
    const share = (v) => `${Math.min(100, capacity ? (100 * v) / capacity : 0)}%`;
    const bar = el("div", { class: "bar", "data-resource": resource });
    bar.append(el("div", { class: "allocated", style: { width: share(allocated) } }));
    if (used !== null) bar.append(el("div", { class: "used", style: { width: share(used) } }));
    const free = capacity - allocated;
    let text = `${amount(resource, allocated)} of ${amount(resource, capacity)} allocated, `
      + (free >= 0 ? `${amount(resource, free)} free` : `${amount(resource, -free)} over capacity`);
    if (running !== null) text += `, ${amount(resource, running)} running`;
    if (used !== null) text += `, ${amount(resource, used)} used`;
    const row = el("div", { class: "bar-row" });
    row.append(el("strong", {}, resource), bar, el("span", { class: "bar-text" }, text));
    box.append(row);
  }
  const when = pool.cycle_at ? `last cycle ${clock(pool.cycle_at)}` : "no cycle yet";
  $("status").textContent = `${pool.clusters} clusters · ${pool.starved} starved · `
    + `${pool.errors} with errors · ${when} · updated ${new Date().toLocaleTimeString()}`;
}

function fillSelect(id, values, labels = {}) {
  const select = $(id);
  const chosen = select.value;
  const first = select.options[0];
  select.replaceChildren(first);
  for (const value of values) {
    select.append(el("option", { value: String(value) }, labels[value] || String(value)));
  }
  select.value = values.map(String).includes(chosen) ? chosen : "";
}

function renderTable(page) {
  const body = $("clusters").querySelector("tbody");
  const rows = page.clusters.map((c) => {
    const tr = el("tr", { class: c.state, "data-cluster": c.name });
    const link = el("a", { href: `#/clusters/${encodeURIComponent(c.name)}` }, c.name);
    const name = el("td");
    name.append(link);
    const state = el("td");
    state.append(el("span", { class: `badge ${c.state}` }, c.state));
    const errors = [c.observation_error, c.decision_error].filter(Boolean).join(" · ");
    tr.append(name, el("td", {}, c.group), el("td", { class: "num" }, c.tier),
      el("td", {}, c.backend), el("td", { class: "num" }, c.weight),
      el("td", { class: "num", "data-col": "desired" }, num(c.desired)),
      el("td", { class: "num", "data-col": "allocated" }, num(c.allocated)),
      el("td", { class: "num", "data-col": "target" }, num(c.target)),
      el("td", { class: "num", "data-col": "current" }, num(c.current)),
      el("td", { class: "num", "data-col": "dominant_share" }, pct(c.dominant_share)),
      el("td", { "data-col": "reason" }, c.reason || "–"),
      el("td", {}, age(c.observation_age)), state,
      el("td", { class: "errors", title: errors }, errors));
    return tr;
  });
  body.replaceChildren(...rows);
  $("counts").textContent = `${page.matched} of ${page.total}`;
  const pages = Math.max(1, Math.ceil(page.matched / PAGE_SIZE));
  $("page-info").textContent = `page ${Math.floor(page.offset / PAGE_SIZE) + 1} of ${pages}`;
  $("prev").disabled = page.offset === 0;
  $("next").disabled = page.offset + PAGE_SIZE >= page.matched;
  const f = page.facets;
  fillSelect("f-group", f.groups);
  fillSelect("f-tier", f.tiers);
  fillSelect("f-backend", f.backends);
  const states = Object.keys(f.states).sort();
  fillSelect("f-state", states, Object.fromEntries(states.map((s) => [s, `${s} (${f.states[s]})`])));
  for (const th of $("clusters").querySelectorAll("th[data-sort]")) {
    const sorted = th.dataset.sort === view.sort;
    if (sorted) th.setAttribute("aria-sort", view.descending ? "descending" : "ascending");
    else th.removeAttribute("aria-sort");
  }
}

// --- charts (inline SVG) ---
// Sampled data is drawn as steps: slot i (a time bucket, or one decision) spans
// [x(i), x(i + 1)], so one sample is visible too, and the x axis is the whole window.
const BOX = { left: 40, right: 10, top: 10, bottom: 22 };

function axes(node, width, height, ymax, label, ends) {
  node.replaceChildren();
  const h = height - BOX.top - BOX.bottom;
  for (const f of [0, 0.5, 1]) {
    const y = BOX.top + h * (1 - f);
    node.append(svg("line", { class: "axis", x1: BOX.left, x2: width - BOX.right, y1: y, y2: y }));
    node.append(svg("text", { x: BOX.left - 4, y: y + 3, "text-anchor": "end" }, label(ymax * f)));
  }
  if (ends) {
    node.append(svg("text", { x: BOX.left, y: height - 6, "text-anchor": "start" }, clock(ends[0])));
    node.append(svg("text", { x: width - BOX.right, y: height - 6, "text-anchor": "end" }, clock(ends[1])));
  }
}

function scales(node, slots, ymax) {
  const [, , width, height] = node.getAttribute("viewBox").split(" ").map(Number);
  const w = width - BOX.left - BOX.right;
  const h = height - BOX.top - BOX.bottom;
  return {
    width, height,
    x: (i) => BOX.left + (w * i) / Math.max(1, slots),
    y: (v) => BOX.top + h * (1 - v / (ymax || 1)),
  };
}

function withData(slots, series, key) {
  let count = 0;
  for (let i = 0; i < slots; i += 1) if (series.some((s) => s[key][i] !== null)) count += 1;
  return count;
}

// series: [{name, allocated: [n|null per slot]}], stacked in order
function drawStacked(node, ends, series) {
  const slots = series.length ? series[0].allocated.length : 0;
  const totals = Array.from({ length: slots }, (_, i) => series.reduce((t, s) => t + (s.allocated[i] || 0), 0));
  const ymax = Math.max(1, ...totals);
  const { width, height, x, y } = scales(node, slots, ymax);
  axes(node, width, height, ymax, (v) => String(Math.round(v)), ends);
  node.dataset.points = String(withData(slots, series, "allocated"));
  if (node.dataset.points === "0") {
    node.append(svg("text", { x: width / 2, y: height / 2, "text-anchor": "middle" }, "no decisions in this window"));
    return;
  }
  let below = new Array(slots).fill(0);
  series.forEach((s, k) => {
    const above = below.map((v, i) => v + (s.allocated[i] || 0));
    const top = above.flatMap((v, i) => [`${x(i)},${y(v)}`, `${x(i + 1)},${y(v)}`]);
    const bottom = below.flatMap((v, i) => [`${x(i)},${y(v)}`, `${x(i + 1)},${y(v)}`]).reverse();
    const area = svg("polygon", {
      points: [...top, ...bottom].join(" "), fill: COLORS[k % COLORS.length],
      "fill-opacity": 0.85, "data-series": s.name,
    });
    area.append(svg("title", {}, s.name));
    node.append(area);
    below = above;
  });
}

// one step line per series; a gap where a slot has no value
function drawLines(node, ends, series, key, label = pct) {
  const slots = series.length ? series[0][key].length : 0;
  const values = series.flatMap((s) => s[key].filter((v) => v !== null));
  const ymax = Math.max(key === "dominant_share" ? 0.01 : 1, ...values);
  const { width, height, x, y } = scales(node, slots, ymax);
  axes(node, width, height, ymax, label, ends);
  node.dataset.points = String(withData(slots, series, key));
  series.forEach((s, k) => {
    let d = "";
    s[key].forEach((v, i) => {
      if (v === null) return;
      const joined = i > 0 && s[key][i - 1] !== null;
      d += joined ? `V${y(v)}H${x(i + 1)}` : `M${x(i)} ${y(v)}H${x(i + 1)}`;
    });
    if (!d) return;
    const line = svg("path", {
      d, fill: "none", stroke: s.color || COLORS[k % COLORS.length], "stroke-width": 2,
      "data-series": s.name,
    });
    line.append(svg("title", {}, s.name));
    node.append(line);
  });
}

function renderCharts(chart) {
  const ends = [chart.since, chart.since + chart.step * chart.times.length];
  drawStacked($("chart-allocated"), ends, chart.series);
  const clusters = chart.series.filter((s) => s.name !== "other clusters");
  drawLines($("chart-share"), ends, clusters, "dominant_share");
  $("legend").replaceChildren(...chart.series.map((s, k) => {
    const item = el("li", {}, s.name);
    item.prepend(el("i", { style: { background: COLORS[k % COLORS.length] } }));
    return item;
  }));
}

async function refreshOverview() {
  const group = $("f-group").value;
  const chartPath = `/chart${group ? `?group=${encodeURIComponent(group)}` : ""}`;
  const wantChart = view.polls % CHART_EVERY === 0;
  const [page, chart] = await Promise.all([
    api(`/clusters?${query()}`), wantChart ? api(chartPath) : null,
  ]);
  renderPool(page.pool);
  renderTable(page);
  if (chart) renderCharts(chart);
}

// --- a cluster's page ---
function keyValues(table, pairs) {
  table.replaceChildren(...pairs.map(([key, value]) => {
    const tr = el("tr");
    tr.append(el("th", {}, key), el("td", {}, value));
    return tr;
  }));
}

async function refreshDetail(name) {
  const data = await api(`/clusters/${encodeURIComponent(name)}`);
  const c = data.cluster;
  $("detail-name").textContent = `${c.name} (group ${c.group}, tier ${c.tier})`;
  keyValues($("detail-settings"), [
    ["scheduler", c.scheduler_url], ["backend", c.backend],
    ["backend options", JSON.stringify(c.backend_options)],
    ["worker", Object.entries(c.worker).map(([r, v]) => `${r} ${amount(r, v)}`).join(", ")],
    ["minimum", c.minimum], ["maximum", c.maximum ?? "none"], ["weight", c.weight],
  ]);
  const o = data.observation;
  keyValues($("detail-observation"), o ? [
    ["observed", age(o.age)], ["desired", num(o.desired)], ["current", num(o.current)],
    ["workers", JSON.stringify(o.workers)], ["tasks", JSON.stringify(o.tasks)],
    ["error", o.error || "none"], ["stale", o.stale ? "yes" : "no"],
  ] : [["observed", "never"]]);
  const usage = $("detail-usage");
  usage.replaceChildren();
  if (o && o.usage) {
    const head = el("tr");
    for (const h of ["worker", "threads", "memory", "limit"]) head.append(el("th", {}, h));
    usage.append(head, ...o.usage.map((w) => {
      const tr = el("tr");
      tr.append(el("td", {}, w.name), el("td", { class: "num" }, w.nthreads),
        el("td", { class: "num" }, amount("memory", w.memory)),
        el("td", { class: "num" }, amount("memory", w.memory_limit)));
      return tr;
    }));
  }
  const decisions = data.decisions;
  $("detail-decisions").querySelector("tbody").replaceChildren(...decisions.map((d) => {
    const tr = el("tr", { class: d.allocated < d.desired ? "starved" : d.error ? "error" : "" });
    tr.append(el("td", {}, clock(d.decided_at)), el("td", { class: "num" }, d.desired),
      el("td", { class: "num" }, d.allocated), el("td", { class: "num" }, d.target),
      el("td", { class: "num" }, d.current), el("td", { class: "num" }, pct(d.dominant_share)),
      el("td", {}, d.reason), el("td", {}, d.applied ? "yes" : "no"),
      el("td", { class: "errors" }, d.error || ""));
    return tr;
  }));
  const old = [...decisions].reverse();
  const series = ["desired", "allocated", "current"].map((key, k) => ({
    name: key, color: COLORS[k], value: old.map((d) => d[key]),
  }));
  const ends = old.length ? [old[0].decided_at, old[old.length - 1].decided_at] : null;
  drawLines($("chart-detail"), ends, series, "value", (v) => String(Math.round(v)));
}

// --- routing and polling ---
function currentCluster() {
  const match = location.hash.match(/^#\/clusters\/(.+)$/);
  return match ? decodeURIComponent(match[1]) : null;
}

async function refresh() {
  if (!$("login").hidden) return;
  if (view.busy) {
    view.again = true; // a click while a poll runs: poll again right after it
    return;
  }
  view.busy = true;
  try {
    const name = currentCluster();
    if (name) await refreshDetail(name);
    else await refreshOverview();
    view.polls += 1;
  } catch (error) {
    if (error instanceof Unauthorized) showLogin(sessionStorage.getItem(TOKEN_KEY) ? "This token was refused." : "");
    else $("status").textContent = `update failed: ${error.message}`;
  } finally {
    view.busy = false;
  }
  if (view.again) {
    view.again = false;
    refresh();
  }
}

function route() {
  const name = currentCluster();
  $("overview").hidden = Boolean(name);
  $("detail").hidden = !name;
  $("logout").hidden = !sessionStorage.getItem(TOKEN_KEY);
  view.polls = 0;
  refresh();
}

function resetAndRefresh() {
  view.offset = 0;
  view.polls = 0;
  refresh();
}

function start() {
  $("login-form").addEventListener("submit", signIn);
  $("logout").addEventListener("click", signOut);
  $("filters").addEventListener("submit", (e) => e.preventDefault());
  let typing;
  $("f-search").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(resetAndRefresh, 250);
  });
  for (const id of ["f-group", "f-tier", "f-backend", "f-state"]) {
    $(id).addEventListener("change", resetAndRefresh);
  }
  for (const th of $("clusters").querySelectorAll("th[data-sort]")) {
    th.addEventListener("click", () => {
      view.descending = view.sort === th.dataset.sort ? !view.descending : false;
      view.sort = th.dataset.sort;
      view.offset = 0;
      refresh();
    });
  }
  $("prev").addEventListener("click", () => { view.offset = Math.max(0, view.offset - PAGE_SIZE); refresh(); });
  $("next").addEventListener("click", () => { view.offset += PAGE_SIZE; refresh(); });
  window.addEventListener("hashchange", route);
  setInterval(refresh, REFRESH_MS);
  route(); // without a token this either works (insecure mode) or shows the login form
}

document.addEventListener("DOMContentLoaded", start);
