"""Catalog commands: ``index``, ``search``, ``dedup``, ``catalog list`` (thin adapters over lookalike.catalog)."""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.progress import (BarColumn, MofNCompleteColumn, Progress, ProgressColumn, TaskProgressColumn, TextColumn,
                           TimeElapsedColumn, TimeRemainingColumn)
from rich.table import Table
from rich.text import Text

from lookalike.config import get_settings
from lookalike.cli.common import CatalogOpt, console, display_path, err_console, fail, plural, progress
from lookalike.errors import LookalikeError





# the indexer's stage timings, as a user would name them (waiting on the reader overlaps the others: not shown)
_STAGES = {"load_model": "loading the model", "scan": "scanning", "read_decode": "decoding", "embed": "embedding", "write": "writing",
           "remove": "removing"}


class _RateColumn(ProgressColumn):
    """Images per second over the whole run (steadier than Rich's windowed speed)."""

    def render(self, task) -> Text:  # noqa: ANN001
        elapsed = task.elapsed or 0.0
        rate = task.completed / elapsed if elapsed > 0 else 0.0
        return Text(f"{rate:6.1f} img/s", style="progress.data.speed")


def index(
    folder: Annotated[Path, typer.Argument(help="folder to index (recursively), or with --engine ray a list file "
                                           "of image paths", exists=True)],
    catalog: CatalogOpt,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="model for a new catalog")] = None,
    size: Annotated[Optional[int], typer.Option("--size", "-s", help="input size for a new catalog")] = None,
    keep_vanished: Annotated[bool, typer.Option("--keep-vanished", help="keep rows of files no longer there")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    engine: Annotated[str, typer.Option("--engine", help="'local' (threads) or 'ray' (Ray Data actors)")] = "local",
    workers: Annotated[Optional[int], typer.Option("--workers", help="Ray embedding actors")] = None,
    ray_address: Annotated[Optional[str], typer.Option("--ray-address", help="Ray cluster (default: local)")] = None,
) -> None:
    """Index a folder into a catalog: new and changed images are embedded, unchanged ones skipped."""
    if engine not in ("local", "ray"):
        fail(LookalikeError(f"--engine must be 'local' or 'ray', not {engine!r}", code="bad_engine"))
    if engine == "local" and folder.is_file():
        fail(LookalikeError(f"{folder} is a file: the local engine indexes folders (a list file needs --engine ray)",
                             code="bad_source"))
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.indexer import index_folder

    settings = get_settings()
    try:
        with Catalog(catalog, settings, model=model, input_size=size) as cat:
            with Progress(TextColumn("[bold]indexing"), BarColumn(), MofNCompleteColumn(), TaskProgressColumn(),
                          _RateColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                          console=err_console, transient=True,
                          disable=as_json or not err_console.is_terminal) as bar:
                task = bar.add_task("index", total=None)

                def progress(p) -> None:  # noqa: ANN001
                    bar.update(task, total=p.total, completed=p.done)

                if engine == "ray":
                    from lookalike.catalog.ray_indexer import index_with_ray

                    report = index_with_ray(folder, cat, workers=workers, address=ray_address,
                                            remove_vanished=not keep_vanished, progress=progress)
                else:
                    report = index_folder(folder, cat, remove_vanished=not keep_vanished, progress=progress)
            total = len(cat)
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(report.to_dict() | {"catalog_size": total}, indent=2))
        return
    if not (report.added or report.changed or report.removed or report.errors):
        console.print(f"catalog [bold]{escape(report.catalog)}[/bold]: nothing to index: {report.unchanged} unchanged; "
                      f"{plural(total, 'image')} in the catalog")
        return
    console.print(
        f"catalog [bold]{escape(report.catalog)}[/bold]: {report.added} added, {report.changed} changed, "
        f"{report.unchanged} unchanged, {plural(report.duplicates, 'duplicate')} (exact copies: no inference), "
        f"{report.removed} removed, {len(report.errors)} unreadable; {plural(total, 'image')} in the catalog"
    )
    stages = ", ".join(f"{_STAGES[k]} {v:.1f} s" for k, v in report.timings.items() if k in _STAGES and v >= 0.05)
    console.print(f"{report.embedded} embedded in {report.elapsed_s:.1f} s ({report.images_per_s:.1f} img/s)"
                  + (f"; {stages}" if stages else ""))
    if report.errors:
        table = Table(title="unreadable files (skipped)")
        table.add_column("file")
        table.add_column("reason")
        for path, reason in report.errors:
            table.add_row(escape(display_path(path)), escape(reason))
        console.print(table)


