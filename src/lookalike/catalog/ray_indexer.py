"""Distributed indexing on Ray Data: the same Reader -> Embed -> Writer, with Embed spread out.

Why Ray Data rather than a home-made cluster: it streams (bounded memory at any catalog size), it
schedules an actor pool so each worker loads the ONNX model once, it runs unchanged on a laptop
(``ray.init()``) and on a cluster (``ray.init(address=...)``), and it retries failed tasks.

The pipeline::

    paths (folder walk or list file, driver)   skip files whose size+mtime match their row (resume)
      -> map_batches(EmbedWorker, N actors)       read, hash, header checks; files whose bytes the
                                                  catalog already holds are not decoded or embedded;
                                                  decode (JPEG draft), preprocess, embed (ONNX,
                                                  one model per actor)
      -> iter_batches, in input order (driver)    the catalog's own writer (``Catalog.add_embedded``)
                                                  every ``commit_every`` rows, then index flush

Only the driver writes, so SQLite and a local-mode store see one writer; Ray preserves the input
order, so rows get the same ids as with the single-process indexer (``catalog.indexer``), whose
incremental rules (unchanged / changed / touched / duplicate / vanished) this follows.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable, Iterator, Sequence

import numpy as np

from lookalike.config import Settings
from lookalike.errors import DependencyMissingError, NotFoundError, ServiceUnavailableError
from lookalike.imaging import IMAGE_EXTENSIONS
from lookalike.catalog.ingest import CatalogWriter, Item, Recipe, embed_items, read_image
from lookalike.catalog.metadata import NewImage

if TYPE_CHECKING:
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.indexer import IndexReport, ProgressFn
    from lookalike.catalog.metadata import ImageRecord  # noqa: F401 - quoted annotations

LIST_FILE_SUFFIXES = {".txt", ".lst", ".list", ".csv"}
HASH_DTYPE = "S32"  # content_hash is 32 hex characters (blake2b, 16 bytes)


def _import_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise DependencyMissingError(
            "--engine ray needs `pip install lookalike[scale]` (ray[data])", code="engine_unavailable"
        ) from exc
    return ray


# --- reader --------------------------------------------------------------------------------------
def list_sources(source: str | os.PathLike) -> tuple[list[str], Path | None]:
    """(paths, folder): a folder walked like the single-process indexer, or a list file.

    A folder gives the indexer's own order (``walk_images``: sorted, hidden files skipped) and is
    returned as ``folder`` so vanished files can be removed. A list file (``.txt``/``.lst``/``.list``,
    or ``.csv`` whose first column is the path) gives one path per line in file order, relative lines
    taken relative to the list file; ``folder`` is then None.
    """
    from lookalike.catalog.indexer import walk_images

    path = Path(source).expanduser()
    if path.is_dir():
        root = path.resolve()
        return [str(p) for p in walk_images(root)], root
    if path.is_file() and path.suffix.lower() in LIST_FILE_SUFFIXES:
        out = []
        csv = path.suffix.lower() == ".csv"
        for line in path.read_text(encoding="utf-8").splitlines():
            line = line.split(",")[0].strip() if csv else line.strip()
            if not line or line.startswith("#") or (csv and line == "path"):
                continue
            entry = Path(line).expanduser()
            out.append(str((entry if entry.is_absolute() else path.parent / entry).resolve()))
        return list(dict.fromkeys(out)), None  # a path listed twice is indexed once
    if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
        return [str(path.resolve())], None
    raise NotFoundError(f"{source} is neither a folder nor a list file (.txt, .lst, .list, .csv)")


# --- embed (runs inside Ray actors) ----------------------------------------------------------------
class EmbedWorker:
    """One Ray actor: builds the catalog's embedder from its ``Recipe`` once, then runs the ingestion
    pipeline's reader and embed stages (``catalog/ingest.py``) on batches of paths.

    ``known_hashes`` is a sorted ``S32`` array of the content hashes the catalog already holds (put
    in Ray's object store once, shared read-only by the actors of a node); a file with such bytes is
    hashed and measured but not decoded or embedded. Errors stay per image (``kind`` "error"), so
    one bad file never fails a batch.
    """

    def __init__(self, settings: Settings, recipe: Recipe, known_hashes: Any = None) -> None:
        self.embedder = recipe.create(settings)
        self.with_features = settings.index_local_features
        if known_hashes is not None and not isinstance(known_hashes, np.ndarray):
            import ray

            known_hashes = ray.get(known_hashes)
        self.known = known_hashes if known_hashes is not None else np.zeros(0, dtype=HASH_DTYPE)

    def is_known(self, digest: str) -> bool:
        key = digest.encode()
        i = int(np.searchsorted(self.known, key))
        return i < len(self.known) and self.known[i] == key

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        items = [read_image(str(path), self.embedder, path=str(path), is_known=self.is_known,
                            with_features=self.with_features) for path in batch["path"]]
        vectors = np.zeros((len(items), self.embedder.dim), dtype=np.float32)
        rows = [i for i, item in enumerate(items) if item.kind == "embed"]
        if rows:
            vectors[rows] = embed_items(items, self.embedder)
        rows_of = [item.row or NewImage(item.path, "", "", 0, 0, 0, None) for item in items]
        return {  # plain columns: Ray Data moves them as Arrow arrays
            "path": np.asarray([item.path for item in items], dtype=object),
            "kind": np.asarray([item.kind for item in items], dtype=object),
            "error": np.asarray([item.error for item in items], dtype=object),
            "content_hash": np.asarray([row.content_hash for row in rows_of], dtype=object),
            "size": np.asarray([row.size for row in rows_of], dtype=np.int64),
            "width": np.asarray([row.width for row in rows_of], dtype=np.int64),
            "height": np.asarray([row.height for row in rows_of], dtype=np.int64),
            "mtime": np.asarray([row.mtime or 0.0 for row in rows_of], dtype=np.float64),
            "features": np.asarray([item.features or b"" for item in items], dtype=object),
            "vector": vectors,
        }


def ray_init(num_cpus: int | None = None, address: str | None = None,
             object_store_memory: int = 500 * 1024 * 1024, attempts: int = 3,
             retry_pause_s: float = 2.0) -> bool:
    """Start a local Ray (or join ``address``) unless one is up; True when this call started it.

    Why retry: a local Ray gives its raylet a fixed 30 s to register, and on a loaded 2-core box
    (a CI run, a laptop busy indexing) that start-up race is occasionally lost, with the previous
    cluster's processes still exiting. A fresh start then almost always succeeds. When every
    attempt fails, the error carries the tail of Ray's own logs, since Ray's message alone
    ("timed out during startup") names no cause.
    """
    ray = _import_ray()
    if ray.is_initialized():
        return False
    if address:
        ray.init(address=address, log_to_driver=False)
        return True
    os.environ.setdefault("RAY_DISABLE_USAGE_STATS", "1")  # no phoning home from an offline box
    for attempt in range(1, attempts + 1):
        try:
            ray.init(num_cpus=num_cpus, object_store_memory=object_store_memory, include_dashboard=False,
                     log_to_driver=False)
            return True
        except Exception as error:  # Ray raises a bare Exception on a start-up timeout
            if "timed out during startup" not in str(error):
                raise  # a configuration error, not a lost race: no retry
            logs = _ray_log_tail()  # before the next attempt moves session_latest
            _stop_half_started_ray(ray)
            if attempt == attempts:
                raise ServiceUnavailableError(
                    f"could not start a local Ray after {attempts} attempts: {error}\n{logs}",
                    code="ray_unavailable",
                ) from error
            time.sleep(retry_pause_s * attempt)
    return True  # unreachable; keeps type checkers content


def _stop_half_started_ray(ray) -> None:  # noqa: ANN001 - the ray module
    """Stop what a failed local start left running. Ray raises its start-up timeout before it
    records the node, so ``ray.shutdown()`` alone leaves that node's GCS server, raylet and helper
    processes alive (they would compete with the next attempt for the CPU)."""
    try:
        ray.shutdown()
    except Exception:  # noqa: BLE001 - best effort: the start-up error is the one to report
        pass
    _kill_ray_children()


RAY_PROCESS_MARKERS = ("/ray/core/", "/ray/_private/", "/ray/dashboard/", "/ray/autoscaler/")


def _kill_ray_children(timeout_s: float = 5.0) -> int:
    """Terminate (then kill) this process's child processes that are Ray's: its ``gcs_server`` and
    ``raylet`` executables, its ``ray::`` workers and agents, and the Python helpers it starts from
    its own package. Returns how many."""
    try:
        import psutil  # a Ray dependency
    except ImportError:
        return 0
    ours = []
    for child in psutil.Process().children(recursive=True):
        try:
            command = " ".join(child.cmdline())
            name = child.name()
            if name in ("gcs_server", "raylet") or name.startswith("ray::") or any(m in command for m in RAY_PROCESS_MARKERS):
                ours.append(child)
        except psutil.Error:  # gone meanwhile, or not ours to inspect
            continue
    for child in ours:
        try:
            child.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(ours, timeout=timeout_s)
    for child in alive:
        try:
            child.kill()
        except psutil.Error:
            pass
    return len(ours)


def _ray_log_tail(lines: int = 15) -> str:
    """The last lines of the latest local Ray session's raylet and GCS logs, for a start-up error."""
    try:
        from ray._common.utils import get_default_ray_temp_dir
        logs = Path(get_default_ray_temp_dir()) / "session_latest" / "logs"
    except ImportError:  # another Ray layout: its documented default
        base = os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp"
        logs = Path(base) / "ray" / "session_latest" / "logs"
    parts = []
    for name in ("raylet.err", "raylet.out", "gcs_server.err", "gcs_server.out"):
        try:
            tail = (logs / name).read_text(errors="replace").splitlines()[-lines:]
        except OSError:  # not written (yet), or unreadable: say what there is
            continue
        if tail:
            parts.append(f"--- {logs / name}\n" + "\n".join(tail))
    return "\n".join(parts) or f"(no Ray logs under {logs})"


def embed_with_ray(
    paths: Sequence[str],
    *,
    settings: Settings,
    recipe: Recipe,
    workers: int = 2,
    batch_size: int = 32,
    known_hashes: Iterable[str] = (),
    threads_per_worker: int = 1,
) -> Iterator[dict[str, np.ndarray]]:
    """Embedded row batches, in input order, from an actor pool of ``workers`` model copies.

    Ray must be initialised (``ray_init``). Each actor gets ``threads_per_worker`` inference threads
    and reserves as many CPUs, so N actors never oversubscribe an N-core node.
    """
    ray = _import_ray()
    from ray.data import DataContext

    if not paths:
        return
    context = DataContext.get_current()
    context.execution_options.preserve_order = True  # same order in, same order out: same ids
    context.enable_progress_bars = False
    worker_settings = settings.model_copy(update={"threads": threads_per_worker})
    known = np.unique(np.asarray(list(known_hashes), dtype=HASH_DTYPE))
    # Arrow string blocks, not a list of dicts: 10M paths cost ~1 GB on the driver, not several
    import pyarrow as pa

    per_block = max(batch_size, -(-len(paths) // (20 * workers)))
    blocks = [pa.table({"path": pa.array(paths[i : i + per_block], type=pa.string())})
              for i in range(0, len(paths), per_block)]
    dataset = ray.data.from_arrow(blocks).map_batches(
        EmbedWorker,
        fn_constructor_kwargs={
            "settings": worker_settings, "recipe": recipe,
            "known_hashes": ray.put(known) if len(known) else None,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=threads_per_worker,
    )
    yield from dataset.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=2)


# --- writer + runner (driver) --------------------------------------------------------------------
def items_of(batch: dict[str, np.ndarray], existing: dict[str, "ImageRecord"]) -> Iterator[tuple[Item, np.ndarray]]:
    """The actors' reader items back on the driver, with the path's previous row: a path whose
    bytes did not change becomes a ``touch``, as in the local indexer."""
    for i, path in enumerate(batch["path"]):
        path, kind = str(path), str(batch["kind"][i])
        if kind == "error":
            yield Item("error", path, error=str(batch["error"][i])), batch["vector"][i]
            continue
        row = NewImage(path, Path(path).name, str(batch["content_hash"][i]), int(batch["size"][i]),
                       int(batch["width"][i]), int(batch["height"][i]), float(batch["mtime"][i]))
        old = existing.get(path)
        if old is not None and old.content_hash == row.content_hash:
            kind = "touch"
        features = bytes(batch["features"][i]) or None
        yield Item(kind, path, row=row, old=old, features=features), batch["vector"][i]


def _catalog_state(catalog: "Catalog", folder: Path | None, paths: Sequence[str]) -> tuple[dict, list[str]]:
    """(rows by path for this source, every content hash the catalog holds)."""
    wanted = None if folder is not None else set(paths)
    prefix = str(folder).rstrip("/\\") + "/" if folder is not None else ""
    existing, hashes = {}, []
    for record in catalog.meta.records():
        hashes.append(record.content_hash)
        if record.path and (record.path.startswith(prefix) if wanted is None else record.path in wanted):
            existing[record.path] = record
    return existing, hashes


def index_with_ray(
    source: str | os.PathLike,
    catalog: "Catalog",
    *,
    workers: int | None = None,
    batch_size: int = 32,
    commit_every: int | None = None,
    threads_per_worker: int = 1,
    address: str | None = None,
    remove_vanished: bool = True,
    progress: "ProgressFn | None" = None,
) -> "IndexReport":
    """``lookalike index SOURCE --engine ray``: ``index_folder``'s contract, embedding on Ray.

    ``source`` is a folder or a list file of paths; ``workers`` actors (default: the local cores,
    or the cluster's CPUs over ``threads_per_worker``) each hold one model copy; ``address`` joins a
    running cluster (``ray://...`` or ``auto``) instead of starting a local Ray. Resumable: rerun the
    same command after an interruption and only what was not committed is embedded. Returns the
    single-process indexer's ``IndexReport`` (timings: scan, ray_start, embed, write, remove).
    """
    from lookalike.catalog.indexer import IndexProgress, IndexReport, changed_since_indexed, finish_index

    started = time.perf_counter()
    paths, folder = list_sources(source)
    report = IndexReport(catalog.name, str(folder or Path(source).expanduser().resolve()))
    report.scanned = len(paths)
    existing, hashes = _catalog_state(catalog, folder, paths)
    todo = [path for path, _ in changed_since_indexed(paths, existing, report)]
    timings = {"scan": time.perf_counter() - started, "ray_start": 0.0, "embed": 0.0, "write": 0.0, "remove": 0.0}

    settings = catalog.settings
    writer = CatalogWriter(catalog, commit_every)
    owns_ray = False
    if todo:
        start = time.perf_counter()
        local_cpus = max(os.cpu_count() or 1, (workers or 1) * threads_per_worker)
        owns_ray = ray_init(num_cpus=None if address else local_cpus, address=address)
        if workers is None:
            import ray

            workers = max(1, int(ray.cluster_resources().get("CPU", 1)) // threads_per_worker)
        timings["ray_start"] = time.perf_counter() - start
    try:
        start = time.perf_counter()
        done = 0
        for batch in embed_with_ray(
            todo, settings=settings, recipe=catalog.recipe, workers=workers or 1, batch_size=batch_size,
            known_hashes=hashes, threads_per_worker=threads_per_worker,
        ):
            for item, vector in items_of(batch, existing):
                writer.take(item, vector if item.kind == "embed" else None)
            done += len(batch["path"])
            if progress is not None:
                progress(IndexProgress(done, len(todo), writer.embedded,
                                       len(report.errors) + len(writer.counts.errors)))
        writer.commit()
        timings["embed"] = time.perf_counter() - start - writer.write_s
    finally:
        if owns_ray:
            import ray

            ray.shutdown()
    return finish_index(catalog, report, timings, started, writer=writer, existing=existing,
                        seen=set(paths) if remove_vanished and folder is not None else None)
