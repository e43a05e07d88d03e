"""The one ingestion pipeline: Reader -> Embed -> Writer.

Every way images enter a catalog goes through these three stages, so one set of rules decides
what is embedded, what is reused and what is committed:

- the local indexer (``indexer.index_folder``): readers in a thread pool, embedding in the
  calling thread, one writer;
- the Ray indexer (``ray_indexer.index_with_ray``): readers and embedding inside Ray actors,
  the writer on the driver;
- API uploads (``add_uploads``): read, embed and write in one call, one transaction.

Reader (``read_image``): read the bytes within the limits, hash them, measure the upright size
from the header, and decode + preprocess only when the bytes are new. A file whose bytes are
unchanged since indexing is a ``touch``; bytes the catalog (or this run) already holds are a
``dup`` whose vector is reused without inference. Errors stay per image.

Embed (``Recipe`` + ``embed_items``): the catalog's own recipe (model, input size, preprocessing,
pooling), so every engine produces vectors of the same kind.

Writer (``CatalogWriter``): rows + vectors committed in batches of ``commit_every`` (one SQLite
transaction each, then the index); a changed file replaces its old row.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Literal, Sequence

import numpy as np

from lookalike.errors import LookalikeError
from lookalike.imaging import ImageSource, content_hash, open_checked, read_source_bytes
from lookalike.catalog.metadata import ImageRecord, NewImage

if TYPE_CHECKING:  # pragma: no cover
    from lookalike.catalog.catalog import Catalog
    from lookalike.config import Settings
    from lookalike.embed import Embedder, EmbedderPool

ItemKind = Literal["embed", "dup", "touch", "error"]


def upright_size(image) -> tuple[int, int]:  # noqa: ANN001 - a lazily opened PIL image
    """Width and height after EXIF rotation, read from the header (no pixels decoded)."""
    width, height = image.size
    try:
        orientation = image.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - unreadable EXIF: keep the stored orientation
        orientation = 1
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


# --- embed: the catalog's recipe ------------------------------------------------------------------
@dataclass(frozen=True)
class Recipe:
    """How a catalog's vectors are made. Every engine embeds with exactly this, so a catalog never
    mixes vectors of two methods (a Ray worker built from the recipe pools like the catalog)."""

    model: str
    input_size: int
    preprocess: str
    pooling: str

    def create(self, settings: Settings) -> Embedder:
        from lookalike.embed import create_embedder

        return create_embedder(self.model, input_size=self.input_size, preprocess=self.preprocess,
                               pooling=self.pooling, settings=settings)

    def from_pool(self, pool: EmbedderPool | None, settings: Settings) -> Embedder:
        """The pool's shared embedder when it embeds the same way, else a new one."""
        from lookalike.models.registry import resolve_model

        spec = resolve_model(self.model)
        pool_method = ((settings.preprocess or spec.preprocessing.mode) == self.preprocess
                       and settings.pooling == self.pooling)
        if pool is not None and pool_method:
            return pool.get(self.model, self.input_size)
        return self.create(settings)


# --- reader ----------------------------------------------------------------------------------------
@dataclass
class Item:
    """What the reader hands on for one image: to ``embed``, a ``dup`` of bytes already held (vector
    reused), a ``touch`` (same bytes, new mtime), or an ``error`` with its reason."""

    kind: ItemKind
    path: str
    row: NewImage | None = None
    array: np.ndarray | None = None  # the model input, for 'embed'
    features: bytes | None = None  # packed local features (geometry.features_for), for 'embed'
    old: ImageRecord | None = None  # the row this path had before (changed / touched files)
    error: str = ""
    seconds: float = 0.0


