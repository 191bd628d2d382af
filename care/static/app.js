// The care-team dashboard: signs in with a token kept in sessionStorage, then reads /v1 with a
// bearer header. Every value from the API reaches the page as text nodes or attributes, never as
// HTML, so a user id like "<img onerror=…>" shows as the characters it is.
"use strict";

const TOKEN_KEY = "phq.token";
const SVG_NS = "http://www.w3.org/2000/svg";
const BANDS = [[0, 5, "minimal"], [5, 10, "mild"], [10, 15, "moderate"], [15, 20, "moderately_severe"], [20, 27, "severe"]];
const BAND_NAMES = { minimal: "minimal", mild: "mild", moderate: "moderate", moderately_severe: "moderately severe", severe: "severe" };
const $ = (id) => document.getElementById(id);
let me = null;
let selectedUser = null;

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG_NS, tag);
  for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

class Unauthorized extends Error {}

async function api(path, options = {}) {
  const response = await fetch(path, {
    ...options,
    headers: { Authorization: `Bearer ${sessionStorage.getItem(TOKEN_KEY)}`, Accept: "application/json" },
  });
  if (response.status === 401) throw new Unauthorized("token rejected");
  const body = await response.json();
  if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
  return body;
}

async function allPages(path) {
  const items = [];
  let cursor = null;
  do {
    const sep = path.includes("?") ? "&" : "?";
    const page = await api(path + (cursor ? `${sep}cursor=${encodeURIComponent(cursor)}` : ""));
    items.push(...page.items);
    cursor = page.next_cursor;
  } while (cursor);
  return items;
}

function band(severity) {
  const known = Object.hasOwn(BAND_NAMES, severity) ? severity : "unknown";
  return el("span", { class: `band ${known}` }, BAND_NAMES[known] || String(severity));
}

function ago(iso) {
  const minutes = (Date.now() - Date.parse(iso)) / 60000;
  if (minutes < 60) return `${Math.max(0, Math.round(minutes))} min ago`;
  if (minutes < 48 * 60) return `${Math.round(minutes / 60)} h ago`;
  return `${Math.round(minutes / 1440)} d ago`;
}

function trendCell(trend) {
  if (trend === null) return el("td", {}, "—");
  if (Math.abs(trend) < 0.05) return el("td", {}, "±0");
  const up = trend > 0;
  return el("td", { class: up ? "up" : "down", title: up ? "worsening" : "improving" },
    `${up ? "▲ +" : "▼ −"}${Math.abs(trend).toFixed(1)}`);
}

// Worsening first: open worsening alerts, then the largest rise, then the highest score.
function worseningFirst(a, b) {
  return (b.open_worsening_alerts - a.open_worsening_alerts)
    || ((b.trend ?? -Infinity) - (a.trend ?? -Infinity))
    || ((b.latest?.score ?? -1) - (a.latest?.score ?? -1))
    || a.user_id.localeCompare(b.user_id);
}

async function loadUsers() {
  const users = (await allPages("/v1/users?limit=500")).sort(worseningFirst);
  const rows = users.map((u) => {
    const row = el("tr", { "data-user": u.user_id, tabindex: "0" },
      el("td", { class: "user", title: u.user_id }, u.user_id),
      el("td", {}, u.latest ? u.latest.score.toFixed(1) : "—"),
      el("td", {}, u.latest ? band(u.latest.severity) : "not scored yet"),
      trendCell(u.trend),
      el("td", { title: u.latest ? u.latest.window_end : "" }, u.latest ? ago(u.latest.window_end) : "—"),
      el("td", {}, u.open_alerts ? el("span", { class: "pill" }, u.open_alerts) : "0"));
    if (u.user_id === selectedUser) row.classList.add("selected");
    row.addEventListener("click", () => showTrajectory(u.user_id));
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") showTrajectory(u.user_id); });
    return row;
  });
  $("users").tBodies[0].replaceChildren(...rows);
  $("users-count").textContent = `(${users.length})`;
  $("users-empty").hidden = users.length > 0;
}

async function showTrajectory(userId) {
  selectedUser = userId;
  for (const row of $("users").tBodies[0].rows) row.classList.toggle("selected", row.dataset.user === userId);
  $("trajectory-user").textContent = `— ${userId}`;
  const id = encodeURIComponent(userId);
  const [scores, alerts] = await Promise.all([
    allPages(`/v1/users/${id}/trajectory?limit=500`),
    allPages(`/v1/alerts?status=all&user_id=${id}&limit=500`),
  ]);
  $("chart").replaceChildren(chart(scores, alerts));
}

