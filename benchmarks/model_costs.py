"""Cost per image of every model family lookalike offers, one run, as ratios to the default (Lite0).

Forward time of a batch of 16 real DEV photos (preprocessed once, outside the timing) and of one
photo, interleaved across models so machine load hits them alike, on the default backend
(``auto``). Models with weights here run them; the hub ViTs (DINOv2, CLIP, SigLIP) are offline
here, so they are exported with RANDOM weights: a forward costs the same whatever the weights,
and those rows measure cost only (never accuracy).

    python benchmarks/model_costs.py [--rounds 5] [--no-vits]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_settings, dev_images, interleaved, markdown_table, write_result

WITH_WEIGHTS = ["tf_efficientnet_lite0", "tf_efficientnet_lite1", "tf_efficientnet_lite2", "sscd_distilled", "sscd"]
VITS = ["dinov2_small", "dinov2_base", "clip_b16", "siglip_b16"]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--no-vits", action="store_true")
    args = parser.parse_args()

    from lookalike.embed import create_embedder
    from lookalike.models.export import export_random_weights_onnx_for_tests
    from lookalike.models.registry import resolve_model

    sample = dev_images(16)
    settings = bench_settings()
    embedders = {}
    for name in WITH_WEIGHTS:
        embedders[name] = (create_embedder(name, settings=settings), "real")
    tmp = Path(tempfile.mkdtemp(prefix="lookalike-costs-"))
    if not args.no_vits:
        declared = {}
        for alias in VITS:
            spec = resolve_model(alias)
            path = export_random_weights_onnx_for_tests(spec, spec.default_size, tmp / f"{alias}.onnx")
            pre = spec.preprocessing
            declared[alias + "_random"] = {"onnx": str(path), "input_size": pre.input_size, "mean": list(pre.mean),
                                           "std": list(pre.std), "interpolation": pre.interpolation}
        vit_settings = bench_settings(models=declared)
        for alias in VITS:
            embedders[alias] = (create_embedder(alias + "_random", settings=vit_settings), "random (cost only)")
    batches = {}
    for name, (embedder, _) in embedders.items():
        batches[name] = embedder.preprocessing.to_array([embedder.load(p) for p in sample])
    batch16 = {n: (lambda e, b: (lambda _i: e.encode_arrays(b)))(e, batches[n]) for n, (e, _) in embedders.items()}
    single = {n: (lambda e, b: (lambda i: e.encode_arrays(b[i % 16 : i % 16 + 1])))(e, batches[n])
              for n, (e, _) in embedders.items()}
    many = interleaved(batch16, rounds=args.rounds, warmup=1)
    one = interleaved(single, rounds=args.rounds * 4, warmup=2)
    ref16, ref1 = many["tf_efficientnet_lite0"].p50, one["tf_efficientnet_lite0"].p50
    rows = []
    for name, (embedder, weights) in embedders.items():
        rows.append((name, embedder.input_size, embedder.dim, embedder.backend, weights,
                     f"{many[name].p50 / 16:.1f}", f"{many[name].p50 / ref16:.2f}",
                     f"{one[name].p50:.1f}", f"{one[name].p50 / ref1:.2f}"))
    table = markdown_table(["model", "size", "dim", "backend", "weights", "ms/image (batch 16, p50)", "x Lite0",
                            "ms (1 image, p50)", "x Lite0"], rows)
    body = ("Forward only (decode and resize excluded), 16 DEV photos. ViT rows use random weights: same cost as "
            "the real ones, no accuracy meaning.\n\n" + table)
    write_result("model_costs", "Cost per image of each model", body,
                 "python benchmarks/model_costs.py " + " ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