def search(
    image: Annotated[Path, typer.Argument(help="query image", exists=True, dir_okay=False)],
    catalog: CatalogOpt,
    k: Annotated[int, typer.Option("-k", "--top", min=1, max=1000, help="how many results")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """The k catalog images most similar to IMAGE, verified by local features and ordered by rank."""
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.search import search_image

    settings = get_settings()
    try:
        with Catalog(catalog, settings, create=False) as cat:
            started = time.perf_counter()
            with progress(f"searching {catalog} (embedding, then checking the top hits' local features)",
                          quiet=as_json):
                cat.embedder()  # a one-off command loads the model; the server keeps it loaded
                loaded = time.perf_counter()
                answer = search_image(cat, image, k)
            elapsed_ms = (time.perf_counter() - loaded) * 1000
            load_ms = (loaded - started) * 1000
            model, size, thresholds = cat.model, cat.input_size, cat.thresholds
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps({"query": {"id": None, "filename": image.name}, "model": model, "input_size": size}
                         | answer.to_dict(), indent=2))
        return
    reranked = answer.order == "rank_score"
    from lookalike.geometry import RERANK_INLIER_CAP as cap

    order = (f"order: rank = cosine + min(inliers, {cap})/{cap} over the top {answer.reranked} by cosine"
             if reranked else "order: cosine")
    table = Table(title=escape(f"{image.name} in catalog {catalog} ({model}@{size}): search {elapsed_ms:.0f} ms "
                               f"(+ {load_ms:.0f} ms loading the model)"), caption=order)
    columns = [("#", "right"), ("id", "right")]
    columns += [("rank", "right"), ("inliers", "right")] if reranked else []
    columns += [("score", "right"), ("cosine", "right"), ("verdict", "left"), ("path", "left")]
    for column, justify in columns:
        # paths fold onto more lines on a narrow terminal rather than lose their end ("Arla-…")
        table.add_column(column, justify=justify, overflow="fold" if column == "path" else "ellipsis",  # type: ignore[arg-type]
                         style="bold" if column == ("rank" if reranked else "cosine") else None)
    for rank, r in enumerate(answer.results, 1):
        row = [str(rank), str(r.record.id)]
        if reranked:
            row += [f"{r.to_dict()['rank_score']:.4f}", "-" if r.inliers is None else str(r.inliers)]
        row += [f"{r.score:.4f}", f"{r.cosine:.4f}", r.verdict,
                escape(display_path(r.record.path) if r.record.path else r.record.filename or "")]
        table.add_row(*row)
    console.print(table)
    console.print(f"verdict thresholds (score): near_duplicate >= {thresholds.near_duplicate:.3f}, "
                  f"similar >= {thresholds.similar:.3f} ({escape(thresholds.source)})")


def _dedup_catalog_name(folder: Path) -> str:
    """A catalog name of its own for a folder: its name plus a short hash of its absolute path."""
    import hashlib
    import re

    resolved = folder.expanduser().resolve()
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", resolved.name).strip("-_")[:40] or "folder"
    return f"dedup-{stem}-{hashlib.sha1(str(resolved).encode()).hexdigest()[:8]}"


def dedup(
    folder: Annotated[Optional[Path], typer.Argument(help="folder to index (new and changed images only) and "
                                                     "deduplicate; omit it with --catalog", exists=True,
                                                     file_okay=False)] = None,
    catalog: Annotated[Optional[str], typer.Option("--catalog", "-c", help="catalog name; with FOLDER default: "
                                                   "one of its own, reused on the next run")] = None,
    model: Annotated[Optional[str], typer.Option("--model", "-m", help="model for a new catalog (default: the "
                                                 "copy detector sscd_distilled when installed)")] = None,
    threshold: Annotated[Optional[float], typer.Option("--threshold", "-t", min=0.0, max=1.0,
                                                       help="candidate line as a score (cos+1)/2; default: the "
                                                       "model's")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", "-o", help="write clusters to FILE.csv or FILE.json")] = None,
    show: Annotated[int, typer.Option("--show", help="clusters to print")] = 10,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object: exact and near (lists of path groups, the kept image "
                                          "first), skipped (unreadable files), timings and stats")] = False,
) -> None:
    """Group images into duplicate clusters and say which of each to keep.

    With FOLDER: index it into a catalog of its own (reused on the next run, only new and changed
    images embedded), then cluster. With --catalog NAME alone: cluster a catalog already built.
    """
    from lookalike.catalog.catalog import DB_FILE, Catalog, catalog_dir
    from lookalike.catalog.dedup import dedup_model, find_duplicates
    from lookalike.catalog.indexer import index_folder

    if folder is None and catalog is None:
        fail(LookalikeError("name a FOLDER to deduplicate, or an existing catalog with --catalog NAME",
                             code="missing_source"))
    settings = get_settings()
    quiet = as_json or not err_console.is_terminal
    timings: dict[str, float] = {}
    skipped: list[dict] = []
    try:
        name = catalog or _dedup_catalog_name(folder)  # type: ignore[arg-type]
        create = folder is not None
        exists = (catalog_dir(name, settings) / DB_FILE).is_file()
        # a new catalog gets the copy detector; an existing one keeps its model (unless --model disagrees)
        new_model = model or (dedup_model(settings) if create and not exists else None)
        if folder is not None:  # the copy check matches stored local features: store them while indexing
            settings = settings.model_copy(update={"index_local_features": True})
        with Catalog(name, settings, model=new_model, create=create) as cat, \
                Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                         TaskProgressColumn(), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn(),
                         console=err_console, transient=True, disable=quiet) as bar:
            if folder is not None:
                task = bar.add_task("indexing", total=None)
                cpu = time.process_time()
                report = index_folder(folder, cat, progress=lambda p: bar.update(task, total=p.total,
                                                                                  completed=p.done))
                timings["index_s"] = report.elapsed_s
                timings["index_cpu_s"] = time.process_time() - cpu  # all threads: steadier than wall on a busy host
                skipped = [{"path": path, "error": error} for path, error in report.errors]
                bar.remove_task(task)
            stages: dict[str, object] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in stages:
                    label = {"graph": "finding copies", "features": "local features"}.get(stage, "checking pairs")
                    stages[stage] = bar.add_task(label, total=total)
                bar.update(stages[stage], total=total, completed=done)

            started, cpu = time.perf_counter(), time.process_time()
            dup = find_duplicates(cat, threshold, progress=progress)
            timings["dedup_s"] = time.perf_counter() - started
            timings["dedup_cpu_s"] = time.process_time() - cpu
            size = len(cat)
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(dup.groups() | {"skipped": skipped, "catalog": dup.catalog, "model": cat.model,
                                          "images": size, "timings_s": {k: round(v, 3) for k, v in timings.items()},
                                          "stats": dup.stats}, indent=2))
        if out is not None:
            dup.write(out)
        return
    exact = sum(c.tier == "exact" for c in dup.clusters)
    members = sum(len(c.members) for c in dup.clusters)
    console.print(
        f"{plural(len(dup.clusters), 'cluster')} ({exact} exact, {len(dup.clusters) - exact} near-duplicate) "
        f"covering {members} of {plural(size, 'image')} in catalog [bold]{escape(dup.catalog)}[/bold] ({cat.model}; "
        + (f"indexed in {timings['index_s']:.1f} s, " if "index_s" in timings else "")
        + f"clustered in {timings['dedup_s']:.2f} s); {members - len(dup.clusters)} could be removed"
    )
    if skipped:
        console.print(f"{plural(len(skipped), 'unreadable file')} skipped")
    if dup.clusters and show:
        shown = min(show, len(dup.clusters))
        title = "the largest cluster" if shown == 1 else f"the {shown} largest clusters"
        table = Table(title=f"{title} (* = keep)")
        for column in ("cluster", "tier", "size", "min score", "members"):
            table.add_column(column)
        for c in dup.clusters[:show]:
            ordered = sorted(c.members, key=lambda m: m.id != c.keep)  # the kept one first
            names = ", ".join(("*" if m.id == c.keep else "") + _member_name(m) for m in ordered[:6])
            if len(ordered) > 6:
                names += f", ... (+{len(ordered) - 6})"
            low = min((p.score for p in c.pairs), default=1.0)
            table.add_row(str(c.cluster_id), c.tier, str(len(c.members)), f"{low:.3f}", escape(names))
        console.print(table)
    if out is not None:
        console.print(f"wrote {escape(display_path(dup.write(out)))}")


