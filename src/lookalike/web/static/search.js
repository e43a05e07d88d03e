// Search page: a query image -> POST /v1/catalogs/{name}/search -> a grid of thumbnails by score.
// Clicking a result opens the query and that catalog image side by side with their score.
import { api, drawGauge, el, fileUrl, fillCatalogs, fmt, guarded, NO_CATALOG_HINT, setupDrop, showError, thumbUrl, verdictBadge } from "./common.js";

const $ = (id) => document.getElementById(id);
const button = $("search");
const catalogSelect = $("catalog");
let query = null; // { file, url }
let catalogs = [];
let lastThresholds = null;

function ready() {
  button.disabled = !(query && catalogSelect.value);
  return !button.disabled;
}

function describeCatalog() {
  const c = catalogs.find((x) => x.name === catalogSelect.value);
  $("catalog-info").textContent = c ? `${c.count} images · ${c.model} @ ${c.input_size}px` : "";
}

async function thresholdsFor(model, size) {
  // The gauge's bands: the calibrated tiers for the catalog's model when the server has them.
  try {
    const cal = await api("/v1/calibration");
    const row = (cal.models || []).find((m) => m.model === model && (!size || m.input_size === size));
    if (row) return row.thresholds;
  } catch { /* calibration endpoint absent: fall back below */ }
  return null;
}

let latest = 0; // answers that arrive after a newer request was sent are dropped

async function run() {
  if (!ready()) return;
  const mine = ++latest;
  const catalog = catalogSelect.value;
  await guarded(button, async () => {
    const form = new FormData();
    form.append("image", query.file, query.file.name);
    form.append("k", $("k").value);
    const r = await api(`/v1/catalogs/${encodeURIComponent(catalog)}/search?k=${encodeURIComponent($("k").value)}`,
                        { method: "POST", form });
    const thresholds = await thresholdsFor(r.model, r.input_size);
    if (mine !== latest) return;
    lastThresholds = thresholds;
    show(catalog, r);
  });
}

function show(catalog, r) {
  const list = $("results");
  list.replaceChildren();
  $("results-section").hidden = false;
  $("results-title").textContent = r.results.length
    ? `Top ${r.results.length} in “${catalog}” · ${r.model} @ ${r.input_size}px`
    : `Nothing in “${catalog}” yet`;
  $("results-order").textContent = r.order === "rank_score"
    ? `Order: rank = cosine + capped local-feature inliers over the top ${r.reranked} by cosine, ` +
      "so a hit can follow one with a higher score; each hit shows its rank and inliers."
    : "Order: cosine similarity.";
  r.results.forEach((hit, index) => {
    const badge = el("span", { class: "verdict small" });
    verdictBadge(badge, hit.verdict);
    const item = el("li", { class: "hit", tabindex: "0", dataset: { id: hit.id, verdict: hit.verdict },
                            title: `${hit.filename} · score ${fmt(hit.score)}` },
      el("img", { class: "thumb", src: thumbUrl(catalog, hit.id), alt: hit.filename, loading: "lazy",
                  onerror: (e) => e.currentTarget.classList.add("broken") }),
      el("div", { class: "hit-meta" },
        el("div", { class: "hit-top" },
          el("span", { class: "hit-score" }, fmt(hit.score, 3)),
          badge),
        el("div", { class: "scorebar" }, el("span", { style: `width:${(hit.score * 100).toFixed(1)}%` })),
        el("div", { class: "hit-name" }, el("span", { class: "hit-rank" }, `#${index + 1} `), hit.filename),
        el("div", { class: "muted small" }, hit.verified
          ? `rank ${fmt(hit.rank_score, 3)} · ${hit.inliers} inliers`
          : `rank ${fmt(hit.rank_score, 3)} · not verified`)));
    const open = () => openSideBySide(catalog, hit, index + 1);
    item.addEventListener("click", open);
    item.addEventListener("keydown", (e) => { if (e.key === "Enter") open(); });
    list.append(item);
  });
}

function openSideBySide(catalog, hit, rank) {
  $("side-query").src = query.url;
  $("side-query-name").textContent = query.file.name;
  $("side-hit").src = fileUrl(catalog, hit.id);
  $("side-hit-name").textContent = `${hit.filename} (id ${hit.id})`;
  verdictBadge($("side-verdict"), hit.verdict);
  $("side-score").textContent = fmt(hit.score);
  $("side-cosine").textContent = fmt(hit.cosine);
  $("side-rank").textContent = hit.verified
    ? `${rank} (rank score ${fmt(hit.rank_score, 3)}, ${hit.inliers} inliers)`
    : `${rank}`;
  const dialog = $("side-by-side");
  dialog.showModal();
  const thresholds = lastThresholds || { similar: 0.75, near_duplicate: 0.8, match: 0.8 };
  drawGauge($("side-gauge"), hit.score, thresholds);
}

$("side-by-side").addEventListener("click", (e) => {
  if (e.target === e.currentTarget) e.currentTarget.close(); // click on the backdrop closes
});

setupDrop($("drop-q"), (file, url) => { query = { file, url }; run(); });
button.addEventListener("click", run);
catalogSelect.addEventListener("change", () => { describeCatalog(); run(); });

try {
  catalogs = await fillCatalogs(catalogSelect);
  if (!catalogs.length) showError(NO_CATALOG_HINT, { note: true });
  describeCatalog();
} catch (err) {
  showError(err);
}
ready();
document.body.dataset.ready = "true";
