// The live page: polls /api/live and draws each model's recent scores. No inline script, and every
// value from the server goes into the page as text (textContent), never as HTML.
"use strict";

const SVG = "http://www.w3.org/2000/svg";
let token = sessionStorage.getItem("mlsm-serve-token") || "";

function el(tag, text, className) {
  const node = document.createElement(tag);
  if (text !== undefined) node.textContent = String(text);
  if (className) node.className = className;
  return node;
}

function showBundle(state) {
  const dl = document.getElementById("bundle");
  const b = state.bundle;
  const rows = [["status", state.status], ["sha256", b.sha256], ["path", b.path], ["loaded", b.loaded_at], ["models", b.models.join(", ")],
                ["swaps", state.swaps]];
  for (const key of ["branch", "commit", "repository"]) if (b[key]) rows.push([key, b[key]]);
  if (state.storage) rows.push(["storage", `${state.storage.stored} stored, ${state.storage.pending} pending` +
                                           (state.storage.error ? ` (error: ${state.storage.error})` : "")]);
  const o = state.outcomes;
  if (o) rows.push(["outcomes", `${o.accepted} accepted, ${o.refused} refused, ${o.unscored} unscored; ` +
                                (o.kept === "memory" ? `kept in memory (${o.held} of at most ${o.limit}, not stored)`
                                  : `${o.stored} stored in MongoDB, ${o.pending} pending` +
                                    (o.error ? ` (error: ${o.error})` : ""))]);
  dl.replaceChildren(...rows.flatMap(([k, v]) => [el("dt", k), el("dd", v)]));
  const refused = document.getElementById("refused");
  refused.hidden = !state.refused;
  if (state.refused) refused.textContent = `Refused a new bundle at ${state.refused.at}: ${state.refused.error}`;
}

function short(value) {
  return Number.isInteger(value) ? String(value) : Number(value).toPrecision(4);
}

function chart(points) {
  const svg = document.createElementNS(SVG, "svg");
  svg.setAttribute("viewBox", "0 0 300 90");
  svg.setAttribute("preserveAspectRatio", "none");
  svg.setAttribute("role", "img");
  if (points.length) {
    const values = points.map((p) => p[1]);
    const low = Math.min(...values), high = Math.max(...values);
    const span = high - low || 1;
    const step = points.length > 1 ? 300 / (points.length - 1) : 0;
    const line = document.createElementNS(SVG, "polyline");
    line.setAttribute("points", values.map((v, i) =>
      `${(i * step).toFixed(1)},${(85 - ((v - low) / span) * 80).toFixed(1)}`).join(" "));
    svg.appendChild(line);
    svg.setAttribute("aria-label", `last ${values.length} scores, from ${low} to ${high}`);
  } else {
    svg.setAttribute("aria-label", "no scores yet");
  }
  return svg;
}

function percent(value) {
  return `${(100 * value).toFixed(1)} %`;
}

// Conversion and AUC over the rolling window of labelled scores, one line per label.
function labelled(labels) {
  const box = el("div", undefined, "labelled");
  const names = Object.keys(labels);
  if (!names.length) {
    box.append(el("p", "no outcomes yet", "facts"));
    return box;
  }
  for (const name of names) {
    const f = labels[name];
    const line = el("p", undefined, "facts outcome");
    line.dataset.label = name;
    line.append(`${name}: conversion `, el("span", percent(f.conversion), "conversion"), ", AUC ",
                el("span", f.auc === null ? "n/a (one class only)" : f.auc.toFixed(3), "auc"),
                ` over the last ${f.records} labelled ${f.records === 1 ? "score" : "scores"} (${f.converted} converted)`);
    box.append(line);
  }
  return box;
}

function showModels(state) {
  const box = document.getElementById("models");
  const keys = new Set([...state.bundle.models, ...Object.keys(state.recent)]);
  const cards = [];
  for (const key of keys) {
    const info = state.recent[key] || {records: 0, scores: [], errors: {}};
    const card = el("article", undefined, "model");
    card.dataset.model = key;
    const title = el("h3", key);
    if (state.bundle.draft.includes(key)) title.append(" ", el("span", "draft", "draft"));
    card.append(title, chart(info.scores));
    const values = info.scores.map((p) => p[1]);
    const facts = `${info.records} records scored` + (values.length
      ? `; last ${short(values[values.length - 1])}, range ${short(Math.min(...values))} to ${short(Math.max(...values))}`
      : "");
    card.append(el("p", facts, "facts"));
    const errors = Object.entries(info.errors);
    const total = errors.reduce((n, [, count]) => n + count, 0);
    const text = `${total} ${total === 1 ? "error" : "errors"}` +
      (total ? ": " + errors.map(([kind, n]) => `${n} ${kind}`).join(", ") : "");
    card.append(el("p", text, total ? "facts errors" : "facts"));
    card.append(labelled(state.labelled[key] || {}));
    cards.push(card);
  }
  box.replaceChildren(...cards);
}

async function refresh() {
  const status = document.getElementById("status");
  try {
    const response = await fetch("/api/live", {headers: token ? {Authorization: `Bearer ${token}`} : {}});
    if (response.status === 401) {
      document.getElementById("token-form").hidden = false;
      status.textContent = "needs the bearer token";
      return;
    }
    const state = await response.json();
    document.getElementById("token-form").hidden = true;
    showBundle(state);
    showModels(state);
    status.className = "";
    status.textContent = `updated ${new Date().toLocaleTimeString()}`;
  } catch (error) {
    status.className = "down";
    status.textContent = `server not answering (${error.message})`;
  }
}

document.addEventListener("DOMContentLoaded", () => {
  document.getElementById("token").addEventListener("submit", (event) => {
    event.preventDefault();
    token = document.getElementById("token-input").value;
    sessionStorage.setItem("mlsm-serve-token", token);
    refresh();
  });
  refresh();
  setInterval(refresh, 2000);
});