def read_image(
    source: ImageSource,
    embedder: Embedder,
    *,
    path: str,
    filename: str | None = None,
    old: ImageRecord | None = None,
    is_known: Callable[[str], bool] = lambda digest: False,
    mtime: float | None = None,
    with_features: bool = False,
) -> Item:
    """The reader stage for one image (thread- and actor-safe: it touches no shared state)."""
    try:
        if mtime is None and isinstance(source, (str, os.PathLike)):
            mtime = os.stat(source).st_mtime
        data = read_source_bytes(source, embedder.limits)
        assert data is not None
        digest = content_hash(data)
        name = filename or Path(path).name
        if old is not None and old.content_hash == digest:
            return Item("touch", path, old=old, row=NewImage(path, old.filename, digest, old.size, old.width,
                                                              old.height, mtime))
        width, height = upright_size(open_checked(data, embedder.limits))
        row = NewImage(path, name, digest, len(data), width, height, mtime)
        if is_known(digest):
            return Item("dup", path, row=row, old=old)
        image = embedder.load(data)
        array = embedder.preprocessing.to_array([image])[0]
        features = None
        if with_features:  # from the same decode search uses for a query (catalog/search.py)
            from lookalike.geometry import features_for

            features = features_for(image)
        return Item("embed", path, row=row, array=array, old=old, features=features)
    except LookalikeError as exc:
        return Item("error", path, error=exc.message)
    except OSError as exc:
        return Item("error", path, error=f"cannot read: {exc.strerror or exc}")


def embed_items(items: Sequence[Item], embedder: Embedder) -> np.ndarray:
    """The embed stage: one batched forward for the items to embed (in order)."""
    arrays = [item.array for item in items if item.kind == "embed"]
    if not arrays:
        return np.zeros((0, embedder.dim), dtype=np.float32)
    return embedder.encode_arrays(np.stack(arrays))


# --- writer ----------------------------------------------------------------------------------------
@dataclass
class WriteCounts:
    added: int = 0  # new images embedded
    changed: int = 0  # re-embedded because their bytes changed
    unchanged: int = 0  # same bytes (only the mtime recorded)
    duplicates: int = 0  # same bytes as another image: vector reused, no inference
    errors: list[tuple[str, str]] = field(default_factory=list)


class CatalogWriter:
    """Turns reader items (and their vectors) into committed catalog rows, ``commit_every`` at a time.

    Rules: a ``touch`` records the new mtime; an ``embed`` adds a row (replacing the path's old row
    when its bytes changed); bytes this run or the catalog already holds (a ``dup``, or an
    ``embed`` whose twin another reader had) reuse that vector, counted as a duplicate.
    """

    def __init__(self, catalog: Catalog, commit_every: int | None = None) -> None:
        self.catalog = catalog
        self.commit_every = commit_every or catalog.settings.catalog_commit_every
        self.counts = WriteCounts()
        self.touches: list[tuple[int, float]] = []
        self.ids: dict[str, int] = {}  # path -> id of every row written
        self._rows: list[NewImage] = []
        self._vectors: list[np.ndarray] = []
        self._replace: list[int] = []
        self._pending: dict[str, np.ndarray] = {}  # content hash -> vector of rows not committed yet
        self._committed: set[str] = set()  # content hashes this writer has committed
        self._features: list[tuple[str, str, bytes]] = []  # (path, hash, blob) of rows not committed yet
        self._pending_counts = WriteCounts()
        self.write_s = 0.0

    def __len__(self) -> int:
        return len(self._rows)

    @property
    def embedded(self) -> int:
        """Images embedded so far (committed or not)."""
        return (self.counts.added + self.counts.changed + self._pending_counts.added
                + self._pending_counts.changed)

    def take(self, item: Item, vector: np.ndarray | None = None) -> None:
        """One reader item; ``vector`` for an ``embed`` item."""
        if item.kind == "error":
            self.counts.errors.append((item.path, item.error))
            return
        if item.kind == "touch":
            self.touches.append((item.old.id, item.row.mtime))  # type: ignore[union-attr]
            self.counts.unchanged += 1
            return
        assert item.row is not None
        digest = item.row.content_hash
        # the reader ruled out bytes the catalog held before this run; bytes met earlier in the run (which
        # another engine's reader could not know) reuse that vector: one vector per content
        met_in_run = item.kind == "embed" and (digest in self._pending or digest in self._committed)
        twin = self._twin_vector(digest) if item.kind == "dup" or met_in_run else None
        if met_in_run:
            item.kind, vector = "dup", twin
        if item.kind == "dup":
            vector = twin
            if vector is None:
                self.counts.errors.append((item.path, "duplicate of an image that vanished; re-run to embed"))
                return
            self._pending_counts.duplicates += 1
        elif item.old is not None:
            self._pending_counts.changed += 1
        else:
            self._pending_counts.added += 1
        assert vector is not None
        if item.old is not None:
            self._replace.append(item.old.id)
        if item.kind == "embed" and item.features is not None:
            self._features.append((item.row.path, digest, item.features))
        self._rows.append(item.row)
        self._vectors.append(vector)
        self._pending.setdefault(digest, vector)
        if len(self._rows) >= self.commit_every:
            self.commit()

    def _twin_vector(self, digest: str) -> np.ndarray | None:
        if digest in self._pending:
            return self._pending[digest]
        twin = self.catalog.meta.by_hash(digest)
        if twin is None:
            return None
        return self.catalog.meta.vectors([twin.id], self.catalog.dim)[0]

    def commit(self) -> None:
        """One SQLite transaction for the rows taken since the last commit, then the index."""
        if not self._rows:
            return
        start = time.perf_counter()
        ids = self.catalog.add_embedded(self._rows, np.stack(self._vectors), replace_ids=self._replace)
        self.ids.update((row.path, image_id) for row, image_id in zip(self._rows, ids))
        if self._features:  # after the rows: a kill in between only leaves features to recompute on search
            self.catalog.features.put_many([(self.ids[path], digest, blob) for path, digest, blob in self._features])
        for name in ("added", "changed", "duplicates"):
            setattr(self.counts, name, getattr(self.counts, name) + getattr(self._pending_counts, name))
        self._pending_counts = WriteCounts()
        self._committed.update(self._pending)
        self._rows, self._vectors, self._replace, self._pending, self._features = [], [], [], {}, []
        self.write_s += time.perf_counter() - start