function chart(allScores, alerts) {
  const W = 680, H = 300, L = 36, R = 150, T = 12, B = 28;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "PHQ-9 trajectory" });
  if (!allScores.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, "No scores yet"));
    return root;
  }
  const model = allScores[allScores.length - 1].model_version;  // one model's scores are comparable
  const scores = allScores.filter((s) => s.model_version === model);
  const times = scores.map((s) => Date.parse(s.scored_at));
  const t0 = Math.min(...times), t1 = Math.max(...times), span = Math.max(t1 - t0, 1);
  const x = (t) => L + (scores.length === 1 ? (W - L - R) / 2 : ((t - t0) / span) * (W - L - R));
  const y = (v) => T + (1 - v / 27) * (H - T - B);
  for (const [lo, hi, name] of BANDS) {
    root.append(svg("rect", { x: L, y: y(hi), width: W - L - R, height: y(lo) - y(hi), class: `bg ${name}` }));
    root.append(svg("text", { x: W - R + 6, y: (y(lo) + y(hi)) / 2 + 3, class: "band-label" }, `${BAND_NAMES[name]} ${lo}–${hi}`));
    root.append(svg("text", { x: L - 6, y: y(lo) + 3, "text-anchor": "end", class: "axis" }, String(lo)));
  }
  const threshold = me ? me.clinical_threshold : 10;
  root.append(svg("line", { x1: L, x2: W - R, y1: y(threshold), y2: y(threshold), class: "threshold" }));
  root.append(svg("text", { x: L + 4, y: y(threshold) - 4, class: "axis" }, `threshold ${threshold}`));
  root.append(svg("text", { x: L, y: H - 8, class: "axis" }, new Date(t0).toLocaleDateString()));
  root.append(svg("text", { x: W - R, y: H - 8, "text-anchor": "end", class: "axis" }, new Date(t1).toLocaleDateString()));
  const points = scores.map((s) => `${x(Date.parse(s.scored_at))},${y(s.score)}`).join(" ");
  root.append(svg("polyline", { points, class: "series" }));
  const byId = new Map(scores.map((s) => [s.id, s]));
  for (const s of scores) {
    const dot = svg("circle", { cx: x(Date.parse(s.scored_at)), cy: y(s.score), r: 3.5, class: "point", "data-score-id": s.id });
    dot.append(svg("title", {}, `${s.score.toFixed(1)} (${BAND_NAMES[s.severity] || s.severity}) at ${s.scored_at}`));
    root.append(dot);
  }
  for (const a of alerts) {
    const s = byId.get(a.score_id);
    if (!s) continue;
    const cx = x(Date.parse(s.scored_at)), cy = y(s.score) + (a.direction === "worsening" ? -12 : 12);
    const tip = a.direction === "worsening" ? `${cx - 5},${cy - 4} ${cx + 5},${cy - 4} ${cx},${cy + 4}` : `${cx - 5},${cy + 4} ${cx + 5},${cy + 4} ${cx},${cy - 4}`;
    const mark = svg("polygon", { points: tip, class: `event ${a.direction === "worsening" ? "worsening" : "improvement"}`, "data-alert-id": a.id });
    mark.append(svg("title", {}, `${a.kind.replaceAll("_", " ")}: ${a.previous_score.toFixed(1)} → ${a.current_score.toFixed(1)}`));
    root.append(mark);
  }
  return root;
}

async function loadAlerts() {
  const alerts = (await allPages("/v1/alerts?status=open&limit=500"))
    .sort((a, b) => Date.parse(b.detected_at) - Date.parse(a.detected_at) || b.id - a.id);
  const rows = alerts.map((a) => {
    const button = el("button", { class: "ack", type: "button", "data-alert-id": a.id }, "Acknowledge");
    button.addEventListener("click", () => acknowledge(a.id, button));
    return el("tr", { "data-alert-id": a.id, "data-user": a.user_id },
      el("td", { title: a.detected_at }, ago(a.detected_at)),
      el("td", { class: "user", title: a.user_id }, a.user_id),
      el("td", { class: a.direction === "worsening" ? "up" : "down" }, `${a.direction} · ${a.kind.replaceAll("_", " ")}`),
      el("td", {}, `${a.previous_score.toFixed(1)} → ${a.current_score.toFixed(1)} (${a.delta > 0 ? "+" : "−"}${Math.abs(a.delta).toFixed(1)})`),
      el("td", {}, band(a.previous_severity), " → ", band(a.current_severity)),
      el("td", {}, button));
  });
  $("alerts").tBodies[0].replaceChildren(...rows);
  $("alerts-count").textContent = `(${alerts.length})`;
  $("alerts-empty").hidden = alerts.length > 0;
}

async function acknowledge(alertId, button) {
  button.disabled = true;
  try {
    const result = await api(`/v1/alerts/${alertId}/acknowledge`, { method: "POST" });
    $("alerts-message").textContent = `Alert ${alertId}: ${result.message}`;
    await Promise.all([loadAlerts(), loadUsers()]);
  } catch (err) {
    handle(err);
    button.disabled = false;
  }
}

function handle(err) {
  if (err instanceof Unauthorized) return signOut("Your token was rejected (unknown, expired or revoked).");
  $("alerts-message").textContent = `Error: ${err.message}`;
}

async function open() {
  try {
    me = await api("/v1/me");
  } catch (err) {
    if (err instanceof Unauthorized) return signOut("That token was not accepted (unknown, expired or revoked).");
    return signOut(`Could not reach the API: ${err.message}`);
  }
  $("who-text").textContent = `${me.team} · ${me.label}`;
  $("who").hidden = false;
  $("sign-in-panel").hidden = true;
  $("dashboard").hidden = false;
  try {
    await Promise.all([loadUsers(), loadAlerts()]);
  } catch (err) {
    handle(err);
  }
}

function signOut(message = "") {
  sessionStorage.removeItem(TOKEN_KEY);
  me = null;
  selectedUser = null;
  $("dashboard").hidden = true;
  $("who").hidden = true;
  $("sign-in-panel").hidden = false;
  $("sign-in-error").textContent = message;
  $("chart").replaceChildren();
}

document.addEventListener("DOMContentLoaded", () => {
  $("sign-in-form").addEventListener("submit", (e) => {
    e.preventDefault();
    sessionStorage.setItem(TOKEN_KEY, $("token-input").value.trim());
    $("token-input").value = "";
    open();
  });
  $("sign-out").addEventListener("click", () => signOut());
  if (sessionStorage.getItem(TOKEN_KEY)) open();
});
