// Calibration page: GET /v1/calibration (thresholds in use, metrics) and the ROC curve and score
// histograms as PNGs from /v1/calibration/plots/{model}/{kind}.png.
import { api, config, el, fmt, showError } from "./common.js";

const $ = (id) => document.getElementById(id);
const select = $("cal-model");
let rows = [];
const objectUrls = [];

// The metrics worth a glance, in this order; anything else stays in GET /v1/calibration.
const METRICS = [
  ["roc_auc", "ROC AUC"],
  ["average_precision", "AP"],
  ["f1_at_threshold", "F1"],
  ["precision_at_threshold", "precision"],
  ["recall_at_threshold", "recall"],
];

function metricsText(metrics) {
  if (!metrics) return "–";
  const parts = METRICS.filter(([key]) => typeof metrics[key] === "number")
    .map(([key, label]) => `${label} ${fmt(metrics[key], 3)}`);
  if (!parts.length) {
    for (const [key, value] of Object.entries(metrics)) {
      if (typeof value === "number") parts.push(`${key.replaceAll("_", " ")} ${fmt(value, 3)}`);
      if (parts.length >= 5) break;
    }
  }
  return parts.join(" · ") || "–";
}

function renderTable() {
  const body = $("thresholds").querySelector("tbody");
  body.replaceChildren();
  const current = select.value;
  for (const [i, r] of rows.entries()) {
    body.append(el("tr", { class: String(i) === current ? "current" : "", dataset: { model: r.model, size: r.input_size } },
      el("td", { class: "t-model", "data-label": "Model" }, r.model),
      el("td", { "data-label": "Size" }, `${r.input_size}px`),
      el("td", { class: "t-match", "data-label": "Match" }, fmt(r.thresholds.match, 4)),
      el("td", { "data-label": "Near-dup" }, fmt(r.thresholds.near_duplicate, 4)),
      el("td", { "data-label": "Similar" }, fmt(r.thresholds.similar, 4)),
      el("td", { class: "source", "data-label": "Source" }, r.source),
      el("td", { class: "small t-metrics", "data-label": "Metrics", "data-empty": !r.metrics }, metricsText(r.metrics))));
  }
}

async function showPlot(kind, row) {
  const body = $(`plot-${kind}`).querySelector(".plot-body");
  body.replaceChildren(el("div", { class: "empty" }, "loading…"));
  const url = `/v1/calibration/plots/${encodeURIComponent(row.model)}/${kind}.png?input_size=${row.input_size}`;
  try {
    const blob = await api(url, { as: "blob" });
    const objectUrl = URL.createObjectURL(blob);
    objectUrls.push(objectUrl);
    body.replaceChildren(el("img", { src: objectUrl, alt: `${kind} plot for ${row.model} @ ${row.input_size}px` }));
  } catch (err) {
    // Readable on the page: the API's own reason (e.g. no labelled pairs for this model yet).
    body.replaceChildren(el("div", { class: "empty plot-missing" }, err.message));
  }
}

function showSelected() {
  while (objectUrls.length) URL.revokeObjectURL(objectUrls.pop());
  renderTable();
  const row = rows[Number(select.value)];
  if (!row) return;
  return Promise.all([showPlot("roc", row), showPlot("hist", row)]);
}

select.addEventListener("change", showSelected);

try {
  const cal = await api("/v1/calibration");
  rows = cal.models || [];
  rows.forEach((r, i) => select.append(new Option(`${r.model} @ ${r.input_size}px`, String(i))));
  const preferred = rows.findIndex((r) => r.model === config.default_model);
  if (preferred >= 0) select.value = String(preferred);
  if (!rows.length) showError("No calibration yet: run `lookalike calibrate` on labelled pairs.", { note: true });
  await showSelected();
} catch (err) {
  showError(err);
}
document.body.dataset.ready = "true";
