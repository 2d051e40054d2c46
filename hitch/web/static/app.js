// Hitch web app: rider, driver and operator views over the public API.
// No framework, no build step, nothing loaded from another origin.
"use strict";

// ---- the synthetic city: a lat/lon box drawn on a canvas ----
const BOX = { latMin: 40.70, latMax: 40.80, lonMin: -74.02, lonMax: -73.92 };

function toXY(canvas, lat, lon) {
  return {
    x: (lon - BOX.lonMin) / (BOX.lonMax - BOX.lonMin) * canvas.width,
    y: (BOX.latMax - lat) / (BOX.latMax - BOX.latMin) * canvas.height,
  };
}
function toLatLon(canvas, x, y) {
  const lon = BOX.lonMin + x / canvas.width * (BOX.lonMax - BOX.lonMin);
  const lat = BOX.latMax - y / canvas.height * (BOX.latMax - BOX.latMin);
  return { lat: Math.round(lat * 1e5) / 1e5, lon: Math.round(lon * 1e5) / 1e5 };
}

const DISTRICTS = [
  { name: "Old Harbor", lat: [40.70, 40.73], lon: [-74.02, -73.99], color: "#e3d9c6" },
  { name: "Midtown", lat: [40.74, 40.77], lon: [-73.99, -73.95], color: "#ddd6e8" },
  { name: "Northside", lat: [40.77, 40.80], lon: [-74.02, -73.98], color: "#d9e6d3" },
  { name: "Eastbank", lat: [40.70, 40.76], lon: [-73.945, -73.92], color: "#e8dcd3" },
  { name: "Central Park", lat: [40.765, 40.79], lon: [-73.965, -73.945], color: "#b9d8a8" },
];

function drawCity(canvas, overlay) {
  const g = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  g.fillStyle = "#ece8dc";
  g.fillRect(0, 0, w, h);
  for (const d of DISTRICTS) {
    const a = toXY(canvas, d.lat[1], d.lon[0]), b = toXY(canvas, d.lat[0], d.lon[1]);
    g.fillStyle = d.color;
    g.fillRect(a.x, a.y, b.x - a.x, b.y - a.y);
  }
  // streets every 0.005 degrees, avenues every 0.02
  for (let lon = BOX.lonMin; lon <= BOX.lonMax + 1e-9; lon += 0.005) {
    const x = toXY(canvas, BOX.latMin, lon).x;
    const avenue = Math.abs(Math.round(lon / 0.02) * 0.02 - lon) < 1e-6;
    g.strokeStyle = avenue ? "#ffffff" : "#f8f6f0";
    g.lineWidth = avenue ? 4 : 1.5;
    g.beginPath(); g.moveTo(x, 0); g.lineTo(x, h); g.stroke();
  }
  for (let lat = BOX.latMin; lat <= BOX.latMax + 1e-9; lat += 0.005) {
    const y = toXY(canvas, lat, BOX.lonMin).y;
    const avenue = Math.abs(Math.round(lat / 0.02) * 0.02 - lat) < 1e-6;
    g.strokeStyle = avenue ? "#ffffff" : "#f8f6f0";
    g.lineWidth = avenue ? 4 : 1.5;
    g.beginPath(); g.moveTo(0, y); g.lineTo(w, y); g.stroke();
  }
  // the river, from the north-east to the south, between Midtown and Eastbank
  g.strokeStyle = "#8fbbe0";
  g.lineWidth = 22;
  g.lineCap = "round";
  g.beginPath();
  const r0 = toXY(canvas, 40.80, -73.935), r1 = toXY(canvas, 40.765, -73.948),
        r2 = toXY(canvas, 40.73, -73.945), r3 = toXY(canvas, 40.70, -73.955);
  g.moveTo(r0.x, r0.y);
  g.bezierCurveTo(r1.x, r1.y, r2.x, r2.y, r3.x, r3.y);
  g.stroke();
  g.lineCap = "butt";
  g.fillStyle = "#4a4f5c";
  g.font = "13px system-ui, sans-serif";
  for (const d of DISTRICTS) {
    const p = toXY(canvas, (d.lat[0] + d.lat[1]) / 2, d.lon[0]);
    g.fillText(d.name, p.x + 6, p.y);
  }
  if (overlay) overlay(g);
}

