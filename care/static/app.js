// The care-team dashboard: signs in with a token kept in sessionStorage, then reads /v1 with a
// bearer header. Every value from the API reaches the page as text nodes or attributes, never as
// HTML, so a user id or an evidence excerpt like "<img onerror=…>" shows as the characters it is.
"use strict";

const TOKEN_KEY = "phq.token";
const SVG_NS = "http://www.w3.org/2000/svg";
const BANDS = [[0, 5, "minimal"], [5, 10, "mild"], [10, 15, "moderate"], [15, 20, "moderately_severe"], [20, 27, "severe"]];
const BAND_NAMES = { minimal: "minimal", mild: "mild", moderate: "moderate", moderately_severe: "moderately severe", severe: "severe" };
const $ = (id) => document.getElementById(id);
const ANSWERS = ["not at all", "several days", "more than half the days", "nearly every day"];
let me = null;
let selectedUser = null;
let selectedScore = null;
let scoreRequest = 0;  // only the latest click's evidence is shown

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
    row.addEventListener("click", () => showTrajectory(u.user_id).catch(handle));
    row.addEventListener("keydown", (e) => { if (e.key === "Enter") showTrajectory(u.user_id).catch(handle); });
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
  const shown = latestModel(scores);
  if (shown.length) await showScore(shown[shown.length - 1].id);
  else clearScore("No scores yet");
}

function latestModel(allScores) {
  if (!allScores.length) return [];
  const model = allScores[allScores.length - 1].model_version;  // one model's scores are comparable
  return allScores.filter((s) => s.model_version === model);
}

function fmtDate(iso) {
  return new Date(iso).toLocaleDateString(undefined, { year: "numeric", month: "short", day: "numeric" });
}

function clearScore(message) {
  selectedScore = null;
  $("score-title").textContent = `— ${message}`;
  $("items").replaceChildren();
  $("evidence").replaceChildren();
}

// The selected score's nine items as bars and, per item, the user's own words behind it (audited server-side).
async function showScore(scoreId) {
  const request = ++scoreRequest;
  selectedScore = scoreId;
  for (const dot of document.querySelectorAll("#chart circle.point")) {
    dot.classList.toggle("selected", dot.dataset.scoreId === String(scoreId));
  }
  const body = await api(`/v1/scores/${scoreId}/evidence`);
  if (request !== scoreRequest) return;
  const interval = body.score_low === null ? "" : ` (90% interval ${body.score_low.toFixed(1)}–${body.score_high.toFixed(1)})`;
  $("score-title").textContent = `— ${body.user_id} · ${body.score.toFixed(1)}${interval}, ${BAND_NAMES[body.severity] || body.severity}, ${fmtDate(body.scored_at)}`;
  $("items").replaceChildren(itemBars(body.items));
  $("evidence").replaceChildren(...evidenceList(body.items));
}

function itemBars(items) {
  if (items.every((i) => i.score === null)) {
    return el("p", { class: "empty" }, "This score's model gives no item scores (a total only).");
  }
  const W = 500, LABEL = 240, ROW = 26, T = 22, BAR = W - LABEL - 44;
  const H = T + items.length * ROW + 4;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "PHQ-9 item scores" });
  for (let v = 0; v <= 3; v++) {
    const x = LABEL + (v / 3) * BAR;
    root.append(svg("line", { x1: x, x2: x, y1: T - 4, y2: H - 4, class: "grid" }));
    root.append(svg("text", { x, y: T - 8, "text-anchor": "middle", class: "axis" }, String(v)));
  }
  items.forEach((item, row) => {
    const y = T + row * ROW;
    const value = item.score ?? 0;
    const label = svg("text", { x: LABEL - 8, y: y + ROW / 2 + 4, "text-anchor": "end", class: "item-label" }, `${item.item} · ${item.label}`);
    root.append(label);
    const bar = svg("rect", { x: LABEL, y: y + 5, width: Math.max(1, (value / 3) * BAR), height: ROW - 10,
      class: `bar level-${Math.min(3, Math.round(value))}`, "data-item": item.item });
    bar.append(svg("title", {}, `${item.label}: ${value.toFixed(2)} of 3 (about "${ANSWERS[Math.min(3, Math.round(value))]}")`));
    root.append(bar);
    root.append(svg("text", { x: LABEL + BAR + 6, y: y + ROW / 2 + 4, class: "item-value" }, value.toFixed(1)));
  });
  return root;
}

