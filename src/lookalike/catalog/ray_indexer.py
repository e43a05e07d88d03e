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
from lookalike.errors import DependencyMissingError, LookalikeError, NotFoundError, ServiceUnavailableError
from lookalike.imaging import IMAGE_EXTENSIONS

if TYPE_CHECKING:
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.indexer import IndexReport, ProgressFn
    from lookalike.catalog.metadata import ImageRecord

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
    """One Ray actor: loads the model once, then turns batches of paths into rows with vectors.

    ``known_hashes`` is a sorted ``S32`` array of the content hashes the catalog already holds (put
    in Ray's object store once, shared read-only by the actors of a node); a file with such bytes is
    hashed and measured but not decoded or embedded. Errors stay per image (``status`` "error"), so
    one bad file never fails a batch.
    """

    def __init__(self, settings: Settings, model: str | None, input_size: int | None,
                 preprocess: str | None = None, known_hashes: Any = None) -> None:
        from lookalike.embed import create_embedder

        self.embedder = create_embedder(model, input_size=input_size, preprocess=preprocess, settings=settings)
        if known_hashes is not None and not isinstance(known_hashes, np.ndarray):
            import ray

            known_hashes = ray.get(known_hashes)
        self.known = known_hashes if known_hashes is not None else np.zeros(0, dtype=HASH_DTYPE)

    def is_known(self, digest: str) -> bool:
        key = digest.encode()
        i = int(np.searchsorted(self.known, key))
        return i < len(self.known) and self.known[i] == key

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        from lookalike.catalog.catalog import upright_size
        from lookalike.imaging import content_hash, open_checked, read_source_bytes

        embedder = self.embedder
        paths = [str(p) for p in batch["path"]]
        n = len(paths)
        hashes, sizes, widths, heights, mtimes = [""] * n, [0] * n, [0] * n, [0] * n, [0.0] * n
        status, errors = ["embedded"] * n, [""] * n
        images, image_rows = [], []
        for i, path in enumerate(paths):
            try:
                mtimes[i] = os.stat(path).st_mtime
                data = read_source_bytes(path, embedder.limits)
                assert data is not None
                hashes[i], sizes[i] = content_hash(data), len(data)
                widths[i], heights[i] = upright_size(open_checked(data, embedder.limits))
                if self.is_known(hashes[i]):
                    status[i] = "known"
                    continue
                images.append(embedder.load(data))
                image_rows.append(i)
            except LookalikeError as exc:
                status[i], errors[i] = "error", exc.message
            except OSError as exc:
                status[i], errors[i] = "error", f"cannot read: {exc.strerror or exc}"
        vectors = np.zeros((n, embedder.dim), dtype=np.float32)
        if images:
            vectors[image_rows] = embedder.encode_decoded(images)
        return {
            "path": np.asarray(paths, dtype=object),
            "content_hash": np.asarray(hashes, dtype=object),
            "size": np.asarray(sizes, dtype=np.int64),
            "width": np.asarray(widths, dtype=np.int64),
            "height": np.asarray(heights, dtype=np.int64),
            "mtime": np.asarray(mtimes, dtype=np.float64),
            "status": np.asarray(status, dtype=object),
            "error": np.asarray(errors, dtype=object),
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
    model: str | None = None,
    input_size: int | None = None,
    preprocess: str | None = None,
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
            "settings": worker_settings, "model": model, "input_size": input_size, "preprocess": preprocess,
            "known_hashes": ray.put(known) if len(known) else None,
        },
        batch_size=batch_size,
        batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=workers),
        num_cpus=threads_per_worker,
    )
    yield from dataset.iter_batches(batch_size=batch_size, batch_format="numpy", prefetch_batches=2)


# --- writer + runner (driver) --------------------------------------------------------------------
class _RayWriter:
    """Turns embedded batches into catalog rows with the indexer's rules; commits in batches."""

    def __init__(self, catalog: "Catalog", report: "IndexReport", existing: dict[str, "ImageRecord"],
                 commit_every: int) -> None:
        self.catalog = catalog
        self.report = report
        self.existing = existing
        self.commit_every = commit_every
        self.rows: list = []
        self.vectors: list[np.ndarray] = []
        self.replace: list[int] = []
        self.pending: dict[str, np.ndarray] = {}  # hash -> vector of rows not committed yet
        self.touches: list[tuple[int, float]] = []
        self.added = self.changed = 0
        self.write_s = 0.0

    def take(self, batch: dict[str, np.ndarray]) -> None:
        from lookalike.catalog.metadata import NewImage

        for i, path in enumerate(batch["path"]):
            path = str(path)
            status = str(batch["status"][i])
            if status == "error":
                self.report.errors.append((path, str(batch["error"][i])))
                continue
            digest, mtime = str(batch["content_hash"][i]), float(batch["mtime"][i])
            old = self.existing.get(path)
            if old is not None and old.content_hash == digest:
                self.touches.append((old.id, mtime))
                self.report.unchanged += 1
                continue
            row = NewImage(path, Path(path).name, digest, int(batch["size"][i]), int(batch["width"][i]),
                           int(batch["height"][i]), mtime)
            vector = self._twin_vector(digest)
            if vector is not None:  # same bytes as an image already here: reuse its vector
                self.report.duplicates += 1
            elif status == "known":
                self.report.errors.append((path, "duplicate of an image that vanished; re-run to embed"))
                continue
            else:
                vector = batch["vector"][i]
                if old is not None:
                    self.changed += 1
                else:
                    self.added += 1
            if old is not None:
                self.replace.append(old.id)
            self.rows.append(row)
            self.vectors.append(vector)
            self.pending.setdefault(digest, vector)
            if len(self.rows) >= self.commit_every:
                self.commit()

    def _twin_vector(self, digest: str) -> np.ndarray | None:
        if digest in self.pending:
            return self.pending[digest]
        twin = self.catalog.meta.by_hash(digest)
        if twin is None:
            return None
        return self.catalog.meta.vectors([twin.id], self.catalog.dim)[0]

    def commit(self) -> None:
        if not self.rows:
            return
        start = time.perf_counter()
        self.catalog.add_embedded(self.rows, np.stack(self.vectors), replace_ids=self.replace)
        self.report.added += self.added
        self.report.changed += self.changed
        self.rows, self.vectors, self.replace, self.pending = [], [], [], {}
        self.added = self.changed = 0
        self.write_s += time.perf_counter() - start


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
    commit_every = commit_every or settings.catalog_commit_every
    writer = _RayWriter(catalog, report, existing, commit_every)
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
            todo, settings=settings, model=catalog.model, input_size=catalog.input_size,
            preprocess=catalog.preprocess, workers=workers or 1, batch_size=batch_size, known_hashes=hashes,
            threads_per_worker=threads_per_worker,
        ):
            writer.take(batch)
            done += len(batch["path"])
            if progress is not None:
                progress(IndexProgress(done, len(todo), report.embedded + writer.added + writer.changed,
                                       len(report.errors)))
        writer.commit()
        timings["embed"] = time.perf_counter() - start - writer.write_s
    finally:
        if owns_ray:
            import ray

            ray.shutdown()
    timings["write"] = writer.write_s
    return finish_index(catalog, report, timings, started, touches=writer.touches, existing=existing,
                        seen=set(paths) if remove_vanished and folder is not None else None)
