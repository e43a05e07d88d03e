"""Which model and method make the score mean the most? Every trial on the same data, one table.

Data (never copied into the repo):
- DEV pairs and groups from ../shared/data (``pairs.csv``, ``groups.csv``);
- a HARDER pair set generated here at run time from the DEV originals with Pillow (combined
  crop+resize+text+low JPEG quality, blur, heavy crop, colour shift, rotate+crop, flip+JPEG,
  occlusion; negatives: a combined edit vs the most similar-looking other original, and random),
  written to a cache folder, to measure generalisation beyond the DEV edits;
- "other shot" pairs: every two views of one group (Middlebury stereo excluded), which should be
  tiered ``similar``, not ``near_duplicate``.

Run: ``python benchmarks/accuracy.py [--quick] [--out benchmarks/results/accuracy.md]``
Embeddings are cached per trial under ``.lookalike/bench-cache`` so re-runs only add new trials.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_settings as common_settings  # noqa: E402

from lookalike.config import Settings
from lookalike.quality.evaluation import (
    group_metrics,
    load_groups,
    load_pairs,
    pair_metrics,
    roc_auc,
)
from lookalike.similarity import normalized_score

from datasets import CACHE, DEV, SHARED, make_hard_pairs, other_shot_pairs  # noqa: E402,F401 - the data sets


# ------------------------------------------------------------------------- trials


@dataclass(frozen=True)
class Trial:
    model: str
    size: int
    mode: str = "resize"  # whole-image resize or timm centre crop
    pooling: str = "avg"
    flip: bool = False  # average the embeddings of the image and its mirror
    scales: tuple[int, ...] = ()  # extra input sizes averaged in (multi-scale)
    whiten: bool = False  # PCA-whitening fitted on the DEV pair originals

    @property
    def name(self) -> str:
        parts = [f"{self.model}@{self.size}", self.mode, self.pooling]
        if self.flip:
            parts.append("flip")
        if self.scales:
            parts.append("ms" + "+".join(map(str, self.scales)))
        if self.whiten:
            parts.append("pcaw")
        return " ".join(parts)

    @property
    def method(self) -> str:
        return self.name.split(" ", 1)[1]


def bench_settings() -> Settings:
    """The shared offline benchmark settings, with every input size the method search tries."""
    return common_settings(allowed_input_sizes=[224, 240, 260, 288, 320, 416, 512])


def _encode(trial: Trial, size: int, paths: list[Path], settings: Settings) -> tuple[np.ndarray, float]:
    from lookalike.embed import create_embedder, l2_normalize

    key = f"{trial.model}-{size}-{trial.mode}-{trial.pooling}-{'flip' if trial.flip else 'noflip'}"
    cache_file = CACHE / "emb" / f"{key}.npz"
    known: dict[str, np.ndarray] = {}
    ms = float("nan")
    if cache_file.is_file():
        data = np.load(cache_file, allow_pickle=False)
        known = dict(zip(data["paths"].tolist(), data["vectors"]))
        ms = float(data["ms"])
    todo = [p for p in paths if str(p) not in known]
    if todo:
        embedder = create_embedder(trial.model, input_size=size, pooling=trial.pooling, preprocess=trial.mode,
                                   settings=settings)
        embedder.batch_size = 16
        t0 = time.perf_counter()
        for i in range(0, len(todo), 64):
            chunk = todo[i : i + 64]
            images = [embedder.load(p) for p in chunk]
            vectors = embedder.encode_decoded(images)
            if trial.flip:
                vectors = l2_normalize(vectors + embedder.encode_decoded([ImageOps.mirror(im) for im in images]))
            known.update(zip(map(str, chunk), vectors))
        ms = (time.perf_counter() - t0) * 1000.0 / len(todo)
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, paths=np.array(list(known)), vectors=np.stack(list(known.values())), ms=ms)
    return np.stack([known[str(p)] for p in paths]), ms


def embed_all(trial: Trial, paths: list[Path], settings: Settings) -> tuple[dict[str, np.ndarray], float]:
    from lookalike.embed import l2_normalize

    vectors, ms = _encode(trial, trial.size, paths, settings)
    for extra in trial.scales:
        more, more_ms = _encode(trial, extra, paths, settings)
        vectors, ms = vectors + more, ms + more_ms
    vectors = l2_normalize(vectors)
    return dict(zip(map(str, paths), vectors)), ms


def fit_whitening(vectors: np.ndarray, dim: int | None = None, shrink: float = 0.1):
    """PCA-whitening (with shrinkage towards identity so small dev sets do not blow up noise)."""
    mean = vectors.mean(axis=0)
    cov = np.cov((vectors - mean).T)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][: dim or len(eigval)]
    eigval, eigvec = eigval[order], eigvec[:, order]
    scale = 1.0 / np.sqrt(eigval + shrink * eigval.mean())
    projection = eigvec * scale

    def apply(x: np.ndarray) -> np.ndarray:
        y = (x - mean) @ projection
        return y / np.maximum(np.linalg.norm(y, axis=1, keepdims=True), 1e-12)

    return apply


def pair_scores(vecs: dict[str, np.ndarray], a: list[Path], b: list[Path]) -> np.ndarray:
    va = np.stack([vecs[str(p)] for p in a])
    vb = np.stack([vecs[str(p)] for p in b])
    return normalized_score(np.sum(va * vb, axis=1))


def run_trial(trial: Trial, settings: Settings) -> dict:
    dev_pairs = load_pairs(DEV / "pairs.csv")
    hard = load_pairs(make_hard_pairs())
    groups = load_groups(DEV / "groups.csv")
    shots = other_shot_pairs()
    paths = list(dict.fromkeys([*dev_pairs.unique_paths(), *hard.unique_paths(), *groups.paths]))
    vecs, ms = embed_all(trial, paths, settings)
    if trial.whiten:
        fit_on = np.stack([vecs[str(p)] for p in paths if "originals" in str(p)])
        apply = fit_whitening(fit_on)
        vecs = dict(zip(vecs, apply(np.stack(list(vecs.values())))))
    dev_s = pair_scores(vecs, dev_pairs.path_a, dev_pairs.path_b)
    dev_m = pair_metrics(dev_s, dev_pairs.labels, 0.80, dev_pairs.kinds)
    # the shipped threshold is chosen on DEV, then applied unchanged to the harder set
    hard_s = pair_scores(vecs, hard.path_a, hard.path_b)
    hard_m = pair_metrics(hard_s, hard.labels, dev_m.best_threshold, hard.kinds)
    grp = group_metrics(np.stack([vecs[str(p)] for p in groups.paths]), groups.groups)
    shot_s = pair_scores(vecs, [a for a, _ in shots], [b for _, b in shots])
    positives = np.r_[dev_s[dev_pairs.labels == 1], hard_s[hard.labels == 1]]
    return {
        "trial": trial.name, "model": f"{trial.model}@{trial.size}", "method": trial.method, "ms": ms,
        "dev_auc": dev_m.roc_auc, "dev_f1": dev_m.best_f1, "dev_t": dev_m.best_threshold,
        "hard_auc": hard_m.roc_auc, "hard_f1": hard_m.f1_at_threshold,
        "hard_kinds": {k.kind: k.correct_at_threshold for k in hard_m.per_kind},
        "dev_kinds": {k.kind: k.correct_at_threshold for k in dev_m.per_kind},
        "r1": grp.recall_at_1, "r4": grp.recall_at_4, "map": grp.map, "ns": grp.ns_score,
        # how well a single global-score line could split copies from other shots
        "shot_vs_copy_auc": float(roc_auc(np.r_[positives, shot_s], np.r_[np.ones(len(positives)), np.zeros(len(shot_s))])),
    }


# ------------------------------------------------------------------------- tiers (geometry)


GEO_CACHE = "geometry-v2.json"  # v2: GeometryResult with the dense (NCC) check; v1 had 4 fields


def _geo_cache() -> dict:
    path = CACHE / GEO_CACHE
    return json.loads(path.read_text()) if path.is_file() else {}


def geometry_for(pairs: list[tuple[Path, Path]]) -> dict[str, list]:
    """Geometric-check results per pair, cached on disk (they do not depend on the embedding)."""
    import dataclasses

    from lookalike.geometry import geometric_check

    cache = _geo_cache()
    todo = [(a, b) for a, b in pairs if f"{a}|{b}" not in cache]
    for i, (a, b) in enumerate(todo):
        r = geometric_check(Image.open(a).convert("RGB"), Image.open(b).convert("RGB"))
        cache[f"{a}|{b}"] = list(dataclasses.astuple(r))
        if i % 100 == 99 or i == len(todo) - 1:
            (CACHE / GEO_CACHE).write_text(json.dumps(cache))
    return cache


@dataclass
class TierData:
    """The sets a tier analysis judges, one trial's embeddings of them, and its DEV-calibrated lines."""

    dev: object  # evaluation.PairSet
    hard: object  # evaluation.PairSet (generated harder edits)
    groups: object  # evaluation.GroupSet
    shots: list[tuple[Path, Path]]  # other shots of one object
    vecs: dict[str, np.ndarray]
    thresholds: object  # similarity.Thresholds, calibrated as the shipped ones are


