// Vigia dashboard: reads the documented /api/v1 routes, follows /api/v1/live.
// No framework and no build step: every DOM write goes through textContent,
// so tags, values and reasons from devices can never inject markup.
"use strict";

const $ = (sel, root = document) => root.querySelector(sel);
const el = (tag, props = {}, ...children) => {
  const node = Object.assign(document.createElement(tag), props);
  for (const c of children) node.append(c);
  return node;
};
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const COLORS = ["#58a6ff", "#3fb950", "#d29922", "#f778ba", "#a371f7", "#39c5cf", "#ff7b72", "#e3b341"];
const MAX_ROWS = 1000;
const SHOWN_ROWS = 200;
const PLOT_POINTS = 2000;

// ---- API access ----------------------------------------------------------

const token = () => localStorage.getItem("vigia.token") || "";
const headers = () => (token() ? { Authorization: `Bearer ${token()}` } : {});

function banner(text) {
  const b = $("#banner");
  b.textContent = text || "";
  b.hidden = !text;
}

async function api(path, init = {}) {
  const res = await fetch(`/api/v1${path}`, { ...init, headers: { ...headers(), ...(init.headers || {}) } });
  if (res.status === 401 || res.status === 403) {
    banner("This API needs a token with the right scope: set one with the Token button.");
    throw new Error(`${res.status}`);
  }
  const body = await res.json().catch(() => null);
  if (!res.ok) throw new Error(body && body.detail ? body.detail : `HTTP ${res.status}`);
  return body;
}

// ---- formatting and tag patterns -----------------------------------------

const pad = (n) => String(n).padStart(2, "0");
function when(ms) {
  const d = new Date(ms);
  const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`;
  const today = new Date().toDateString() === d.toDateString();
  return today ? time : `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
}
const num = (v, digits = 6) =>
  Math.abs(v) >= 1000 ? v.toLocaleString("en", { maximumFractionDigits: 2 }) : String(Number(v.toPrecision(digits)));
const shown = (v) => (v === null || v === undefined ? "" : typeof v === "number" ? num(v) : String(v));

/** NATS subject matching: `*` is one token, `>` one or more trailing tokens. */
function matches(pattern, tag) {
  if (!pattern) return true;
  const p = pattern.split(".");
  const t = tag.split(".");
  for (let i = 0; i < p.length; i++) {
    if (p[i] === ">") return t.length > i;
    if (i >= t.length || (p[i] !== "*" && p[i] !== t[i])) return false;
  }
  return p.length === t.length;
}

// ---- latest events table -------------------------------------------------

const table = { rows: [], ids: new Set(), paused: false, held: 0, dirty: true };

function eventRow(e) {
  const value = el("td", { className: typeof e.value === "number" ? "num" : "", textContent: shown(e.value) });
  const status = el("td", { className: "status", textContent: e.status });
  if (e.reason) status.title = e.reason;
  const tr = el("tr", {}, el("td", { textContent: e.tag }), value, el("td", { textContent: e.unit || "" }), status,
    el("td", { textContent: when(e.timestamp), title: new Date(e.timestamp).toISOString() }));
  tr.dataset.id = e.id;
  tr.dataset.tag = e.tag;
  if (e.status === "error") tr.className = "err";
  return tr;
}

function renderEvents() {
  if (!table.dirty || table.paused) return;
  table.dirty = false;
  const pattern = $("#f-tag").value.trim();
  const status = $("#f-status").value;
  const rows = [];
  for (const e of table.rows) {
    if (rows.length >= SHOWN_ROWS) break;
    if ((!status || e.status === status) && matches(pattern, e.tag)) rows.push(eventRow(e));
  }
  $("#events tbody").replaceChildren(...rows);
}

function keep(rows) {
  rows.sort((a, b) => b.timestamp - a.timestamp);
  table.rows = rows.slice(0, MAX_ROWS);
  table.ids = new Set(table.rows.map((e) => e.id));
}