function dot(canvas, g, p, color, label, radius) {
  if (!p || !isFinite(p.lat) || !isFinite(p.lon)) return;
  const q = toXY(canvas, p.lat, p.lon);
  g.fillStyle = color;
  g.beginPath(); g.arc(q.x, q.y, radius || 7, 0, 2 * Math.PI); g.fill();
  if (label) { g.fillStyle = "#1d2330"; g.font = "bold 12px system-ui"; g.fillText(label, q.x + 9, q.y - 6); }
}
function line(canvas, g, a, b, color) {
  if (!a || !b || !isFinite(a.lat) || !isFinite(b.lat)) return;
  const p = toXY(canvas, a.lat, a.lon), q = toXY(canvas, b.lat, b.lon);
  g.strokeStyle = color; g.lineWidth = 3; g.setLineDash([8, 5]);
  g.beginPath(); g.moveTo(p.x, p.y); g.lineTo(q.x, q.y); g.stroke();
  g.setLineDash([]);
}

// ---- helpers ----
const $ = (id) => document.getElementById(id);
function point(prefix) {
  const lat = parseFloat($(prefix + "-lat").value), lon = parseFloat($(prefix + "-lon").value);
  return isFinite(lat) && isFinite(lon) ? { lat, lon } : null;
}
function setPoint(prefix, p) { $(prefix + "-lat").value = p.lat; $(prefix + "-lon").value = p.lon; }
// Amounts in the API are integer cents: fields named *_cents, and the
// receipt's and earnings' fare, fee, total_charged, gross, fees, net_paid
// and pending.
const moneyKeys = new Set(["fare", "fee", "total_charged", "gross", "fees", "net_paid", "pending"]);
function isMoney(k) { return /_cents$/.test(k) || moneyKeys.has(k); }
function money(cents) { return "$" + (Number(cents) / 100).toFixed(2); }
function renderDL(dl, obj) {
  dl.replaceChildren();
  for (const [k, v] of Object.entries(obj || {})) {
    const dt = document.createElement("dt"), dd = document.createElement("dd");
    dt.textContent = k.replace(/_cents$/, "").replace(/_/g, " ");
    dd.textContent = isMoney(k) ? money(v) : (typeof v === "object" ? JSON.stringify(v) : String(v));
    dl.append(dt, dd);
  }
}
function logEvent(list, name, data) {
  const li = document.createElement("li");
  li.textContent = name + " " + JSON.stringify(data);
  li.dataset.event = name;
  list.prepend(li);
  while (list.children.length > 50) list.lastChild.remove();
}

// A session per role, kept in sessionStorage (per tab).
class Session {
  constructor(role) { this.role = role; this.token = sessionStorage.getItem("hitch." + role + ".token") || ""; }
  set(token) { this.token = token; sessionStorage.setItem("hitch." + this.role + ".token", token); }
  clear() { this.token = ""; sessionStorage.removeItem("hitch." + this.role + ".token"); }
  async api(method, path, body) {
    const headers = { Accept: "application/json" };
    if (this.token) headers.Authorization = "Bearer " + this.token;
    if (body !== undefined) headers["Content-Type"] = "application/json";
    const res = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body), cache: "no-store" });
    let data = null;
    const text = await res.text();
    try { data = text ? JSON.parse(text) : null; } catch (e) { data = { error: text }; }
    if (!res.ok) {
      // A service's error says "error"; the gateway's contract check answers an RFC 9457 problem ("detail").
      const err = new Error((data && (data.error || data.detail)) || res.status + " " + res.statusText);
      err.status = res.status; err.data = data;
      throw err;
    }
    return data;
  }
}

// streamEvents reads GET /v1/events with fetch() (EventSource cannot send
// Authorization) and calls onEvent(name, data, id) per event; it
// reconnects with Last-Event-ID until stop() is called.
function streamEvents(session, onEvent, onState) {
  let stopped = false, lastId = "", ctrl = null, delay = 500;
  async function once() {
    ctrl = new AbortController();
    const headers = { Authorization: "Bearer " + session.token, Accept: "text/event-stream" };
    if (lastId) headers["Last-Event-ID"] = lastId;
    const res = await fetch("/v1/events", { headers, signal: ctrl.signal, cache: "no-store" });
    if (!res.ok || !res.body) throw new Error("events: " + res.status);
    onState("live");
    delay = 500;
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = "", ev = { name: "", data: "", id: "" };
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += value;
      let i;
      while ((i = buf.indexOf("\n")) >= 0) {
        let ln = buf.slice(0, i); buf = buf.slice(i + 1);
        if (ln.endsWith("\r")) ln = ln.slice(0, -1);
        if (ln === "") {
          if (ev.name && ev.data) {
            if (ev.id) lastId = ev.id;
            let data = null;
            try { data = JSON.parse(ev.data); } catch (e) { data = { raw: ev.data }; }
            onEvent(ev.name, data, ev.id);
          }
          ev = { name: "", data: "", id: "" };
        } else if (ln.startsWith(":")) {
          // heartbeat
        } else {
          const c = ln.indexOf(":");
          const field = c < 0 ? ln : ln.slice(0, c);
          let v = c < 0 ? "" : ln.slice(c + 1);
          if (v.startsWith(" ")) v = v.slice(1);
          if (field === "event") ev.name = v;
          else if (field === "data") ev.data = ev.data ? ev.data + "\n" + v : v;
          else if (field === "id") ev.id = v;
        }
      }
    }
  }
  (async () => {
    while (!stopped) {
      try { await once(); } catch (e) { if (stopped) return; onState("reconnecting"); }
      if (stopped) return;
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 10000);
    }
  })();
  return { stop() { stopped = true; if (ctrl) ctrl.abort(); } };
}

