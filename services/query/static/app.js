// The search page: POST /search from a form, results rendered with DOM nodes only (never innerHTML),
// so document text is always shown as text. No dependencies, no build step.
"use strict";

const SEARCH_URL = new URL("search", document.baseURI);
const WELCOME_URL = new URL(".", document.baseURI);
const FEEDBACK_URL = new URL("feedback", document.baseURI);
const TIMEOUT_MS = 30000;
const LONG_TEXT = 500; // characters; longer texts start collapsed
const STOPWORDS = new Set(
  ("the and for with that this are was were what how does did from into not but you your can why who " +
    "which when where has have had its than then there their they them our out all any about").split(" "),
);

const $ = (id) => document.getElementById(id);
const form = $("search-form");
const queryInput = $("query");
const kInput = $("k");
const modeSelect = $("mode");
const errorBox = $("error");
const statusLine = $("status");
const resultList = $("results");
const modelVersion = $("model-version");

let inFlight = null;

// A result the user opens (clicks or presses Enter on) is reported once per search, with the
// search's signed id, as a click: POST /feedback, kept alive so it survives leaving the page.
function sendClick(searchId, id, reported) {
  if (!searchId || reported.has(id)) return;
  reported.add(id);
  fetch(FEEDBACK_URL, {
    method: "POST",
    headers: { "Content-Type": "application/json" },
    body: JSON.stringify({ search_id: searchId, clicked: [id] }),
    keepalive: true,
  }).catch(() => {}); // feedback is best effort: a failure never disturbs the page
}

function queryTerms(query) {
  const words = query.toLowerCase().match(/[\p{L}\p{N}]+/gu) || [];
  return [...new Set(words.filter((w) => w.length > 2 && !STOPWORDS.has(w)))];
}

// Matches a query term at the start of a word ("cell" also marks "cells"); null when nothing to mark.
function termPattern(terms) {
  if (terms.length === 0) return null;
  const alternatives = terms
    .sort((a, b) => b.length - a.length)
    .map((t) => t.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"));
  return new RegExp(`(?<![\\p{L}\\p{N}])(?:${alternatives.join("|")})`, "giu");
}

function appendMarked(parent, text, pattern) {
  if (!pattern) {
    parent.append(text);
    return;
  }
  let last = 0;
  for (const match of text.matchAll(pattern)) {
    parent.append(text.slice(last, match.index));
    const mark = document.createElement("mark");
    mark.textContent = match[0];
    parent.append(mark);
    last = match.index + match[0].length;
  }
  parent.append(text.slice(last));
}

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function renderHit(hit, rank, pattern, searchId, reported) {
  const item = element("li", "hit");
  const article = element("article");
  article.tabIndex = 0; // Tab walks from the form through the results
  const titleId = `hit-${rank}-title`;
  article.setAttribute("aria-labelledby", titleId);

  const heading = element("h2");
  heading.id = titleId;
  heading.append(element("span", "rank", `${rank}.`), " ");
  appendMarked(heading, hit.title || hit.id, pattern);
  article.append(heading);

  const meta = element("p", "meta");
  const score = element("span", "score", `score ${hit.score.toFixed(3)}`);
  score.title = `cosine distance ${hit.distance}`;
  meta.append(score, " · id ", element("code", "doc-id", hit.id));
  article.append(meta);

  const shown = hit.highlight ?? hit.text;
  if (hit.highlight) article.append(element("p", "label", "Best passage"));
  const passage = element("p", "passage");
  appendMarked(passage, shown, pattern);
  article.append(passage);
  if (shown.length > LONG_TEXT) {
    passage.classList.add("collapsed");
    const toggle = element("button", "toggle", "Show more");
    toggle.type = "button";
    toggle.setAttribute("aria-expanded", "false");
    toggle.addEventListener("click", () => {
      const collapsed = passage.classList.toggle("collapsed");
      toggle.textContent = collapsed ? "Show more" : "Show less";
      toggle.setAttribute("aria-expanded", String(!collapsed));
    });
    article.append(toggle);
  }
  if (hit.highlight) {
    const whole = element("details", "whole");
    whole.append(element("summary", null, `Whole document (${hit.text.length.toLocaleString()} characters)`));
    const text = element("p", "passage");
    appendMarked(text, hit.text, pattern);
    whole.append(text);
    article.append(whole);
  }
  article.addEventListener("click", () => sendClick(searchId, hit.id, reported));
  article.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && event.target === article) sendClick(searchId, hit.id, reported);
  });
  item.append(article);
  return item;
}

