// switchyard dashboard: renders the snapshots the admin listener pushes
// over Server-Sent Events. Every string in a snapshot comes from config,
// the service registry, brokers or traces and is untrusted: it is only
// ever placed with textContent or attribute setters, never parsed as HTML.
"use strict";
(function () {
  const SVG = "http://www.w3.org/2000/svg";
  const $ = (id) => document.getElementById(id);

  // --- formatting --------------------------------------------------------
  const num = (v) => (typeof v === "number" && isFinite(v) ? v : 0);
  const fmtRate = (v) => num(v).toFixed(num(v) >= 100 ? 0 : 1) + "/s";
  const fmtPct = (v) => (num(v) * 100).toFixed(num(v) > 0 && num(v) < 0.01 ? 2 : 1) + "%";
  const fmtMs = (v) => (num(v) >= 1000 ? (num(v) / 1000).toFixed(2) + " s" : num(v).toFixed(num(v) < 10 ? 1 : 0) + " ms");
  const fmtObjective = (v) => (num(v) * 100).toPrecision(4).replace(/\.?0+$/, "") + "%";

  // el builds an element; text is set with textContent, attrs with setAttribute.
  function el(tag, text, attrs) {
    const e = document.createElement(tag);
    if (text !== undefined && text !== null) e.textContent = String(text);
    if (attrs) for (const k of Object.keys(attrs)) e.setAttribute(k, String(attrs[k]));
    return e;
  }
  function svg(tag, attrs) {
    const e = document.createElementNS(SVG, tag);
    if (attrs) for (const k of Object.keys(attrs)) e.setAttribute(k, String(attrs[k]));
    return e;
  }
  // cell is a <td>; cls colours it; numeric cells align right.
  function cell(text, cls) {
    const td = el("td", text);
    if (cls) td.className = cls;
    return td;
  }
  function row(cells, attrs) {
    const tr = el("tr", null, attrs);
    for (const c of cells) tr.append(c instanceof Node ? c : cell(c));
    return tr;
  }
  function fill(tableId, rows) {
    $(tableId).tBodies[0].replaceChildren(...rows);
  }
  // panelStatus says "not available" for a panel whose source is missing.
  function panelStatus(id, p, empty) {
    const s = $(id + "-status");
    if (!p || !p.available) {
      s.textContent = "not available";
      s.dataset.state = "unavailable";
      return false;
    }
    s.dataset.state = p.error ? "error" : "ok";
    s.textContent = p.error ? "error: " + p.error : (p.items || []).length === 0 ? empty : "";
    return true;
  }
  const errClass = (r) => (num(r) >= 0.05 ? "num bad" : num(r) > 0 ? "num warn" : "num");

  // --- state of a target ----------------------------------------------------
  function targetClass(t) {
    if (t.circuit === "open") return "circuit-open";
    if (t.ejected) return "ejected";
    if (!t.healthy) return "down";
    if (t.draining) return "draining";
    if (t.circuit === "half-open") return "half-open";
    return "ok";
  }
  function targetState(t) {
    const s = [];
    if (t.draining) s.push("draining");
    if (t.ejected) s.push("ejected");
    if (!t.available) s.push("unavailable");
    return s.length ? s.join(", ") : "serving";
  }
  function matchText(r) {
    const parts = [];
    if (r.host) parts.push(r.host);
    parts.push(r.path || (r.path_prefix ? r.path_prefix + "…" : "") || r.path_pattern || "/…");
    if (r.methods && r.methods.length) parts.unshift(r.methods.join(","));
    return parts.join(" ");
  }

  // --- topology -------------------------------------------------------------
  const COL = 190, NODE_W = 160, NODE_H = 34, GAP = 10, MAX_ROWS = 80;

  function drawTopology(s) {
    const root = $("topology");
    const routes = s.routes || [], ups = s.upstreams || [];
    const brokers = (s.brokers && s.brokers.available && s.brokers.items) || [];
    const targets = [];
    for (const u of ups) for (const t of u.targets || []) targets.push({ u, t });
    const queues = [];
    for (const b of brokers) {
      for (const q of b.queues || []) queues.push({ b, q });
    }
    const columns = [["clients"], ["gateway"], routes, ups, targets];
    if (brokers.length) columns.push(brokers, queues);
    const rows = Math.min(MAX_ROWS, Math.max(...columns.map((c) => c.length), 1));
    const height = rows * (NODE_H + GAP) + GAP;
    const width = columns.length * COL + 20;
    root.setAttribute("width", width);
    root.setAttribute("height", height);
    root.setAttribute("viewBox", "0 0 " + width + " " + height);
    const edges = svg("g"), nodes = svg("g");
    const pos = new Map();
    const yOf = (i, n) => GAP + i * (NODE_H + GAP) + ((rows - Math.min(n, rows)) * (NODE_H + GAP)) / 2;

    function node(key, col, i, n, kind, cls, label, sub, title) {
      if (i >= MAX_ROWS) return;
      const x = 10 + col * COL, y = yOf(i, n);
      pos.set(key, { x, y });
      const g = svg("g", { class: "node " + kind + (cls ? " " + cls : ""), "data-kind": kind, "data-name": label });
      g.append(svg("rect", { x, y, width: NODE_W, height: NODE_H }));
      const t = svg("text", { x: x + 6, y: y + (sub ? 11 : NODE_H / 2) });
      t.textContent = clip(label, 24);
      g.append(t);
      if (sub) {
        const t2 = svg("text", { x: x + 6, y: y + 25, class: "sub" });
        t2.textContent = clip(sub, 30);
        g.append(t2);
      }
      const tt = svg("title");
      tt.textContent = title || label;
      g.append(tt);
      nodes.append(g);
    }
    function edge(a, b, cls) {
      const p = pos.get(a), q = pos.get(b);
      if (!p || !q) return;
      const x1 = p.x + NODE_W, y1 = p.y + NODE_H / 2, x2 = q.x, y2 = q.y + NODE_H / 2, mx = (x1 + x2) / 2;
      edges.append(svg("path", { d: `M${x1},${y1} C${mx},${y1} ${mx},${y2} ${x2},${y2}`, class: "edge" + (cls ? " " + cls : "") }));
    }
    const g = s.gateway || {};
    node("clients", 0, 0, 1, "client", "", "clients", fmtRate(g.rps), "clients");
    node("gateway", 1, 0, 1, "gateway", "", "gateway", "in flight " + num(g.in_flight), "gateway " + (g.config_file || ""));
    edge("clients", "gateway", num(g.rps) > 0 ? "hot" : "");
    routes.forEach((r, i) => {
      const k = "r:" + r.name;
      node(k, 2, i, routes.length, "route", "", r.name, fmtRate(r.rps) + " · " + fmtPct(r.error_rate) + " err", r.name + "  " + matchText(r));
      edge("gateway", k, num(r.error_rate) > 0 ? "failing" : num(r.rps) > 0 ? "hot" : "");
    });
    ups.forEach((u, i) => {
      const k = "u:" + u.name;
      node(k, 3, i, ups.length, "upstream", u.circuit === "open" ? "circuit-open" : u.circuit === "half-open" ? "half-open" : "",
        u.name, (u.balance || "") + (u.circuit ? " · " + u.circuit : ""), "upstream " + u.name);
    });
    routes.forEach((r) => { if (r.upstream) edge("r:" + r.name, "u:" + r.upstream, num(r.rps) > 0 ? "hot" : ""); });
    targets.forEach(({ u, t }, i) => {
      const k = "t:" + u.name + "\u0000" + t.address;
      const cls = targetClass(t);
      node(k, 4, i, targets.length, "target", cls, t.address,
        (t.circuit ? "circuit " + t.circuit + " · " : "") + fmtRate(t.rps) + " · " + num(t.in_flight) + " in flight",
        t.address + (t.process ? " (" + t.process + ")" : "") + " — " + cls);
      edge("u:" + u.name, k, cls === "ok" ? (num(t.rps) > 0 ? "hot" : "") : "failing");
    });
    if (brokers.length) {
      brokers.forEach((b, i) => {
        node("b:" + b.url, 5, i, brokers.length, "broker", b.error ? "down" : "", b.url, b.error ? "error" : (b.queues || []).length + " queues", b.error || b.url);
        edge("gateway", "b:" + b.url, "");
      });
      queues.forEach(({ b, q }, i) => {
        const k = "q:" + b.url + "\u0000" + q.name;
        node(k, 6, i, queues.length, "queue", num(q.depth) > 0 ? "backlog" : "", q.name, "depth " + num(q.depth) + " · " + num(q.in_flight) + " in flight",
          q.name + ": depth " + num(q.depth));
        edge("b:" + b.url, k, num(q.growth) > 0 ? "failing" : "");
      });
    }
    root.replaceChildren(edges, nodes);
  }
  function clip(s, n) {
    s = String(s);
    return s.length > n ? s.slice(0, n - 1) + "…" : s;
  }

  // --- tables ---------------------------------------------------------------
  function drawTargets(s) {
    const rows = [];
    for (const u of s.upstreams || []) {
      for (const t of u.targets || []) {
        const cls = targetClass(t);
        rows.push(row([
          u.name, t.address, t.process || "",
          cell(t.healthy ? "healthy" : "unhealthy", t.healthy ? "good" : "bad"),
          cell(t.circuit || "–", t.circuit === "open" ? "bad" : t.circuit === "half-open" ? "warn" : ""),
          cell(targetState(t), t.ejected || t.draining ? "warn" : ""),
          cell(num(t.in_flight), "num"), cell(fmtRate(t.rps), "num"), cell(fmtPct(t.error_rate), errClass(t.error_rate)),
          cell(fmtMs(t.latency_ewma_ms), "num"),
        ], { "data-target": t.address, "data-state": cls }));
      }
    }
    fill("targets", rows);
  }
  function drawRoutes(s) {
    fill("routes", (s.routes || []).map((r) => row([
      r.name, matchText(r), r.upstream || "–", cell(num(r.in_flight), "num"), cell(fmtRate(r.rps), "num"),
      cell(fmtPct(r.error_rate), errClass(r.error_rate)), cell(fmtMs(r.p50_ms), "num"), cell(fmtMs(r.p99_ms), "num"),
    ], { "data-route": r.name })));
  }
  function drawQueues(s) {
    const p = s.brokers;
    if (!panelStatus("queues", p, "no broker queues")) {
      fill("queues", []);
      fill("streams", []);
      return;
    }
    const qrows = [], srows = [];
    const errs = [];
    for (const b of p.items || []) {
      if (b.error) errs.push(b.url + ": " + b.error);
      for (const q of b.queues || []) {
        qrows.push(row([b.url, q.name, cell(num(q.depth), "num"), cell(num(q.in_flight), "num"), cell(num(q.delayed), "num"),
          cell(num(q.dead_lettered), num(q.dead_lettered) > 0 ? "num warn" : "num"),
          cell((num(q.growth) > 0 ? "+" : "") + num(q.growth).toFixed(1) + "/s", num(q.growth) > 0 ? "num warn" : "num")],
          { "data-queue": q.name }));
      }
      for (const st of b.streams || []) {
        const groups = st.groups && st.groups.length ? st.groups : [{ name: "–", lag: 0 }];
        for (const gr of groups) {
          srows.push(row([b.url, st.name, cell(num(st.last_offset), "num"), gr.name, cell(num(gr.lag), num(gr.lag) > 0 ? "num warn" : "num")],
            { "data-stream": st.name }));
        }
      }
      if (b.omitted) errs.push(b.url + ": " + b.omitted + " more queues and streams not shown");
    }
    if (errs.length) $("queues-status").textContent = errs.join("; ");
    fill("queues", qrows);
    fill("streams", srows);
  }
  function drawSLOs(s) {
    const p = s.slos;
    if (!panelStatus("slos", p, "no SLOs configured")) return fill("slos", []);
    fill("slos", (p.items || []).map((o) => {
      const alerts = el("td");
      const firing = (o.alerts || []).filter((a) => a.firing);
      if (firing.length === 0) alerts.append(el("span", "none firing"));
      for (const a of firing) {
        alerts.append(el("span", "FIRING " + a.name + " (" + (a.severity || "") + ") burn " + num(a.short_burn).toFixed(1) + "x/" +
          num(a.long_burn).toFixed(1) + "x over " + (a.short_window || "") + "/" + (a.long_window || "") + (a.since ? " since " + a.since : ""), { class: "bad" }));
        alerts.append(el("br"));
      }
      const b = num(o.budget_remaining);
      return row([o.name, (o.kind || "") + " of " + (o.route ? "route " + o.route : "upstream " + (o.upstream || "")) + (o.threshold ? " < " + o.threshold : ""),
        fmtObjective(o.objective), o.window || "", cell(fmtPct(o.sli), "num"),
        cell(fmtPct(b), b <= 0 ? "num bad" : b < 0.25 ? "num warn" : "num"), alerts],
        { "data-slo": o.name, "data-firing": firing.length > 0 });
    }));
  }
  function drawRollouts(s) {
    const p = s.rollouts;
    if (!panelStatus("rollouts", p, "no rollouts")) return fill("rollouts", []);
    fill("rollouts", (p.items || []).map((r) => {
      const a = r.analysis;
      const an = a ? (a.verdict || "") + (a.reason ? ": " + a.reason : "") + " (stable " + fmtPct(a.stable && a.stable.error_rate) +
        " err, canary " + fmtPct(a.canary && a.canary.error_rate) + " err)" : r.message || "";
      return row([r.upstream, r.strategy, cell(r.state, r.state === "rolled_back" || r.state === "aborted" ? "bad" : r.state === "paused" ? "warn" : ""),
        num(r.step) + "/" + num(r.steps), cell(num(r.canary_weight) + "%", "num"), (r.stable || []).join(", "), (r.canary || []).join(", "),
        cell(an, a && a.verdict === "fail" ? "bad" : "")], { "data-rollout": r.upstream });
    }));
  }
  function drawFaults(s) {
    const p = s.faults;
    if (!panelStatus("faults", p, "no faults")) return fill("faults", []);
    fill("faults", (p.items || []).map((f) => row([
      f.route, cell(f.active ? "active" : "off", f.active ? "bad" : ""),
      f.delay ? f.delay + " for " + num(f.delay_percent) + "%" : "–",
      f.abort_status ? num(f.abort_status) + " for " + num(f.abort_percent) + "%" : "–",
      f.header ? "requests with header " + f.header : "all requests",
      num(f.injected_delays) + " delays, " + num(f.injected_aborts) + " aborts",
    ], { "data-fault": f.route })));
  }
  function drawTraces(s) {
    const p = s.traces;
    if (!panelStatus("traces", p, "no slow or failed traces kept")) return fill("traces", []);
    fill("traces", (p.items || []).map((t) => {
      const link = el("a", String(t.trace_id).slice(0, 16) + "…");
      link.href = "traces/" + encodeURIComponent(t.trace_id); // relative to /admin/dashboard: /admin/traces/{id}
      const td = el("td");
      td.append(link);
      const kind = [t.error ? "failed" : "", t.slow ? "slow" : ""].filter(Boolean).join(", ");
      return row([new Date(t.start).toLocaleTimeString(), t.root, t.service, cell(fmtMs(num(t.duration_ns) / 1e6), "num"),
        cell(kind, t.error ? "bad" : "warn"), td], { "data-trace": t.trace_id });
    }));
  }
  function drawProcesses(s) {
    const p = s.processes;
    if (!panelStatus("processes", p, "no processes")) return fill("processes", []);
    fill("processes", (p.items || []).map((x) => row([
      x.name, cell(num(x.replica), "num"), x.role, cell(num(x.pid), "num"), x.address || "",
      cell(x.health, x.health === "up" ? "good" : "bad"), cell(num(x.restarts), num(x.restarts) > 0 ? "num warn" : "num"),
    ], { "data-process": x.name })));
  }

  function render(s) {
    const g = s.gateway || {};
    $("total-rps").textContent = fmtRate(g.rps);
    $("total-errors").textContent = fmtPct(g.error_rate);
    $("total-p50").textContent = fmtMs(g.p50_ms);
    $("total-p99").textContent = fmtMs(g.p99_ms);
    $("total-inflight").textContent = String(num(g.in_flight));
    $("updated").textContent = "updated " + new Date(s.time).toLocaleTimeString();
    const e = $("error");
    e.hidden = !s.error;
    e.textContent = s.error || "";
    drawTopology(s);
    drawTargets(s);
    drawRoutes(s);
    drawQueues(s);
    drawSLOs(s);
    drawRollouts(s);
    drawFaults(s);
    drawTraces(s);
    drawProcesses(s);
    document.body.dataset.snapshots = String(num(Number(document.body.dataset.snapshots)) + 1);
  }

  // --- the stream -----------------------------------------------------------
  let source = null;
  function connect() {
    const conn = $("conn");
    source = new EventSource("dashboard/events");
    source.addEventListener("open", () => { conn.textContent = "live"; conn.className = "conn live"; });
    source.addEventListener("error", () => {
      const closed = source.readyState === EventSource.CLOSED;
      conn.textContent = closed ? "disconnected (reload to retry)" : "reconnecting…";
      conn.className = "conn down";
    });
    source.addEventListener("snapshot", (ev) => {
      let s;
      try {
        s = JSON.parse(ev.data);
      } catch (err) {
        $("error").hidden = false;
        $("error").textContent = "bad snapshot: " + err;
        return;
      }
      render(s);
    });
  }
  // Close the stream when the page goes, so the server frees it at once.
  window.addEventListener("pagehide", () => { if (source) source.close(); });
  connect();
})();
