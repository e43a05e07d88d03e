"""A named catalog: one folder holding SQLite metadata (with durable vectors) and a FAISS index.

Layout of ``<data_dir>/catalogs/<name>/``: ``catalog.sqlite`` (rows + vectors, the truth),
``vectors.faiss`` (the search index, saved atomically now and then), ``vectors.f32`` (large
catalogs only: the full vectors by id for the exact re-rank of a compressed index, see
``vector_file.py``), ``files/`` (uploaded originals), ``thumbs/`` (thumbnails made once), ``features.sqlite`` (each
image's local features for search verification, a cache refilled from the originals; see
``catalog/search.py``).
Writes commit to SQLite first, then reach the index; opening a catalog reconciles the index
with SQLite, so after a crash at any moment the two agree again and nothing committed is lost.
"""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from lookalike.config import Settings
from lookalike.errors import ConflictError, LookalikeError, NotFoundError
from lookalike.models.registry import check_input_size, resolve_model
from lookalike.similarity import Thresholds, normalized_score, thresholds_for
from lookalike.catalog.stores.faiss import FaissStore
from lookalike.catalog.ingest import Recipe
from lookalike.catalog.metadata import ImageRecord, Metadata, NewImage
from lookalike.catalog.stores.base import VectorStore
from lookalike.catalog.vector_file import VectorFile

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
DB_FILE = "catalog.sqlite"
INDEX_FILE = "vectors.faiss"
VECTORS_FILE = "vectors.f32"


class BadCatalogNameError(LookalikeError):
    status = 422
    code = "bad_catalog_name"


def check_name(name: str) -> str:
    """Catalog names become folder names: letters, digits, '-' and '_' only (no traversal)."""
    if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
        raise BadCatalogNameError(
            f"bad catalog name {name!r}: use 1-64 letters, digits, '-' or '_', starting with a letter or digit"
        )
    return name


def catalogs_root(settings: Settings) -> Path:
    return Path(settings.data_dir).expanduser() / "catalogs"


def catalog_dir(name: str, settings: Settings) -> Path:
    return catalogs_root(settings) / check_name(name)


def missing_catalog(name: str, settings: Settings) -> NotFoundError:
    """The error for an unknown catalog: which ones exist, and how to create this one."""
    names = [row["name"] for row in list_catalogs(settings)]
    known = f"catalogs here: {', '.join(names)}" if names else "there are no catalogs yet"
    return NotFoundError(f"catalog {name!r} does not exist ({known}); create it with "
                         f"`lookalike index FOLDER --catalog {name}` or POST /v1/catalogs/{name}/images")


def list_catalogs(settings: Settings) -> list[dict]:
    """``[{name, count, model, input_size, created_at}]`` from metadata alone (no index loaded)."""
    root = catalogs_root(settings)
    out = []
    if not root.is_dir():
        return out
    for folder in sorted(root.iterdir()):
        if not (folder / DB_FILE).is_file() or not NAME_PATTERN.fullmatch(folder.name):
            continue
        meta = Metadata(folder / DB_FILE)
        try:
            info = meta.info()
            if "model" not in info:
                continue
            out.append({
                "name": folder.name,
                "count": meta.count(),
                "model": info["model"],
                "input_size": int(info["input_size"]),
                "created_at": float(info.get("created_at", 0.0)),
            })
        finally:
            meta.close()
    return out


@dataclass(frozen=True)
class SearchResult:
    """One hit. ``rank_score`` is the key hits are ordered by: the cosine, plus the capped share of
    local-feature ``inliers`` where the hit was ``verified`` (``catalog.search``, ``geometry.rerank_key``)."""

    record: ImageRecord
    cosine: float
    score: float
    verdict: str
    rank_score: float | None = None  # None: the cosine (a plain vector search)
    inliers: int | None = None
    verified: bool = False

    def to_dict(self) -> dict:
        return {
            "id": self.record.id,
            "path": self.record.path,
            "filename": self.record.filename,
            "cosine": self.cosine,
            "score": self.score,
            "verdict": self.verdict,
            "rank_score": self.cosine if self.rank_score is None else self.rank_score,
            "inliers": self.inliers,
            "verified": self.verified,
        }