# --- uploads ---------------------------------------------------------------------------------------
def store_upload(catalog: Catalog, digest: str, filename: str, data: bytes) -> Path:
    """Keep an uploaded original under the catalog's ``files/`` (named by its hash, written atomically)."""
    from lookalike.catalog.stores.faiss import fsync_replace

    suffix = Path(filename).suffix.lower()
    suffix = suffix if re.fullmatch(r"\.[a-z0-9]{1,5}", suffix or "") else ".bin"
    folder = catalog.root / "files"
    folder.mkdir(exist_ok=True)
    final = folder / f"{digest}{suffix}"
    if not final.exists():
        tmp = final.with_name(final.name + ".tmp")
        tmp.write_bytes(data)
        fsync_replace(tmp, final)
    return final


def add_uploads(catalog: Catalog, uploads: Sequence[tuple[str, bytes]],
                pool: EmbedderPool | None = None) -> tuple[list[dict], list[dict]]:
    """API uploads through the pipeline: bytes the catalog holds already answer ``exists`` (no new
    row); new ones are embedded in one batch and committed in one transaction, their originals kept
    under ``files/``. Returns (per-upload results, per-upload errors), in upload order."""
    embedder = catalog.embedder(pool)
    writer = CatalogWriter(catalog, commit_every=max(1, len(uploads)))
    results: list[dict | None] = []
    errors: list[dict] = []
    items: list[Item] = []
    first_of: dict[str, int] = {}  # content hash -> index in results of its first upload
    for filename, data in uploads:
        name = Path(filename or "upload").name or "upload"
        try:
            digest = content_hash(read_source_bytes(data, embedder.limits))  # type: ignore[arg-type]
        except LookalikeError as exc:
            errors.append({"filename": name, "error": exc.message})
            continue
        existing = catalog.meta.by_hash(digest)
        if existing is not None or digest in first_of:
            results.append({"id": existing.id if existing is not None else None, "filename": name,
                            "content_hash": digest, "status": "exists", "_twin": digest})
            continue
        item = read_image(data, embedder, path="", filename=name, with_features=catalog.settings.index_local_features)
        if item.kind == "error":
            errors.append({"filename": name, "error": item.error})
            continue
        item.path = str(store_upload(catalog, digest, name, data))
        item.row = NewImage(item.path, name, digest, item.row.size, item.row.width,  # type: ignore[union-attr]
                            item.row.height, None)
        first_of[digest] = len(results)
        items.append(item)
        results.append({"id": None, "filename": name, "content_hash": digest, "status": "added", "_path": item.path})
    for item, vector in zip(items, embed_items(items, embedder)):
        writer.take(item, vector)
    writer.commit()
    for result in results:
        assert result is not None
        if "_path" in result:
            result["id"] = writer.ids[result.pop("_path")]
        twin = result.pop("_twin", None)
        if twin is not None and result["id"] is None:
            result["id"] = results[first_of[twin]]["id"]  # type: ignore[index]
    if items:
        catalog.maybe_flush()
    return [r for r in results if r is not None], errors