def tier_data(trial: Trial, settings: Settings) -> TierData:
    from lookalike.quality.calibration import calibrate_scores, group_pair_scores
    from lookalike.similarity import Thresholds

    dev = load_pairs(DEV / "pairs.csv")
    hard = load_pairs(make_hard_pairs())
    groups = load_groups(DEV / "groups.csv")
    paths = list(dict.fromkeys([*dev.unique_paths(), *hard.unique_paths(), *groups.paths]))
    vecs, _ = embed_all(trial, paths, settings)
    dev_s = pair_scores(vecs, dev.path_a, dev.path_b)
    same, _ = group_pair_scores(np.stack([vecs[str(p)] for p in groups.paths]), groups.groups)
    cal = calibrate_scores(trial.model, trial.size, dev_s, dev.labels, kinds=dev.kinds, same_group_scores=same)
    return TierData(dev, hard, groups, other_shot_pairs(), vecs,
                    Thresholds(cal.match, cal.near_duplicate, cal.similar, "bench"))


def tier_trial(trial: Trial, settings: Settings) -> dict:
    """Tiers as the service decides them (shipped-style thresholds from DEV + the geometric check)."""
    from lookalike.geometry import FLOOR, GeometryResult, decide_tier
    from lookalike.similarity import Tier

    data = tier_data(trial, settings)
    dev, hard, shots, vecs, t = data.dev, data.hard, data.shots, data.vecs, data.thresholds
    sets = {
        "dev": (dev.path_a, dev.path_b, dev.labels, dev.kinds),
        "hard": (hard.path_a, hard.path_b, hard.labels, hard.kinds),
        "shots": ([a for a, _ in shots], [b for _, b in shots], np.zeros(len(shots), int), ["other_shot"] * len(shots)),
    }
    out: dict = {"trial": trial.name, "match": t.match, "similar": t.similar}
    for name, (pa, pb, labels, kinds) in sets.items():
        scores = pair_scores(vecs, pa, pb)
        floor = t.similar - FLOOR  # the service checks geometry down to here (geometry.refine_tier)
        need = [(a, b) for a, b, sc in zip(pa, pb, scores) if sc >= floor]
        geo = geometry_for(need)
        tiers_plain, tiers_geo = [], []
        for a, b, sc in zip(pa, pb, scores):
            tiers_plain.append(t.tier(sc))
            g = geo.get(f"{a}|{b}")
            result = GeometryResult(*g) if g else None
            tiers_geo.append(decide_tier(sc, t, result) if sc >= floor else Tier.DIFFERENT)
        for label, tiers in (("plain", tiers_plain), ("geo", tiers_geo)):
            nd = np.array([x is Tier.NEAR_DUPLICATE for x in tiers])
            match = nd | (scores >= t.match) if label == "geo" else scores >= t.match
            if name == "shots":
                out[f"shots_not_nd_{label}"] = float(1 - nd.mean())
                continue
            pos = labels == 1
            tp, fp, fn = (match & pos).sum(), (match & ~pos).sum(), (~match & pos).sum()
            out[f"{name}_f1_{label}"] = float(2 * tp / max(2 * tp + fp + fn, 1))
            out[f"{name}_copies_nd_{label}"] = float(nd[pos].mean())
            kinds_arr = np.array(kinds)
            out[f"{name}_kinds_{label}"] = {k: float(match[kinds_arr == k].mean()) for k in sorted(set(kinds)) if k.startswith("pos")}
    return out


