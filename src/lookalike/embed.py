"""Images -> L2-normalized float32 embeddings, through one explicit interface.

``Encoder`` is the contract every backend meets (ONNX Runtime for serving, OpenVINO when
installed, torch eager as the fallback); ``Embedder`` is the one implementation,
``create_embedder`` (= ``Embedder.create``) its only constructor, and
``EmbedderPool`` keeps a bounded LRU of loaded models so nothing is built per request.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol, Sequence, runtime_checkable

import numpy as np
from PIL import Image

from lookalike.config import Backend, Settings, get_settings
from lookalike.errors import LookalikeError
from lookalike.imaging import ImageLimits, ImageSource, Preprocessing, load_image
from lookalike.models.registry import ModelSpec, check_input_size, resolve_model

Forward = Callable[[np.ndarray], np.ndarray]


@runtime_checkable
class Encoder(Protocol):
    """Anything that turns images into comparable vectors (the catalog and eval need only this)."""

    model_name: str
    input_size: int
    dim: int

    def encode(self, images: Sequence[ImageSource]) -> np.ndarray:
        """(n, dim) float32, each row L2-normalized, so a dot product is the cosine."""
        ...


def l2_normalize(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, 1e-12)


@dataclass
class Embedder:
    """A model spec's preprocessing + one inference backend.

    ``Embedder.create("tf_efficientnet_lite0")`` loads a model; ``encode`` takes paths, bytes,
    PIL images or HxWx3 arrays: one source gives one vector, a list gives an (n, dim) matrix.
    """

    model_name: str
    input_size: int
    dim: int
    preprocessing: Preprocessing
    forward: Forward
    backend: str
    limits: ImageLimits = ImageLimits()
    batch_size: int = 16

    def load(self, source: ImageSource) -> Image.Image:
        """Decode at reduced size when the format allows it (JPEG DCT scaling)."""
        return load_image(source, self.limits, draft_side=self.preprocessing.decode_side)

    @classmethod
    def create(cls, model_name: str | None = None, **kwargs) -> "Embedder":  # noqa: ANN003
        return create_embedder(model_name, **kwargs)

    def encode(self, images: Sequence[ImageSource] | ImageSource) -> np.ndarray:
        if _is_single(images):
            return self.encode([images])[0]  # type: ignore[list-item]
        decoded = [img if isinstance(img, Image.Image) else self.load(img) for img in images]  # type: ignore[union-attr]
        return self.encode_decoded(decoded)

    def encode_decoded(self, images: Sequence[Image.Image]) -> np.ndarray:
        if not images:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self.encode_arrays(self.preprocessing.to_array(images))

    def encode_arrays(self, batch: np.ndarray) -> np.ndarray:
        """Preprocessed NCHW float32 -> normalized embeddings, in chunks of ``batch_size``."""
        out = [self.forward(batch[i : i + self.batch_size]) for i in range(0, len(batch), self.batch_size)]
        return l2_normalize(np.concatenate(out, axis=0))

    def encode_one(self, image: ImageSource) -> np.ndarray:
        return self.encode([image])[0]


ModelEmbedder = Embedder  # the name the first modules used


def _is_single(images: object) -> bool:
    if isinstance(images, (str, os.PathLike, bytes, bytearray, memoryview, Image.Image)):
        return True
    return isinstance(images, np.ndarray) and images.ndim in (2, 3) and images.dtype != object


def _threads(settings: Settings) -> int:
    return settings.threads or os.cpu_count() or 1


def resolve_backend(backend: str) -> str:
    """``auto`` -> OpenVINO when importable, else ONNX Runtime (the portable fallback).

    OpenVINO at its default CPU precision (bf16 where the CPU has it) was ~2x faster than ONNX
    Runtime fp32 here, with cosine to fp32 >= 0.99 and a smaller RSS (benchmarks/results/backends.md).
    """
    if backend != "auto":
        return backend
    import importlib.util

    return "openvino" if importlib.util.find_spec("openvino") is not None else "onnxruntime"


class CoalescingForward:
    """One engine call at a time, shared by every thread that is waiting for one.

    For engines that spread one forward over all cores (ONNX Runtime here), two at once only
    oversubscribe them; but callers that wait are batched: whoever runs the engine takes every
    batch queued behind it (up to ``max_rows`` rows) into one call, which costs less per image than one call each. With a
    single caller this is the plain forward plus a lock. Results equal separate calls (row-wise
    models). Leadership passes to the next waiting caller, so nobody serves others' work.
    """

    def __init__(self, forward: Forward, max_rows: int = 32) -> None:
        self.forward = forward
        self.max_rows = max_rows
        self._lock = threading.Lock()
        self._queue: list[_Job] = []
        self._busy = False
        self.calls = 0  # engine calls made (tests and benchmarks read it)

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        job = _Job(batch)
        with self._lock:
            self._queue.append(job)
            lead = not self._busy
            self._busy = True
        if not lead:
            job.ready.wait()
            if not job.lead:
                return job.result()
        with self._lock:  # our job is first in the queue: leaders take from the front
            taken, rows = [], 0
            while self._queue and (not taken or rows + len(self._queue[0].batch) <= self.max_rows):
                rows += len(self._queue[0].batch)
                taken.append(self._queue.pop(0))
        try:
            inputs = taken[0].batch if len(taken) == 1 else np.concatenate([j.batch for j in taken])
            self.calls += 1
            outputs = self.forward(inputs)
            start = 0
            for j in taken:
                j.output, start = outputs[start : start + len(j.batch)], start + len(j.batch)
        except BaseException as exc:  # noqa: BLE001 - every caller of this engine call gets the error
            for j in taken:
                j.error = exc
        finally:
            with self._lock:
                if self._queue:
                    self._queue[0].lead = True
                    self._queue[0].ready.set()
                else:
                    self._busy = False
            for j in taken:
                if j is not job:
                    j.ready.set()
        return job.result()


class _Job:
    __slots__ = ("batch", "error", "lead", "output", "ready")

    def __init__(self, batch: np.ndarray) -> None:
        self.batch = batch
        self.ready = threading.Event()
        self.lead = False
        self.output: np.ndarray | None = None
        self.error: BaseException | None = None

    def result(self) -> np.ndarray:
        if self.error is not None:
            raise self.error
        assert self.output is not None
        return self.output


def onnxruntime_forward(onnx_path: str, threads: int) -> Forward:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    session = ort.InferenceSession(onnx_path, options, providers=["CPUExecutionProvider"])
    input_name = session.get_inputs()[0].name

    def forward(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {input_name: batch})[0]

    return forward


def openvino_forward(
    onnx_path: str, threads: int, precision: str | None = None, cache_dir: str | None = None,
    *, streams: int | None = None, latency: bool = False,
) -> Forward:
    """OpenVINO on CPU; ``precision=None`` keeps its default (bf16/fp16 where the CPU has it).

    Two ways to use the cores (``Settings.openvino_hint``). ``latency=True``: one stream spread over
    ``threads`` threads; the embedder then runs one forward at a time (``CoalescingForward``). The
    default here: in the server it answered a lone client's pair faster (p50 13.8 vs 15.2 ms) at
    the same 8-client throughput (benchmarks/results/serving.md). ``latency=False``: ``streams``
    (default: one per core) single-thread streams, a batch split across them so a pair's two
    images run side by side; measured alone in one process it forwards a pair in less wall and
    CPU time (one forward over two threads ran only 1.2x faster than on one), and concurrent
    callers need no lock: each calling thread owns its infer requests and OpenVINO queues them
    onto the streams.

    ``cache_dir``: OpenVINO's compiled-model cache (keyed by model, config and device), which
    cuts compile time at start-up by more than half (benchmarks/results/serving.md, cold start).
    """
    try:
        import openvino as ov
    except ImportError as exc:
        raise LookalikeError("backend 'openvino' needs `pip install lookalike[openvino]`", status=503,
                             code="backend_unavailable") from exc
    if latency:
        streams = 1
        config: dict[str, object] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    else:
        streams = max(1, streams or threads)
        config = {"PERFORMANCE_HINT": "THROUGHPUT", "NUM_STREAMS": streams,
                  "INFERENCE_NUM_THREADS": max(threads, streams)}
    if precision:
        config["INFERENCE_PRECISION_HINT"] = precision
    core = ov.Core()
    try:
        if cache_dir:
            core.set_property({"CACHE_DIR": cache_dir})
        compiled = core.compile_model(onnx_path, "CPU", config)  # a path (not a Model) lets the cache hit
    except RuntimeError:
        if not cache_dir:
            raise
        core = ov.Core()  # an unwritable or broken cache must not stop serving
        compiled = core.compile_model(onnx_path, "CPU", config)
    local = threading.local()

    def forward(batch: np.ndarray) -> np.ndarray:
        requests = getattr(local, "requests", None)
        if requests is None:
            requests = local.requests = [compiled.create_infer_request() for _ in range(streams)]
        chunks = np.array_split(batch, min(streams, len(batch))) if len(batch) else [batch]
        for request, chunk in zip(requests, chunks):
            request.start_async({0: chunk})
        outputs = []
        for request in requests[: len(chunks)]:
            request.wait()
            outputs.append(np.array(request.get_output_tensor(0).data, copy=True))
        return outputs[0] if len(outputs) == 1 else np.concatenate(outputs)

    return forward


def torch_forward(model) -> Forward:  # noqa: ANN001 - torch is imported lazily
    import torch

    def forward(batch: np.ndarray) -> np.ndarray:
        with torch.inference_mode():
            return model(torch.from_numpy(np.ascontiguousarray(batch))).numpy()

    return forward


def create_embedder(
    model_name: str | None = None,
    *,
    input_size: int | None = None,
    backend: Backend | None = None,
    pooling: str | None = None,
    preprocess: str | None = None,
    settings: Settings | None = None,
) -> Embedder:
    """The only constructor: a model name (or alias) resolves weights, preprocessing and backend."""
    settings = settings or get_settings()
    pooling = pooling or settings.pooling
    spec: ModelSpec = resolve_model(model_name or settings.default_model)
    if settings.enabled_models is not None and spec.name not in {resolve_model(m).name for m in settings.enabled_models}:
        from lookalike.errors import ModelDisabledError

        raise ModelDisabledError(f"model {spec.name} is not enabled on this server")
    size = check_input_size(input_size or settings.input_size or spec.default_size, settings.allowed_input_sizes, spec)
    preprocessing = spec.preprocessing.with_size(size)
    mode = preprocess or settings.preprocess
    if mode:
        preprocessing = preprocessing.with_mode(mode)  # type: ignore[arg-type]
    backend = resolve_backend(backend or settings.backend)
    threads = _threads(settings)
    limits = ImageLimits.from_settings(settings)
    if spec.is_onnx_file and backend == "torch":
        backend = "onnxruntime"  # a ready-made ONNX file has no torch module to run eagerly
    if spec.is_onnx_file:
        from lookalike.models.export import onnx_file_model

        exported = onnx_file_model(spec, size, settings)
        forward = _engine_forward(backend, str(exported.onnx_path), threads, settings, spec)
        dim = _checked_output_dim(spec, forward, preprocessing)
    elif backend == "torch":
        from lookalike.models.export import build_torch_model
        from lookalike.models.weights import require_weights

        import torch

        torch.set_num_threads(threads)
        model = build_torch_model(spec, require_weights(spec, settings), pooling=pooling)  # type: ignore[arg-type]
        forward = torch_forward(model)
        dim = int(forward(np.zeros((1, 3, size, size), dtype=np.float32)).shape[1])
    else:
        from lookalike.models.export import ensure_onnx

        exported = ensure_onnx(spec, size, settings, pooling=pooling)  # type: ignore[arg-type]
        dim = exported.dim
        forward = _engine_forward(backend, str(exported.onnx_path), threads, settings, spec)
    if backend != "openvino" or settings.openvino_hint == "latency":  # OpenVINO streams queue requests themselves
        forward = CoalescingForward(forward)
    return Embedder(spec.name, size, dim, preprocessing, forward, backend, limits)


def _engine_forward(backend: str, onnx_path: str, threads: int, settings: Settings, spec: ModelSpec) -> Forward:
    """The ONNX file on OpenVINO or ONNX Runtime; a file the engine cannot load is a clear error."""
    try:
        if backend == "openvino":
            cache = Path(settings.cache_dir).expanduser() / "openvino"
            return openvino_forward(onnx_path, threads, cache_dir=str(cache), latency=settings.openvino_hint == "latency")
        return onnxruntime_forward(onnx_path, threads)
    except LookalikeError:
        raise
    except Exception as exc:  # noqa: BLE001 - engines raise their own types for unreadable graphs
        raise _model_error(spec, "onnx", f"{backend} cannot load {onnx_path}: {type(exc).__name__}: "
                           f"{str(exc).splitlines()[0] if str(exc) else ''}") from exc


def _model_error(spec: ModelSpec, field: str, problem: str) -> LookalikeError:
    """An ONNX-file model that does not work as declared: name the setting to fix (503: config, not input)."""
    setting = f"{spec.setting}.{field}" if spec.setting else f"weights_files.{spec.name}"
    return LookalikeError(f"model {spec.name}: {problem} (check {setting})", status=503, code="model_misconfigured")


def _checked_output_dim(spec: ModelSpec, forward: Forward, preprocessing: Preprocessing) -> int:
    """Run one blank image through a ready-made ONNX file: input layout/dtype and output shape must fit."""
    probe = preprocessing.to_array([Image.new("RGB", (preprocessing.input_size,) * 2, (128, 128, 128))])
    try:
        output = np.asarray(forward(probe))
    except Exception as exc:  # noqa: BLE001 - a wrong layout or dtype surfaces as an engine error
        layout = getattr(preprocessing, "layout", "NCHW")
        dtype = getattr(preprocessing, "dtype", "float32")
        raise _model_error(spec, "layout", f"the ONNX file rejected a {layout} {dtype} input of shape "
                           f"{probe.shape}: {type(exc).__name__}: {str(exc).splitlines()[0][:300] if str(exc) else ''}"
                           ) from exc
    if output.ndim != 2 or output.shape[0] != 1 or output.shape[1] < 1:
        raise _model_error(spec, "onnx", f"the first output must be a (batch, dim) embedding; got shape "
                           f"{tuple(output.shape)} for a batch of 1")
    if spec.dim and output.shape[1] != spec.dim:
        raise _model_error(spec, "onnx", f"the ONNX file gives {output.shape[1]}-d embeddings; the model table "
                           f"says {spec.dim}")
    return int(output.shape[1])


class EmbedderPool:
    """Loaded embedders kept in a bounded LRU; creation of one key happens once, under a lock."""

    def __init__(self, settings: Settings, capacity: int | None = None) -> None:
        self.settings = settings
        self.capacity = capacity or settings.model_cache_size
        self._items: OrderedDict[tuple, Embedder] = OrderedDict()
        self._lock = threading.Lock()
        self._key_locks: dict[tuple, threading.Lock] = {}

    def key(self, model_name: str | None, input_size: int | None) -> tuple:
        spec = resolve_model(model_name or self.settings.default_model)
        size = check_input_size(
            input_size or self.settings.input_size or spec.default_size, self.settings.allowed_input_sizes, spec
        )
        return (spec.name, size)

    def get(self, model_name: str | None = None, input_size: int | None = None) -> Embedder:
        loaded = self.get_loaded(model_name, input_size)
        if loaded is not None:
            return loaded
        key = self.key(model_name, input_size)
        with self._lock:
            key_lock = self._key_locks.setdefault(key, threading.Lock())
        with key_lock:
            with self._lock:
                if key in self._items:
                    return self._items[key]
            embedder = create_embedder(key[0], input_size=key[1], settings=self.settings)
            with self._lock:
                self._items[key] = embedder
                while len(self._items) > self.capacity:
                    self._items.popitem(last=False)
            return embedder

    def get_loaded(self, model_name: str | None = None, input_size: int | None = None) -> Embedder | None:
        """The embedder if it is already loaded, else None: never blocks on a model load."""
        key = self.key(model_name, input_size)
        with self._lock:
            embedder = self._items.get(key)
            if embedder is not None:
                self._items.move_to_end(key)
            return embedder

    def loaded(self) -> list[tuple]:
        with self._lock:
            return list(self._items)

