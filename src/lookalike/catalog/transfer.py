"""Catalog export/import: a portable folder that any store can be filled from.

Layout of an export (plain formats, readable without lookalike)::

    manifest.json     format, version, model, input size, preprocessing, dim, count, checksums
    metadata.jsonl    one image row per line, in id order
    ids.npy           int64 (n,)       the source ids, aligned with the lines
    vectors.npy       float32 (n, dim) L2-normalized, aligned with the lines

Vectors are read from SQLite (the catalog's durable copy: exact even when the index is IVF-PQ) or,
with ``source="store"``, through the ``VectorStore`` itself. Import creates a catalog with the
configured store (``settings.store``) and writes through ``Catalog.add_embedded``, so FAISS ->
Qdrant -> FAISS is export + import twice. Both stream in batches: memory stays flat at any size.

Changing the store of one catalog in place needs no export: its SQLite holds every vector, so
opening it with another ``store`` setting fills the new store on open (``Catalog.reconcile``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Literal

import numpy as np

from lookalike.config import Settings
from lookalike.errors import ConflictError, LookalikeError

if TYPE_CHECKING:
    from lookalike.catalog.catalog import Catalog

FORMAT = "lookalike-catalog-export"
VERSION = 1
MANIFEST, METADATA, IDS, VECTORS = "manifest.json", "metadata.jsonl", "ids.npy", "vectors.npy"
ROW_FIELDS = ("id", "path", "filename", "content_hash", "size", "width", "height", "mtime", "model", "added_at")


class BadExportError(LookalikeError):
    status = 422
    code = "bad_export"


@dataclass
class TransferReport:
    catalog: str
    folder: str
    count: int = 0
    store: str = ""
    id_map_changed: int = 0  # import: rows whose id differs from the source id
    elapsed_s: float = 0.0
    manifest: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return {"catalog": self.catalog, "folder": self.folder, "count": self.count, "store": self.store,
                "ids_renumbered": self.id_map_changed, "elapsed_s": round(self.elapsed_s, 3)}


def _file_digest(path: Path) -> str:
    h = hashlib.blake2b(digest_size=16)
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _store_kind(catalog: "Catalog") -> str:
    return type(catalog.store).__name__.removesuffix("Store").lower()


# --- export ------------------------------------------------------------------------------------
def export_catalog(catalog: "Catalog", folder: str | os.PathLike, *, source: Literal["sqlite", "store"] = "sqlite",
                   batch_size: int = 4096, overwrite: bool = False) -> TransferReport:
    """Write ``catalog`` to ``folder`` (written next to it, then renamed: never half an export)."""
    started = time.perf_counter()
    final = Path(folder).expanduser().resolve()
    if final.exists() and any(final.iterdir()) and not overwrite:
        raise ConflictError(f"{final} exists and is not empty (pass overwrite to replace it)")
    tmp = final.with_name(final.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)

    ids = catalog.meta.all_ids()  # a snapshot: rows added meanwhile go to the next export
    n, dim = len(ids), catalog.dim
    vectors = np.lib.format.open_memmap(tmp / VECTORS, mode="w+", dtype=np.float32, shape=(n, dim))
    np.save(tmp / IDS, ids)
    with open(tmp / METADATA, "w", encoding="utf-8") as lines:
        for start in range(0, n, batch_size):
            chunk = ids[start : start + batch_size]
            records = catalog.meta.get_many(chunk)
            if len(records) != len(chunk):
                raise ConflictError("images were deleted while exporting; export again")
            for image_id in chunk:
                record = records[int(image_id)]
                lines.write(json.dumps({f: getattr(record, f) for f in ROW_FIELDS}) + "\n")
            if source == "store":
                vectors[start : start + len(chunk)] = catalog.store.get(chunk)
            else:
                vectors[start : start + len(chunk)] = catalog.meta.vectors(chunk, dim)
    vectors.flush()
    del vectors
    manifest = {
        "format": FORMAT,
        "version": VERSION,
        "catalog": catalog.name,
        "model": catalog.model,
        "input_size": catalog.input_size,
        "preprocess": catalog.preprocess,
        "dim": dim,
        "count": n,
        "exported_at": time.time(),
        "source_store": _store_kind(catalog),
        "vectors_from": source,
        "files": {name: _file_digest(tmp / name) for name in (METADATA, IDS, VECTORS)},
    }
    (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    return TransferReport(catalog.name, str(final), n, manifest["source_store"],
                          elapsed_s=time.perf_counter() - started, manifest=manifest)


# --- import ------------------------------------------------------------------------------------
def read_manifest(folder: str | os.PathLike, *, verify: bool = True) -> dict:
    folder = Path(folder).expanduser()
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError) as exc:
        raise BadExportError(f"{folder} is not a lookalike export (no readable {MANIFEST}): {exc}") from exc
    if manifest.get("format") != FORMAT or int(manifest.get("version", 0)) > VERSION:
        raise BadExportError(f"{folder}: unsupported export format {manifest.get('format')!r} "
                             f"version {manifest.get('version')!r}")
    if verify:
        for name, digest in manifest.get("files", {}).items():
            if not (folder / name).is_file() or _file_digest(folder / name) != digest:
                raise BadExportError(f"{folder / name} is missing or does not match its checksum")
    return manifest


def iter_export(folder: str | os.PathLike, batch_size: int = 4096) -> Iterator[tuple[list[dict], np.ndarray]]:
    """(rows, vectors) batches of an export, without loading the vectors whole (memory-mapped)."""
    folder = Path(folder).expanduser()
    vectors = np.load(folder / VECTORS, mmap_mode="r")
    rows: list[dict] = []
    start = 0
    with open(folder / METADATA, encoding="utf-8") as lines:
        for line in lines:
            if line.strip():
                rows.append(json.loads(line))
            if len(rows) == batch_size:
                yield rows, np.asarray(vectors[start : start + len(rows)], dtype=np.float32)
                start += len(rows)
                rows = []
    if rows:
        yield rows, np.asarray(vectors[start : start + len(rows)], dtype=np.float32)
        start += len(rows)
    if start != len(vectors):
        raise BadExportError(f"{folder}: {start} metadata lines for {len(vectors)} vectors")


def import_catalog(folder: str | os.PathLike, name: str, settings: Settings, *, store: str | None = None,
                   batch_size: int = 4096) -> TransferReport:
    """Create catalog ``name`` from an export, its vectors in ``store`` (default: ``settings.store``).

    The target must be new or empty. Ids are given by the new catalog in the export's order, so
    they equal the source ids unless the source had deleted rows (``ids_renumbered`` counts them).
    """
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.metadata import NewImage

    from lookalike.catalog.stores import check_store_kind

    started = time.perf_counter()
    if store:
        check_store_kind(store)
    manifest = read_manifest(folder)
    if store:
        settings = settings.model_copy(update={"store": store})
    with Catalog(name, settings, model=manifest["model"], input_size=int(manifest["input_size"]),
                 preprocess=manifest.get("preprocess")) as catalog:
        if len(catalog):
            raise ConflictError(f"catalog {name!r} already holds {len(catalog)} images; import into a new one")
        if catalog.dim != int(manifest["dim"]):
            raise BadExportError(f"export vectors are {manifest['dim']}-d; {catalog.model} makes {catalog.dim}-d")
        report = TransferReport(name, str(Path(folder).expanduser().resolve()), store=_store_kind(catalog),
                                manifest=manifest)
        for rows, vectors in iter_export(folder, batch_size):
            new = [NewImage(r["path"], r["filename"], r["content_hash"], int(r["size"]), int(r["width"]),
                            int(r["height"]), r["mtime"]) for r in rows]
            ids = catalog.add_embedded(new, vectors)
            report.count += len(ids)
            report.id_map_changed += sum(int(r["id"]) != i for r, i in zip(rows, ids))
        catalog.flush()
    report.elapsed_s = time.perf_counter() - started
    return report
