"""Pair latency through the HTTP endpoint vs the machine's floor vs the seed's way, in one run.

Three contenders answer the same pairs of real DEV photos, round-robin so that load from other
processes hits all of them alike:

- **http**: ``POST /v1/compare`` on a real ``lookalike serve`` (loopback, keep-alive client,
  embedding cache off so every request decodes and embeds both images);
- **bare**: what any program must do at least: decode both JPEGs (Pillow ``draft`` + one resize
  + normalize, written here without lookalike's code) and two batch-1 forwards of the same ONNX
  file on the same backend, in this process;
- **bare with the copy detector** (while ``copy_model`` is on, the goal's baseline): one decode
  per JPEG feeding both models, the two similarity forwards and the two copy-detector forwards
  (``/v1/compare`` runs both ONNX files: the overhead is measured against the same work);
- **bare, side by side** (OpenVINO only, reported, not the goal's baseline): the same two decodes
  and forwards on two throughput streams at once, which is how the server runs a pair;
- **seed-faithful**: the seed's way: per request build timm ``resnet18`` and load its weights
  from disk (the seed's ``pretrained=True`` read the hub cache; offline, a saved state_dict of the
  same size stands in), torchvision transforms, eager torch forward, cosine.

Goals (issue 6): http p50 / bare p50 <= 1.3, seed p50 / http p50 >= 10.

    python benchmarks/pair_latency.py [--rounds 60] [--backend auto]
"""

from __future__ import annotations

import argparse
import io
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (
    Server,
    Stats,
    bench_settings,
    dev_images,
    markdown_table,
    write_result,
)
from lookalike.similarity import normalized_score


def _open_rgb(data: bytes, side: int):  # noqa: ANN202 - a PIL image
    """JPEG bytes decoded at the smallest DCT scale that keeps ``side`` px, as RGB."""
    from PIL import Image

    image = Image.open(io.BytesIO(data))
    image.draft("RGB", (side, side))
    image.load()
    return image if image.mode == "RGB" else image.convert("RGB")


def _normalized(image, size: int, mean: np.ndarray, inv_std: np.ndarray) -> np.ndarray:  # noqa: ANN001
    """A decoded image -> (1, 3, size, size) float32: one resize, then uint8 HWC -> float32 CHW in one pass."""
    from PIL import Image

    square = image.resize((size, size), Image.Resampling.BICUBIC, reducing_gap=None)
    out = np.empty((1, 3, size, size), dtype=np.float32)
    np.subtract(np.asarray(square).transpose(2, 0, 1), mean, out=out[0])
    out *= inv_std
    return out


def bare_decode(data: bytes, size: int, mean: np.ndarray, inv_std: np.ndarray) -> np.ndarray:
    """JPEG bytes -> (1, 3, size, size) float32: the minimum any pipeline has to do."""
    return _normalized(_open_rgb(data, size), size, mean, inv_std)


def bare_decode_both(data: bytes, size: int, mean: np.ndarray, inv_std: np.ndarray,
                     copy_size: int) -> tuple[np.ndarray, np.ndarray]:
    """One JPEG decode -> the similarity model's (1, 3, size, size) float32 and the copy detector's
    (1, copy_size, copy_size, 3) uint8 (short side scaled, centre square): the minimum a program
    running both models must do."""
    from PIL import Image

    image = _open_rgb(data, max(size, copy_size))
    out = _normalized(image, size, mean, inv_std)
    scale = copy_size / min(image.size)
    w, h = max(copy_size, round(image.width * scale)), max(copy_size, round(image.height * scale))
    short = image.resize((w, h), Image.Resampling.BILINEAR, reducing_gap=None)
    left, top = (w - copy_size) // 2, (h - copy_size) // 2
    crop = np.asarray(short.crop((left, top, left + copy_size, top + copy_size)))[None]
    return out, np.ascontiguousarray(crop)


def bare_forward(backend: str, onnx_path: str, threads: int):
    """A batch -> features function straight on the engine, none of lookalike's code."""
    if backend == "openvino":
        import openvino as ov

        core = ov.Core()
        compiled = core.compile_model(core.read_model(onnx_path), "CPU",
                                      {"INFERENCE_NUM_THREADS": threads, "PERFORMANCE_HINT": "LATENCY"})
        request = compiled.create_infer_request()
        return lambda batch: request.infer({0: batch})[0]
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name
    return lambda batch: session.run(None, {name: batch})[0]


