// Duplicates page: GET /v1/catalogs/{name}/duplicates -> clusters as galleries, the copy to keep
// marked. Pair buttons store feedback (POST /v1/feedback); the to-delete list exports as CSV.
import { api, el, fillCatalogs, fmt, guarded, NO_CATALOG_HINT, showError, thumbUrl, verdictBadge } from "./common.js";

const $ = (id) => document.getElementById(id);
const catalogSelect = $("catalog");
const findButton = $("find");
const exportButton = $("export");

// Per loaded catalog: clusters, the chosen keep per cluster, and the labels given per pair.
let state = { catalog: null, clusters: [], keep: new Map(), labels: new Map() };

const plural = (n, word) => `${n} ${word}${n === 1 ? "" : "s"}`;
const pairKey = (a, b) => (a < b ? `${a}-${b}` : `${b}-${a}`);

/** A member is deleted unless it is kept, or the user said it is not a duplicate of the kept
 *  copy, or said so for every pair it was found in. */
function toDelete(cluster) {
  const keep = state.keep.get(cluster.cluster_id);
  return cluster.members.filter((m) => {
    if (m.id === keep) return false;
    if (state.labels.get(pairKey(m.id, keep)) === "different") return false;
    const mine = cluster.pairs.filter((p) => p.a === m.id || p.b === m.id);
    return !(mine.length && mine.every((p) => state.labels.get(pairKey(p.a, p.b)) === "different"));
  });
}

function summary() {
  const members = state.clusters.reduce((n, c) => n + c.members.length, 0);
  const deleting = state.clusters.reduce((n, c) => n + toDelete(c).length, 0);
  $("summary").textContent = state.clusters.length
    ? `${plural(state.clusters.length, "group")} · ${plural(members, "image")} · ${deleting} marked to delete`
    : "";
  exportButton.disabled = deleting === 0;
}

async function load() {
  const catalog = catalogSelect.value;
  if (!catalog) return;
  await guarded(findButton, async () => {
    const params = new URLSearchParams();
    const threshold = $("threshold").value.trim();
    if (threshold) params.set("threshold", threshold);
    let r = await api(`/v1/catalogs/${encodeURIComponent(catalog)}/duplicates?${params}`);
    while (r.status === "running") {  // 202: a large catalog is still being clustered in the background
      const stage = {check: "checking candidate pairs", features: "reading local features", graph: "finding candidates"}[r.stage] || r.stage;
      $("summary").textContent = `${stage}: ${r.done} of ${r.total} (${Math.round(r.elapsed_s)} s)…`;
      await new Promise((resolve) => setTimeout(resolve, 1500));
      r = await api(`/v1/catalogs/${encodeURIComponent(catalog)}/duplicates?${params}`);
    }
    state = { catalog, clusters: r.clusters, keep: new Map(), labels: new Map() };
    for (const c of r.clusters) state.keep.set(c.cluster_id, c.keep);
    if (!threshold && r.threshold != null) $("threshold").placeholder = `auto (${fmt(r.threshold, 3)})`;
    render();
  });
}

function render() {
  const root = $("clusters");
  root.replaceChildren();
  if (!state.clusters.length) {
    root.append(el("div", { class: "card empty" }, `No duplicates in “${state.catalog}” at this threshold.`));
  }
  for (const cluster of state.clusters) root.append(renderCluster(cluster));
  summary();
}