// Account forms shared by the rider and driver views.
function authForm(role, session, onSignedIn, onSignedOut) {
  const status = $(role + "-auth-status");
  const creds = () => ({ email: $(role + "-email").value.trim(), password: $(role + "-password").value });
  $(role + "-register").addEventListener("click", async () => {
    try {
      const c = creds();
      const r = await session.api("POST", "/v1/auth/register", { role, name: $(role + "-name").value.trim(), email: c.email, password: c.password });
      status.textContent = "Registered (id " + (r && r.id) + "). Now log in.";
    } catch (e) { status.textContent = "Registration failed: " + e.message; }
  });
  $(role + "-auth").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    try {
      const r = await session.api("POST", "/v1/auth/login", creds());
      session.set(r.token);
      status.textContent = "Signed in as " + creds().email + ".";
      onSignedIn();
    } catch (e) { status.textContent = "Login failed: " + e.message; }
  });
  $(role + "-logout").addEventListener("click", () => { session.clear(); status.textContent = "Not signed in."; onSignedOut(); });
  if (session.token) { status.textContent = "Signed in."; onSignedIn(); }
}

// ---- rider ----
function riderView() {
  const s = new Session("rider");
  const canvas = $("rider-map"), events = $("rider-events");
  let stream = null, rideId = sessionStorage.getItem("hitch.rider.ride") || "", nearby = [], driverPos = null;
  const status = (t) => { $("rider-status").textContent = t; };
  const redraw = () => drawCity(canvas, (g) => {
    for (const d of nearby) dot(canvas, g, d, "#2a6fdb", "", 5);
    line(canvas, g, point("rider-from"), point("rider-to"), "#333");
    dot(canvas, g, point("rider-from"), "#1b9e4b", "pickup");
    dot(canvas, g, point("rider-to"), "#d33", "drop-off");
    if (driverPos) dot(canvas, g, driverPos, "#2a6fdb", "your driver", 8);
  });
  canvas.addEventListener("click", (ev) => {
    const r = canvas.getBoundingClientRect();
    const p = toLatLon(canvas, (ev.clientX - r.left) * canvas.width / r.width, (ev.clientY - r.top) * canvas.height / r.height);
    const which = $("rider-pick-to").checked ? "to" : "from";
    setPoint("rider-" + which, p);
    if (which === "from") $("rider-pick-to").checked = true;
    redraw();
  });
  for (const id of ["rider-from-lat", "rider-from-lon", "rider-to-lat", "rider-to-lon"]) $(id).addEventListener("change", redraw);

  async function refreshRide() {
    if (!rideId || !s.token) return;
    try {
      const r = await s.api("GET", "/v1/rides/" + encodeURIComponent(rideId));
      status(r.status);
      if (r.status === "paid") loadReceipt();
    } catch (e) { /* recovered later */ }
  }
  async function loadReceipt(fallback) {
    for (let i = 0; i < 10; i++) {
      try {
        const r = await s.api("GET", "/v1/rides/" + encodeURIComponent(rideId) + "/receipt");
        renderDL($("rider-receipt"), r);
        return;
      } catch (e) { await new Promise((ok) => setTimeout(ok, 300 * (i + 1))); }
    }
    if (fallback) renderDL($("rider-receipt"), fallback);
  }
  async function poll() {
    if (!s.token) return;
    const c = point("rider-from") || { lat: 40.75, lon: -73.97 };
    try {
      const r = await s.api("GET", `/v1/drivers/nearby?lat=${c.lat}&lon=${c.lon}&radius_mi=5`);
      nearby = (r && r.drivers) || [];
      $("rider-nearby").textContent = String(nearby.length);
    } catch (e) { $("rider-nearby").textContent = "not available"; }
    redraw();
  }
  function onEvent(name, data) {
    logEvent(events, name, data);
    if (data && data.ride_id && data.ride_id !== rideId) return;
    switch (name) {
      case "driver_found": status("matched"); break;
      case "ride_started": status("started"); break;
      case "ride_finished": status("finished"); break;
      case "receipt": status("paid"); loadReceipt(data); break;
      case "no_driver": status("no_driver"); break;
      case "payment_failed": status("payment_failed"); break;
      case "ride_cancelled": status("cancelled"); break;
    }
  }
  authForm("rider", s, () => {
    if (stream) stream.stop();
    stream = streamEvents(s, onEvent, (st) => { if (st === "live") refreshRide(); });
    poll();
  }, () => { if (stream) stream.stop(); stream = null; });
  $("rider-request-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const from = point("rider-from"), to = point("rider-to");
    if (!from || !to) { status("set pickup and drop-off first"); return; }
    try {
      const r = await s.api("POST", "/v1/rides", { from, to });
      rideId = r.ride_id;
      sessionStorage.setItem("hitch.rider.ride", rideId);
      $("rider-ride-id").textContent = rideId;
      renderDL($("rider-receipt"), { state: "no receipt yet" });
      status(r.status || "searching");
    } catch (e) { status("request failed: " + e.message); }
  });
  $("rider-cancel").addEventListener("click", async () => {
    if (!rideId) return;
    try { await s.api("POST", "/v1/rides/" + encodeURIComponent(rideId) + "/cancel"); status("cancelled"); }
    catch (e) { status("cancel failed: " + e.message); }
  });
  if (rideId) $("rider-ride-id").textContent = rideId;
  setInterval(poll, 5000);
  redraw();
}