def bare_parallel_pair(onnx_path: str, threads: int):
    """OpenVINO throughput streams, one image per stream side by side: the fastest pair floor here."""
    import openvino as ov

    core = ov.Core()
    compiled = core.compile_model(core.read_model(onnx_path), "CPU",
                                  {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": threads})
    first, second = compiled.create_infer_request(), compiled.create_infer_request()

    def pair(x, y):  # noqa: ANN001, ANN202 - arrays
        first.start_async({0: x})
        second.start_async({0: y})
        first.wait()
        second.wait()
        return first.get_output_tensor(0).data.copy(), second.get_output_tensor(0).data.copy()

    return pair


class SeedFaithful:
    """The seed's request handler, minus FastAPI: everything is rebuilt for every pair."""

    def __init__(self, model_name: str = "resnet18") -> None:
        import timm
        import torch

        self.model_name = model_name
        self._dir = tempfile.TemporaryDirectory(prefix="seed-weights-")
        self.weights = Path(self._dir.name) / f"{model_name}.pth"
        torch.save(timm.create_model(model_name, pretrained=False).state_dict(), self.weights)

    def __call__(self, data_1: bytes, data_2: bytes) -> float:
        import timm
        import torch
        from PIL import Image

        model = timm.create_model(self.model_name, pretrained=False)
        model.load_state_dict(torch.load(self.weights, map_location="cpu"))
        model.reset_classifier(0)
        model.eval()
        config = timm.data.resolve_data_config({}, model=model)
        transform = timm.data.create_transform(**config)
        tensors = [transform(Image.open(io.BytesIO(d)).convert("RGB")).unsqueeze(0) for d in (data_1, data_2)]
        with torch.no_grad():
            a, b = (model(t)[0] for t in tensors)
        cos = torch.nn.functional.cosine_similarity(a, b, dim=0).item()
        return normalized_score(cos)  # the seed's (cos + 1) / 2

    def close(self) -> None:
        self._dir.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=60, help="pairs timed per contender")
    parser.add_argument("--seed-every", type=int, default=4, help="time the (slow) seed baseline every Nth round")
    parser.add_argument("--backend", default=None, help="server backend (default: the configured default)")
    args = parser.parse_args(argv)

    import httpx

    from lookalike.embed import resolve_backend
    from lookalike.models.export import ensure_onnx
    from lookalike.models.registry import resolve_model

    settings = bench_settings()
    backend = resolve_backend(args.backend or settings.backend)
    spec = resolve_model(settings.default_model)
    size = settings.input_size or spec.default_size
    # the file the server runs: same model, size and pooling as the default embedder
    onnx_path = str(ensure_onnx(spec, size, settings, pooling=settings.pooling).onnx_path)
    threads = settings.threads or __import__("os").cpu_count() or 1
    mean = np.asarray(spec.preprocessing.mean, np.float32).reshape(3, 1, 1) * 255.0
    inv_std = 1.0 / (np.asarray(spec.preprocessing.std, np.float32).reshape(3, 1, 1) * 255.0)

    photos = [p.read_bytes() for p in dev_images()]
    pairs = [(photos[i % len(photos)], photos[(i * 7 + 3) % len(photos)]) for i in range(len(photos))]
    forward = bare_forward(backend, onnx_path, threads)
    forward_b2 = bare_forward(backend, onnx_path, threads)  # its own request: switching shapes costs OpenVINO
    parallel_pair = bare_parallel_pair(onnx_path, threads) if backend == "openvino" else None
    seed = SeedFaithful()
    # /v1/compare also embeds both images with the copy detector (``copy_model``): its bare floor runs it too
    copy_forward, copy_size = None, 0
    if (settings.copy_model or "none") != "none":
        from lookalike.models.weights import require_weights

        copy_spec = resolve_model(settings.copy_model)
        copy_size = copy_spec.default_size
        copy_forward = bare_forward(backend, require_weights(copy_spec, settings).location, threads)

    with Server(backend=backend, embedding_cache_size=0) as server, httpx.Client(base_url=server.url) as client:

        def http(i: int, path: str = "/v1/compare") -> None:
            a, b = pairs[i % len(pairs)]
            r = client.post(path, files={"image_1": ("a.jpg", a, "image/jpeg"), "image_2": ("b.jpg", b, "image/jpeg")})
            r.raise_for_status()

        def bare(i: int) -> None:
            a, b = pairs[i % len(pairs)]
            x, y = forward(bare_decode(a, size, mean, inv_std)), forward(bare_decode(b, size, mean, inv_std))
            float(np.dot(x[0], y[0]) / (np.linalg.norm(x[0]) * np.linalg.norm(y[0])))

        def bare_batched(i: int) -> None:
            a, b = pairs[i % len(pairs)]
            x = forward_b2(np.concatenate([bare_decode(a, size, mean, inv_std), bare_decode(b, size, mean, inv_std)]))
            float(np.dot(x[0], x[1]) / (np.linalg.norm(x[0]) * np.linalg.norm(x[1])))

        def bare_streams(i: int) -> None:
            a, b = pairs[i % len(pairs)]
            x, y = parallel_pair(bare_decode(a, size, mean, inv_std), bare_decode(b, size, mean, inv_std))
            float(np.dot(x[0], y[0]) / (np.linalg.norm(x[0]) * np.linalg.norm(y[0])))

        def bare_with_copy(i: int) -> None:
            a, b = pairs[i % len(pairs)]
            (xa, ca), (xb, cb) = (bare_decode_both(d, size, mean, inv_std, copy_size) for d in (a, b))
            x, y = forward(xa), forward(xb)
            u, v = copy_forward(ca), copy_forward(cb)
            float(np.dot(x[0], y[0]) / (np.linalg.norm(x[0]) * np.linalg.norm(y[0])))
            float(np.dot(u[0], v[0]) / (np.linalg.norm(u[0]) * np.linalg.norm(v[0])))

        fns = {"http": http, "http_seed_endpoint": lambda i: http(i, "/cosine_similarity_score"), "bare": bare,
               "bare_batched": bare_batched, "seed": lambda i: seed(*pairs[i % len(pairs)])}
        if parallel_pair is not None:
            fns["bare_streams"] = bare_streams
        if copy_forward is not None:
            fns["bare_copy"] = bare_with_copy
        samples: dict[str, list[float]] = {name: [] for name in fns}
        for i in range(3):  # warm-up: first requests, first OpenVINO/ORT runs, timm import
            for fn in fns.values():
                fn(i)
        for r in range(args.rounds):
            for name, fn in fns.items():
                if name == "seed" and r % args.seed_every:
                    continue
                t0 = time.perf_counter()
                fn(r)
                samples[name].append((time.perf_counter() - t0) * 1000.0)
        # a repeated upload: both embeddings come from the cache (a second server with the cache on)
    with Server(backend=backend) as cached_server, httpx.Client(base_url=cached_server.url) as client:
        a, b = pairs[0]
        files = {"image_1": ("a.jpg", a, "image/jpeg"), "image_2": ("b.jpg", b, "image/jpeg")}
        client.post("/v1/compare", files=files).raise_for_status()
        repeat = []
        for _ in range(args.rounds):
            t0 = time.perf_counter()
            client.post("/v1/compare", files=files).raise_for_status()
            repeat.append((time.perf_counter() - t0) * 1000.0)
    seed.close()

    stats = {name: Stats.of(values) for name, values in samples.items()}
    stats["repeat"] = Stats.of(repeat)
    http_p50, seed_p50 = stats["http"].p50, stats["seed"].p50
    # the goal's baseline runs the same ONNX files the server runs: with a copy detector, both models
    baseline = "bare_copy" if "bare_copy" in stats else "bare"
    bare_p50 = stats[baseline].p50
    labels = {
        "http": f"HTTP `POST /v1/compare` ({backend}, cache off)",
        "http_seed_endpoint": f"HTTP `POST /cosine_similarity_score` ({backend}, cache off)",
        "bare": f"bare: 2 x decode + 2 x batch-1 forward ({backend}, no lookalike code)",
        "bare_batched": f"bare: 2 x decode + 1 batch-2 forward ({backend}, no lookalike code)",
        "bare_copy": f"bare: 2 x decode + 2 x batch-1 forward + 2 x batch-1 `{settings.copy_model}` forward ({backend}, "
                     "no lookalike code; the goal's baseline while `copy_model` is on)",
        "bare_streams": "bare: 2 x decode + 2 batch-1 forwards side by side on 2 OpenVINO throughput streams",
        "seed": "seed-faithful: timm resnet18 built per request, eager torch",
        "repeat": "HTTP `POST /v1/compare`, same pair again (embedding cache hit)",
    }
    rows = [(labels[k], s.n, s.p50, s.p95, s.p50 / bare_p50) for k, s in stats.items()]
    goals = markdown_table(
        ["measure", "value", "goal", "met"],
        [
            ("HTTP p50 / bare p50 (the same ONNX files: " + ("similarity model + copy detector"
             if baseline == "bare_copy" else "similarity model") + ")", f"{http_p50 / bare_p50:.2f}", "<= 1.3",
             "yes" if http_p50 / bare_p50 <= 1.3 else "no"),
            ("seed-faithful p50 / HTTP p50", f"{seed_p50 / http_p50:.1f}x", ">= 10x",
             "yes" if seed_p50 / http_p50 >= 10 else "no"),
        ] + ([("HTTP p50 / bare similarity-model-only p50 (what /v1/compare costs over a program without the copy "
               "detector)", f"{http_p50 / stats['bare'].p50:.2f}", "-", "-")] if baseline == "bare_copy" else [])
        + ([("HTTP p50 / fastest bare pair p50 (two streams side by side; not the goal's definition)",
               f"{http_p50 / stats['bare_streams'].p50:.2f}", "-", "-")] if "bare_streams" in stats else []),
    )
    body = (
        f"Model `{spec.name}` @ {size}px ({settings.pooling} pooling), {len(photos)} real DEV photos (JPEG, long side <= 512), pairs of "
        f"distinct photos; contenders timed round-robin in one run (seed every {args.seed_every}th round). "
        f"Server spawn to healthy (model preloaded): {server.started_s:.2f} s.\n\n"
        + markdown_table(["contender", "n", "p50 ms", "p95 ms", "p50 / bare"], rows)
        + "\n\n" + goals + "\n"
    )
    write_result("pair_latency", "Pair latency: HTTP vs bare engine vs the seed's way", body,
                 "python benchmarks/pair_latency.py " + " ".join(argv or sys.argv[1:]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