function addEvent(e) {
  if (table.ids.has(e.id)) return;
  table.rows.unshift(e);
  table.ids.add(e.id);
  if (table.rows.length > MAX_ROWS) for (const old of table.rows.splice(MAX_ROWS)) table.ids.delete(old.id);
  if (table.paused) {
    table.held++;
    $("#held").textContent = `${table.held} new while paused`;
  }
  table.dirty = true;
}

async function seedEvents() {
  const q = new URLSearchParams({ limit: "0,200", timestamp: `gte:${new Date(Date.now() - 3600e3).toISOString()}` });
  const pattern = $("#f-tag").value.trim();
  if (pattern) q.append("tag", `eq:${pattern}`);
  if ($("#f-status").value) q.append("status", `eq:${$("#f-status").value}`);
  try {
    const page = await api(`/events?${q}`);
    keep(table.rows.concat(page.events.filter((e) => !table.ids.has(e.id))));
    table.dirty = true;
  } catch (err) {
    console.warn("events:", err.message);
  }
}

// ---- values chart ----------------------------------------------------------

const stored = JSON.parse(localStorage.getItem("vigia.plot") || "null");
const plot = { tags: stored || [], chosen: stored !== null, points: new Map(), chart: null, dirty: false };

function chartOpts(width, series, extra = {}) {
  const axis = { stroke: "#8b98a5", grid: { stroke: "#26313d", width: 1 }, ticks: { stroke: "#26313d" } };
  return { width, height: 220, series, axes: [axis, axis], legend: { live: false }, cursor: { drag: { x: false } }, ...extra };
}

function renderPlot() {
  if (!plot.dirty) return;
  plot.dirty = false;
  const box = $("#values-chart");
  if (plot.chart) plot.chart.destroy();
  plot.chart = null;
  const tags = plot.tags.filter((t) => (plot.points.get(t) || []).length);
  box.replaceChildren();
  if (!tags.length) {
    box.append(el("p", { className: "empty", textContent: "Pick sensors with numeric readings to plot them." }));
    return;
  }
  const tables = tags.map((t) => {
    const pts = plot.points.get(t);
    return [pts.map((p) => p[0] / 1000), pts.map((p) => p[1])];
  });
  const data = uPlot.join(tables);
  const series = [{}].concat(tags.map((t, i) => ({ label: t, stroke: COLORS[i % COLORS.length], width: 1.5, spanGaps: true })));
  plot.chart = new uPlot(chartOpts(box.clientWidth || 600, series), data, box);
}

function addPoint(tag, ts, value) {
  if (typeof value !== "number" || !plot.tags.includes(tag)) return;
  const pts = plot.points.get(tag) || [];
  let i = pts.length;
  while (i > 0 && pts[i - 1][0] > ts) i--;
  if (i > 0 && pts[i - 1][0] === ts) pts[i - 1][1] = value;
  else pts.splice(i, 0, [ts, value]);
  if (pts.length > PLOT_POINTS) pts.splice(0, pts.length - PLOT_POINTS);
  plot.points.set(tag, pts);
  plot.dirty = true;
}

async function seedPlot(tag) {
  const q = new URLSearchParams({ tag: `eq:${tag}`, limit: "0,1000", timestamp: `gte:${new Date(Date.now() - 3600e3).toISOString()}` });
  try {
    const page = await api(`/events?${q}`);
    for (const e of page.events) if (e.status === "ok") addPoint(e.tag, e.timestamp, e.value);
    plot.dirty = true;
  } catch (err) {
    console.warn("plot:", err.message);
  }
}

function renderPicked() {
  const chips = plot.tags.map((t, i) => {
    const remove = el("button", { type: "button", textContent: "×", title: `Stop plotting ${t}` });
    remove.addEventListener("click", () => setPlotted(plot.tags.filter((x) => x !== t)));
    const chip = el("span", { className: "chip" }, el("span", { textContent: t }), remove);
    chip.style.borderColor = COLORS[i % COLORS.length];
    return chip;
  });
  $("#picked").replaceChildren(...chips);
}

function setPlotted(tags) {
  const added = tags.filter((t) => !plot.tags.includes(t));
  plot.tags = tags.slice(0, COLORS.length);
  localStorage.setItem("vigia.plot", JSON.stringify(plot.tags));
  for (const t of [...plot.points.keys()]) if (!plot.tags.includes(t)) plot.points.delete(t);
  renderPicked();
  plot.dirty = true;
  added.forEach(seedPlot);
}