def timing(trials: list[Trial], settings: Settings, n_images: int = 32, rounds: int = 5) -> dict[str, float]:
    """ms/image (decode + preprocess + inference, batches of 16), trials interleaved round by round
    on the same images so machine load hits them alike; the median round counts."""
    from lookalike.embed import create_embedder

    images = sorted((DEV / "pairs" / "originals").glob("*.jpg"))[:n_images]
    embedders = {t.name: create_embedder(t.model, input_size=t.size, pooling=t.pooling, preprocess=t.mode,
                                         settings=settings) for t in trials}
    runs: dict[str, list[float]] = {name: [] for name in embedders}
    for name, embedder in embedders.items():
        embedder.encode(images[:4])  # warm-up
    for _ in range(rounds):
        for name, embedder in embedders.items():
            t0 = time.perf_counter()
            embedder.encode(images)
            runs[name].append((time.perf_counter() - t0) * 1000.0 / len(images))
    return {name: float(np.median(v)) for name, v in runs.items()}


def baselines(settings: Settings) -> list[dict]:
    """pHash and the seed's method (fixed 0.80) on the same three sets."""
    from lookalike.quality.baselines import SEED_THRESHOLD, PHashScorer
    from lookalike.quality.evaluation import group_metrics_from_similarity

    dev = load_pairs(DEV / "pairs.csv")
    hard = load_pairs(make_hard_pairs())
    groups = load_groups(DEV / "groups.csv")
    rows = []
    ph = PHashScorer()
    seed = Trial("tf_efficientnet_lite0", 224, "crop", "avg")
    paths = list(dict.fromkeys([*dev.unique_paths(), *hard.unique_paths(), *groups.paths]))
    vecs, _ = embed_all(seed, paths, settings)
    for name, scorer, threshold in (("pHash (1 - hamming/64)", ph, 0.80), ("seed: lite0 crop avg, fixed 0.80", None, SEED_THRESHOLD)):
        def scores(ps, use_phash=scorer is not None):
            return ph.pair_scores(ps.path_a, ps.path_b) if use_phash else pair_scores(vecs, ps.path_a, ps.path_b)
        d, h = pair_metrics(scores(dev), dev.labels, threshold, dev.kinds), pair_metrics(scores(hard), hard.labels, threshold, hard.kinds)
        sim = ph.similarity_matrix(groups.paths) if scorer else None
        if sim is None:
            e = np.stack([vecs[str(p)] for p in groups.paths])
            sim = e @ e.T
        g = group_metrics_from_similarity(sim, groups.groups)
        rows.append({"name": name, "threshold": threshold, "dev_auc": d.roc_auc, "dev_f1": d.f1_at_threshold,
                     "hard_auc": h.roc_auc, "hard_f1": h.f1_at_threshold, "r1": g.recall_at_1, "map": g.map,
                     "ns": g.ns_score, "hard_kinds": {k.kind: k.correct_at_threshold for k in h.per_kind}})
    return rows