function showError(title, lines, requestId) {
  errorBox.replaceChildren(element("strong", null, title));
  if (lines.length) {
    const list = element("ul");
    for (const line of lines) list.append(element("li", null, line));
    errorBox.append(list);
  }
  if (requestId) errorBox.append(element("p", "request-id", `Request id: ${requestId}`));
  errorBox.hidden = false;
}

function clearError() {
  errorBox.hidden = true;
  errorBox.replaceChildren();
}

async function readBody(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    return { detail: text };
  }
}

// 422: FastAPI's list of {loc, msg}; "body.k" reads better as "k".
function validationLines(detail) {
  if (!Array.isArray(detail)) return [String(detail)];
  return detail.map((e) => {
    const where = (e.loc || []).filter((part) => part !== "body").join(".");
    return where ? `${where}: ${e.msg}` : e.msg;
  });
}

async function search() {
  const query = queryInput.value;
  const k = kInput.value.trim();
  const body = { query, k: /^\d+$/.test(k) ? Number(k) : k, mode: modeSelect.value };
  const params = new URLSearchParams({ q: query, k, mode: modeSelect.value });
  history.replaceState(null, "", `?${params}`);

  if (inFlight) inFlight.abort();
  const controller = new AbortController();
  inFlight = controller;
  const timer = setTimeout(() => controller.abort(), TIMEOUT_MS);
  form.setAttribute("aria-busy", "true");
  statusLine.textContent = "Searching…";
  clearError();

  try {
    const response = await fetch(SEARCH_URL, {
      method: "POST",
      headers: { "Content-Type": "application/json", Accept: "application/json" },
      body: JSON.stringify(body),
      signal: controller.signal,
    });
    const data = await readBody(response);
    const requestId = response.headers.get("X-Request-ID");
    if (response.ok) {
      render(data);
    } else if (response.status === 422) {
      resultList.replaceChildren();
      statusLine.textContent = "";
      showError("Please check the search form:", validationLines(data.detail), requestId);
    } else if (response.status === 503) {
      resultList.replaceChildren();
      statusLine.textContent = "";
      const retry = response.headers.get("Retry-After");
      const lines = [String(data.detail ?? "unavailable")];
      if (retry) lines.push(`Try again in ${retry} s.`);
      showError("Search is unavailable right now:", lines, requestId);
    } else {
      resultList.replaceChildren();
      statusLine.textContent = "";
      showError(`Search failed (HTTP ${response.status}):`, [String(data.detail ?? "")], requestId);
    }
  } catch (err) {
    if (controller !== inFlight) return; // superseded by a newer search
    statusLine.textContent = "";
    const reason = err.name === "AbortError" ? `no answer within ${TIMEOUT_MS / 1000} s` : err.message;
    showError("Could not reach the query service:", [reason]);
  } finally {
    clearTimeout(timer);
    if (controller === inFlight) {
      inFlight = null;
      form.removeAttribute("aria-busy");
    }
  }
}

function render(data) {
  const pattern = termPattern(queryTerms(data.query));
  const reported = new Set();
  resultList.replaceChildren(
    ...data.results.map((hit, i) => renderHit(hit, i + 1, pattern, data.search_id, reported)),
  );
  modelVersion.textContent = data.model_version;
  const count = data.results.length;
  const noun = count === 1 ? "result" : "results";
  statusLine.textContent =
    count === 0
      ? `No results (${data.took_ms} ms, model ${data.model_version}).`
      : `${count} ${noun} in ${data.took_ms} ms · ${modeSelect.value} ranking · model ${data.model_version}`;
}

async function loadModelVersion() {
  try {
    const response = await fetch(WELCOME_URL, { headers: { Accept: "application/json" } });
    if (response.ok) modelVersion.textContent = (await response.json()).model_version;
  } catch {
    modelVersion.textContent = "unknown";
  }
}

form.addEventListener("submit", (event) => {
  event.preventDefault();
  search();
});

// "/" jumps back to the search box from anywhere but a text field.
document.addEventListener("keydown", (event) => {
  const typing = event.target.closest("input, select, textarea");
  if (event.key === "/" && !typing && !event.ctrlKey && !event.metaKey && !event.altKey) {
    event.preventDefault();
    queryInput.focus();
    queryInput.select();
  }
});

const initial = new URLSearchParams(location.search);
if (initial.has("k")) kInput.value = initial.get("k");
if (["dense", "hybrid"].includes(initial.get("mode"))) modeSelect.value = initial.get("mode");
queryInput.value = initial.get("q") ?? "";
queryInput.focus();
loadModelVersion();
if (queryInput.value.trim()) search();
