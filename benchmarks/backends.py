"""Inference backends side by side: speed (batch 1 / batch 16) and accuracy against fp32, one run.

Every backend runs the same exported ONNX file of the default model on the same preprocessed
real DEV photos. Accuracy is judged against ONNX Runtime fp32 (the exported graph as is):
cosine of each photo's embedding to its fp32 embedding (min and mean over all photos), and the
pair AUC on ``pairs.csv`` (goal: within 0.005 of fp32's). A backend qualifies as default only
with min cosine >= 0.99 and that AUC.

Contenders: ONNX Runtime fp32; OpenVINO f32; OpenVINO at its default CPU precision (bf16 on
CPUs with AVX512-BF16/AMX); ONNX Runtime int8 dynamic quantization; int8 static quantization
(QDQ, per-channel, calibrated on DEV photos) on ONNX Runtime and on OpenVINO.

    python benchmarks/backends.py [--rounds 30] [--no-int8]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import bench_settings, dev_pairs, interleaved, markdown_table, write_result
from lookalike.quality.evaluation import roc_auc as auc


def preprocess_all(paths: list[Path], embedder) -> np.ndarray:
    """All photos through lookalike's own decode + preprocessing, once, for every backend."""
    return np.concatenate([embedder.preprocessing.to_array([embedder.load(p)]) for p in paths])


def quantize_dynamic(onnx_path: Path, out: Path) -> Path:
    from onnxruntime.quantization import QuantType
    from onnxruntime.quantization import quantize_dynamic as qd

    qd(str(onnx_path), str(out), weight_type=QuantType.QInt8)
    return out