// ---- aggregates ------------------------------------------------------------

function countNode(n, depth, max) {
  const bar = el("div", { className: "bar" });
  const ok = el("span", { className: "ok" });
  const errors = el("span", { className: "errors" });
  ok.style.width = `${(100 * n.ok) / max}%`;
  errors.style.width = `${(100 * n.errors) / max}%`;
  bar.append(ok, errors);
  const label = el("span", { className: "label", textContent: n.prefix.split(".").pop(), title: n.prefix });
  label.style.paddingLeft = `${depth * 0.9}rem`;
  const total = el("span", { className: "total", textContent: n.total.toLocaleString("en") });
  if (n.errors) total.title = `${n.errors.toLocaleString("en")} errors`;
  const row = el("div", { className: "node" }, label, bar, total);
  row.dataset.prefix = n.prefix;
  row.dataset.total = n.total;
  const out = [row];
  const children = n.children.slice().sort((a, b) => b.total - a.total).slice(0, 12);
  const childMax = Math.max(1, ...children.map((c) => c.total));
  for (const c of children) out.push(...countNode(c, depth + 1, childMax));
  return out;
}

async function refreshCounts() {
  const counts = await api("/counts?depth=2");
  const max = Math.max(1, ...counts.nodes.map((n) => n.total));
  $("#counts-tree").replaceChildren(...counts.nodes.flatMap((n) => countNode(n, 0, max)));
  $("#counts-total").textContent = counts.total.toLocaleString("en");
}

let averagesWindow = "24h";
async function refreshAverages() {
  const w = averagesWindow;
  const res = await api(`/stats/averages?window=${w}`);
  if (w !== averagesWindow) return;
  const list = $("#averages-list");
  const sensors = res.sensors.slice(0, 40);
  const lo = Math.min(...sensors.map((s) => s.min));
  const hi = Math.max(...sensors.map((s) => s.max));
  const x = (v) => (hi > lo ? (100 * (v - lo)) / (hi - lo) : 50);
  list.replaceChildren(...sensors.map((s) => {
    const span = el("span", { className: "span" });
    span.style.left = `${x(s.min)}%`;
    span.style.width = `${Math.max(0.5, x(s.max) - x(s.min))}%`;
    const dot = el("span", { className: "mean", title: `mean ${s.mean}, min ${s.min}, max ${s.max}, ${s.count} readings` });
    dot.style.left = `${x(s.mean)}%`;
    const row = el("div", { className: "row" }, el("span", { className: "label", textContent: s.tag }),
      el("span", { className: "track" }, span, dot), el("span", { className: "value", textContent: num(s.mean, 4) }));
    row.dataset.tag = s.tag;
    row.dataset.mean = s.mean;
    return row;
  }));
  if (!sensors.length) list.append(el("p", { className: "empty", textContent: "No numeric readings in this window." }));
  list.dataset.window = w;
}

let trafficChart = null;
async function refreshTraffic() {
  const rate = await api("/stats/rate?bucket=1m");
  const xs = rate.points.map((p) => p.t / 1000);
  const data = [xs, rate.points.map((p) => p.ok), rate.points.map((p) => p.errors)];
  const box = $("#traffic-chart");
  if (!trafficChart) {
    const bars = uPlot.paths.bars({ size: [0.8, 30] });
    trafficChart = new uPlot(chartOpts(box.clientWidth || 400, [{}, { label: "ok", stroke: "#58a6ff", fill: "#58a6ff99", paths: bars },
      { label: "errors", stroke: "#f85149", fill: "#f8514999", paths: bars }]), data, box);
  } else trafficChart.setData(data);
  const last = rate.points[rate.points.length - 2];
  $("#h-rate").textContent = last ? `${last.total.toLocaleString("en")} events/min` : "–";
  try {
    const mode = await api("/stats/mode?window=1h");
    $("#mode-value").textContent = mode.mode === null ? "none" : mode.mode;
    const top = mode.histogram[0];
    $("#mode-detail").textContent = top ? `(${top.count.toLocaleString("en")} of ${mode.count.toLocaleString("en")} readings)` : "";
  } catch (err) {
    $("#mode-value").textContent = "–";
    $("#mode-detail").textContent = err.message;
  }
}

