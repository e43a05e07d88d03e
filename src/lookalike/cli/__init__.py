"""The ``lookalike`` command: one Typer app (``main``), one console and one ``fail`` (``common``),
and a module per area (``catalog``, ``quality``, ``transfer``) that registers its commands on the app."""

from lookalike.cli.main import app

__all__ = ["app"]