class Catalog:
    """Open (or create) the catalog ``name`` under ``settings.data_dir/catalogs``."""

    def __init__(self, name: str, settings: Settings, *, model: str | None = None, input_size: int | None = None,
                 preprocess: str | None = None, create: bool = True) -> None:
        self.name = check_name(name)
        self.settings = settings
        self.root = catalog_dir(name, settings)
        if not (self.root / DB_FILE).is_file():
            if not create:
                raise missing_catalog(name, settings)
            self.root.mkdir(parents=True, exist_ok=True)
        self.meta = Metadata(self.root / DB_FILE)
        self._lock = threading.RLock()
        self._feature_store = None  # catalog.search.FeatureStore, opened on first use
        self._last_flush = time.monotonic()
        self._dirty = False
        info = self.meta.info()
        if "model" not in info:
            spec = resolve_model(model or settings.default_model)
            size = check_input_size(input_size or settings.input_size or spec.default_size,
                                    settings.allowed_input_sizes, spec)
            mode = preprocess or settings.preprocess or spec.preprocessing.mode
            self.meta.set_info(model=spec.name, input_size=size, preprocess=mode, pooling=settings.pooling,
                               dim=spec.dim, index_factory="Flat", created_at=time.time())
            info = self.meta.info()
        else:
            self._check_model(info, model, input_size)
        self.model = info["model"]
        self.input_size = int(info["input_size"])
        self.preprocess = info["preprocess"]
        self.pooling = info.get("pooling", "avg")  # catalogs from before GeM became the default were average-pooled
        self.dim = int(info["dim"])
        self.factory = info["index_factory"]
        self.created_at = float(info["created_at"])
        self.vector_file: VectorFile | None = None  # opened when the index type needs an exact re-rank
        self.store = self._open_store()
        self._data_version = self.meta.data_version()
        self.reconciled = self.reconcile()
        self._embedder = None

    # --- opening and consistency ---------------------------------------------------------
    def _check_model(self, info: dict, model: str | None, input_size: int | None) -> None:
        if model and resolve_model(model).name != info["model"]:
            raise ConflictError(
                f"catalog {self.name!r} was built with {info['model']}; it cannot take {model} vectors "
                "(use another catalog name)"
            )
        if input_size and int(input_size) != int(info["input_size"]):
            raise ConflictError(f"catalog {self.name!r} uses input size {info['input_size']}, not {input_size}")

    def _open_store(self) -> VectorStore:
        if self.settings.store != "faiss":  # a server-grade store (the [scale] extra): see catalog/stores/__init__.py
            from lookalike.catalog.stores import open_store

            return open_store(self.settings, self.root, self.dim, factory=self.factory)
        path = self.root / INDEX_FILE
        refine = self._refine_args(self.factory)
        try:
            return FaissStore.open(path, self.dim, self.factory, self.settings.catalog_search_params, **refine)
        except Exception:  # noqa: BLE001 - an unreadable index is only a cache: rebuild it from SQLite
            path.unlink(missing_ok=True)
            return FaissStore(self.dim, self.factory, path=path, search_params=self.settings.catalog_search_params,
                              **refine)

    def _refine_args(self, factory: str) -> dict:
        """A compressed index re-ranks its top ``catalog_refine`` candidates with the full vectors."""
        if factory == "Flat" or self.settings.catalog_refine <= 0:
            return {}
        if self.vector_file is None:
            self.vector_file = VectorFile(self.root / VECTORS_FILE, self.dim)
        return {"refine": self.settings.catalog_refine, "fetch_vectors": self.vector_file.fetch}

    def _sync_vector_file(self, db_ids: np.ndarray, missing: np.ndarray) -> None:
        """Rows for ids the saved index lacks; the whole file again when it is new or cut short."""
        if self.vector_file is None:
            return
        if len(db_ids) and self.vector_file.rows <= int(db_ids.max()):
            self.vector_file.truncate()
            for ids, vectors in self.meta.iter_vectors(self.dim):
                self.vector_file.write(ids, vectors)
        elif len(missing):
            for start in range(0, len(missing), 4096):
                chunk = missing[start : start + 4096]
                self.vector_file.write(chunk, self.meta.vectors(chunk, self.dim))
        else:
            return  # nothing written: nothing to make durable (refresh runs this on every change)
        self.vector_file.sync()

    def reconcile(self) -> tuple[int, int]:
        """Make the index hold exactly SQLite's ids; returns (vectors re-added, vectors dropped)."""
        with self._lock:
            db_ids = self.meta.all_ids()
            store_ids = self.store.ids()
            extra = np.setdiff1d(store_ids, db_ids, assume_unique=True)
            missing = np.setdiff1d(db_ids, store_ids, assume_unique=True)
            if len(extra):
                self.store.remove(extra.tolist())
            self._sync_vector_file(db_ids, missing)
            if len(missing) and not self.store.is_trained:  # an IVF index lost: retrain it from SQLite
                try:
                    self._rebuild(self.factory)
                except ValueError:  # too few vectors to train it: exact search meanwhile
                    self._rebuild("Flat")
                return len(db_ids), len(extra)
            for start in range(0, len(missing), 4096):
                chunk = missing[start : start + 4096]
                self.store.add(chunk, self.meta.vectors(chunk, self.dim))
            if len(extra) or len(missing):
                self.store.flush()
            return len(missing), len(extra)

    def refresh(self) -> bool:
        """Pick up rows another process committed (a CLI indexer next to the server)."""
        version = self.meta.data_version()
        if version == self._data_version:
            return False
        with self._lock:
            self._data_version = version
            info = self.meta.info()
            if info.get("index_factory", self.factory) != self.factory:  # it switched index type: reload
                self.factory = info["index_factory"]
                self.store = self._open_store()
            self.reconcile()
        return True

    def check_consistency(self) -> None:
        """Raise if SQLite and the index disagree (tests and ``lookalike catalogs --check``)."""
        db_ids = self.meta.all_ids()
        store_ids = np.sort(self.store.ids())
        if not np.array_equal(db_ids, store_ids):
            raise AssertionError(f"{len(db_ids)} rows vs {len(store_ids)} vectors")
        for start in range(0, len(db_ids), 4096):
            chunk = db_ids[start : start + 4096]
            if not np.allclose(self.store.get(chunk), self.meta.vectors(chunk, self.dim), atol=1e-2):
                raise AssertionError("index vectors differ from the committed ones")

    # --- models and verdicts ---------------------------------------------------------------
    @property
    def recipe(self) -> Recipe:
        """How this catalog's vectors are made (model, size, preprocessing, pooling)."""
        return Recipe(self.model, self.input_size, self.preprocess, self.pooling)

    def embedder(self, pool=None):  # noqa: ANN001, ANN201 - EmbedderPool / Embedder
        """The embedder this catalog's vectors came from: the pool's when it embeds the same way."""
        if pool is not None:
            return self.recipe.from_pool(pool, self.settings)
        if self._embedder is None:
            self._embedder = self.recipe.create(self.settings)
        return self._embedder

    @property
    def thresholds(self) -> Thresholds:
        return thresholds_for(self.model, self.input_size, self.settings)

    # --- writes ------------------------------------------------------------------------------
    def add_embedded(self, rows: Sequence[NewImage], vectors: np.ndarray, *, replace_ids: Sequence[int] = ()) -> list[int]:
        """Commit rows + vectors (one SQLite transaction), then add them to the index."""
        with self._lock:
            ids = self.meta.insert(rows, vectors, self.model, replace_ids=replace_ids)
            if self.vector_file is not None:
                self.vector_file.write(ids, vectors)
            if replace_ids:
                self.store.remove(list(replace_ids))
            self.store.add(ids, vectors)
            self._dirty = True
            return ids

    def remove(self, ids: Sequence[int]) -> int:
        """Delete rows (and uploaded originals nobody else uses, and thumbnails)."""
        with self._lock:
            records = self.meta.get_many(ids)
            if not records:
                return 0
            self.meta.delete(records)
            self.store.remove(list(records))
            if self._feature_store is not None or (self.root / "features.sqlite").is_file():
                self.features.delete(records)
            self._dirty = True
            for record in records.values():
                for thumb in (self.root / "thumbs").glob(f"{record.id}_*.jpg"):
                    thumb.unlink(missing_ok=True)
                if record.path and Path(record.path).parent == self.root / "files" \
                        and self.meta.by_hash(record.content_hash) is None:
                    Path(record.path).unlink(missing_ok=True)
            self.maybe_flush()
            return len(records)

    # --- reads -------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.meta.count()

    def get(self, image_id: int) -> ImageRecord:
        record = self.meta.get(image_id)
        if record is None:
            raise NotFoundError(f"no image {image_id} in catalog {self.name!r}")
        return record

    def vector(self, image_id: int) -> np.ndarray:
        self.get(image_id)
        return self.meta.vectors([image_id], self.dim)[0]

    def search(self, vectors: np.ndarray, k: int = 10, *, query_hash: str | None = None,
               exclude_id: int | None = None) -> list[list[SearchResult]]:
        """Top-k per query row by cosine, with score and the score's tier (``exact`` when the bytes
        are the same). Image queries go through ``lookalike.catalog.search``, which verifies and
        re-ranks these with the stored local features."""
        vectors = np.asarray(vectors, dtype=np.float32).reshape(-1, self.dim)
        fetch = k + (1 if exclude_id is not None else 0)
        with self._lock:
            hits = self.store.search(vectors, fetch)
        records = self.meta.get_many({h.id for row in hits for h in row})
        thresholds = self.thresholds
        out = []
        for row in hits:
            results = []
            for hit in row:
                record = records.get(hit.id)
                if record is None or hit.id == exclude_id:
                    continue
                cos = float(min(1.0, max(-1.0, hit.cosine)))
                score = float(normalized_score(cos))
                same = query_hash is not None and record.content_hash == query_hash
                results.append(SearchResult(record, cos, score, thresholds.tier(score, exact=same).value))
            out.append(results[:k])
        return out

    @property
    def features(self):  # noqa: ANN201 - catalog.search.FeatureStore
        """The images' stored local features (``features.sqlite``), opened on first use."""
        if self._feature_store is None:
            from lookalike.catalog.search import FEATURES_FILE, FeatureStore

            with self._lock:
                if self._feature_store is None:
                    self._feature_store = FeatureStore(self.root / FEATURES_FILE, self.settings.search_feature_cache)
        return self._feature_store

    def describe(self) -> dict:
        return {"name": self.name, "count": len(self), "model": self.model, "input_size": self.input_size,
                "created_at": self.created_at}

    def original_path(self, record: ImageRecord) -> Path:
        if not record.path or not Path(record.path).is_file():
            raise NotFoundError(f"the original of image {record.id} is no longer at {record.path}")
        return Path(record.path)

    # --- persistence -------------------------------------------------------------------------
    def flush(self) -> None:
        """Save the index (switching to the large-catalog index type once past the flat limit)."""
        with self._lock:
            large = self.settings.catalog_index_factory
            if (isinstance(self.store, FaissStore) and self.factory == "Flat"
                    and len(self.store) > self.settings.catalog_flat_max and large != "Flat"):
                self._rebuild(large)
            else:
                if self.vector_file is not None:  # every id the saved index holds has a durable row
                    self.vector_file.sync()
                self.store.flush()
            self._dirty = False
            self._last_flush = time.monotonic()

    def maybe_flush(self, min_interval_s: float = 30.0) -> None:
        """Save the index when it is worth it; SQLite already holds everything, so this is only speed."""
        if self._dirty and (len(self) < 50_000 or time.monotonic() - self._last_flush >= min_interval_s):
            self.flush()

    def _rebuild(self, factory: str, train_max: int = 200_000) -> None:
        """Build a fresh index of type ``factory`` from the committed vectors, then swap it in."""
        refine = self._refine_args(factory)
        if refine:  # the full vectors first, durable: a compressed index answers through them
            self._sync_vector_file(self.meta.all_ids(), np.zeros(0, dtype=np.int64))
            self.vector_file.sync()  # rows add_embedded wrote are not fsynced until an index save
        fresh = FaissStore(self.dim, factory, path=self.root / INDEX_FILE,
                           search_params=self.settings.catalog_search_params, **refine)
        if not fresh.is_trained:
            sample = []
            taken = 0
            for _, vecs in self.meta.iter_vectors(self.dim):
                sample.append(vecs)
                taken += len(vecs)
                if taken >= train_max:
                    break
            fresh.train(np.concatenate(sample) if sample else np.zeros((0, self.dim), np.float32))
        for ids, vecs in self.meta.iter_vectors(self.dim):
            fresh.add(ids, vecs)
        fresh.flush()
        self.meta.set_info(index_factory=factory)
        self.store, self.factory = fresh, factory

    def close(self) -> None:
        with self._lock:
            if self._dirty:
                self.flush()
            if self.vector_file is not None:
                self.vector_file.close()
            if self._feature_store is not None:
                self._feature_store.close()
            self.meta.close()

    def __enter__(self) -> "Catalog":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
