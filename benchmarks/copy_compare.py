"""Which method should decide "copy" in /v1/compare? Every candidate on the same pairs, one table.

Sets (never copied into the repository; generated ones under ``.lookalike/bench-cache``):
- DEV pairs (``../shared/data/pairs.csv``);
- the harder generated pairs (``datasets.make_hard_pairs``: combined edits, blur, heavy crop, ...);
- other shots of one object (``datasets.other_shot_pairs``): never copies, should be ``similar``;
- turned copies of the DEV originals: vertical flip, 90/180/270 degree turns, 25 degree rotation with
  black corners, 35 degree rotation with grey corners on an expanded canvas, 30 degree rotation with
  white corners (positives: original vs copy), against the same edit of *another* original (their
  filled corners look alike) and a random other original's copy (negatives).

Methods (``METHODS``):
- ``today``: Lite0 score + shipped lines + the geometric check (``geometry.decide_tier``), as shipped;
- ``sscd``: copy tiers by the SSCD descriptor's score: at or above the *sure* line a copy, between the
  *candidate* and sure lines the geometric check decides, below it never a copy; ``similar`` by Lite0;
- ``sscd_turned``: the same with the copy score the best over the second image's dihedral turns
  (0/90/180/270 degrees, each mirrored too: 8 descriptors of one image);
- ``sscd_turned4``: the best of 0/90/180/270 and the vertical flip (5 descriptors);
- ``+union``: the check also runs where today's Lite0 rule asks for it;
- ``+bandsim``: a pair in the copy band that the check does not verify is ``similar`` (not only by Lite0).
- ``+cover``: the band's check also needs one frame to lie wholly enough inside the other under the fit
  (``geometry.frame_overlap``'s cover >= a line picked like the others; shipped as ``comparison.MIN_COVER``);
- ``+share``: ... and the overlap to fill enough of the larger frame (its share >= a line picked likewise;
  ``comparison.MIN_SHARE``): a close-up of a detail is not an edited copy;
- ``+ncc``: the band's "aligned" needs NCC >= a line picked likewise (``comparison.BAND_MIN_NCC``) where
  ``geometry.ALIGNED_MANY`` accepts 0.6: a re-photographed print fits many corners at a lower correlation;
- ``+object``: a pair under the band whose Lite0 score is at most ``SAME_OBJECT_BAND`` under the similar
  line is ``similar`` when the check's fit holds that many corners (``comparison.same_object``; the count is
  the middle of those that make the most other shots similar while calling no more negatives similar).
Also measured: an SSCD *similar floor* (a pair at or above it is at least ``similar``), as a table of
floors against the share of negatives it calls similar.
Check rules in the band: ``aligned`` (the pixels line up, ``geometry.lines_up``), ``compare`` (that,
or strong keypoint evidence with NCC >= MIN_NCC, as ``geometry.decide_tier`` accepts), ``strict``
(dedup's: >= 8 corners fit and NCC >= 0.9) or ``strict_low`` (strict below the copy model's best-F1
line, aligned above it), ``aligned_many`` (aligned, or a quarter of the corners fit one similarity
transform: an occluded copy lines up poorly where the box is; shipped, ``comparison.copy_check``).

Lines are picked on one half of the originals (and groups) and judged on the other half, both ways
(the accuracy_local.py way), so the held-out figures are honest; the shipped lines are then picked on
all of it. ms per pair: the forwards a pair needs (measured per image, same run) plus the geometric
check times the share of pairs that need it.

Run: ``python benchmarks/copy_compare.py [--model sscd_distilled]`` (figures into
``benchmarks/results/copy_compare.json``), ``--timing`` (end-to-end ms per compared pair, with and without
the copy detector), then ``--report`` (the tables into ``benchmarks/results/accuracy.md``).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import zlib
from dataclasses import astuple, dataclass, fields, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_settings  # noqa: E402
from datasets import CACHE, DEV, make_hard_pairs, other_shot_pairs  # noqa: E402

from lookalike.quality.evaluation import load_pairs, roc_auc  # noqa: E402
from lookalike.similarity import SAME_OBJECT_BAND, copy_lines_for  # noqa: E402

TURN_EDITS = ("vflip", "rot90", "rot180", "rot270", "rotate25_black", "rotate35_grey_expand", "rotate30_white")
# the dihedral turns of the second image the turned copy scores try (PIL transposes; None: as is)
D4 = (None, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_270,
      Image.Transpose.FLIP_TOP_BOTTOM, Image.Transpose.FLIP_LEFT_RIGHT, Image.Transpose.TRANSPOSE,
      Image.Transpose.TRANSVERSE)
TURNS4 = (0, 1, 2, 3, 4)  # indices into D4: 0/90/180/270 and the vertical flip


def _turn(image: Image.Image, edit: str) -> Image.Image:
    if edit == "vflip":
        return ImageOps.flip(image)
    if edit.startswith("rot") and edit[3:].isdigit():
        return image.transpose({"90": Image.Transpose.ROTATE_90, "180": Image.Transpose.ROTATE_180,
                                "270": Image.Transpose.ROTATE_270}[edit[3:]])
    if edit == "rotate25_black":
        return image.rotate(25, resample=Image.BICUBIC, expand=False, fillcolor=(0, 0, 0))
    if edit == "rotate35_grey_expand":
        return image.rotate(-35, resample=Image.BICUBIC, expand=True, fillcolor=(128, 128, 128))
    if edit == "rotate30_white":
        return image.rotate(30, resample=Image.BICUBIC, expand=False, fillcolor=(255, 255, 255))
    raise ValueError(edit)


def make_turned_pairs(dev: Path = DEV, out: Path = CACHE / "turned", seed: int = 11):
    """Turned copies of the DEV originals and their pairs (see the module docstring); written once."""
    csv_path = out / "pairs.csv"
    if not csv_path.is_file():
        import csv

        rng = random.Random(seed)
        originals = sorted((dev / "pairs" / "originals").glob("*.jpg"))
        (out / "edited").mkdir(parents=True, exist_ok=True)
        rows = []
        for original in originals:
            with Image.open(original) as opened:
                image = ImageOps.exif_transpose(opened).convert("RGB")
            for edit in TURN_EDITS:
                _turn(image, edit).save(out / "edited" / f"{original.stem}__{edit}.jpg", quality=90)
        for original in originals:
            others = [o for o in originals if o != original]
            for edit in TURN_EDITS:
                name = f"edited/{original.stem}__{edit}.jpg"
                rows.append((str(original), name, 1, f"pos_{edit}"))
                other = rng.choice(others)
                rows.append((f"edited/{other.stem}__{edit}.jpg", name, 0, "neg_same_edit_other_photo"))
            other = rng.choice(others)
            rows.append((str(other), f"edited/{original.stem}__{rng.choice(TURN_EDITS)}.jpg", 0, "neg_random"))
        with csv_path.open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["path_a", "path_b", "label", "kind"])
            writer.writerows(rows)
    return load_pairs(csv_path)


@dataclass
class Pairs:
    name: str
    a: list[Path]
    b: list[Path]
    labels: np.ndarray
    kinds: list[str]
    half: np.ndarray  # 0/1: which half of the originals (groups) the pair belongs to


def _half_of(key: str) -> int:
    return zlib.crc32(key.encode()) % 2


def _original_key(path: Path) -> str:
    return path.stem.split("__")[0]


def load_sets() -> list[Pairs]:
    out = []
    for name, ps in (("DEV", load_pairs(DEV / "pairs.csv")), ("hard", load_pairs(make_hard_pairs())),
                     ("turned", make_turned_pairs())):
        half = np.array([_half_of(_original_key(b if "originals" not in str(b) and label == 1 else a))
                         for a, b, label in zip(ps.path_a, ps.path_b, ps.labels)])
        out.append(Pairs(name, list(ps.path_a), list(ps.path_b), np.asarray(ps.labels), list(ps.kinds), half))
    shots = other_shot_pairs()
    out.append(Pairs("shots", [a for a, _ in shots], [b for _, b in shots], np.zeros(len(shots), int),
                     ["other_shot"] * len(shots), np.array([_half_of(a.parent.name) for a, _ in shots])))
    return out


# ------------------------------------------------------------------------------- features


def _vectors(embedder, paths: list[Path], key: str, turns: tuple = (None,)) -> dict[str, np.ndarray]:
    """(len(turns), dim) per path: the embedding of each dihedral turn of the image; cached."""
    cache_file = CACHE / "copy" / f"{key}.npz"
    known: dict[str, np.ndarray] = {}
    if cache_file.is_file():
        data = np.load(cache_file, allow_pickle=False)
        known = dict(zip(data["paths"].tolist(), data["vectors"]))
    todo = [p for p in dict.fromkeys(map(str, paths)) if p not in known]
    for i in range(0, len(todo), 32):
        chunk = todo[i:i + 32]
        images = [embedder.load(p) for p in chunk]
        per_turn = [embedder.encode_decoded([im if t is None else im.transpose(t) for im in images]) for t in turns]
        for j, p in enumerate(chunk):
            known[p] = np.stack([v[j] for v in per_turn]).astype(np.float32)
        print(f"  {key}: {len(known)} images", file=sys.stderr, flush=True)
    if todo:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache_file, paths=np.array(list(known)), vectors=np.stack(list(known.values())))
    return known


def _ms_per_image(embedders: dict, paths: list[Path], rounds: int = 3) -> dict[str, float]:
    """decode + preprocess + forward, one image at a time as compare does, interleaved; median round."""
    runs: dict[str, list[float]] = {k: [] for k in embedders}
    for e in embedders.values():
        e.encode_decoded([e.load(paths[0])])
    for _ in range(rounds):
        for name, e in embedders.items():
            t0 = time.perf_counter()
            for p in paths:
                e.encode_decoded([e.load(p)])
            runs[name].append((time.perf_counter() - t0) * 1000.0 / len(paths))
    return {k: float(np.median(v)) for k, v in runs.items()}


GEO_FILE = "copy/geometry.json"


def geometry(pairs: list[tuple[str, str]], decode_side: int | None, limits) -> tuple[dict[str, list], float]:
    """``match_features`` (as compare and eval run it) per pair, cached; and ms per check measured."""
    from lookalike.geometry import MAX_SIDE, GeometryResult, local_features, match_features
    from lookalike.imaging import load_image

    path = CACHE / GEO_FILE
    cache = json.loads(path.read_text()) if path.is_file() else {}
    n_fields = len(fields(GeometryResult))  # entries cached before a field was added are measured again
    todo = [(a, b) for a, b in dict.fromkeys(pairs) if len(cache.get(f"{a}|{b}", ())) != n_fields]
    ms = cache.get("__ms__", [0.0, 0])
    t0 = time.perf_counter()
    for i, (a, b) in enumerate(todo):
        start = time.perf_counter()
        fa = local_features(load_image(a, limits, draft_side=decode_side or MAX_SIDE), with_mirror=False)
        fb = local_features(load_image(b, limits, draft_side=decode_side or MAX_SIDE))
        cache[f"{a}|{b}"] = list(astuple(match_features(fa, fb)))
        ms = [ms[0] + (time.perf_counter() - start) * 1000.0, ms[1] + 1]
        if i % 200 == 199 or i == len(todo) - 1:
            cache["__ms__"] = ms
            path.write_text(json.dumps(cache))
            print(f"  geometry {i + 1}/{len(todo)} ({time.perf_counter() - t0:.0f} s)", file=sys.stderr, flush=True)
    return cache, ms[0] / max(ms[1], 1)


# ------------------------------------------------------------------------------- decisions


@dataclass(frozen=True)
class Lines:
    candidate: float  # copy score (cos+1)/2 below which never a copy
    sure: float  # at or above: a copy without the check
    cover: float | None = None  # "+cover": the band's check needs geometry.frame_overlap's cover >= this (None: off)
    corners: int | None = None  # "+object": below the band, this many fitted corners make a near pair similar
    share: float | None = None  # "+share": the band's check needs frame_overlap's share >= this (None: off)
    many_ncc: float | None = None  # "+ncc": the band's lines_up needs NCC >= this (None: off)


def check_says_copy(g, rule: str) -> bool:
    """The geometric check's verdict in the copy band: ``aligned``: the pixels line up as only a copy
    does (``geometry.lines_up``); ``compare``: that, or strong keypoint evidence with NCC >= MIN_NCC."""
    from lookalike.geometry import MIN_NCC, STRONG, lines_up

    if g is None:
        return False
    if rule == "aligned":
        return lines_up(g)
    if rule == "aligned_many":  # aligned, or a quarter of the corners fit (comparison.copy_check without MIN_COVER)
        from lookalike.comparison import MANY_FIT

        return lines_up(g) or (g.ncc is not None and g.ratio >= MANY_FIT)
    if rule == "strict":  # dedup's rule (geometry.DEDUP_COPY): >= 8 corners fit, NCC >= 0.9
        return g.ncc is not None and g.inliers >= 8 and g.ncc >= 0.9
    return lines_up(g) or (g.is_copy(*STRONG) and g.ncc is not None and g.ncc >= MIN_NCC)


@dataclass
class Facts:
    """Per pair of one set, everything a decision needs (vectorized over the set)."""

    lite: np.ndarray
    today_tier: np.ndarray  # str: today's service tier (Lite0 + check)
    today_needs: np.ndarray  # bool: today's rule runs the check
    lite_similar: np.ndarray  # bool: Lite0 score >= the similar line
    today_match: np.ndarray  # bool: today's is_match (a copy tier, or the Lite0 score on the match line)
    check: dict[str, np.ndarray]  # rule -> bool: the check says copy
    cover: np.ndarray  # geometry.frame_overlap's cover of the check's fit (nan: no check or not measured)
    inliers: np.ndarray  # corners on the check's fit (-1: no check)
    share: np.ndarray  # frame_overlap's share of the check's fit (nan: no check or not measured)
    ncc: np.ndarray  # the check's NCC (nan: no check or not measured)
    many_fit: np.ndarray  # bool: a quarter of the corners fit (comparison.MANY_FIT), pixels measured


def decide(method: str, f: Facts, copy: np.ndarray | None, lines: Lines | None, rule: str):
    """(tier names, check needed, is_match) per pair of one set."""
    if method == "today":
        return f.today_tier, f.today_needs, f.today_match
    # "+bandsim": a pair the copy detector put in the band but the check did not verify is "similar" too
    similar = f.lite_similar | (copy >= lines.candidate) if "+bandsim" in method else f.lite_similar
    sure = copy >= lines.sure
    band = (copy >= lines.candidate) & ~sure
    if "+object" in method:  # comparison.same_object, asked just under the similar line (similarity.copy_tier)
        near = (copy < lines.candidate) & ~similar & (f.lite >= LITE_SIMILAR[0] - SAME_OBJECT_BAND)
        similar = similar | (near & (f.inliers >= lines.corners))
        checked_below = near
    else:
        checked_below = np.zeros(len(copy), bool)
    not_copy = np.where(similar, "similar", "different")
    if "+union" in method:
        band = band | (f.today_needs & ~sure)
    if rule == "strict_low":  # strict below the copy model's own best-F1 line, aligned above it
        says = np.where(copy >= COPY_MATCH[0], f.check["aligned"], f.check["strict"])
    else:
        says = f.check[rule]
    if "+ncc" in method:  # comparison.BAND_MIN_NCC: aligned at this NCC at least, or a quarter of the corners fit
        says = (f.check["aligned"] & (np.nan_to_num(f.ncc, nan=-1.0) >= lines.many_ncc)) | f.many_fit
    if "+cover" in method:  # comparison.MIN_COVER: one frame lies wholly enough inside the other
        says = says & (np.isnan(f.cover) | (f.cover >= lines.cover))
    if "+share" in method:  # comparison.MIN_SHARE: the overlap fills enough of the larger frame
        says = says & (np.isnan(f.share) | (f.share >= lines.share))
    copy_called = sure | (band & says)
    return np.where(copy_called, "near_duplicate", not_copy), band | checked_below, copy_called


def judge(sets: list[Pairs], decided: dict[str, tuple], copy: dict[str, np.ndarray], mask_half: int | None) -> dict:
    """Figures of one method on the sets (``mask_half``: only that half's pairs; None: all). F1 and
    per-kind shares judge ``is_match`` as the service answers it; other shots are judged by tier."""
    out: dict = {}
    for s in sets:
        sel = np.ones(len(s.labels), bool) if mask_half is None else s.half == mask_half
        t = decided[s.name][0][sel]
        labels = s.labels[sel]
        called = np.isin(t, ("exact", "near_duplicate"))
        if s.name != "shots":
            called = decided[s.name][2][sel]
        if s.name == "shots":
            out["shots_copy"] = float(called.mean())
            out["shots_similar"] = float((t == "similar").mean())
            continue
        pos = labels == 1
        out[f"{s.name}_neg_similar"] = float((t[~pos] == "similar").mean())
        kinds = np.array(s.kinds)[sel]
        out[f"{s.name}_neg_similar_kinds"] = {k: float((t[kinds == k] == "similar").mean())
                                              for k in sorted(set(kinds[~pos].tolist()))}
        tp, fp, fn = int((called & pos).sum()), int((called & ~pos).sum()), int((~called & pos).sum())
        out[f"{s.name}_f1"] = 2 * tp / max(2 * tp + fp + fn, 1)
        out[f"{s.name}_auc"] = roc_auc(copy[s.name][sel], labels)
        out[f"{s.name}_copies"] = float(called[pos].mean())
        kinds = np.array(s.kinds)[sel]
        out[f"{s.name}_kinds"] = {k: float((called[kinds == k] == (labels[kinds == k] == 1)).mean())
                                  for k in sorted(set(kinds.tolist()))}
    return out


SHOT_WEIGHT = 5
LITE_SIMILAR = [0.0]  # the shipped Lite0 similar line, set by main
COVER_GRID = np.round(np.arange(0.40, 0.9001, 0.02), 2)
SHARE_GRID = np.round(np.arange(0.06, 0.4001, 0.01), 2)
NCC_GRID = np.round(np.arange(0.60, 0.8001, 0.01), 2)
CORNER_GRID = (5, 8, 10, 12, 15, 20, 25, 30, 40, 50, 60, 80, 100, 150)


def _middle(tied: list) -> float:
    """The middle of the values that tie for best: the largest margin either side."""
    return tied[len(tied) // 2]


def _pooled_f1(method: str, sets, facts, copy, lines: Lines, rule: str, sel: dict) -> tuple[float, int]:
    """(F1 of copies vs every negative pooled over the sets' ``sel`` pairs, an other shot called a copy
    counting as ``SHOT_WEIGHT`` false positives; how many of those pairs ran the check) at ``lines``."""
    tp = fp = fn = checks = 0
    for s in sets:
        tiers, checked, matched = decide(method, facts[s.name], copy[s.name], lines, rule)
        m = sel[s.name]
        called = np.isin(tiers[m], ("exact", "near_duplicate")) if s.name == "shots" else matched[m]
        pos = s.labels[m] == 1
        tp += int((called & pos).sum())
        fp += int((called & ~pos).sum()) * (SHOT_WEIGHT if s.name == "shots" else 1)
        fn += int((~called & pos).sum())
        checks += int(checked[m].sum())
    return 2 * tp / max(2 * tp + fp + fn, 1), checks


def pick_extras(method: str, sets, facts, copy, half: int | None, lines: Lines, rule: str) -> Lines:
    """``lines`` with the "+cover" line (best pooled F1 as ``pick_lines`` weighs it, at these candidate /
    sure lines; the middle of the tied lines) and the "+object" corner count (the most other shots made
    similar while no labelled negative of the half is called similar more than without the rule; the
    middle of the tied counts) picked on ``half``."""
    sel = {s.name: np.ones(len(s.labels), bool) if half is None else s.half == half for s in sets}
    # each band line in turn (the others at their best so far, off until picked): best pooled F1, the middle of the tied lines
    for option, name, grid in (("+cover", "cover", COVER_GRID), ("+share", "share", SHARE_GRID),
                               ("+ncc", "many_ncc", NCC_GRID)):
        if option not in method:
            continue
        keys = []
        for line in grid:
            trial = replace(lines, **{name: float(line)}, corners=lines.corners or 10**9,
                            **{n: getattr(lines, n) if getattr(lines, n) is not None else off
                               for n, off in (("cover", 0.0), ("share", 0.0), ("many_ncc", -1.0)) if n != name})
            keys.append(round(_pooled_f1(method, sets, facts, copy, trial, rule, sel)[0], 5))
        lines = replace(lines, **{name: float(_middle([c for c, k in zip(grid, keys) if k == max(keys)]))})
    if "+object" in method:
        def counts(corners: int | None) -> tuple[int, int]:
            trial = replace(lines, corners=corners if corners is not None else 10**9)
            shots = negatives = 0
            for s in sets:
                tiers = decide(method, facts[s.name], copy[s.name], trial, rule)[0][sel[s.name]]
                if s.name == "shots":
                    shots += int((tiers == "similar").sum())
                else:
                    negatives += int((tiers[s.labels[sel[s.name]] == 0] == "similar").sum())
            return shots, negatives
        _, base_negatives = counts(None)
        scored = [(c, *counts(c)) for c in CORNER_GRID]
        clean = [(c, shots) for c, shots, negatives in scored if negatives <= base_negatives]
        best = max(shots for _, shots in clean)
        lines = replace(lines, corners=int(_middle([c for c, shots in clean if shots == best])))
    return lines
COPY_MATCH = [0.0]  # the copy model's shipped best-F1 line (calibration_defaults.json), set by main


def pick_lines(method: str, sets, facts, copy, half: int | None, rule: str, extras: Lines | None = None) -> Lines:
    """Best pooled F1 (copies vs every negative) on ``half``, an other shot called a copy counting as
    ``SHOT_WEIGHT`` false positives (the sets hold ~5x more copies than other shots, and the target for
    shots is the stricter one); ties: fewer checks."""
    grid = np.round(np.arange(0.50, 1.0001, 0.0125), 4)
    sel = {s.name: np.ones(len(s.labels), bool) if half is None else s.half == half for s in sets}
    best = None
    for cand in grid:
        for sure in grid[grid >= cand]:
            lines = replace(extras, candidate=float(cand), sure=float(sure)) if extras else Lines(float(cand), float(sure))
            f1, checks = _pooled_f1(method, sets, facts, copy, lines, rule, sel)
            key = (round(f1, 5), -checks)
            if best is None or key > best[0]:
                best = (key, lines)
    return best[1]


def end_to_end(settings, n_pairs: int = 40, rounds: int = 3) -> dict[str, float]:
    """ms per compared pair through ``comparison.compare_with`` (bytes in, no embedding cache), with and
    without the copy detector, interleaved pair by pair so machine load hits both alike; median round.
    Pairs: DEV pairs (both labels) and other shots, the mix the accuracy figures use."""
    from lookalike.comparison import compare_with, copy_detector
    from lookalike.embed import EmbedderPool
    from lookalike.similarity import thresholds_for

    pool = EmbedderPool(settings)
    embedder = pool.get()
    thresholds = thresholds_for(embedder.model_name, embedder.input_size, settings)
    detector = copy_detector(pool.get, settings)
    dev = load_pairs(DEV / "pairs.csv")
    rng = random.Random(3)
    picked = rng.sample(range(len(dev.labels)), n_pairs // 2)
    pairs = [(dev.path_a[i], dev.path_b[i]) for i in picked] + rng.sample(other_shot_pairs(), n_pairs // 2)
    data = [(Path(a).read_bytes(), Path(b).read_bytes()) for a, b in pairs]
    runs: dict[str, list[float]] = {"today (copy_model none)": [], f"{detector.embedder.model_name} copy tiers": []}
    for a, b in data[:2]:  # warm-up
        compare_with(embedder, a, b, thresholds)
        compare_with(embedder, a, b, thresholds, copy=detector)
    for _ in range(rounds):
        spent = {k: 0.0 for k in runs}
        for a, b in data:
            for name, copy in zip(runs, (None, detector)):
                t0 = time.perf_counter()
                compare_with(embedder, a, b, thresholds, copy=copy)
                spent[name] += time.perf_counter() - t0
        for name in runs:
            runs[name].append(spent[name] * 1000.0 / len(data))
    return {k: float(np.median(v)) for k, v in runs.items()}


BEGIN = "<!-- copy_compare.py --report: begin -->"
END = "<!-- copy_compare.py --report: end -->"


def write_report(results_json: Path, out: Path) -> None:
    """The tables of ``results_json`` between BEGIN and END in ``out`` (placed before accuracy.py's own
    generated part when first written)."""
    data = json.loads(results_json.read_text())
    rows = data["results"]
    lines = [BEGIN, "",
             "| method | check rule | lines (candidate / sure) | DEV AUC | DEV F1 | harder F1 | turned F1 | "
             "copies matched (DEV / harder / turned) | other shots: copy / similar | negatives called similar "
             "(DEV / harder / turned) | pairs checked | ms/pair (est.) |",
             "|---|---|---|---:|---:|---:|---:|---|---|---|---:|---:|"]
    for r in rows:
        a = r["all"]
        held = r["held_out"]
        lines_txt = "shipped Lite0 lines" if r["lines"] is None else f"{r['lines'][0]:.4f} / {r['lines'][1]:.4f}"
        if r["lines"] is not None and len(r["lines"]) > 2:
            lines_txt += "".join(f"; {name} {r['lines'][i]:g} ({held[0]['lines'][i]:g}, {held[1]['lines'][i]:g})"
                                 for i, name in ((2, "cover"), (3, "corners"), (4, "share"), (5, "NCC"))
                                 if len(r["lines"]) > i and r["lines"][i] is not None)
        cell = (lambda key, fmt="{:.3f}": f"{fmt.format(a[key])} ({fmt.format(held[0][key])}, {fmt.format(held[1][key])})")
        lines.append(
            f"| {r['method']} ({r['descriptors']} copy descr.) | {r['rule'] if r['method'] != 'today' else 'decide_tier'} | "
            f"{lines_txt} | {cell('DEV_auc', '{:.4f}')} | {cell('DEV_f1')} | {cell('hard_f1')} | {cell('turned_f1')} | "
            f"{a['DEV_copies']:.3f} / {a['hard_copies']:.3f} / {a['turned_copies']:.3f} | "
            f"{a['shots_copy']:.1%} ({held[0]['shots_copy']:.1%}, {held[1]['shots_copy']:.1%}) / "
            f"{a['shots_similar']:.1%} ({held[0]['shots_similar']:.1%}, {held[1]['shots_similar']:.1%}) | "
            f"{a.get('DEV_neg_similar', float('nan')):.1%} / {a.get('hard_neg_similar', float('nan')):.1%} / "
            f"{a.get('turned_neg_similar', float('nan')):.1%} | "
            f"{r['checked']:.0%} | {r['ms_pair']:.1f} |")
    shown = [r for r in rows if (r["method"], r["rule"]) in (("today", "compare"), ("sscd+bandsim", "aligned"),
                                                             ("sscd+bandsim", "aligned_many"),
                                                             ("sscd+bandsim+cover+object", "aligned_many"),
                                                             ("sscd+bandsim+cover+share+ncc+object", "aligned_many"))]
    kinds = sorted({k for r in shown for name in ("turned_kinds", "hard_kinds") for k in r["all"][name]
                    if k.startswith("pos")})
    lines += ["", "Per edit (all pairs, share found as a copy):", "",
              "| method | " + " | ".join(k.replace("pos_", "") for k in kinds) + " |",
              "|---|" + "---:|" * len(kinds)]
    for r in shown:
        merged = {**r["all"]["hard_kinds"], **r["all"]["turned_kinds"]}
        lines.append(f"| {r['method']} ({r['rule']}) | " + " | ".join(f"{merged.get(k, float('nan')):.2f}" for k in kinds)
                     + " |")
    neg_kinds = [(name, k) for name in ("DEV", "hard", "turned") for k in shown[0]["all"].get(f"{name}_neg_similar_kinds", {})]
    if neg_kinds:
        lines += ["", "Negatives (never the same thing) called `similar`, by kind (all pairs):", "",
                  "| method | " + " | ".join(f"{name}: {k.replace('neg_', '')}" for name, k in neg_kinds) + " |",
                  "|---|" + "---:|" * len(neg_kinds)]
        for r in shown:
            lines.append(f"| {r['method']} ({r['rule']}) | " + " | ".join(
                f"{r['all'][f'{name}_neg_similar_kinds'][k]:.1%}" for name, k in neg_kinds) + " |")
    if "similar_floor" in data:
        lines += ["", "An SSCD *similar floor* on `sscd+bandsim (aligned_many)` at 0.600 / 0.925 (a pair the rules call "
                  "`different` whose copy score is at or above the floor is `similar`), all pairs:", "",
                  "| floor | other shots similar | negatives called similar (DEV / harder / turned) |", "|---:|---:|---|"]
        for f in data["similar_floor"]:
            lines.append(f"| {f['floor']:.2f} | {f['shots_similar']:.1%} | {f['DEV_neg_similar']:.1%} / "
                         f"{f['hard_neg_similar']:.1%} / {f['turned_neg_similar']:.1%} |")
    if "end_to_end_ms" in data:
        lines += ["", "End to end through `comparison.compare_with` (bytes in, no embedding cache; 20 DEV pairs + 20 "
                  "other shots, interleaved, median of 3 rounds; `python benchmarks/copy_compare.py --timing`):", "",
                  "| decision | ms per compared pair | ratio |", "|---|---:|---:|"]
        base = next(iter(data["end_to_end_ms"].values()))
        for name, ms in data["end_to_end_ms"].items():
            lines.append(f"| {name} | {ms:.1f} | {ms / base:.2f}x |")
    lines += ["", f"ms/image in the accuracy run: Lite0 {data['ms_image']['lite']:.1f}, {data['model']} "
              f"{data['ms_image']['copy']:.1f}; the geometric check {data['geometry_ms']:.1f} ms per checked pair "
              "(2 shared cores: compare ratios, not absolute figures).", "", END]
    text = out.read_text()
    block = "\n".join(lines)
    if BEGIN in text:
        text = text.split(BEGIN)[0] + block + text.split(END, 1)[1]
    else:
        marker = "<!-- generated by benchmarks/accuracy.py --report: tables below -->"
        text = text.replace(marker, block + "\n\n" + marker) if marker in text else text + "\n" + block + "\n"
    out.write_text(text)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="sscd_distilled")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "copy_compare.json"))
    parser.add_argument("--timing", action="store_true", help="only the end-to-end ms per compared pair")
    parser.add_argument("--report", action="store_true", help="write the tables into benchmarks/results/accuracy.md")
    args = parser.parse_args(argv)
    if args.report:
        write_report(Path(args.out), REPO / "benchmarks" / "results" / "accuracy.md")
        return 0
    if args.timing:
        times = end_to_end(bench_settings(copy_model=args.model))
        out = Path(args.out)
        saved = json.loads(out.read_text()) if out.is_file() else {}
        saved["end_to_end_ms"] = times
        out.write_text(json.dumps(saved, indent=1))
        print(json.dumps(times))
        return 0

    from lookalike.comparison import MANY_FIT
    from lookalike.embed import create_embedder
    from lookalike.geometry import FLOOR, GeometryResult
    from lookalike.imaging import ImageLimits
    from lookalike.similarity import thresholds_for

    settings = bench_settings()
    sets = load_sets()
    lite_e = create_embedder(settings.default_model, settings=settings)
    copy_e = create_embedder(args.model, settings=settings)
    thresholds = thresholds_for(lite_e.model_name, lite_e.input_size, settings)
    paths = list(dict.fromkeys(p for s in sets for p in (*s.a, *s.b)))
    print(f"{len(paths)} images, {sum(len(s.labels) for s in sets)} pairs", file=sys.stderr)
    lite_v = _vectors(lite_e, paths, f"{lite_e.model_name}-{lite_e.input_size}")
    copy_v = _vectors(copy_e, paths, f"{copy_e.model_name}-{copy_e.input_size}-d4", D4)

    def score(u: np.ndarray, v: np.ndarray) -> float:
        return float((np.dot(u, v) / (np.linalg.norm(u) * np.linalg.norm(v)) + 1) / 2)

    lite, copies = {}, {"sscd": {}, "sscd_turned": {}, "sscd_turned4": {}}
    for s in sets:
        lite[s.name] = np.array([score(lite_v[str(a)][0], lite_v[str(b)][0]) for a, b in zip(s.a, s.b)])
        turned = np.array([[score(copy_v[str(a)][0], copy_v[str(b)][t]) for t in range(len(D4))]
                           for a, b in zip(s.a, s.b)])
        copies["sscd"][s.name] = turned[:, 0]
        copies["sscd_turned"][s.name] = turned.max(axis=1)
        copies["sscd_turned4"][s.name] = turned[:, list(TURNS4)].max(axis=1)
    # the check runs wherever any method could ask for it
    low = 0.50
    need = [(str(a), str(b)) for s in sets for i, (a, b) in enumerate(zip(s.a, s.b))
            if lite[s.name][i] >= thresholds.similar - FLOOR or copies["sscd_turned"][s.name][i] >= low]
    print(f"geometric check on {len(need)} pairs", file=sys.stderr, flush=True)
    geo_cache, geo_ms = geometry(need, lite_e.preprocessing.decode_side, ImageLimits.from_settings(settings))
    geo = {s.name: [GeometryResult(*geo_cache[f"{a}|{b}"]) if f"{a}|{b}" in geo_cache else None
                    for a, b in zip(s.a, s.b)] for s in sets}

    sample = sorted((DEV / "pairs" / "originals").glob("*.jpg"))[:24]
    ms_img = _ms_per_image({"lite": lite_e, "copy": copy_e}, sample)
    print(f"ms/image {ms_img}, geometry {geo_ms:.1f} ms/check", file=sys.stderr, flush=True)

    from lookalike.geometry import decide_tier, needs_check

    facts = {}
    for s in sets:
        today, needs, matched = [], [], []
        for sc, g in zip(lite[s.name], geo[s.name]):
            tier = thresholds.tier(float(sc))
            n = needs_check(float(sc), thresholds, tier)
            tier = decide_tier(float(sc), thresholds, g) if n else tier
            today.append(tier.value)
            needs.append(n)
            matched.append(thresholds.is_match(float(sc), tier))
        facts[s.name] = Facts(lite[s.name], np.array(today), np.array(needs), lite[s.name] >= thresholds.similar,
                              np.array(matched),
                              {r: np.array([check_says_copy(g, r) for g in geo[s.name]])
                               for r in ("compare", "aligned", "aligned_many", "strict")},
                              np.array([np.nan if g is None or g.cover is None else g.cover for g in geo[s.name]]),
                              np.array([-1 if g is None else g.inliers for g in geo[s.name]]),
                              np.array([np.nan if g is None or g.share is None else g.share for g in geo[s.name]]),
                              np.array([np.nan if g is None or g.ncc is None else g.ncc for g in geo[s.name]]),
                              np.array([g is not None and g.ncc is not None and g.ratio >= MANY_FIT for g in geo[s.name]]))
    LITE_SIMILAR[0] = thresholds.similar
    COPY_MATCH[0] = copy_lines_for(copy_e.model_name, copy_e.input_size, settings).match

    methods = [("today", "sscd", "compare", 0)]
    for copy_name, n_desc in (("sscd", 1), ("sscd_turned4", 5), ("sscd_turned", 8)):
        for rule in ("compare", "aligned"):
            methods.append((copy_name, copy_name, rule, n_desc))
        methods.append((copy_name + "+union", copy_name, "aligned", n_desc))
    methods.append(("sscd+bandsim", "sscd", "aligned", 1))
    methods.append(("sscd+bandsim", "sscd", "aligned_many", 1))
    methods.append(("sscd_turned4+bandsim", "sscd_turned4", "aligned_many", 5))
    for rule in ("strict", "strict_low"):
        methods.append(("sscd+bandsim", "sscd", rule, 1))
        methods.append(("sscd_turned4+bandsim", "sscd_turned4", rule, 5))
    methods.append(("sscd+bandsim+cover", "sscd", "aligned_many", 1))
    methods.append(("sscd+bandsim+object", "sscd", "aligned_many", 1))
    methods.append(("sscd+bandsim+cover+object", "sscd", "aligned_many", 1))
    methods.append(("sscd+bandsim+cover+share+object", "sscd", "aligned_many", 1))
    methods.append(("sscd+bandsim+cover+ncc+object", "sscd", "aligned_many", 1))
    methods.append(("sscd+bandsim+cover+share+ncc+object", "sscd", "aligned_many", 1))  # shipped

    def fit(method: str, copy, half: int | None, rule: str) -> Lines:
        """Candidate / sure lines, then the "+cover" / "+object" lines at them, then the lines again."""
        plain = method
        for option in ("+cover", "+share", "+ncc", "+object"):
            plain = plain.replace(option, "")
        lines = pick_lines(plain, sets, facts, copy, half, rule)
        if plain == method:
            return lines
        extras = pick_extras(method, sets, facts, copy, half, lines, rule)
        return pick_lines(method, sets, facts, copy, half, rule, extras)
    results = []
    for method, copy_name, rule, n_desc in methods:
        copy = lite if method == "today" else copies[copy_name]
        row: dict = {"method": method, "rule": rule, "descriptors": n_desc}
        held = []
        for fit_half in (0, 1):
            lines = None if method == "today" else fit(method, copy, fit_half, rule)
            decided = {s.name: decide(method, facts[s.name], copy[s.name], lines, rule) for s in sets}
            held.append({**judge(sets, decided, copy, 1 - fit_half),
                         "lines": None if lines is None else astuple(lines)})
        lines = None if method == "today" else fit(method, copy, None, rule)
        decided = {s.name: decide(method, facts[s.name], copy[s.name], lines, rule) for s in sets}
        row["held_out"] = held
        row["all"] = judge(sets, decided, copy, None)
        row["lines"] = None if lines is None else astuple(lines)
        share = float(np.mean(np.concatenate([v[1] for v in decided.values()])))
        row["checked"] = share
        # compare embeds both images with each model; turned scores embed one image's turns too
        row["ms_pair"] = 2 * ms_img["lite"] + (ms_img["copy"] * (1 + n_desc) if n_desc else 0) + share * geo_ms
        results.append(row)
        print(json.dumps({k: v for k, v in row.items() if k != "held_out"}), flush=True)
    # An SSCD "similar floor" (a pair scoring at or above it is at least similar): what it buys and costs
    floors = []
    for floor in (0.54, 0.55, 0.56, 0.57, 0.58, 0.59):
        row = {"floor": floor}
        for s in sets:
            tiers = decide("sscd+bandsim", facts[s.name], copies["sscd"][s.name], Lines(0.6, 0.925), "aligned_many")[0]
            tiers = np.where((tiers == "different") & (copies["sscd"][s.name] >= floor), "similar", tiers)
            if s.name == "shots":
                row["shots_similar"] = float((tiers == "similar").mean())
            else:
                row[f"{s.name}_neg_similar"] = float((tiers[s.labels == 0] == "similar").mean())
        floors.append(row)
    out = Path(args.out)
    saved = json.loads(out.read_text()) if out.is_file() else {}
    out.write_text(json.dumps({**saved, "model": args.model, "similar_floor": floors, "ms_image": ms_img, "geometry_ms": geo_ms,
                                          "thresholds": [thresholds.match, thresholds.near_duplicate,
                                                         thresholds.similar],
                                          "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
