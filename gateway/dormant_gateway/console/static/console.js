// The Dormant console: polls the gateway's /console/api/ every second and draws what it says.
// Every value from the API is rendered as text (textContent, text nodes, attribute values): never as
// HTML. The token comes from the URL fragment (#token=..., never sent to a server), is kept in
// sessionStorage for this tab, and travels only as "Authorization: Bearer".
"use strict";

(() => {
  const TOKEN_KEY = "dormant.console.token";
  const POLL_MS = 1000;
  const RETRY_MS = 2000;
  const SVG = "http://www.w3.org/2000/svg";
  const PALETTE_SIZE = 8;

  let selected = null; // the service shown in detail
  let userChose = false; // the user picked it (otherwise: the one with a rollout going on)
  let timer = null;
  let lastStatus = "";

  const $ = (id) => document.getElementById(id);

  // ------------------------------------------------------------------ building nodes (text only)

  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    setAttrs(node, attrs);
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function svg(tag, attrs, ...children) {
    const node = document.createElementNS(SVG, tag);
    setAttrs(node, attrs);
    for (const child of children) {
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function setAttrs(node, attrs) {
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name === "class") node.setAttribute("class", value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
  }

  function fill(parent, ...children) {
    parent.replaceChildren(...children.filter((c) => c !== null && c !== undefined));
  }

  function colorClass(version) {
    const n = Number.parseInt(version, 10);
    return "vc" + (Number.isFinite(n) ? n % PALETTE_SIZE : 0);
  }

  // ------------------------------------------------------------------ formatting

  function clock(value) {
    if (value === null || value === undefined) return "–";
    const date = typeof value === "number" ? new Date(value * 1000) : new Date(value);
    return Number.isNaN(date.getTime()) ? "–" : date.toLocaleTimeString();
  }

  function stamp(value) {
    if (!value) return "–";
    const date = new Date(value);
    return Number.isNaN(date.getTime()) ? "–" : date.toLocaleString();
  }

  const rate = (x) => (typeof x === "number" ? x.toFixed(1) : "–");
  const percent = (x) => (typeof x === "number" ? (x * 100).toFixed(1) + " %" : "–");

  function latency(ms) {
    if (ms === null || ms === undefined) return "–";
    if (ms === "inf") return "> 60 s";
    return ms >= 1000 ? (ms / 1000).toFixed(1) + " s" : ms + " ms";
  }

  function weightEntries(weights) {
    return Object.entries(weights || {})
      .map(([version, weight]) => [version, Number(weight)])
      .sort((a, b) => Number(a[0]) - Number(b[0]));
  }

  function weightsText(weights) {
    const entries = weightEntries(weights).filter(([, w]) => w > 0);
    return entries.length ? entries.map(([v, w]) => `v${v} ${w} %`).join(", ") : "none";
  }

  // ------------------------------------------------------------------ token and API

  class AuthProblem extends Error {
    constructor(status, message) {
      super(message);
      this.status = status;
    }
  }

  function readFragment() {
    const params = new URLSearchParams(location.hash.replace(/^#/, ""));
    const token = params.get("token");
    if (token) sessionStorage.setItem(TOKEN_KEY, token);
    params.delete("token");
    const service = params.get("service");
    if (service) {
      selected = service;
      userChose = true;
    }
    // The token leaves the address bar (and this entry of the history) at once.
    const rest = params.toString();
    history.replaceState(null, "", location.pathname + location.search + (rest ? "#" + rest : ""));
  }

  async function api(path) {
    const token = sessionStorage.getItem(TOKEN_KEY);
    if (!token) throw new AuthProblem(0, "no token yet");
    let response;
    try {
      response = await fetch(path, {
        headers: { Authorization: "Bearer " + token, Accept: "application/json" },
        cache: "no-store",
        credentials: "omit",
      });
    } catch (err) {
      if (err instanceof TypeError && /header/i.test(err.message)) throw new AuthProblem(401, "not a token");
      throw err;
    }
    if (response.ok) return response.json();
    let message = response.statusText;
    try {
      const body = await response.json();
      if (body && typeof body.message === "string") message = body.message;
    } catch (_) {
      // not JSON: keep the status text
    }
    if (response.status === 401 || response.status === 403) throw new AuthProblem(response.status, message);
    const err = new Error(`${response.status}: ${message}`);
    err.status = response.status;
    throw err;
  }

  // ------------------------------------------------------------------ status and sign-in

  function setStatus(text) {
    if (text !== lastStatus) {
      $("status").textContent = text; // a live region: changed only when the message changes
      lastStatus = text;
    }
  }

  function showSignIn(problem) {
    const why = {
      0: "No token yet.",
      401: "The gateway refused the token (401): it is missing, invalid or expired.",
      403: "The token is valid but has no role that may read (403): use viewer, developer, operator or admin.",
    }[problem.status] || "Sign in.";
    $("signin-why").textContent = problem.status && problem.message ? `${why} (${problem.message})` : why;
    $("signin").hidden = false;
    $("forget").hidden = problem.status === 0;
    for (const id of ["services-panel", "detail", "pool-panel"]) $(id).hidden = true;
    setStatus(problem.status === 0 ? "Signed out." : `Not signed in: ${problem.status}.`);
  }

  function schedule(ms) {
    clearTimeout(timer);
    timer = setTimeout(tick, ms);
  }

  // ------------------------------------------------------------------ the poll

  async function tick() {
    try {
      const overview = await api("api/overview");
      $("signin").hidden = true;
      $("forget").hidden = false;
      renderOverview(overview);
      const name = chooseService(overview.services);
      if (name === null) {
        $("detail").hidden = true;
      } else {
        try {
          renderDetail(await api("api/services/" + encodeURIComponent(name)));
        } catch (err) {
          if (err.status !== 404) throw err;
          selected = null; // the service went away
          userChose = false;
        }
      }
      setStatus(liveStatus(overview.live));
      schedule(POLL_MS);
    } catch (err) {
      if (err instanceof AuthProblem) {
        showSignIn(err);
        return; // no polling with a refused token
      }
      setStatus(`The gateway did not answer (${err.message}); retrying.`);
      schedule(RETRY_MS);
    }
  }

  function liveStatus(live) {
    if (!live || live.state === "live") return "Connected: refreshing every second.";
    if (live.state === "connecting") return "Connected; live figures starting.";
    return `Connected; live figures unavailable: ${live.detail || live.state}.`;
  }

  function chooseService(services) {
    const names = services.map((s) => s.name);
    if (selected !== null && names.includes(selected)) return selected;
    if (userChose && selected !== null) return selected; // may appear later; the detail says 404 then
    const active = services.find((s) => s.rollout && ["running", "waiting"].includes(s.rollout.state));
    selected = active ? active.name : names.length ? names[0] : null;
    return selected;
  }

  function select(name) {
    selected = name;
    userChose = true;
    history.replaceState(null, "", location.pathname + location.search + "#service=" + encodeURIComponent(name));
    schedule(0);
  }

  // ------------------------------------------------------------------ overview: services and the pool

  function weightBar(alias, weights) {
    const entries = weightEntries(weights).filter(([, w]) => w > 0);
    const bar = el("div", { class: "bar", "aria-hidden": "true" });
    for (const [version, weight] of entries) {
      const part = el("span", { class: "part " + colorClass(version) });
      part.style.flexGrow = String(weight); // CSSOM: allowed by the page's CSP, unlike style attributes
      bar.append(part);
    }
    const labels = el("span", { class: "weights" });
    if (!entries.length) labels.append("no traffic");
    entries.forEach(([version, weight], i) => {
      if (i) labels.append(", ");
      labels.append(
        el(
          "span",
          { class: "weight", "data-alias": alias, "data-version": version, "data-weight": weight },
          el("span", { class: "swatch " + colorClass(version), "aria-hidden": "true" }),
          `v${version} ${weight} %`,
        ),
      );
    });
    return el("div", { class: "split" }, bar, labels);
  }

  function renderOverview(overview) {
    $("services-panel").hidden = false;
    $("pool-panel").hidden = false;
    const focused = document.activeElement && document.activeElement.dataset
      ? document.activeElement.dataset.service
      : undefined;
    const rows = overview.services.map((s) => {
      const rollout = s.rollout
        ? `${s.rollout.strategy} v${s.rollout.fromVersion} → v${s.rollout.toVersion}: ${s.rollout.state}` +
          (["running", "waiting"].includes(s.rollout.state) ? ` (step ${s.rollout.step + 1}/${s.rollout.steps.length})` : "")
        : "–";
      const button = el(
        "button",
        { type: "button", class: "link", "data-service": s.name, "aria-pressed": s.name === selected ? "true" : "false" },
        s.name,
      );
      button.addEventListener("click", () => select(s.name));
      return el(
        "tr",
        { "data-service": s.name, "aria-current": s.name === selected ? "true" : null },
        el("th", { scope: "row" }, button),
        el("td", null, `v${s.latest}`),
        el("td", null, s.deployed === null ? "not deployed" : `v${s.deployed}`),
        el("td", null, `${s.serving}/${s.slots}`),
        el("td", null, weightBar("live", (s.aliases || {}).live)),
        el("td", null, rollout),
      );
    });
    fill($("services").tBodies[0], ...(rows.length ? rows : [el("tr", null, el("td", { colspan: 6 }, "No services yet."))]));
    if (focused !== undefined) {
      const again = $("services").querySelector(`button[data-service="${CSS.escape(focused)}"]`);
      if (again) again.focus(); // re-rendered every second: keep the keyboard where it was
    }

    const pool = overview.pool;
    const c = pool.counts;
    const alive = pool.pods.length;
    $("pool-summary").textContent =
      `${alive} pod${alive === 1 ? "" : "s"}: ${pool.claimed} claimed (${c.serving} serving, ${c.starting} starting), ` +
      `${pool.free} free` + (c.silent ? `, ${c.silent} silent` : "") + (c.gone ? `; ${c.gone} stopped` : "") + ".";
    const podRows = pool.pods.map((p) =>
      el(
        "tr",
        { "data-pod": p.pod, "data-state": p.state },
        el("th", { scope: "row" }, p.pod),
        el("td", null, el("span", { class: "state state-" + p.state }, p.state)),
        el("td", null, p.service === null ? "–" : `${p.service} v${p.version}`),
        el("td", null, p.slot === null ? "–" : String(p.slot)),
        el("td", null, clock(p.since)),
      ),
    );
    fill($("pool").tBodies[0], ...(podRows.length ? podRows : [el("tr", null, el("td", { colspan: 5 }, "No pods."))]));
  }

  // ------------------------------------------------------------------ one service

  function renderDetail(d) {
    $("detail").hidden = false;
    $("detail-h").textContent = d.name;
    const dep = d.deployment;
    $("deployment-state").textContent =
      dep.version === null
        ? `Not deployed (${dep.reason}).`
        : `Deployed v${dep.version} (${dep.strategy || "all-at-once"}), ${dep.state}: ${dep.reason}.` +
          (dep.statusReason && dep.statusReason !== dep.reason ? ` ${dep.statusReason}` : "");
    renderRollout(d.rollout);
    renderAliases(d.aliases);
    renderLive(d.live, d.versions);
    renderWeightHistory(d.weightHistory, d.at);
    renderVersions(d.versions);
  }

  function renderRollout(r) {
    $("rollout-none").hidden = r !== null;
    $("rollout-body").hidden = r === null;
    if (r === null) return;
    $("rollout-summary").textContent =
      `${r.strategy} rollout #${r.rolloutId}: v${r.fromVersion} → v${r.toVersion}, ` +
      `started ${stamp(r.createdAt)} by ${r.createdBy}` + (r.finishedAt ? `, ended ${stamp(r.finishedAt)}` : "") + ".";
    const stateNode = $("rollout-state");
    stateNode.textContent = r.state;
    stateNode.className = "state state-" + r.state;
    const active = r.state === "running" || r.state === "waiting";
    const steps = r.steps.map((share, i) => {
      let status = "pending";
      if (i < r.step || (r.state === "succeeded" && i <= r.step)) status = "done";
      else if (i === r.step) status = r.state === "rolled-back" ? "failed" : active ? "current" : "pending";
      const label = { done: "done", current: "now", failed: "rolled back here", pending: "to come" }[status];
      return el(
        "li",
        { class: "step step-" + status, "data-step": i + 1, "aria-current": status === "current" ? "step" : null },
        el("span", { class: "share" }, `${share} %`),
        el("span", { class: "label" }, label),
      );
    });
    fill($("rollout-steps"), ...steps);
    $("rollout-progress").textContent = r.progress ? `Controller: ${r.progress}` : "";
    const reason = $("rollout-reason");
    reason.hidden = !(r.state === "rolled-back" && r.reason);
    reason.textContent = reason.hidden ? "" : `Rolled back: ${r.reason}`;
    const events = r.events.slice().reverse().map((e) => el("li", null, `${clock(e.at)} ${e.action}${eventText(e)}`));
    fill($("rollout-events"), ...events);
  }

  function eventText(e) {
    const d = e.detail || {};
    if (e.action === "rollout-step") return `: step ${Number(d.step) + 1}, ${d.percent} %`;
    if (e.action === "rollback") return `: v${d.from} → v${d.to}` + (d.reason ? `, ${d.reason}` : "");
    if (e.action === "rollout-start") return `: v${d.from} → v${d.to} by ${e.actor}`;
    if (e.action === "retire") return `: v${d.version} (${d.slots} slots freed)`;
    return ` by ${e.actor}`;
  }

  function renderAliases(aliases) {
    const names = Object.keys(aliases).sort((a, b) => (a === "live" ? -1 : b === "live" ? 1 : a.localeCompare(b)));
    const rows = names.map((alias) =>
      el("div", { class: "alias", "data-alias": alias }, el("span", { class: "alias-name" }, alias), weightBar(alias, aliases[alias])),
    );
    fill($("aliases"), ...(rows.length ? rows : [el("p", null, "No aliases.")]));
  }

  function renderLive(live, versions) {
    const state = live.state === "live" ? "" : `Live figures: ${live.detail || live.state}.`;
    $("live-state").textContent = state || `Each figure: the last ${live.spanS} s; errors a caller caused do not count.`;
    const entries = Object.entries(live.versions).sort((a, b) => Number(a[0]) - Number(b[0]));
    const rows = entries.map(([version, v]) =>
      el(
        "tr",
        { "data-version": version },
        el("th", { scope: "row" }, el("span", { class: "swatch " + colorClass(version), "aria-hidden": "true" }), `v${version}`),
        el("td", { "data-figure": "rate" }, rate(v.now.rate)),
        el("td", { "data-figure": "errorRate" }, percent(v.now.errorRate)),
        el("td", { "data-figure": "p99" }, latency(v.now.p99Ms)),
        el("td", { "data-figure": "calls" }, String(v.total.calls)),
        el("td", { "data-figure": "errors" }, String(v.total.errors)),
        el("td", null, v.pods.length ? v.pods.join(", ") : "–"),
      ),
    );
    fill($("live").tBodies[0], ...(rows.length ? rows : [el("tr", null, el("td", { colspan: 7 }, "No calls in the last minute."))]));
    if (!entries.length) {
      fill($("charts"));
      return;
    }
    const first = Math.min(...entries.map(([, v]) => v.series[0].t));
    const last = Math.max(...entries.map(([, v]) => v.series[v.series.length - 1].t));
    const pick = (key) => entries.map(([version, v]) => ({ version, points: v.series.map((p) => [p.t, p[key]]) }));
    const maxOf = (key, floor) => Math.max(floor, ...entries.flatMap(([, v]) => v.series.map((p) => (typeof p[key] === "number" ? p[key] : 0))));
    fill(
      $("charts"),
      lineChart("Calls a second", pick("rate"), first, last, maxOf("rate", 1), rate, entries),
      lineChart("Error rate", pick("errorRate"), first, last, maxOf("errorRate", 0.05), percent, entries),
      lineChart("p99 latency", pick("p99Ms"), first, last, maxOf("p99Ms", 10), latency, entries),
    );
  }

  // ------------------------------------------------------------------ charts (SVG, drawn from numbers)

  const W = 320;
  const H = 130;
  const PAD = { left: 54, right: 8, top: 8, bottom: 22 };

  function frame(title, yMax, format, xLabels) {
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
    for (const fraction of [0, 0.5, 1]) {
      const y = PAD.top + (1 - fraction) * (H - PAD.top - PAD.bottom);
      chart.append(svg("line", { x1: PAD.left, x2: W - PAD.right, y1: y, y2: y, class: "grid" }));
      chart.append(svg("text", { x: PAD.left - 4, y: y + 4, class: "tick", "text-anchor": "end" }, format(yMax * fraction)));
    }
    chart.append(svg("text", { x: PAD.left, y: H - 6, class: "tick" }, xLabels[0]));
    chart.append(svg("text", { x: W - PAD.right, y: H - 6, class: "tick", "text-anchor": "end" }, xLabels[1]));
    return chart;
  }

  function scaler(x0, x1, yMax) {
    const sx = (x) => PAD.left + (x1 > x0 ? ((x - x0) / (x1 - x0)) * (W - PAD.left - PAD.right) : 0);
    const sy = (y) => PAD.top + (1 - Math.min(y, yMax) / yMax) * (H - PAD.top - PAD.bottom);
    return [sx, sy];
  }

  function legend(entries) {
    return el(
      "ul",
      { class: "legend" },
      ...entries.map(([version]) =>
        el("li", null, el("span", { class: "swatch " + colorClass(version), "aria-hidden": "true" }), `v${version}`),
      ),
    );
  }

  function figure(title, chart, summary, entries) {
    chart.setAttribute("aria-label", `${title}: ${summary}`);
    return el("figure", { class: "chart-box" }, el("figcaption", null, title), chart, legend(entries));
  }

  function lineChart(title, series, x0, x1, yMax, format, entries) {
    const chart = frame(title, yMax, format, [clock(x0), clock(x1)]);
    const [sx, sy] = scaler(x0, x1, yMax);
    for (const { version, points } of series) {
      // A gap where a point has no value (p99 without calls); "inf" is drawn at the top.
      let run = [];
      const flush = () => {
        if (run.length) chart.append(svg("polyline", { points: run.join(" "), class: "line " + colorClass(version) }));
        run = [];
      };
      for (const [x, y] of points) {
        const value = y === "inf" ? yMax : y;
        if (typeof value !== "number") {
          flush();
          continue;
        }
        run.push(`${sx(x).toFixed(1)},${sy(value).toFixed(1)}`);
      }
      flush();
    }
    const now = series.map(({ version, points }) => `v${version} ${format(points.length ? points[points.length - 1][1] : null)}`);
    return figure(title, chart, `now ${now.join(", ")}`, entries);
  }

  function renderWeightHistory(history, at) {
    const rows = history.slice().reverse().map((h) =>
      el(
        "tr",
        null,
        el("td", null, stamp(h.at)),
        el("td", null, weightsText(h.weights)),
        el("td", null, h.actor),
        el("td", null, h.why || "–"),
      ),
    );
    fill($("weight-history").tBodies[0], ...(rows.length ? rows : [el("tr", null, el("td", { colspan: 4 }, "No changes recorded."))]));
    if (!history.length) {
      fill($("weights-chart"));
      return;
    }
    // A step chart: each version's weight holds from one change to the next, up to now.
    const times = history.map((h) => new Date(h.at).getTime() / 1000);
    const x0 = times[0];
    const x1 = Math.max(at, times[times.length - 1] + 1);
    const versions = [...new Set(history.flatMap((h) => Object.keys(h.weights)))].sort((a, b) => Number(a) - Number(b));
    const entries = versions.map((v) => [v]);
    const chart = frame("Weights of live", 100, (x) => `${Math.round(x)} %`, [clock(x0), clock(x1)]);
    const [sx, sy] = scaler(x0, x1, 100);
    for (const version of versions) {
      let d = "";
      history.forEach((h, i) => {
        const y = sy(Number(h.weights[version] || 0)).toFixed(1);
        d += i === 0 ? `M ${sx(times[0]).toFixed(1)} ${y}` : ` H ${sx(times[i]).toFixed(1)} V ${y}`;
      });
      d += ` H ${sx(x1).toFixed(1)}`;
      chart.append(svg("path", { d, class: "line " + colorClass(version) }));
    }
    const latest = history[history.length - 1];
    fill($("weights-chart"), figure("Weights of live", chart, `now ${weightsText(latest.weights)}`, entries));
  }

  function renderVersions(versions) {
    const rows = versions.slice().reverse().map((v) =>
      el(
        "tr",
        { "data-version": v.version },
        el("th", { scope: "row" }, `v${v.version}`),
        el("td", null, v.status),
        el("td", null, `${stamp(v.createdAt)} by ${v.createdBy}`),
        el(
          "td",
          null,
          Object.entries(v.weights).map(([alias, w]) => `${alias} ${w} %`).join(", ") || "–",
        ),
        el("td", null, v.slots ? `${v.serving}/${v.slots}` : "–"),
      ),
    );
    fill($("versions").tBodies[0], ...rows);
  }

  // ------------------------------------------------------------------ start

  function start() {
    readFragment();
    $("token-form").addEventListener("submit", (event) => {
      event.preventDefault();
      const value = $("token-input").value.trim();
      if (!value) return;
      sessionStorage.setItem(TOKEN_KEY, value);
      $("token-input").value = "";
      $("signin").hidden = true;
      setStatus("Signing in…");
      schedule(0);
    });
    $("forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      clearTimeout(timer);
      showSignIn(new AuthProblem(0, ""));
    });
    window.addEventListener("hashchange", () => {
      readFragment();
      schedule(0);
    });
    schedule(0);
  }

  start();
})();
