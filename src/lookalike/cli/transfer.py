"""Scale-out commands: ``catalog export`` / ``catalog import`` (thin adapters over lookalike.catalog.transfer).

Distributed indexing is ``lookalike index SOURCE --engine ray``, served by
``lookalike.catalog.ray_indexer.index_with_ray`` (same contract as the single-process ``index_folder``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from lookalike.config import get_settings
from rich.markup import escape

from lookalike.cli.common import console, fail, plural, progress
from lookalike.errors import LookalikeError


catalog_app = typer.Typer(help="List catalogs, and move them between machines and vector stores (export/import).",
                          no_args_is_help=True)

StoreOpt = Annotated[
    Optional[str],
    typer.Option("--store", help="vector store of the new catalog: faiss | qdrant | milvus (default: config)"),
]



@catalog_app.command("export")
def export_command(
    name: Annotated[str, typer.Argument(help="catalog to export")],
    folder: Annotated[Path, typer.Argument(help="new folder to write (manifest, metadata.jsonl, vectors.npy)")],
    from_store: Annotated[bool, typer.Option("--from-store", help="read vectors through the vector store "
                                             "instead of SQLite's durable copy")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace a non-empty folder")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Write a catalog to a portable folder (vectors + metadata) that any store can import."""
    from lookalike.catalog.catalog import Catalog
    from lookalike.catalog.transfer import export_catalog

    source: Literal["sqlite", "store"] = "store" if from_store else "sqlite"
    try:
        with Catalog(name, get_settings(), create=False) as catalog:
            with progress(f"exporting {plural(len(catalog), 'image')} of {name} to {folder}", quiet=as_json):
                report = export_catalog(catalog, folder, source=source, overwrite=overwrite)
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(report.to_dict()))
        return
    console.print(f"exported [bold]{plural(report.count, 'image')}[/bold] of {name} ({report.store}) to "
                  f"{escape(str(report.folder))} "
                  f"in {report.elapsed_s:.1f} s")


@catalog_app.command("import")
def import_command(
    folder: Annotated[Path, typer.Argument(help="a folder written by `lookalike catalog export`")],
    name: Annotated[str, typer.Argument(help="new catalog to create")],
    store: StoreOpt = None,
    store_url: Annotated[Optional[str], typer.Option("--store-url", help="server URL of the store "
                                                     "(default: config; unset = local mode)")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
) -> None:
    """Create a catalog from an export, its vectors in the chosen store."""
    from lookalike.catalog.transfer import import_catalog

    settings = get_settings()
    if store_url:
        settings = settings.model_copy(update={"store_url": store_url})
    try:
        with progress(f"importing {folder} into the new catalog {name}", quiet=as_json):
            report = import_catalog(folder, name, settings, store=store)
    except LookalikeError as exc:
        fail(exc)
    if as_json:
        print(json.dumps(report.to_dict()))
        return
    renumbered = f" ({report.id_map_changed} ids renumbered)" if report.id_map_changed else ""
    console.print(f"imported [bold]{plural(report.count, 'image')}[/bold] into {name} ({report.store}){renumbered} "
                  f"in {report.elapsed_s:.1f} s")


def register(app: typer.Typer) -> None:
    app.add_typer(catalog_app, name="catalog")
