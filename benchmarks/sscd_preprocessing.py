"""Which input size and resize mode for the SSCD models: DEV pair ROC-AUC against cost, one run.

SSCD takes any image size, but a batch needs one: each candidate squashes the whole image to
``size x size`` ("resize") or scales the short side to ``size`` and keeps the centre square
("crop"). For each (model, mode, size): ROC-AUC and best F1 of the cosine score on the DEV pairs
(``pairs.csv``), and the forward cost per image (a batch of 16 preprocessed photos, interleaved
across contenders so machine load hits them alike). The default Lite0 (resize + GeM) is the
reference row of the same run.

    python benchmarks/sscd_preprocessing.py [--sizes 224,256,288,320] [--rounds 5]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_settings, dev_images, dev_pairs, interleaved, markdown_table, write_result


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", default="224,256,288,320")
    parser.add_argument("--models", default="sscd_distilled,sscd")
    parser.add_argument("--modes", default="resize,crop")
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()

    from lookalike.embed import create_embedder
    from lookalike.quality.evaluation import cosine_pair_scores, embed_paths, pair_metrics

    sizes = [int(s) for s in args.sizes.split(",")]
    pairs = dev_pairs()
    path_a, path_b, labels = [p[0] for p in pairs], [p[1] for p in pairs], np.array([p[2] for p in pairs])
    sample = dev_images(16)
    contenders = [("tf_efficientnet_lite0", "resize", None)]
    contenders += [(m, mode, s) for m in args.models.split(",") for mode in args.modes.split(",") for s in sizes]
    rows, forwards = {}, {}
    for model, mode, size in contenders:
        settings = bench_settings(allowed_input_sizes=sorted({*sizes, 224}), preprocess=mode)
        embedder = create_embedder(model, input_size=size, settings=settings)
        vectors = embed_paths(embedder, path_a + path_b)
        metrics = pair_metrics(cosine_pair_scores(vectors, path_a, path_b), labels, 0.8)
        label = f"{model} {mode} {embedder.input_size}"
        rows[label] = (model, mode, embedder.input_size, metrics.roc_auc, metrics.best_f1)
        batch = embedder.preprocessing.to_array([embedder.load(p) for p in sample])
        forwards[label] = (lambda e, b: (lambda _i: e.encode_arrays(b)))(embedder, batch)
    stats = interleaved(forwards, rounds=args.rounds, warmup=1)
    reference = stats[next(iter(stats))].p50
    table = markdown_table(
        ["model", "mode", "size", "ROC-AUC", "best F1", "forward ms/image (p50, batch 16)", "x Lite0"],
        [(model, mode, size, f"{auc:.4f}", f"{f1:.3f}", f"{stats[k].p50 / 16:.2f}", f"{stats[k].p50 / reference:.2f}")
         for k, (model, mode, size, auc, f1) in rows.items()],
    )
    body = (
        f"{len(pairs)} DEV pairs ({int(labels.sum())} copies); cosine of L2-normalized embeddings; backend auto. "
        "'resize' squashes the whole image to size x size, 'crop' scales the short side to size and keeps the "
        "centre square.\n\n" + table
    )
    write_result("sscd_preprocessing", "SSCD input size and resize mode (DEV pairs)", body,
                 "python benchmarks/sscd_preprocessing.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