def write_report(out: Path) -> None:
    """Tables from the cached results, below the hand-written part of ``out``."""
    marker = "<!-- generated by benchmarks/accuracy.py --report: tables below -->"
    head = out.read_text().split(marker)[0] if out.is_file() else "# Accuracy trials\n\n"
    results = {}
    for line in (CACHE / "results.jsonl").read_text().splitlines():
        r = json.loads(line)
        results[r["trial"]] = r  # latest run of a trial wins
    lines = [marker, "", "## Trials (embedding): DEV pairs, generated harder pairs, DEV groups", "",
             "`hard F1` is F1 at the DEV best-F1 threshold applied unchanged to the harder set (does the shipped",
             "threshold generalise?). `shot/copy AUC`: how well the score alone splits copies from other shots.",
             "", "| model | method | DEV AUC | DEV best F1 | hard AUC | hard F1 | R@1 | R@4 | mAP | N-S | shot/copy AUC |",
             "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in results.values():
        lines.append(f"| {r['model']} | {r['method']} | {r['dev_auc']:.4f} | {r['dev_f1']:.3f} | {r['hard_auc']:.4f} | "
                     f"{r['hard_f1']:.3f} | {r['r1']:.3f} | {r['r4']:.3f} | {r['map']:.3f} | {r['ns']:.2f} | "
                     f"{r['shot_vs_copy_auc']:.3f} |")
    kinds = sorted({k for r in results.values() for k in r["hard_kinds"]})
    lines += ["", "## Harder pairs per kind (share judged right at the DEV threshold)", "",
              "| trial | " + " | ".join(k.replace("pos_", "+").replace("neg_", "-") for k in kinds) + " |",
              "|---|" + "---:|" * len(kinds)]
    for r in results.values():
        lines.append(f"| {r['trial']} | " + " | ".join(f"{r['hard_kinds'].get(k, float('nan')):.2f}" for k in kinds) + " |")
    if (CACHE / "baselines.json").is_file():
        lines += ["", "## Baselines (same data, same run of the metrics)", "",
                  "| method | threshold | DEV AUC | DEV F1@thr | hard AUC | hard F1@thr | R@1 | mAP | N-S |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for b in json.loads((CACHE / "baselines.json").read_text()):
            lines.append(f"| {b['name']} | {b['threshold']:.2f} | {b['dev_auc']:.4f} | {b['dev_f1']:.3f} | "
                         f"{b['hard_auc']:.4f} | {b['hard_f1']:.3f} | {b['r1']:.3f} | {b['map']:.3f} | {b['ns']:.2f} |")
    if (CACHE / "tiers.jsonl").is_file():
        tiers = {}
        for line in (CACHE / "tiers.jsonl").read_text().splitlines():
            r = json.loads(line)
            tiers[r["trial"]] = r
        lines += ["", "## Tiers: embedding thresholds alone vs + geometric check (geometry.py)", "",
                  "Thresholds calibrated on DEV as shipped. `shots not ND`: other shots of one object (DEV groups,",
                  "Middlebury excluded) NOT called near_duplicate. `copies ND`: edited copies called near_duplicate.",
                  "`F1`: is_match (near_duplicate tier or score >= match) on the pair set.", "",
                  "| trial | match | similar | check | shots not ND | DEV copies ND | DEV F1 | hard copies ND | hard F1 | worst hard kind |",
                  "|---|---:|---:|---|---:|---:|---:|---:|---:|---|"]
        for r in tiers.values():
            for label in ("plain", "geo"):
                worst = min(r[f"hard_kinds_{label}"].items(), key=lambda kv: kv[1])
                lines.append(f"| {r['trial']} | {r['match']:.4f} | {r['similar']:.4f} | {'ORB+RANSAC+NCC' if label == 'geo' else 'score only'} | "
                             f"{r[f'shots_not_nd_{label}']:.3f} | {r[f'dev_copies_nd_{label}']:.3f} | {r[f'dev_f1_{label}']:.3f} | "
                             f"{r[f'hard_copies_nd_{label}']:.3f} | {r[f'hard_f1_{label}']:.3f} | {worst[0]} {worst[1]:.2f} |")
    if (CACHE / "timing.json").is_file():
        lines += ["", "## Speed (ms/image: decode + preprocess + inference with the configured backend (auto = OpenVINO here), batch 16, trials interleaved on one shared 2-core machine)", "",
                  "| trial | ms/image |", "|---|---:|"]
        for name, ms in json.loads((CACHE / "timing.json").read_text()).items():
            lines.append(f"| {name} | {ms:.1f} |")
    out.write_text(head + "\n".join(lines) + "\n")


TRIALS_QUICK = [
    Trial("tf_efficientnet_lite0", 224, "crop", "avg"),
    Trial("tf_efficientnet_lite0", 224, "resize", "avg"),
]


def all_trials() -> list[Trial]:
    models = [("tf_efficientnet_lite0", 224), ("tf_efficientnet_lite1", 240), ("tf_efficientnet_lite2", 260),
              ("mobilenetv2_100", 224)]
    trials = [Trial(m, s, mode, pool) for m, s in models for mode in ("crop", "resize") for pool in ("avg", "gem", "max")]
    return trials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--trials", help="JSON list of Trial kwargs to run instead of the grid")
    parser.add_argument("--jsonl", default=str(CACHE / "results.jsonl"))
    parser.add_argument("--tiers", action="store_true", help="tier analysis (geometry) of the given trials")
    parser.add_argument("--timing", action="store_true", help="ms/image of the given trials, side by side")
    parser.add_argument("--baselines", action="store_true", help="pHash and the seed's method on the same sets")
    parser.add_argument("--report", action="store_true", help="write the markdown tables from the cached results")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "accuracy.md"))
    args = parser.parse_args(argv)
    settings = bench_settings()
    trials = TRIALS_QUICK if args.quick else all_trials()
    if args.trials:
        trials = [Trial(**{**t, "scales": tuple(t.get("scales", ()))}) for t in json.loads(args.trials)]
    Path(args.jsonl).parent.mkdir(parents=True, exist_ok=True)
    if args.report:
        write_report(Path(args.out))
        return 0
    if args.baselines:
        rows = baselines(settings)
        (CACHE / "baselines.json").write_text(json.dumps(rows))
        for b in rows:
            print(b, flush=True)
        return 0
    if args.timing:
        times = timing(trials, settings)
        (CACHE / "timing.json").write_text(json.dumps(times))
        for name, ms in times.items():
            print(f"{name:45s} {ms:7.1f} ms/image", flush=True)
        return 0
    if args.tiers:
        for trial in trials:
            result = tier_trial(trial, settings)
            with open(CACHE / "tiers.jsonl", "a") as handle:
                handle.write(json.dumps(result) + "\n")
            print(json.dumps(result), flush=True)
        return 0
    for trial in trials:
        result = run_trial(trial, settings)
        with open(args.jsonl, "a") as handle:
            handle.write(json.dumps(result) + "\n")
        print(f"{result['trial']:55s} devAUC {result['dev_auc']:.4f} devF1 {result['dev_f1']:.3f} "
              f"hardAUC {result['hard_auc']:.4f} hardF1 {result['hard_f1']:.3f} R@1 {result['r1']:.3f} "
              f"mAP {result['map']:.3f} NS {result['ns']:.2f} shot/copy {result['shot_vs_copy_auc']:.3f} "
              f"{result['ms']:.1f} ms", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
