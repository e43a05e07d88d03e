// Compare page: two images -> POST /v1/compare -> gauge, tiered verdict, threshold, timing.
import { api, config, drawGauge, fillModels, fillSizes, fmt, guarded, ms, setupDrop, showError, verdictBadge, VERDICTS } from "./common.js";

const files = { a: null, b: null };
const $ = (id) => document.getElementById(id);
const button = $("compare");
const modelSelect = $("model");
const sizeSelect = $("size");

function ready() {
  button.disabled = !(files.a && files.b);
  return !button.disabled;
}

let latest = 0; // answers that arrive after a newer request was sent are dropped

async function run() {
  if (!ready()) return;
  const mine = ++latest;
  await guarded(button, async () => {
    const form = new FormData();
    form.append("image_1", files.a, files.a.name);
    form.append("image_2", files.b, files.b.name);
    const params = new URLSearchParams();
    if (modelSelect.value) params.set("model", modelSelect.value);
    if (sizeSelect.value) params.set("input_size", sizeSelect.value);
    $("result").classList.add("stale");
    const r = await api(`/v1/compare?${params}`, { method: "POST", form });
    if (mine === latest) show(r);
  });
  $("result").classList.remove("stale");
}

function show(r) {
  $("result").hidden = false;
  drawGauge($("gauge"), r.score, r.thresholds);
  verdictBadge($("verdict"), r.verdict);
  $("answer").textContent = `${r.is_match ? "Match" : "No match"} · ${VERDICTS[r.verdict]?.answer ?? ""}`;
  $("answer").dataset.match = r.is_match;
  $("score").textContent = fmt(r.score);
  $("cosine").textContent = fmt(r.cosine);
  // with a copy detector (setting copy_model) its score decides exact / near-duplicate, and a match is that verdict
  const copy = typeof r.copy_score === "number";
  $("copy-label").hidden = $("copy").hidden = !copy;
  if (copy) $("copy").textContent = `${fmt(r.copy_score)} (${r.copy_model}: decides exact / near-duplicate)`;
  $("threshold").textContent = copy
    ? `match when the copy detector (and, where unsure, the geometric check) says a copy`
    : `match when score ≥ ${fmt(r.threshold)}`;
  $("source").textContent = r.threshold_source;
  $("tiers").textContent =
    `near-duplicate ≥ ${fmt(r.thresholds.near_duplicate, 3)} · similar ≥ ${fmt(r.thresholds.similar, 3)}`;
  $("used-model").textContent = `${r.model} @ ${r.input_size}px`;
  // every part the server timed, so the parts add up to the total (wait = upload + queue)
  const parts = ["wait", "decode", "embed", "geometry"]
    .filter((k) => typeof r.timing_ms[k] === "number")
    .map((k) => `${k} ${ms(r.timing_ms[k])}`);
  $("timing").textContent = `${ms(r.timing_ms.total)} total (${parts.join(", ")})`;
}

setupDrop($("drop-a"), (file) => { files.a = file; run(); });
setupDrop($("drop-b"), (file) => { files.b = file; run(); });
button.addEventListener("click", run);
modelSelect.addEventListener("change", () => { fillSizes(sizeSelect, modelSelect); run(); });
sizeSelect.addEventListener("change", run);

try {
  await fillModels(modelSelect);
} catch (err) {
  showError(err);
  modelSelect.append(new Option(config.default_model, config.default_model));
}
fillSizes(sizeSelect, modelSelect);
if (config.input_size) sizeSelect.value = String(config.input_size);
ready();
document.body.dataset.ready = "true";