// ---- driver ----
function driverView() {
  const s = new Session("driver");
  const canvas = $("driver-map"), events = $("driver-events");
  let stream = null, rideId = "", pos = null, t = 0, reporting = null, passenger = null;
  const status = (x) => { $("driver-status").textContent = x; };
  const redraw = () => drawCity(canvas, (g) => {
    line(canvas, g, point("driver-from"), point("driver-to"), "#2a6fdb");
    dot(canvas, g, point("driver-from"), "#1b9e4b", "start");
    dot(canvas, g, point("driver-to"), "#d33", "destination");
    if (passenger) { dot(canvas, g, passenger.from, "#f0a020", "passenger pickup", 6); dot(canvas, g, passenger.to, "#f0a020", "passenger drop-off", 6); }
    if (pos) dot(canvas, g, pos, "#2a6fdb", "you", 8);
  });
  canvas.addEventListener("click", (ev) => {
    const r = canvas.getBoundingClientRect();
    const p = toLatLon(canvas, (ev.clientX - r.left) * canvas.width / r.width, (ev.clientY - r.top) * canvas.height / r.height);
    const which = $("driver-pick-to").checked ? "to" : "from";
    setPoint("driver-" + which, p);
    if (which === "from") $("driver-pick-to").checked = true;
    redraw();
  });
  for (const id of ["driver-from-lat", "driver-from-lon", "driver-to-lat", "driver-to-lon"]) $(id).addEventListener("change", redraw);

  // Report the position every 3 s, moving along the route.
  async function report() {
    const a = point("driver-from"), b = point("driver-to");
    if (!a || !b || !s.token) return;
    t = Math.min(1, t + 0.02);
    pos = { lat: a.lat + (b.lat - a.lat) * t, lon: a.lon + (b.lon - a.lon) * t };
    try {
      await s.api("PUT", "/v1/drivers/me/location", { lat: Math.round(pos.lat * 1e6) / 1e6, lon: Math.round(pos.lon * 1e6) / 1e6 });
      $("driver-position").textContent = pos.lat.toFixed(5) + ", " + pos.lon.toFixed(5);
    } catch (e) { $("driver-position").textContent = "report failed: " + e.message; }
    redraw();
  }
  async function earnings() {
    try { renderDL($("driver-earnings"), await s.api("GET", "/v1/drivers/me/earnings")); }
    catch (e) { renderDL($("driver-earnings"), { earnings: "not available (" + e.message + ")" }); }
  }
  function onEvent(name, data) {
    logEvent(events, name, data);
    switch (name) {
      case "passenger_found":
        rideId = data.ride_id; passenger = data;
        $("driver-ride-id").textContent = rideId;
        $("driver-start").disabled = false; $("driver-finish").disabled = true;
        status("passenger found"); redraw(); break;
      case "ride_started": if (data.ride_id === rideId) status("on ride"); break;
      case "ride_finished": if (data.ride_id === rideId) status("finished"); break;
      case "payout": status("paid out " + money(data.amount_cents)); earnings(); break;
      case "ride_cancelled": case "payment_failed":
        if (data.ride_id === rideId) { status(name.replace("_", " ")); $("driver-start").disabled = true; $("driver-finish").disabled = true; }
        break;
    }
  }
  authForm("driver", s, () => {
    if (stream) stream.stop();
    stream = streamEvents(s, onEvent, () => {});
    if (!reporting) reporting = setInterval(report, 3000);
    earnings();
  }, () => { if (stream) stream.stop(); stream = null; clearInterval(reporting); reporting = null; });
  $("driver-availability-form").addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const from = point("driver-from"), to = point("driver-to");
    if (!from || !to) { status("set your route first"); return; }
    const ready = $("driver-ready").checked;
    try {
      t = 0;
      await report();
      await s.api("POST", "/v1/drivers/me/availability", { ready, from, to, seats: parseInt($("driver-seats").value, 10) || 1 });
      status(ready ? "available" : "offline");
    } catch (e) { status("availability failed: " + e.message); }
  });
  $("driver-start").addEventListener("click", async () => {
    try {
      await s.api("POST", "/v1/rides/" + encodeURIComponent(rideId) + "/start");
      $("driver-start").disabled = true; $("driver-finish").disabled = false; status("on ride");
    } catch (e) { status("start failed: " + e.message); }
  });
  $("driver-finish").addEventListener("click", async () => {
    try {
      await s.api("POST", "/v1/rides/" + encodeURIComponent(rideId) + "/finish");
      $("driver-finish").disabled = true; status("finished");
    } catch (e) { status("finish failed: " + e.message); }
  });
  $("driver-earnings-refresh").addEventListener("click", earnings);
  redraw();
}

