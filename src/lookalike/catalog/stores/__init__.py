"""Which ``VectorStore`` a catalog gets: configuration (``store``), not code at the call sites.

``faiss`` (default) is the embedded, zero-set-up store: one index file per catalog. ``qdrant`` and
``milvus`` keep vectors in a vector database: with ``store_url`` unset, their embedded mode
(qdrant-client local mode in ``<catalog>/qdrant/``, Milvus Lite in ``<catalog>/milvus.db``; under
``store_path/<catalog>/`` when that is set); with ``store_url`` set, a server or cluster where each
catalog is one collection named ``lookalike_<catalog>``. Either way SQLite keeps the metadata and a
durable copy of every vector, so a store can always be rebuilt or migrated.
"""

from __future__ import annotations

from pathlib import Path

from lookalike.config import Settings
from lookalike.errors import InvalidValueError
from lookalike.catalog.stores.base import VectorStore

FAISS_FILE = "vectors.faiss"  # same name as catalog.INDEX_FILE (not imported: no cycle)
QDRANT_DIR = "qdrant"
MILVUS_FILE = "milvus.db"
COLLECTION_PREFIX = "lookalike_"
STORES = ("faiss", "qdrant", "milvus")


def collection_name(catalog_dir: Path) -> str:
    """One server collection per catalog; catalog names are already safe identifiers."""
    return f"{COLLECTION_PREFIX}{Path(catalog_dir).name}"


def milvus_collection_name(catalog_dir: Path) -> str:
    """Milvus names allow letters, digits and '_' only: '-' becomes '_' plus a short hash of the
    real name, so 'a-b' and 'a_b' never share a collection."""
    import hashlib

    name = Path(catalog_dir).name
    if "-" not in name:
        return f"{COLLECTION_PREFIX}{name}"
    return f"{COLLECTION_PREFIX}{name.replace('-', '_')}_{hashlib.blake2b(name.encode(), digest_size=4).hexdigest()}"


def _local_folder(settings: Settings, catalog_dir: Path, leaf: str) -> Path:
    """Local-mode files: ``store_path/<catalog>/<leaf>`` when store_path is set, else in the catalog."""
    return Path(settings.store_path) / catalog_dir.name / leaf if settings.store_path else catalog_dir / leaf


def open_store(settings: Settings, catalog_dir: str | Path, dim: int, *, factory: str = "Flat",
               kind: str | None = None) -> VectorStore:
    """Open (or create) the vector store of the catalog in ``catalog_dir``.

    ``kind`` overrides ``settings.store`` (migration opens a second kind of store next to the
    configured one).
    """
    kind = check_store_kind(kind or settings.store)
    catalog_dir = Path(catalog_dir)
    if kind == "faiss":
        from lookalike.catalog.stores.faiss import FaissStore

        return FaissStore.open(catalog_dir / FAISS_FILE, dim, factory, settings.catalog_search_params)
    if kind == "qdrant":
        from lookalike.catalog.stores.qdrant import QdrantStore

        api_key = settings.store_api_key.get_secret_value() if settings.store_api_key else None
        if settings.store_url:
            return QdrantStore(dim, url=settings.store_url, api_key=api_key, collection=collection_name(catalog_dir))
        return QdrantStore(dim, path=_local_folder(settings, catalog_dir, QDRANT_DIR),
                           collection=collection_name(catalog_dir))
    if kind == "milvus":
        from lookalike.catalog.stores.milvus import MilvusStore

        token = settings.store_api_key.get_secret_value() if settings.store_api_key else None
        uri = settings.store_url or str(_local_folder(settings, catalog_dir, MILVUS_FILE))
        return MilvusStore(dim, uri=uri, token=token, collection=milvus_collection_name(catalog_dir))
    raise AssertionError(kind)  # unreachable: check_store_kind refused it


def check_store_kind(kind: str) -> str:
    """The one check of a store name, for the config, migration and the factory."""
    if kind not in STORES:
        raise InvalidValueError(f"unknown store {kind!r}; choose one of {', '.join(STORES)} (setting `store`)",
                                code="unknown_store")
    return kind


def drop_store(settings: Settings, catalog_dir: str | Path, *, kind: str | None = None) -> None:
    """Delete a catalog's vectors from its store (the catalog's rows stay in SQLite)."""
    import shutil

    kind = check_store_kind(kind or settings.store)
    catalog_dir = Path(catalog_dir)
    if kind == "faiss":
        (catalog_dir / FAISS_FILE).unlink(missing_ok=True)
    elif kind == "qdrant" and settings.store_url:
        from qdrant_client import QdrantClient

        api_key = settings.store_api_key.get_secret_value() if settings.store_api_key else None
        client = QdrantClient(url=settings.store_url, api_key=api_key)
        try:
            client.delete_collection(collection_name(catalog_dir))
        finally:
            client.close()
    elif kind == "qdrant":
        shutil.rmtree(_local_folder(settings, catalog_dir, QDRANT_DIR), ignore_errors=True)
    elif kind == "milvus" and settings.store_url:
        token = settings.store_api_key.get_secret_value() if settings.store_api_key else None
        import pymilvus

        client = pymilvus.MilvusClient(uri=settings.store_url, token=token or "")
        try:
            client.drop_collection(milvus_collection_name(catalog_dir))
        finally:
            client.close()
    elif kind == "milvus":
        _local_folder(settings, catalog_dir, MILVUS_FILE).unlink(missing_ok=True)