def quantize_static(onnx_path: Path, out: Path, calibration: np.ndarray) -> Path:
    import onnx
    from onnxruntime.quantization import CalibrationDataReader, QuantFormat, QuantType
    from onnxruntime.quantization import quantize_static as qs
    from onnxruntime.quantization.shape_inference import quant_pre_process

    name = onnx.load(str(onnx_path), load_external_data=False).graph.input[0].name

    class Reader(CalibrationDataReader):
        def __init__(self) -> None:
            self._items = iter([{name: calibration[i : i + 1]} for i in range(len(calibration))])

        def get_next(self):
            return next(self._items, None)

    prepared = out.with_name(out.stem + "-pre.onnx")
    quant_pre_process(str(onnx_path), str(prepared))
    qs(str(prepared), str(out), Reader(), quant_format=QuantFormat.QDQ, per_channel=True,
       activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=30, help="timed calls per contender and batch size")
    parser.add_argument("--no-int8", action="store_true", help="skip the quantized contenders")
    args = parser.parse_args(argv)

    from lookalike.embed import (
        create_embedder,
        l2_normalize,
        onnxruntime_forward,
        openvino_forward,
    )
    from lookalike.models.export import ensure_onnx
    from lookalike.models.registry import resolve_model

    settings = bench_settings()
    threads = settings.threads or os.cpu_count() or 1
    spec = resolve_model(settings.default_model)
    size = settings.input_size or spec.default_size
    onnx_path = ensure_onnx(spec, size, settings, pooling=settings.pooling).onnx_path
    loader = create_embedder(settings=settings, backend="onnxruntime")

    pairs = dev_pairs()
    paths = sorted({p for a, b, _ in pairs for p in (a, b)})
    index = {p: i for i, p in enumerate(paths)}
    arrays = preprocess_all(paths, loader)
    labels = np.array([label for _, _, label in pairs])

    forwards = {
        "onnxruntime fp32": onnxruntime_forward(str(onnx_path), threads),
        "openvino f32": openvino_forward(str(onnx_path), threads, precision="f32"),
        "openvino default precision": openvino_forward(str(onnx_path), threads, latency=True),
        "openvino default precision, throughput hint (1 single-thread stream per core)": openvino_forward(
            str(onnx_path), threads),
    }
    tmp = tempfile.TemporaryDirectory(prefix="lookalike-quant-")
    if not args.no_int8:
        rng = np.random.default_rng(0)
        calibration = arrays[rng.choice(len(arrays), size=min(64, len(arrays)), replace=False)]
        dyn = quantize_dynamic(onnx_path, Path(tmp.name) / "dynamic.onnx")
        static = quantize_static(onnx_path, Path(tmp.name) / "static.onnx", calibration)
        forwards["onnxruntime int8 dynamic"] = onnxruntime_forward(str(dyn), threads)
        forwards["onnxruntime int8 static (QDQ)"] = onnxruntime_forward(str(static), threads)
        forwards["openvino int8 static (QDQ)"] = openvino_forward(str(static), threads)

    embeddings = {}
    for name, forward in forwards.items():
        embeddings[name] = l2_normalize(np.concatenate([forward(arrays[i : i + 16]) for i in range(0, len(arrays), 16)]))
    reference = embeddings["onnxruntime fp32"]

    speed = {}
    for batch in (1, 2, 16):
        def runner(forward, batch=batch):
            return lambda i: forward(np.ascontiguousarray(arrays[(i * batch) % (len(arrays) - batch):][:batch]))

        rounds = args.rounds if batch <= 2 else max(5, args.rounds // 4)
        # blocks of calls per engine: one engine's idle threads still spin while the next starts
        speed[batch] = interleaved({name: runner(f) for name, f in forwards.items()}, rounds=rounds,
                                   block=5 if batch <= 2 else 2)

    rows = []
    for name, vectors in embeddings.items():
        cos = np.sum(vectors * reference, axis=1)
        scores = np.array([vectors[index[a]] @ vectors[index[b]] for a, b, _ in pairs])
        b1, pair, b16 = speed[1][name].p50, speed[2][name].p50, speed[16][name].p50 / 16
        ok = cos.min() >= 0.99
        rows.append((name, b1, pair, b16, speed[1]["onnxruntime fp32"].p50 / b1, float(cos.min()),
                     float(cos.mean()), auc(scores, labels), "yes" if ok else "no"))
    ref_auc = rows[0][7]
    rows = [(*r[:8], f"{r[7] - ref_auc:+.4f}", "yes" if r[8] == "yes" and abs(r[7] - ref_auc) <= 0.005 else "no")
            for r in rows]
    tmp.cleanup()

    from lookalike.embed import resolve_backend

    default = "openvino default precision" if resolve_backend("auto") == "openvino" else "onnxruntime fp32"
    chosen = next(r for r in rows if r[0] == default)
    qualified = [r for r in rows if r[-1] == "yes"]
    fastest = min(qualified, key=lambda r: r[2])  # a pair is what the service forwards
    goals = markdown_table(
        ["measure", "value", "goal", "met"],
        [
            (f"default backend (`auto` = {default}): min cosine to fp32", f"{chosen[5]:.4f}", ">= 0.99",
             "yes" if chosen[5] >= 0.99 else "no"),
            ("default backend: pair AUC - fp32 AUC", chosen[8], "within 0.005",
             "yes" if abs(float(chosen[8])) <= 0.005 else "no"),
            ("default backend speed-up vs ONNX Runtime fp32 (pair = batch 2)",
             f"{rows[0][2] / chosen[2]:.2f}x", f"the fastest qualifying engine at a pair ({fastest[0]})",
             "yes" if fastest[0].split(",")[0] == chosen[0].split(",")[0] else "no"),
        ],
    )

    body = (
        f"Model `{spec.name}` @ {size}px, {settings.pooling} pooling, {threads} inference threads, {len(paths)} real DEV photos "
        f"preprocessed once by lookalike; speed = p50 over {args.rounds} interleaved turns of 5 calls, the first of each "
        f"turn untimed (batch 16: turns of 2, "
        f"{max(5, args.rounds // 4)}), per image. Accuracy vs ONNX Runtime fp32 on every photo; AUC on "
        f"{len(pairs)} labelled pairs of `pairs.csv`.\n\n"
        + markdown_table(
            ["backend", "ms/img batch 1", "ms per pair (batch 2)", "ms/img batch 16", "speed-up vs ORT fp32 (b1)",
             "min cos to fp32",
             "mean cos to fp32", "pair AUC", "AUC - fp32", "qualifies"],
            rows,
        )
        + "\n\n" + goals
        + "\n\nOpenVINO rows: the latency hint (one stream over all cores; `openvino_hint = \"latency\"`, the "
        "default) and the throughput hint (one single-thread stream per core, a batch split across them so a "
        "pair's two images run side by side; `openvino_hint = \"throughput\"`). The default was chosen in the "
        "server, not here (benchmarks/results/serving.md).\n"
        + "\nQualifies = min cosine to fp32 >= 0.99 and AUC within 0.005 of fp32. `backend = \"auto\"` "
        "(the default) picks OpenVINO at its default precision when `openvino` is importable, else ONNX "
        "Runtime fp32.\n"
    )
    write_result("backends", "Inference backends: speed and accuracy against fp32", body,
                 "python benchmarks/backends.py " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