async function refreshHealth() {
  const res = await fetch("/health");
  const h = await res.json();
  const status = $("#h-status");
  status.textContent = h.status;
  status.dataset.status = h.status;
  $("#h-nats").textContent = h.nats.ok ? "connected" : `down: ${h.nats.error || ""}`;
  $("#h-store").textContent = h.store.ok ? "answering" : `down: ${h.store.error || ""}`;
  const b = h.backlog;
  const backlog = $("#h-backlog");
  backlog.textContent = `${b.lag_messages.toLocaleString("en")} messages, ${b.lag_seconds.toFixed(1)} s` +
    (b.ingest === "refusing" ? " (HTTP ingest refused until it catches up)" : "");
  backlog.dataset.ingest = b.ingest;
  backlog.dataset.lagMessages = b.lag_messages;
  const st = b.stream;
  $("#h-stream").textContent = st.fullest
    ? `${st.messages.toLocaleString("en")} messages, ${(st.fullest_share * 100).toFixed(0)}% of its ${st.fullest} limit`
    : `${st.messages.toLocaleString("en")} messages, no limit set`;
  $("#h-warnings").replaceChildren(...b.warnings.map((w) => el("li", { textContent: w })));
  $("#h-lag").replaceChildren(...h.consumers.map((c) => {
    const li = el("li", { textContent: `${c.consumer}: ${c.pending.toLocaleString("en")} pending, ${c.ack_pending} in flight` });
    li.dataset.consumer = c.consumer;
    li.dataset.pending = c.pending;
    return li;
  }));
}

// ---- alerts ----------------------------------------------------------------

async function refreshAlerts() {
  const alerts = await api("/alerts?status=open&count=200");
  const rows = alerts.map((a) => {
    const ack = el("button", { type: "button", className: "ack", textContent: "Ack", title: "Acknowledge this alert" });
    ack.setAttribute("aria-label", `Acknowledge the alert on ${a.tag}`);
    ack.addEventListener("click", () => acknowledge(a.id, ack));
    const tr = el("tr", {}, el("td", { textContent: a.tag }), el("td", { textContent: `${a.op} ${a.threshold}`, title: a.rule }),
      el("td", { className: "num", textContent: shown(a.opened_value) }), el("td", { textContent: when(a.opened_at) }), el("td", {}, ack));
    tr.dataset.id = a.id;
    return tr;
  });
  $("#alerts tbody").replaceChildren(...rows);
  $("#alerts-count").textContent = alerts.length;
  $("#alerts .empty").hidden = alerts.length > 0;
}

async function acknowledge(id, button) {
  button.disabled = true;
  try {
    await api(`/alerts/${encodeURIComponent(id)}/ack?wait=true&by=dashboard`, { method: "POST" });
  } catch (err) {
    banner(`Could not acknowledge: ${err.message}`);
  }
  await refreshAlerts().catch(() => {});
}

// ---- the live stream -------------------------------------------------------

let liveAbort = null;
const liveRate = [];

function onLive(kind, data) {
  if (kind === "reading") {
    addEvent(data);
    if (data.status === "ok") addPoint(data.tag, data.timestamp, data.value);
  } else if (kind === "alert") {
    scheduleAlerts();
  } else if (kind === "counts") {
    let n = 0;
    for (const [prefix, c] of Object.entries(data)) if (!prefix.includes(".")) n += c.ok + c.errors;
    liveRate.push([Date.now(), n]);
  }
}

let alertsTimer = null;
function scheduleAlerts() {
  clearTimeout(alertsTimer);
  alertsTimer = setTimeout(() => refreshAlerts().catch(() => {}), 300);
}

let followed = false;