// ---- operator ----
function table(rows) {
  if (!Array.isArray(rows) || rows.length === 0) { const p = document.createElement("p"); p.textContent = "none"; return p; }
  const cols = [...new Set(rows.flatMap((r) => Object.keys(r)))];
  const t = document.createElement("table"), head = t.createTHead().insertRow();
  for (const c of cols) { const th = document.createElement("th"); th.scope = "col"; th.textContent = c; head.append(th); }
  const body = t.createTBody();
  for (const r of rows) {
    const tr = body.insertRow();
    for (const c of cols) { const v = r[c]; tr.insertCell().textContent = v === undefined ? "" : typeof v === "object" ? JSON.stringify(v) : String(v); }
  }
  return t;
}
function rowsOf(data, key) {
  if (Array.isArray(data)) return data;
  if (data && Array.isArray(data[key])) return data[key];
  if (data && typeof data === "object") return Object.entries(data).map(([name, v]) => (typeof v === "object" && v ? { name, ...v } : { name, value: v }));
  return [];
}
function operatorView() {
  async function load(el, url, key) {
    try {
      const res = await fetch(url, { cache: "no-store", headers: { Accept: "application/json" } });
      if (!res.ok) throw new Error(String(res.status));
      el.replaceChildren(table(rowsOf(await res.json(), key)));
    } catch (e) {
      const p = document.createElement("p"); p.className = "na"; p.textContent = "not available (" + url + ": " + e.message + ")";
      el.replaceChildren(p);
    }
  }
  function refresh() {
    // Default: the read-only operator data hitch up serves through the
    // gateway under /ops (the admin API and the broker are other origins).
    const admin = $("operator-admin-base").value.trim().replace(/\/$/, "") || "/ops",
      broker = $("operator-broker-base").value.trim().replace(/\/$/, "") || "/ops";
    load($("operator-processes"), admin + "/admin/hitch/processes", "processes");
    load($("operator-queues"), broker + "/v1/queues", "queues");
    load($("operator-upstreams"), admin + "/admin/upstreams", "upstreams");
  }
  $("operator-form").addEventListener("submit", (ev) => { ev.preventDefault(); refresh(); });
  return refresh;
}

// ---- views ----
function main() {
  riderView();
  driverView();
  const refreshOperator = operatorView();
  function show() {
    const v = (location.hash || "#rider").slice(1);
    for (const name of ["rider", "driver", "operator"]) {
      $("view-" + name).hidden = name !== v;
      if (name === v) $("nav-" + name).setAttribute("aria-current", "page"); else $("nav-" + name).removeAttribute("aria-current");
    }
    if (v === "operator") refreshOperator();
  }
  window.addEventListener("hashchange", show);
  show();
}
document.addEventListener("DOMContentLoaded", main);