def _member_name(member) -> str:  # noqa: ANN001
    """The whole file name (it often carries the edit kind: ``hm_00281__crop_center.jpg``)."""
    return Path(member.path or member.filename).name


def catalogs(as_json: Annotated[bool, typer.Option("--json", help="print a JSON list")] = False) -> None:
    """The catalogs under the data folder (data_dir)."""
    from lookalike.catalog.catalog import catalogs_root, list_catalogs

    settings = get_settings()
    rows = list_catalogs(settings)
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    if not rows and not as_json:
        console.print(f"no catalogs yet in {escape(display_path(catalogs_root(settings)))}; "
                      "create one with: lookalike index FOLDER --catalog NAME")
        return
    table = Table(title=escape(f"catalogs in {display_path(catalogs_root(settings))}"))
    for column in ("name", "images", "model", "input size", "created"):
        table.add_column(column)
    for row in rows:
        created = datetime.fromtimestamp(row["created_at"], tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        table.add_row(row["name"], str(row["count"]), row["model"], str(row["input_size"]), created)
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(index)
    app.command()(search)
    app.command()(dedup)
    from lookalike.cli.transfer import catalog_app

    catalog_app.command("list")(catalogs)  # `lookalike catalog list`, beside catalog export/import
    app.command("catalogs", hidden=True)(catalogs)  # the old name, kept working
