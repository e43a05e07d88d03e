"""Scale-out fixtures: a small local Ray, per-test settings, a folder of real photos.

Everything here needs the ``[scale]`` extra; tests skip with a reason when it is missing. Ray is
started once per module with 2 CPUs and a 500 MB object store, and always shut down.
"""

from __future__ import annotations

from pathlib import Path

import pytest


def need(module: str) -> None:
    pytest.importorskip(module, reason=f"needs the [scale] extra ({module}): pip install -e '.[scale]'")


@pytest.fixture(scope="module")
def local_ray():
    """A local Ray instance for the module (about 3-10 s to start, retried on a lost start-up race), shut down afterwards."""
    need("ray")
    import ray

    from lookalike.catalog.ray_indexer import ray_init

    started = ray_init(num_cpus=2)
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture
def scale_settings(settings, tmp_path):
    """Session settings with a fresh data_dir (each test its own catalogs)."""
    return settings.model_copy(update={"data_dir": tmp_path / "data"})


def real_photo_folder(sample_photos: dict[str, Path], folder: Path) -> Path:
    """The six sample photos plus resized/recompressed variants in a sub-folder (12 distinct files)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "variants").mkdir(exist_ok=True)
    for name, path in sample_photos.items():
        (folder / path.name).write_bytes(path.read_bytes())
        image = Image.open(path)
        image.resize((image.width // 2, image.height // 2)).save(folder / "variants" / f"{name}_half.jpg", quality=80)
    return folder