function renderCluster(cluster) {
  const keep = state.keep.get(cluster.cluster_id);
  const deleting = new Set(toDelete(cluster).map((m) => m.id));
  const byId = new Map(cluster.members.map((m) => [m.id, m]));
  const badge = el("span", { class: "verdict small" });
  verdictBadge(badge, cluster.tier);

  const gallery = el("div", { class: "gallery" });
  for (const m of cluster.members) {
    const kept = m.id === keep;
    const role = kept ? "keep" : deleting.has(m.id) ? "delete" : "spared";
    const tag = { keep: "KEEP", delete: "DELETE", spared: "KEEP TOO" }[role];
    gallery.append(el("div", { class: `member ${role === "delete" ? "" : role}`.trim(), dataset: { id: m.id, role } },
      el("img", { class: "thumb", src: thumbUrl(state.catalog, m.id), alt: m.filename, loading: "lazy",
                  onerror: (e) => e.currentTarget.classList.add("broken") }),
      el("span", { class: "tag" }, tag),
      el("div", { class: "member-meta" },
        el("span", { class: "member-name", title: m.filename }, m.filename),
        el("span", { class: "member-dims" }, m.width && m.height ? `${m.width}×${m.height}` : `#${m.id}`),
        kept ? null : el("button", { class: "small keep-this", type: "button",
                                     onclick: () => { state.keep.set(cluster.cluster_id, m.id); render(); } },
                         "Keep this one"))));
  }

  const pairs = el("div", { class: "pairs" });
  for (const p of cluster.pairs) {
    const a = byId.get(p.a) || { filename: `#${p.a}` };
    const b = byId.get(p.b) || { filename: `#${p.b}` };
    const label = state.labels.get(pairKey(p.a, p.b));
    const verdict = el("span", { class: "verdict small" });
    verdictBadge(verdict, p.verdict);
    const status = el("span", { class: `feedback-state ${label === "different" ? "different" : ""}`.trim() },
      label ? `saved: ${label === "same" ? "duplicate" : "not a duplicate"}` : "");
    const send = (value, button) => guarded(button, async () => {
      const r = await api("/v1/feedback", { method: "POST",
        json: { catalog: state.catalog, id_a: p.a, id_b: p.b, label: value } });
      state.labels.set(pairKey(p.a, p.b), value);
      render();
      return r;
    });
    const row = el("div", { class: "pair-row", dataset: { a: p.a, b: p.b, label: label || "" } },
      el("img", { src: thumbUrl(state.catalog, p.a, 96), alt: a.filename }),
      el("img", { src: thumbUrl(state.catalog, p.b, 96), alt: b.filename }),
      el("span", { class: "pair-names" }, `${a.filename} ↔ ${b.filename}`, " ",
         el("strong", {}, fmt(p.score, 3))),
      verdict,
      el("span", { class: "pair-actions" },
        el("button", { class: "small fb-same", type: "button", "aria-pressed": String(label === "same"),
                       onclick: (e) => send("same", e.currentTarget) }, "Duplicate"),
        el("button", { class: "small fb-different", type: "button", "aria-pressed": String(label === "different"),
                       onclick: (e) => send("different", e.currentTarget) }, "Not a duplicate")),
      status);
    pairs.append(row);
  }

  return el("article", { class: "card cluster", dataset: { cluster: cluster.cluster_id } },
    el("div", { class: "cluster-head" },
      el("h3", {}, `Group ${cluster.cluster_id}`), badge,
      el("span", { class: "muted small" }, `${plural(cluster.members.length, "image")} · keep ${byId.get(keep)?.filename ?? "#" + keep}`)),
    gallery, pairs);
}

const csvCell = (value) => {
  const text = String(value ?? "");
  return /[",\n\r]/.test(text) ? `"${text.replaceAll('"', '""')}"` : text;
};

/** The to-delete list, built in the page from what is on screen (ids, names, catalog paths). */
export function toDeleteCsv() {
  const rows = [["catalog", "cluster_id", "id", "filename", "path", "keep_id", "keep_filename"]];
  for (const c of state.clusters) {
    const keep = state.keep.get(c.cluster_id);
    const kept = c.members.find((m) => m.id === keep) || {};
    for (const m of toDelete(c)) rows.push([state.catalog, c.cluster_id, m.id, m.filename, m.path, keep, kept.filename]);
  }
  return rows.map((r) => r.map(csvCell).join(",")).join("\r\n") + "\r\n";
}

exportButton.addEventListener("click", () => {
  const blob = new Blob([toDeleteCsv()], { type: "text/csv" });
  const link = el("a", { href: URL.createObjectURL(blob), download: `${state.catalog}-to-delete.csv` });
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
});
findButton.addEventListener("click", load);
catalogSelect.addEventListener("change", load);

try {
  const catalogs = await fillCatalogs(catalogSelect);
  findButton.disabled = !catalogs.length;
  if (!catalogs.length) showError(NO_CATALOG_HINT, { note: true });
  else await load();
} catch (err) {
  showError(err);
}
document.body.dataset.ready = "true";
