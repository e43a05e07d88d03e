"""Pictures made from a catalog's originals for people to look at (thumbnails): image work that is
not storage, so it lives beside ``Catalog`` rather than in it."""

from __future__ import annotations

import threading
from pathlib import Path

from lookalike.catalog.catalog import Catalog
from lookalike.errors import InvalidValueError
from lookalike.imaging import load_image

THUMB_SIZES = range(16, 1025)


def thumbnail(catalog: Catalog, image_id: int, size: int = 256) -> Path:
    """A JPEG thumbnail whose long side is ``size``, made once and kept under the catalog's ``thumbs/``
    (``Catalog.remove`` deletes an image's thumbnails with it)."""
    if size not in THUMB_SIZES:
        raise InvalidValueError(f"thumbnail size must be {THUMB_SIZES.start}..{THUMB_SIZES.stop - 1}",
                                code="bad_thumbnail_size")
    record = catalog.get(image_id)
    final = catalog.root / "thumbs" / f"{image_id}_{size}.jpg"
    if final.is_file():
        return final
    image = load_image(catalog.original_path(record), draft_side=size)
    image.thumbnail((size, size))
    final.parent.mkdir(exist_ok=True)
    tmp = final.with_name(f"{final.name}.{threading.get_ident()}.tmp")
    image.save(tmp, "JPEG", quality=85)
    tmp.replace(final)
    return final