function evidenceList(items) {
  const groups = items.filter((i) => i.evidence.length).map((item) => el("section", { class: "quote-group", "data-item": item.item },
    el("h3", {}, `${item.item} · ${item.label}`, el("span", { class: "item-score" }, item.score === null ? "" : item.score.toFixed(1))),
    ...item.evidence.map((q) => el("blockquote", { "data-item": item.item, "data-rank": q.rank, "data-event-id": q.event_id },
      el("p", {}, q.excerpt),
      el("footer", {}, `${fmtDate(q.ts)} · session ${q.session_id}`)))));
  return groups.length ? groups : [el("p", { class: "empty" }, "No quoted evidence for this score.")];
}

function chart(allScores, alerts) {
  const W = 680, H = 300, L = 36, R = 150, T = 12, B = 28;
  const root = svg("svg", { viewBox: `0 0 ${W} ${H}`, role: "img", "aria-label": "PHQ-9 trajectory" });
  if (!allScores.length) {
    root.append(svg("text", { x: W / 2, y: H / 2, "text-anchor": "middle", class: "axis" }, "No scores yet"));
    return root;
  }
  const scores = latestModel(allScores);
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
  for (const run of intervalRuns(scores)) root.append(intervalBand(run, x, y));
  const points = scores.map((s) => `${x(Date.parse(s.scored_at))},${y(s.score)}`).join(" ");
  root.append(svg("polyline", { points, class: "series" }));
  const byId = new Map(scores.map((s) => [s.id, s]));
  for (const s of scores) {
    const dot = svg("circle", { cx: x(Date.parse(s.scored_at)), cy: y(s.score), r: 4.5, class: "point", "data-score-id": s.id, tabindex: "0" });
    if (s.id === selectedScore) dot.classList.add("selected");
    const interval = s.score_low === null ? "" : ` (90% interval ${s.score_low.toFixed(1)}–${s.score_high.toFixed(1)})`;
    dot.append(svg("title", {}, `${s.score.toFixed(1)}${interval}, ${BAND_NAMES[s.severity] || s.severity}, at ${s.scored_at}: click for items and evidence`));
    dot.addEventListener("click", () => showScore(s.id).catch(handle));
    dot.addEventListener("keydown", (e) => { if (e.key === "Enter") showScore(s.id).catch(handle); });
    root.append(dot);
  }
  for (const a of alerts) {
    const s = byId.get(a.score_id);
    if (!s) continue;
    const cx = x(Date.parse(s.scored_at)), cy = y(s.score) + (a.direction === "worsening" ? -12 : 12);
    const tip = a.direction === "worsening" ? `${cx - 5},${cy - 4} ${cx + 5},${cy - 4} ${cx},${cy + 4}` : `${cx - 5},${cy + 4} ${cx + 5},${cy + 4} ${cx},${cy - 4}`;
    const mark = svg("polygon", { points: tip, class: `event ${a.direction === "worsening" ? "worsening" : "improvement"}`, "data-alert-id": a.id });
    mark.append(svg("title", {}, `${a.kind.replaceAll("_", " ")}: ${a.previous_score.toFixed(1)} → ${a.current_score.toFixed(1)}; ${beyondNoise(a)}`));
    root.append(mark);
  }
  return root;
}

// Consecutive scores that carry an interval: each run is drawn as one band.
function intervalRuns(scores) {
  const runs = [];
  let run = [];
  for (const s of scores) {
    if (s.score_low === null || s.score_high === null) {
      if (run.length) runs.push(run);
      run = [];
    } else run.push(s);
  }
  if (run.length) runs.push(run);
  return runs;
}

function intervalBand(run, x, y) {
  if (run.length === 1) {
    const s = run[0], cx = x(Date.parse(s.scored_at));
    return svg("rect", { x: cx - 4, y: y(s.score_high), width: 8, height: y(s.score_low) - y(s.score_high), class: "interval" });
  }
  const upper = run.map((s) => `${x(Date.parse(s.scored_at))},${y(s.score_high)}`);
  const lower = run.slice().reverse().map((s) => `${x(Date.parse(s.scored_at))},${y(s.score_low)}`);
  return svg("polygon", { points: [...upper, ...lower].join(" "), class: "interval" });
}

// How far beyond the model's noise a change is: |delta| minus the calibrated bound it exceeded.
function beyondNoise(a) {
  if (a.noise_bound === null || a.noise_bound === undefined) return "no calibration (v1 rules)";
  return `${(Math.abs(a.delta) - a.noise_bound).toFixed(1)} beyond noise (±${a.noise_bound.toFixed(1)})`;
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
      el("td", { class: a.noise_bound === null ? "noise muted" : "noise" }, beyondNoise(a)),
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
  selectedScore = null;
  $("dashboard").hidden = true;
  $("who").hidden = true;
  $("sign-in-panel").hidden = false;
  $("sign-in-error").textContent = message;
  $("chart").replaceChildren();
  $("items").replaceChildren();
  $("evidence").replaceChildren();
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
