"""lookalike: are these two images the same thing, and which images in my catalog look like this one?

The public surface is small and cheap to import (nothing heavy loads until used):

- ``compare(a, b, model=..., input_size=...)`` -> ``Comparison``
- ``Embedder.create(name)`` / ``create_embedder(name)`` -> an ``Embedder``: ``encode(image)`` gives one
  L2-normalized vector, ``encode([images])`` a matrix (paths, bytes, PIL images or arrays)
- ``list_models()`` -> the model table
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"
__all__ = ["compare", "Comparison", "create_embedder", "Embedder", "Encoder", "list_models", "Settings", "__version__"]

_LAZY = {
    "compare": ("lookalike.comparison", "compare"),
    "Comparison": ("lookalike.comparison", "Comparison"),
    "create_embedder": ("lookalike.embed", "create_embedder"),
    "Embedder": ("lookalike.embed", "Embedder"),
    "Encoder": ("lookalike.embed", "Encoder"),
    "list_models": ("lookalike.models.registry", "list_models"),
    "Settings": ("lookalike.config", "Settings"),
}

if TYPE_CHECKING:  # pragma: no cover
    from lookalike.comparison import Comparison, compare
    from lookalike.config import Settings
    from lookalike.embed import Embedder, Encoder, create_embedder
    from lookalike.models.registry import list_models


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'lookalike' has no attribute {name!r}")
