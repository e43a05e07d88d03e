"""The default backend choice: OpenVINO at its own precision agrees with ONNX Runtime fp32."""

from __future__ import annotations

import csv
import importlib.util

import numpy as np
import pytest

from lookalike.embed import create_embedder, resolve_backend

openvino_missing = importlib.util.find_spec("openvino") is None


def test_auto_prefers_openvino_when_importable(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: object() if name == "openvino" else real_find_spec(name, *a))
    assert resolve_backend("auto") == "openvino"


def test_auto_falls_back_to_onnxruntime_without_openvino(monkeypatch):
    real_find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real_find_spec(name, *a))
    assert resolve_backend("auto") == "onnxruntime"


@pytest.mark.parametrize("name", ["onnxruntime", "openvino", "torch"])
def test_an_explicit_backend_is_kept(name):
    assert resolve_backend(name) == name


def test_default_settings_resolve_to_an_installed_engine(settings):
    expected = "onnxruntime" if openvino_missing else "openvino"
    assert create_embedder(settings=settings).backend == expected


@pytest.fixture(scope="module")
def fp32_and_openvino(settings):
    if openvino_missing:
        pytest.skip("openvino is not installed (pip install lookalike[openvino])")
    return (create_embedder(settings=settings, backend="onnxruntime"),
            create_embedder(settings=settings, backend="openvino"))


def _agreement(pair, sources) -> np.ndarray:
    fp32, openvino = pair
    images = [fp32.load(s) for s in sources]
    return np.sum(fp32.encode_decoded(images) * openvino.encode_decoded(images), axis=1)


def test_openvino_default_precision_matches_fp32_on_sample_photos(fp32_and_openvino, sample_photos):
    cos = _agreement(fp32_and_openvino, list(sample_photos.values()))
    assert cos.min() >= 0.99, cos


def test_openvino_default_precision_matches_fp32_on_dev_photos(fp32_and_openvino, dev_data):
    with (dev_data / "pairs.csv").open() as fh:
        paths = sorted({dev_data / row[key] for row in csv.DictReader(fh) for key in ("path_a", "path_b")})
    sample = paths[:: max(1, len(paths) // 60)]  # ~60 photos spread over originals, edits and groups
    cos = _agreement(fp32_and_openvino, sample)
    assert cos.min() >= 0.99, (cos.min(), sample[int(cos.argmin())])


def _onnx_path(settings) -> str:
    from lookalike.models.export import ensure_onnx
    from lookalike.models.registry import resolve_model

    spec = resolve_model(settings.default_model)
    return str(ensure_onnx(spec, spec.default_size, settings).onnx_path)


def test_openvino_compiled_model_cache_is_written_and_gives_the_same_vectors(settings, sample_photos, tmp_path):
    if openvino_missing:
        pytest.skip("openvino is not installed")
    from lookalike.embed import openvino_forward

    batch = create_embedder(settings=settings).preprocessing.to_array(
        [create_embedder(settings=settings).load(p) for p in list(sample_photos.values())[:2]])
    first = openvino_forward(_onnx_path(settings), 2, cache_dir=str(tmp_path / "ov"))(batch)
    assert any((tmp_path / "ov").iterdir())
    second = openvino_forward(_onnx_path(settings), 2, cache_dir=str(tmp_path / "ov"))(batch)  # from the cache
    np.testing.assert_allclose(first, second, rtol=1e-4, atol=1e-4)


def test_an_unusable_openvino_cache_dir_does_not_stop_loading(settings, sample_photos, tmp_path):
    if openvino_missing:
        pytest.skip("openvino is not installed")
    from lookalike.embed import openvino_forward

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder should be")
    forward = openvino_forward(_onnx_path(settings), 2, cache_dir=str(blocker / "ov"))
    assert forward(np.zeros((1, 3, 224, 224), dtype=np.float32)).shape == (1, 1280)


@pytest.mark.parametrize("streams", [1, 2, 3])
def test_openvino_streams_split_a_batch_and_give_the_rows_of_one_call_each(settings, sample_photos, streams):
    """A batch is split across throughput streams; every row must equal its own batch-1 forward."""
    if openvino_missing:
        pytest.skip("openvino is not installed")
    from lookalike.embed import openvino_forward

    embedder = create_embedder(settings=settings)
    batch = embedder.preprocessing.to_array([embedder.load(p) for p in sample_photos.values()])
    forward = openvino_forward(_onnx_path(settings), 2, streams=streams)
    together = forward(batch)
    one_by_one = np.concatenate([forward(batch[i : i + 1]) for i in range(len(batch))])
    assert together.shape == (len(batch), 1280)
    np.testing.assert_allclose(together, one_by_one, rtol=1e-4, atol=1e-4)


def test_openvino_forward_is_safe_from_many_threads_at_once(settings, sample_photos):
    """Each thread owns its infer requests: concurrent callers get their own rows back, not a neighbour's."""
    if openvino_missing:
        pytest.skip("openvino is not installed")
    import threading

    from lookalike.embed import openvino_forward

    embedder = create_embedder(settings=settings)
    batch = embedder.preprocessing.to_array([embedder.load(p) for p in sample_photos.values()])
    forward = openvino_forward(_onnx_path(settings), 2)
    expected = forward(batch)
    got: dict[int, list[tuple[list[int], np.ndarray]]] = {}

    def call(i: int) -> None:
        rows = [(i + j) % len(batch) for j in range(2)]
        got[i] = [(rows, forward(batch[rows])) for _ in range(5)]

    threads = [threading.Thread(target=call, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert sorted(got) == list(range(6))  # every thread finished without an error
    for calls in got.values():
        for rows, out in calls:
            np.testing.assert_allclose(out, expected[rows], rtol=1e-4, atol=1e-4)
