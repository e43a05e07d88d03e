// Shared helpers for every page: the API client, error banner, drop zones, gauge, pickers.
// Plain ES module, no build step. Everything comes from the JSON API; catalog images only
// through their id URLs.

export const config = JSON.parse(document.getElementById("lookalike-config").textContent);

const KEY_STORE = "lookalike.apiKey";

export const VERDICTS = {
  exact: { label: "Exact copy", answer: "Same image: identical bytes or pixels." },
  near_duplicate: { label: "Near-duplicate", answer: "The same image, edited (resized, recompressed, cropped or retouched)." },
  similar: { label: "Similar", answer: "Looks alike: probably the same thing, another shot." },
  different: { label: "Different", answer: "Not the same thing." },
};

export class ApiError extends Error {
  constructor(status, detail, code) {
    super(detail);
    this.status = status;
    this.code = code;
  }
}

function apiKey() {
  try { return localStorage.getItem(KEY_STORE) || ""; } catch { return ""; }
}

/** fetch() against the API; JSON in and out; a non-2xx answer throws ApiError(detail). */
export async function api(path, { method = "GET", form = null, json = undefined, as = "json" } = {}) {
  const headers = {};
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  let body;
  if (form) body = form;
  else if (json !== undefined) { body = JSON.stringify(json); headers["Content-Type"] = "application/json"; }
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch (err) {
    throw new ApiError(0, `The server did not answer (${err.message}). Is lookalike serve still running?`, "network");
  }
  if (!response.ok) {
    let detail = `${response.status} ${response.statusText}`;
    let code = "http_error";
    try {
      const payload = await response.json();
      if (payload && payload.detail) {
        detail = typeof payload.detail === "string" ? payload.detail : JSON.stringify(payload.detail);
        code = payload.code || code;
      }
    } catch { /* not JSON: keep the status line */ }
    if (response.status === 401) detail += " (set it under “API key” at the bottom of the page)";
    throw new ApiError(response.status, detail, code);
  }
  if (as === "blob") return response.blob();
  return response.json();
}

const errorBox = () => document.getElementById("error");

export function showError(err, { note = false } = {}) {
  const box = errorBox();
  box.textContent = err instanceof Error ? err.message : String(err);
  box.classList.toggle("note", note);
  box.hidden = false;
  box.scrollIntoView({ block: "nearest" });
}

export function clearError() {
  const box = errorBox();
  box.hidden = true;
  box.textContent = "";
}

/** Run an async action with the button disabled and errors shown on the page. */
export async function guarded(button, action) {
  clearError();
  if (button) { button.disabled = true; button.classList.add("busy"); }
  try {
    return await action();
  } catch (err) {
    showError(err);
    return undefined;
  } finally {
    if (button) { button.disabled = false; button.classList.remove("busy"); }
  }
}

/** A <label class="drop"> around a hidden file input: click to pick, or drop a file on it. */
export function setupDrop(label, onFile) {
  const input = document.getElementById(label.dataset.input);
  const preview = label.querySelector("img");
  const name = label.querySelector(".drop-name");
  let url = null;
  const take = (file) => {
    if (!file) return;
    if (file.type && !file.type.startsWith("image/")) {
      showError(`${file.name} is not an image (${file.type}).`);
      return;
    }
    clearError();
    if (url) URL.revokeObjectURL(url);
    url = URL.createObjectURL(file);
    label.classList.remove("unreadable");
    preview.src = url;
    preview.hidden = false;
    label.classList.add("has-image");
    name.textContent = file.name;
    onFile(file, url);
  };
  // The browser cannot show it either: say so on the zone (the server's reason goes to the banner).
  preview.addEventListener("error", () => {
    if (!preview.getAttribute("src")) return;
    label.classList.add("unreadable");
    name.textContent = `${name.textContent} — the browser cannot display this file`;
  });
  input.addEventListener("change", () => take(input.files[0]));
  label.addEventListener("dragover", (e) => { e.preventDefault(); label.classList.add("dragging"); });
  label.addEventListener("dragleave", () => label.classList.remove("dragging"));
  label.addEventListener("drop", (e) => {
    e.preventDefault();
    label.classList.remove("dragging");
    const file = e.dataTransfer && e.dataTransfer.files[0];
    take(file);
  });
  label.tabIndex = 0;
  label.addEventListener("keydown", (e) => {
    if (e.key === "Enter" || e.key === " ") { e.preventDefault(); input.click(); }
  });
}

export const fmt = (x, digits = 4) => (x === null || x === undefined ? "–" : Number(x).toFixed(digits));
export const ms = (x) => (x < 10 ? x.toFixed(1) : Math.round(x).toString()) + " ms";

export function verdictBadge(el, verdict) {
  el.dataset.verdict = verdict;
  el.textContent = (VERDICTS[verdict] || { label: verdict }).label;
}

const SVG = "http://www.w3.org/2000/svg";

function svg(tag, attrs) {
  const el = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  return el;
}

function polar(value, radius) {
  const angle = Math.PI * (1 - Math.min(1, Math.max(0, value)));
  return [100 + radius * Math.cos(angle), 100 - radius * Math.sin(angle)];
}