/** Server-sent events over fetch, so the bearer token can travel in a header. */
async function follow() {
  for (;;) {
    liveAbort = new AbortController();
    try {
      const res = await fetch("/api/v1/live", { headers: headers(), signal: liveAbort.signal });
      if (!res.ok) throw new Error(`HTTP ${res.status}`);
      // After a break, fill the gap from the store: the stream only brings what is new.
      if (followed) seedEvents();
      followed = true;
      setConn("live");
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = "";
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf("\n\n")) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          let kind = "message";
          let data = "";
          for (const line of block.split("\n")) {
            if (line.startsWith("event:")) kind = line.slice(6).trim();
            else if (line.startsWith("data:")) data += line.slice(5).trim();
          }
          if (data) onLive(kind, JSON.parse(data));
        }
      }
    } catch (err) {
      if (err.name !== "AbortError") console.warn("live:", err.message);
    }
    setConn("offline");
    await sleep(2000);
    setConn("connecting");
  }
}

function setConn(state) {
  const c = $("#conn");
  c.dataset.state = state;
  c.textContent = state;
}

// ---- wiring ----------------------------------------------------------------

function every(ms, f) {
  const run = () => f().catch((err) => console.warn(f.name, err.message));
  run();
  return setInterval(run, ms);
}

async function refreshSensors() {
  const sensors = await api("/sensors");
  $("#sensor-list").replaceChildren(...sensors.map((s) => el("option", { value: s.tag })));
  const numeric = sensors.filter((s) => typeof s.last_value === "number").slice(0, 3).map((s) => s.tag);
  if (!plot.chosen && numeric.length) {
    plot.chosen = true;
    setPlotted(numeric);
  }
}

function wire() {
  $("#token-btn").addEventListener("click", () => ($("#token-form").hidden = !$("#token-form").hidden));
  $("#token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    localStorage.setItem("vigia.token", $("#token-input").value.trim());
    location.reload();
  });
  $("#token-clear").addEventListener("click", () => {
    localStorage.removeItem("vigia.token");
    location.reload();
  });
  const refilter = () => {
    table.dirty = true;
    renderEvents();
    seedEvents();
  };
  $("#f-tag").addEventListener("change", refilter);
  $("#f-status").addEventListener("change", refilter);
  $("#filters").addEventListener("submit", (ev) => ev.preventDefault());
  $("#pause").addEventListener("click", () => {
    table.paused = !table.paused;
    table.held = 0;
    $("#pause").setAttribute("aria-pressed", table.paused);
    $("#pause").textContent = table.paused ? "Resume" : "Pause";
    $("#held").textContent = table.paused ? "paused" : "";
    table.dirty = true;
  });
  $("#pick").addEventListener("submit", (ev) => {
    ev.preventDefault();
    const t = $("#pick-input").value.trim();
    if (t && !plot.tags.includes(t)) setPlotted(plot.tags.concat([t]));
    $("#pick-input").value = "";
  });
  for (const b of document.querySelectorAll("#averages [data-window]")) {
    b.addEventListener("click", () => {
      averagesWindow = b.dataset.window;
      for (const o of document.querySelectorAll("#averages [data-window]")) o.setAttribute("aria-pressed", o === b);
      refreshAverages().catch((err) => console.warn("averages:", err.message));
    });
  }
  addEventListener("resize", () => {
    plot.dirty = true;
    if (trafficChart) trafficChart.setSize({ width: $("#traffic-chart").clientWidth, height: 220 });
  });
}

function tick() {
  renderEvents();
  renderPlot();
  const now = Date.now();
  while (liveRate.length && liveRate[0][0] < now - 5000) liveRate.shift();
  const per = liveRate.reduce((s, [, n]) => s + n, 0) / 5;
  $("#rate-now").textContent = `${per >= 10 ? Math.round(per).toLocaleString("en") : per.toFixed(1)} /s`;
}

function start() {
  wire();
  renderPicked();
  plot.tags.forEach(seedPlot);
  seedEvents();
  every(5000, refreshHealth);
  every(5000, refreshCounts);
  every(10000, refreshAlerts);
  every(15000, refreshTraffic);
  every(30000, refreshAverages);
  every(15000, refreshSensors);
  setInterval(tick, 500);
  follow();
}

start();
