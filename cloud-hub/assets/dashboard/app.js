// Tributary hub dashboard: reads /api/v1 (docs/hub-api.md) and renders the
// fleet, per-sensor charts and the alerts. Plain JS, no framework, nothing
// loaded from other hosts.
//
// Rendered elements carry stable data-* attributes (data-online,
// data-points, data-acked, ...) and <body> gets data-ready="1" after the
// first complete render, or data-error with the message: the hub's browser
// test (cloud-hub/tests/dashboard.rs) reads those from the dumped DOM.
"use strict";

(() => {
  const REFRESH_MS = 5000;
  const MAX_CHARTS = 6;
  const MAX_LIMIT = 10000; // the API's largest `limit`
  const ALERTS_SHOWN = 100;
  const SVG_NS = "http://www.w3.org/2000/svg";
  const SEC = 1000, MIN = 60 * SEC, HOUR = 60 * MIN, DAY = 24 * HOUR;
  const BUCKET_MS = { "1s": SEC, "1m": MIN, "1h": HOUR, "1d": DAY };
  // A window that gives each resolution a readable number of buckets;
  // picking a resolution selects its window (the user may change it).
  const DEFAULT_WINDOW = { "1s": 15 * MIN, "1m": 6 * HOUR, "1h": 7 * DAY, "1d": 90 * DAY };
  const WINDOWS = [
    ["15 min", 15 * MIN], ["1 h", HOUR], ["6 h", 6 * HOUR], ["24 h", DAY],
    ["7 days", 7 * DAY], ["30 days", 30 * DAY], ["90 days", 90 * DAY],
  ];

  const $ = (id) => document.getElementById(id);
  const errors = new Map(); // what failed -> message, shown in the banner
  let sensors = [];
  let nodeNames = new Map(); // node id -> name, from the fleet configuration
  let refreshing = false;
  let again = false; // a control changed during a refresh: run once more

  // ---- DOM helpers -------------------------------------------------------

  function build(make, tag, attrs, children) {
    const e = make(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v !== undefined && v !== null) e.setAttribute(k, String(v));
    }
    for (const c of children || []) {
      if (c !== undefined && c !== null) e.append(c instanceof Node ? c : String(c));
    }
    return e;
  }
  const h = (tag, attrs, ...children) => build((t) => document.createElement(t), tag, attrs, children);
  const s = (tag, attrs, ...children) => build((t) => document.createElementNS(SVG_NS, t), tag, attrs, children);

  // ---- formatting --------------------------------------------------------

  function num(x) {
    if (x === null || x === undefined) return "–";
    // Two decimals (one from 100 up), three significant digits below 1;
    // no trailing zeros.
    const a = Math.abs(x);
    if (a !== 0 && a < 1) return String(Number(x.toPrecision(3)));
    return String(Number(x.toFixed(a >= 100 ? 1 : 2)));
  }

  function ago(seconds) {
    if (seconds === null || seconds === undefined) return "never";
    if (seconds < 60) return `${seconds} s ago`;
    if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
    if (seconds < 86400) return `${Math.floor(seconds / 3600)} h ago`;
    return `${Math.floor(seconds / 86400)} d ago`;
  }

  const pad = (n) => String(n).padStart(2, "0");
  function clock(ms, withDate) {
    const d = new Date(ms);
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}`;
    return withDate ? `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}` : time;
  }
  // Axis labels: the time of day for short windows, the date for long ones.
  function tickLabel(ms, windowMs, bucketMs) {
    const d = new Date(ms);
    if (windowMs > 3 * DAY) return `${pad(d.getMonth() + 1)}-${pad(d.getDate())}`;
    if (bucketMs < MIN && windowMs <= HOUR) return `${clock(ms)}:${pad(d.getSeconds())}`;
    return clock(ms);
  }

  // ---- API ---------------------------------------------------------------

  // A hub with API tokens (docs/hub-api.md, "Authentication") needs one:
  // given once as `#token=…` in the address, kept in this browser's
  // storage, and dropped from the address bar so it is not shared by
  // copying the link. A 401 asks for it.
  const TOKEN_KEY = "tributary-hub-token";
  (function takeTokenFromAddress() {
    const m = /(?:^#|&)token=([^&]+)/.exec(location.hash);
    if (!m) return;
    try { localStorage.setItem(TOKEN_KEY, decodeURIComponent(m[1])); } catch (_) {}
    history.replaceState(null, "", location.pathname + location.search);
  })();
  let asked = false;
  function token() {
    try { return localStorage.getItem(TOKEN_KEY); } catch (_) { return null; }
  }

  async function api(path, options) {
    let res;
    const headers = { ...((options && options.headers) || {}) };
    const t = token();
    if (t) headers.Authorization = `Bearer ${t}`;
    try {
      res = await fetch(path, { cache: "no-store", ...options, headers });
    } catch (e) {
      throw new Error(`${path}: hub unreachable (${e.message})`);
    }
    if (res.status === 401 && !asked) {
      // Once per page load: a refresh loop must not nag.
      asked = true;
      const given = window.prompt("This hub needs an API token (ask its operator):");
      if (given) {
        try { localStorage.setItem(TOKEN_KEY, given.trim()); } catch (_) {}
      }
    }
    const text = await res.text();
    let body = null;
    try {
      // An alert's `hlc` is a u64 above 2^53: as a JS number it would be
      // rounded and the ack route would name another alert. Keep it text.
      body = JSON.parse(text.replace(/"hlc":(\d+)/g, '"hlc":"$1"'));
    } catch (_) {
      body = null;
    }
    if (!res.ok) {
      // Not the API's error shape (a proxy's page, say): its status line
      // is the useful part.
      const why = body && body.message ? `${body.code}: ${body.message}` : res.statusText;
      throw new Error(`${path}: HTTP ${res.status} ${why}`);
    }
    if (body === null) throw new Error(`${path}: the answer is not JSON`);
    return body;
  }

  // Runs one part of a refresh; its failure goes to the banner, and its
  // success clears its earlier failure.
  async function part(name, f) {
    try {
      await f();
      errors.delete(name);
      return true;
    } catch (e) {
      errors.set(name, e.message || String(e));
      return false;
    }
  }

  function showErrors() {
    const banner = $("banner");
    const messages = [...errors.values()];
    banner.hidden = messages.length === 0;
    banner.textContent = messages.join("\n");
    if (messages.length) document.body.dataset.error = messages.join("; ");
    else delete document.body.dataset.error;
  }

  // ---- fleet and nodes ---------------------------------------------------

  function stat(key, label, value, bad) {
    return h("div", { class: bad ? "stat bad" : "stat" },
      h("span", { class: "label" }, label),
      h("span", { class: "value", "data-stat": key }, value));
  }

  async function renderFleet() {
    const f = await api("/api/v1/fleet");
    const lag = f.max_lag_seconds === null ? "–" : `${f.max_lag_versions} v / ${f.max_lag_seconds} s`;
    $("fleet").replaceChildren(
      stat("nodes_online", "online", `${f.nodes.online} / ${f.nodes.total}`, f.nodes.offline > 0),
      stat("alerts_open", "open alerts", f.alerts_open, f.alerts_open > 0),
      stat("sensors", "sensors", f.sensors),
      stat("max_lag", "max lag", lag),
      stat("mqtt", "mqtt", f.mqtt_connected ? "connected" : "disconnected", !f.mqtt_connected),
      stat("store", "store", f.store_ok ? "ok" : "failing", !f.store_ok),
    );
  }

  async function renderNodes() {
    const list = await api("/api/v1/nodes");
    const cards = list.items.map((n) => {
      const pending = n.lag.versions;
      return h("div", { class: "node", "data-node": n.id, "data-online": n.online },
        h("div", { class: "node-head" },
          nodeNames.has(n.id) ? h("strong", { class: "node-name" }, nodeNames.get(n.id)) : null,
          h("code", {}, n.id),
          h("span", { class: n.online ? "badge online" : "badge offline" }, n.online ? "online" : "offline")),
        h("dl", {},
          h("dt", {}, "last seen"), h("dd", { title: n.last_seen || "" }, ago(n.lag.seconds)),
          h("dt", {}, "lag"), h("dd", {}, `${pending} versions · ${n.lag.seconds ?? "–"} s`),
          h("dt", {}, "merged"),
          h("dd", {}, `${n.watermark} / ${n.version_high} `,
            pending === 0
              ? h("span", {}, "(caught up)")
              : h("span", { class: "pending" }, `(${pending} waiting for a gap)`))));
    });
    if (cards.length === 0) cards.push(h("p", {}, "No node has reported yet."));
    $("nodes").replaceChildren(...cards);
  }

  // ---- charts ------------------------------------------------------------

  async function loadSensors() {
    sensors = (await api("/api/v1/sensors")).items;
    const select = $("sensor");
    const chosen = select.value;
    select.replaceChildren(
      h("option", { value: "" }, `first ${MAX_CHARTS} sensors`),
      ...sensors.map((x) => h("option", { value: x.id }, `sensor ${x.id}`)));
    select.value = sensors.some((x) => String(x.id) === chosen) ? chosen : "";
  }

  // Buckets of one sensor in [from, to), following pages (rarely needed:
  // the limit covers the window).
  async function aggregates(sensor, resolution, from, to) {
    const items = [];
    let next = from, completeness = null;
    while (next !== null && items.length < MAX_LIMIT) {
      const q = `sensor=${sensor}&resolution=${resolution}&from=${next}&to=${to}&limit=${MAX_LIMIT}`;
      const page = await api(`/api/v1/aggregates?${q}`);
      items.push(...page.items);
      completeness = page.completeness;
      next = page.next_from;
    }
    return { items, completeness };
  }

  // "Nice" tick values (1, 2, 5 times a power of ten) covering [lo, hi].
  function ticks(lo, hi, count) {
    const step0 = (hi - lo) / count;
    const mag = Math.pow(10, Math.floor(Math.log10(step0)));
    const step = [1, 2, 5, 10].map((m) => m * mag).find((x) => x >= step0) || step0;
    const out = [];
    for (let v = Math.ceil(lo / step) * step; v <= hi + step * 1e-9; v += step) out.push(v);
    return out;
  }

  // Runs of adjacent buckets: a gap in the data is a gap in the drawing,
  // not a straight line across it.
  function segments(items) {
    const runs = [];
    for (const b of items) {
      const last = runs[runs.length - 1];
      if (last && last[last.length - 1].end === b.start) last.push(b);
      else runs.push([b]);
    }
    return runs;
  }

  function chart(sensor, resolution, from, to, data) {
    // Sized near the card's width on a laptop screen, so the SVG's
    // text is drawn at about its nominal size.
    const W = 460, H = 210, L = 46, R = 12, T = 10, B = 24;
    const items = data.items.filter((b) => b.count > 0);
    const incomplete = items.filter((b) => !b.complete);
    const bucketMs = BUCKET_MS[resolution];
    const svg = s("svg", {
      class: "chart", viewBox: `0 0 ${W} ${H}`, role: "img",
      "data-sensor": sensor, "data-points": items.length, "data-incomplete": incomplete.length,
      "aria-label": `sensor ${sensor}, ${items.length} buckets`,
    });
    const x = (t) => L + ((t - from) / (to - from)) * (W - L - R);
    svg.append(s("line", { class: "axis", x1: L, y1: H - B, x2: W - R, y2: H - B }));
    if (items.length === 0) {
      svg.append(s("text", { class: "empty", x: W / 2, y: H / 2, "text-anchor": "middle" }, "no data in this window"));
      return svg;
    }
    let lo = Math.min(...items.map((b) => b.min)), hi = Math.max(...items.map((b) => b.max));
    if (hi - lo < 1e-9) { lo -= 1; hi += 1; }
    const pad = (hi - lo) * 0.08;
    lo -= pad; hi += pad;
    const y = (v) => T + (1 - (v - lo) / (hi - lo)) * (H - T - B);
    const mid = (b) => x(b.start + (b.end - b.start) / 2);

    // Shading first, so the data is drawn over it.
    if (incomplete.length) {
      const x0 = Math.max(L, x(incomplete[0].start));
      svg.append(s("rect", { class: "incomplete", x: x0, y: T, width: Math.max(2, W - R - x0), height: H - T - B },
        s("title", {}, `not final: buckets from ${clock(incomplete[0].start, true)} may still change`)));
    }
    for (const v of ticks(lo, hi, 4)) {
      svg.append(s("line", { class: "axis", x1: L, y1: y(v), x2: W - R, y2: y(v), "stroke-dasharray": "2 4" }));
      svg.append(s("text", { class: "tick", x: L - 6, y: y(v) + 4, "text-anchor": "end" }, num(v)));
    }
    const span = to - from;
    for (let i = 0; i <= 4; i++) {
      const t = from + (span * i) / 4;
      const anchor = i === 0 ? "start" : i === 4 ? "end" : "middle";
      svg.append(s("text", { class: "tick", x: x(t), y: H - 6, "text-anchor": anchor }, tickLabel(t, span, bucketMs)));
    }
    for (const run of segments(items)) {
      const top = run.map((b) => `${mid(b).toFixed(1)},${y(b.max).toFixed(1)}`);
      const bottom = run.map((b) => `${mid(b).toFixed(1)},${y(b.min).toFixed(1)}`).reverse();
      if (run.length > 1) {
        svg.append(s("polygon", { class: "band", points: top.concat(bottom).join(" ") }));
        svg.append(s("polyline", { class: "mean", points: run.map((b) => `${mid(b).toFixed(1)},${y(b.mean).toFixed(1)}`).join(" ") }));
      } else {
        const b = run[0];
        svg.append(s("line", { class: "mean", x1: mid(b), x2: mid(b), y1: y(b.min), y2: y(b.max) }));
        svg.append(s("circle", { class: "dot", cx: mid(b), cy: y(b.mean), r: 2.5 }));
      }
    }
    // Hover: one invisible column per bucket with a native tooltip.
    const w = Math.max(1, x(from + bucketMs) - x(from));
    for (const b of items) {
      svg.append(s("rect", { class: "hit", x: x(b.start), y: T, width: w, height: H - T - B },
        s("title", {}, `${clock(b.start, true)}  mean ${num(b.mean)}  min ${num(b.min)}  max ${num(b.max)}` +
          `  σ ${num(b.stddev)}  n=${b.count}${b.complete ? "" : "  (not final)"}`)));
    }
    return svg;
  }

  async function renderCharts() {
    await loadSensors();
    const resolution = $("resolution").value;
    const bucketMs = BUCKET_MS[resolution];
    const chosen = $("sensor").value;
    const ids = chosen ? [Number(chosen)] : sensors.slice(0, MAX_CHARTS).map((x) => x.id);
    // Through the end of the current bucket, so the newest (open) one shows.
    const to = (Math.floor(Date.now() / bucketMs) + 1) * bucketMs;
    // More buckets than one page holds: show the newest page's worth.
    const asked = Number($("window").value);
    const windowMs = Math.min(asked, MAX_LIMIT * bucketMs);
    const clipped = windowMs < asked ? ` · newest ${MAX_LIMIT} buckets` : "";
    const from = to - windowMs;
    const cards = await Promise.all(ids.map(async (id) => {
      const data = await aggregates(id, resolution, from, to);
      const nodes = data.completeness.nodes.length;
      const final = data.completeness.complete_before_ms;
      return h("figure", { class: "chart-card" },
        h("figcaption", {},
          h("strong", {}, `sensor ${id}`),
          h("span", { class: "meta" },
            `${resolution} · ${nodes} node${nodes === 1 ? "" : "s"} · ` +
            (final > 0 ? `final up to ${clock(final, true)}` : "nothing final yet") + clipped)),
        chart(id, resolution, from, to, data));
    }));
    if (cards.length === 0) cards.push(h("p", {}, "No sensor has data yet."));
    $("charts").replaceChildren(...cards);
  }

  // ---- fleet configuration -------------------------------------------------

  async function renderConfig() {
    const doc = await api("/api/v1/config");
    nodeNames = new Map(doc.nodes.map((n) => [n.node, n.name]));
    const dash = (x) => (x === null || x === undefined ? "–" : x);
    const rows = doc.sensors.map((x) =>
      h("tr", { class: "sensor-config", "data-sensor": x.sensor,
                "data-open": x.threshold ? x.threshold.open : "" },
        h("td", {}, x.sensor),
        h("td", {}, dash(x.name)),
        h("td", {}, dash(x.unit)),
        h("td", {}, dash(x.location)),
        h("td", { class: "num" }, x.threshold ? x.threshold.open.toFixed(2) : "default"),
        h("td", { class: "num" }, x.threshold && x.threshold.close !== null ? x.threshold.close.toFixed(2) : "default")));
    if (rows.length === 0) rows.push(h("tr", {}, h("td", { class: "none", colspan: 6 }, "Every sensor uses the default threshold.")));
    $("config").replaceChildren(...rows);
  }

  async function editThreshold(clear) {
    const sensor = $("cfg-sensor").value;
    if (sensor === "") return;
    const path = `/api/v1/config/sensors/${encodeURIComponent(sensor)}/threshold`;
    if (clear) {
      await part("config-edit", () => api(path, { method: "DELETE" }));
    } else {
      const body = { open: Number($("cfg-open").value) };
      if ($("cfg-close").value !== "") body.close = Number($("cfg-close").value);
      await part("config-edit", () => api(path, {
        method: "PUT",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify(body),
      }));
    }
    await part("config", renderConfig);
    showErrors();
  }

  // ---- alerts ------------------------------------------------------------

  async function acknowledge(alert, button) {
    button.disabled = true;
    button.textContent = "…";
    await part("ack", () => api(`/api/v1/alerts/${alert.node}/${alert.hlc}/ack`, { method: "POST" }));
    await Promise.all([part("alerts", renderAlerts), part("fleet", renderFleet)]);
    showErrors();
  }

  async function renderAlerts() {
    const open = $("open-only").checked ? "&acknowledged=false" : "";
    const list = await api(`/api/v1/alerts?limit=${ALERTS_SHOWN}${open}`);
    const rows = list.items.map((a) => {
      let state;
      if (a.acknowledged) {
        state = h("span", {}, `acked ${clock(a.acked_ms, true)}`);
      } else {
        state = h("button", { type: "button", class: "ack" }, "Acknowledge");
        state.addEventListener("click", () => acknowledge(a, state));
      }
      return h("tr", { class: "alert", "data-node": a.node, "data-hlc": a.hlc, "data-acked": a.acknowledged },
        h("td", { title: a.at_rfc3339 || "" }, clock(a.at, true)),
        h("td", {}, h("code", {}, a.node)),
        h("td", {}, a.sensor),
        h("td", {}, a.detector),
        h("td", { class: "num" }, a.score.toFixed(2)),
        h("td", { class: "num" }, num(a.value)),
        h("td", {}, state));
    });
    if (rows.length === 0) rows.push(h("tr", {}, h("td", { class: "none", colspan: 7 }, "No alerts.")));
    $("alerts").replaceChildren(...rows);
  }

  // ---- refresh loop ------------------------------------------------------

  async function refresh() {
    if (refreshing) {
      again = true;
      return;
    }
    refreshing = true;
    again = false;
    try {
      // Names first: the node cards show them.
      const named = await part("config", renderConfig);
      const results = await Promise.all([
        part("fleet", renderFleet),
        part("nodes", renderNodes),
        part("charts", renderCharts),
        part("alerts", renderAlerts),
      ]);
      showErrors();
      $("updated").textContent = `updated ${clock(Date.now())}:${pad(new Date().getSeconds())}`;
      if (named && results.every(Boolean)) document.body.dataset.ready = "1";
    } finally {
      refreshing = false;
    }
    if (again) await refresh();
  }

  function fillWindows(resolution) {
    $("window").replaceChildren(...WINDOWS.map(([label, ms]) => h("option", { value: ms }, label)));
    $("window").value = String(DEFAULT_WINDOW[resolution]);
  }

  function start() {
    fillWindows($("resolution").value);
    $("resolution").addEventListener("change", (e) => { fillWindows(e.target.value); refresh(); });
    $("window").addEventListener("change", refresh);
    $("sensor").addEventListener("change", refresh);
    $("open-only").addEventListener("change", refresh);
    $("controls").addEventListener("submit", (e) => e.preventDefault());
    $("threshold-form").addEventListener("submit", (e) => { e.preventDefault(); editThreshold(false); });
    $("cfg-clear").addEventListener("click", () => editThreshold(true));
    // The next refresh is scheduled when this one ends: a slow hub gets
    // one request set at a time, never a pile-up.
    const loop = () => refresh().finally(() => setTimeout(loop, REFRESH_MS));
    loop();
  }

  start();
})();