function arc(from, to, radius) {
  const [x1, y1] = polar(from, radius);
  const [x2, y2] = polar(to, radius);
  return `M ${x1.toFixed(2)} ${y1.toFixed(2)} A ${radius} ${radius} 0 0 1 ${x2.toFixed(2)} ${y2.toFixed(2)}`;
}

/** A half-circle gauge of a score in [0, 1], its bands coloured by the verdict tiers. */
export function drawGauge(container, score, thresholds) {
  const { similar, near_duplicate: near, match } = thresholds;
  const root = svg("svg", { viewBox: "-16 0 232 118", class: "gauge", role: "img",
                            "aria-label": `score ${fmt(score, 3)} on a 0 to 1 scale` });
  const bands = [[0, similar, "different"], [similar, near, "similar"], [near, 1, "near_duplicate"]];
  for (const [from, to, tier] of bands) {
    if (to > from) root.append(svg("path", { d: arc(from, to, 80), class: `band band-${tier}` }));
  }
  for (const [end, x] of [["0", 20], ["1", 180]]) {
    const tick = svg("text", { x, y: 114, class: "match-label", "text-anchor": "middle" });
    tick.textContent = end;
    root.append(tick);
  }
  const [mx1, my1] = polar(match, 66);
  const [mx2, my2] = polar(match, 94);
  root.append(svg("line", { x1: mx1, y1: my1, x2: mx2, y2: my2, class: "match-tick" }));
  const [lx, ly] = polar(match, 104);
  const label = svg("text", { x: lx, y: Math.max(8, ly), class: "match-label", "text-anchor": "middle" });
  label.textContent = "match";
  root.append(label);
  const needle = svg("g", { class: "needle" });
  // A dot riding on the arc (not a needle through the middle), so the number stays clear.
  needle.append(svg("circle", { cx: 100, cy: 20, r: 8.5 }));
  root.append(needle);
  const value = svg("text", { x: 100, y: 96, class: "gauge-value", "text-anchor": "middle" });
  value.textContent = fmt(score, 3);
  root.append(value);
  container.replaceChildren(root);
  // Rotate from 0 so the transition shows the needle moving to its place.
  needle.style.transform = "rotate(-90deg)";
  requestAnimationFrame(() => requestAnimationFrame(() => {
    needle.style.transform = `rotate(${(Math.min(1, Math.max(0, score)) * 180 - 90).toFixed(2)}deg)`;
  }));
}

/** Fill the model picker from GET /v1/models; models without weights are listed but disabled. */
export async function fillModels(select) {
  const models = await api("/v1/models");
  select.replaceChildren();
  for (const m of models) {
    const option = new Option(m.weights_available ? m.name : `${m.name} (no weights)`, m.name);
    option.disabled = !m.weights_available;
    option.dataset.size = m.default_input_size;
    option.title = m.description;
    if (m.name === config.default_model) option.selected = true;
    select.append(option);
  }
  return models;
}

/** Input sizes: the model's own first, then the sizes the server allows. */
export function fillSizes(select, modelSelect) {
  const option = modelSelect.selectedOptions[0];
  const own = option ? Number(option.dataset.size) : null;
  const previous = select.value;
  select.replaceChildren(new Option(own ? `model's own (${own}px)` : "model's own", ""));
  for (const size of config.allowed_input_sizes) {
    if (size !== own) select.append(new Option(`${size}px`, String(size)));
  }
  if ([...select.options].some((o) => o.value === previous)) select.value = previous;
}

/** Fill a catalog picker from GET /v1/catalogs; returns the list. */
export async function fillCatalogs(select) {
  const catalogs = await api("/v1/catalogs");
  select.replaceChildren();
  for (const c of catalogs) {
    select.append(new Option(`${c.name} (${c.count} images)`, c.name));
  }
  if (!catalogs.length) {
    const empty = new Option("no catalogs yet", "");
    empty.disabled = true;
    select.append(empty);
  }
  const wanted = new URLSearchParams(location.search).get("catalog");
  if (wanted && catalogs.some((c) => c.name === wanted)) select.value = wanted;
  return catalogs;
}

export const NO_CATALOG_HINT =
  "No catalogs yet. Add images with `lookalike index <folder> --catalog NAME` or POST /v1/catalogs/{name}/images.";

export const thumbUrl = (catalog, id, size = 256) =>
  `/v1/catalogs/${encodeURIComponent(catalog)}/images/${encodeURIComponent(id)}/thumbnail?size=${size}`;

export const fileUrl = (catalog, id) =>
  `/v1/catalogs/${encodeURIComponent(catalog)}/images/${encodeURIComponent(id)}/file`;

export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k === "dataset") Object.assign(node.dataset, v);
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== null && v !== undefined && v !== false) node.setAttribute(k, v === true ? "" : v);
  }
  node.append(...children.filter((c) => c !== null && c !== undefined));
  return node;
}

// The footer's API key field (kept in this browser only).
const keyForm = document.getElementById("apikey-form");
if (keyForm) {
  const field = document.getElementById("apikey");
  field.value = apiKey();
  if (config.api_key_required && !field.value) keyForm.closest("details").open = true;
  keyForm.addEventListener("submit", (e) => {
    e.preventDefault();
    try { localStorage.setItem(KEY_STORE, field.value.trim()); } catch { /* private mode */ }
    keyForm.closest("details").open = false;
  });
}
