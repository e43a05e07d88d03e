"""The ``lookalike`` command: thin Typer adapters over the library (same defaults as Settings)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.markup import escape
from rich.table import Table

from lookalike.config import get_settings
from lookalike.cli.common import LookalikeTyper, ModelOpt, SizeOpt, console, fail, progress
from lookalike.errors import LookalikeError

app = LookalikeTyper(
    name="lookalike",
    help="Image similarity: compare two images, index a catalog, search it, find duplicates.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
config_app = LookalikeTyper(help="Show the effective configuration.", no_args_is_help=True)
app.add_typer(config_app, name="config")


@app.callback()
def _options(debug: Annotated[bool, typer.Option("--debug", help="show tracebacks (also LOOKALIKE_DEBUG=1)")]
             = False) -> None:
    """Image similarity: compare two images, index a catalog, search it, find duplicates."""
    if debug:
        os.environ["LOOKALIKE_DEBUG"] = "1"





@app.command()
def compare(
    image_a: Annotated[Path, typer.Argument(help="first image")],
    image_b: Annotated[Path, typer.Argument(help="second image")],
    model: ModelOpt = None,
    size: SizeOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="print one JSON object")] = False,
) -> None:
    """Are these two images the same thing?"""
    from lookalike.comparison import compare as compare_images

    try:
        with progress(f"comparing {image_a.name} and {image_b.name} (a model's first use exports it, ~10 s)",
                      quiet=as_json):
            result = compare_images(image_a, image_b, model=model, input_size=size)
    except LookalikeError as exc:
        fail(exc)
    payload = {
        "model": result.model,
        "input_size": result.input_size,
        "cosine": round(result.cosine, 6),
        "score": round(result.score, 6),
        "threshold": result.thresholds.match,
        "threshold_source": result.thresholds.source,
        "verdict": result.tier.value,
        "is_match": result.is_match,
        "timing_ms": {k: round(v, 2) for k, v in result.timing_ms.items()},
        "copy_model": result.copy_model,
        "copy_score": None if result.copy_score is None else round(result.copy_score, 6),
    }
    if as_json:
        print(json.dumps(payload))
        return
    colour = {"exact": "green", "near_duplicate": "green", "similar": "yellow", "different": "red"}[result.tier.value]
    console.print(f"[bold]{escape(image_a.name)}[/bold] vs [bold]{escape(image_b.name)}[/bold]  ({result.model} @ {result.input_size}px)")
    console.print(f"  score    {result.score:.4f}   (cosine {result.cosine:+.4f})")
    console.print(f"  verdict  [{colour}]{result.tier.value}[/{colour}]   "
                  f"match >= {result.thresholds.match:.4f} ({escape(result.thresholds.source)})")
    if result.copy_score is not None:
        console.print(f"  copy     {result.copy_score:.4f}   ({result.copy_model} decides exact/near_duplicate)")
    console.print(f"  time     {result.timing_ms['total']:.1f} ms "
                  f"(decode {result.timing_ms['decode']:.1f}, embed {result.timing_ms['embed']:.1f}, "
                  f"geometry {result.timing_ms.get('geometry', 0.0):.1f})")


@app.command()
def models() -> None:
    """The model table: which models can run here, and where their weights come from."""
    from lookalike.models.status import all_status

    settings = get_settings()
    table = Table(title="lookalike models")
    for column in ("model", "aliases", "dim", "size", "weights", "source"):
        table.add_column(column)
    for status in all_status(settings):
        spec = status.spec
        default = " (default)" if spec.name == settings.default_model else ""
        table.add_row(
            spec.name + default,
            ", ".join(spec.aliases),
            str(status.dim or "?"),
            str(spec.default_size),
            "[green]yes[/green]" if status.available else "[red]no[/red]",
            status.source,
        )
    console.print(table)


@app.command()
def export(model: Annotated[str, typer.Argument(help="model name or alias")], size: SizeOpt = None) -> None:
    """Export a model to ONNX now (otherwise it happens on first use) and print the cached path."""
    from lookalike.models.export import ensure_onnx
    from lookalike.models.registry import check_input_size, resolve_model

    settings = get_settings()
    try:
        spec = resolve_model(model, settings)
        chosen = check_input_size(size or settings.input_size or spec.default_size, settings.allowed_input_sizes, spec)
        # exactly the file the service loads: same size rule, same pooling (settings.pooling), same cache key
        with progress(f"exporting {spec.name} @ {chosen}px to ONNX"):
            exported = ensure_onnx(spec, chosen, settings, pooling=settings.pooling, in_process=True)
    except LookalikeError as exc:
        fail(exc)
    print(exported.onnx_path)  # plain print: one whole line, so $(lookalike export NAME) is the path


@app.command()
def serve(
    host: Annotated[Optional[str], typer.Option(help="bind address (default: config host)")] = None,
    port: Annotated[Optional[int], typer.Option(help="port (default: config port)")] = None,
    preload: Annotated[bool, typer.Option(help="load the default model before accepting requests")] = True,
) -> None:
    """Run the HTTP service (API, web UI at /, docs at /docs)."""
    import uvicorn

    from lookalike.api.app import create_app

    settings = get_settings()
    uvicorn.run(create_app(settings, preload=preload), host=host or settings.host, port=port or settings.port,
                log_level="info")


@config_app.command("show")
def config_show(as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """Every setting, its value, and where it came from (argument, env, file, default)."""
    from pydantic_core import to_jsonable_python

    from lookalike.config import config_file_in_force, describe_sources

    settings = get_settings()
    rows = [(name, to_jsonable_python(value), source) for name, value, source in describe_sources(settings)]
    if as_json:
        print(json.dumps({name: {"value": value, "source": source} for name, value, source in rows}))
        return
    in_force = config_file_in_force()
    table = Table(title=f"lookalike config (file: {in_force if in_force is not None else 'none'})")
    for column in ("setting", "value", "source"):
        table.add_column(column)
    for name, value, source in rows:
        table.add_row(name, escape(_plain(value)), escape(source))
    console.print(table)


def _plain(value: object) -> str:
    """A setting as a user would type it: lists comma-separated, mappings as key=value, None as none."""
    if value is None:
        return "none"
    if isinstance(value, list):
        return ", ".join(_plain(v) for v in value) or "(empty)"
    if isinstance(value, dict):
        return ", ".join(f"{k}={_plain(v)}" for k, v in value.items()) or "(empty)"
    return str(value).lower() if isinstance(value, bool) else str(value)


# --- areas --- (each area module registers its commands on ``app``; imported last, as they use it)
from lookalike.cli import catalog, quality, transfer  # noqa: E402

quality.register(app)  # eval pairs|groups, calibrate
catalog.register(app)  # index, search, dedup, catalogs
transfer.register(app)  # catalog export|import
