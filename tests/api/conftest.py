from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from lookalike.api.app import create_app


@pytest.fixture(scope="module")
def client(settings):
    with TestClient(create_app(settings)) as test_client:
        yield test_client


@pytest.fixture(scope="session")
def photo_pair(sample_china):
    """An original photo and an edited copy (crop + resize + JPEG q50), as JPEG bytes."""
    from PIL import Image

    from ..conftest import jpeg_bytes

    original = jpeg_bytes(sample_china)
    edited = jpeg_bytes(Image.fromarray(sample_china).crop((30, 20, 600, 400)).resize((400, 266)), quality=50)
    return original, edited
