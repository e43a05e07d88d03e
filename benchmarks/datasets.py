"""Generated benchmark data sets, reusable by any benchmark: ``transformed_copies``.

The field's dedup protocol ("transformed UKBench", as imagededup and Immaculate publish it): each
original photo gets edited copies; the copies and their original are duplicates of each other,
every other pair is not -- including other views of one object, which are separate originals.
Copies are written under random file names into a folder, and the truth is returned to the caller
(never written inside the folder), so a tool can not cheat from the names.

Two variants, so nothing is tuned to one set:

- ``"ukbench"``: the published edits -- a centre crop, a horizontal flip, a vertical flip, a
  25 degree rotation with black filled corners, a resize to a square (aspect not kept).
- ``"hard"``: other amounts and a lossy save -- an off-centre crop keeping 60 %, a horizontal
  flip saved at JPEG quality 40, a vertical flip, a 35 degree rotation with grey corners and the
  canvas expanded, a squash to a small square at JPEG 50, and a 90 degree rotation.
"""

from __future__ import annotations

import csv
import random
import secrets
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps

EDITS = {
    "ukbench": ("crop", "hflip", "vflip", "rotate25", "square"),
    "hard": ("crop60", "hflip_q40", "vflip", "rotate35", "square_q50", "rot90"),
}


@dataclass(frozen=True)
class Item:
    """One image of a generated set: ``original`` names its group (all items of it are copies)."""

    path: Path
    original: str
    edit: str  # "original" or the edit's name


def dev_originals(data_dir: Path) -> list[Path]:
    """The DEV set's originals: ``pairs/originals/*.jpg`` plus every ``groups/`` image on its own.

    Group images are other views of one object: separate originals, so their pairs are NOT copies.
    """
    originals = sorted((data_dir / "pairs" / "originals").glob("*.jpg"))
    with (data_dir / "groups.csv").open() as fh:
        originals += [data_dir / row["path"] for row in csv.DictReader(fh)]
    return originals


def dev_groups(data_dir: Path) -> dict[str, str]:
    """``{original name: group}`` for the DEV group images (other shots of one object)."""
    with (data_dir / "groups.csv").open() as fh:
        return {_name(data_dir / row["path"]): row["group"] for row in csv.DictReader(fh)}


def _name(path: Path) -> str:
    return f"{path.parent.name}/{path.name}"


def _edit(image: Image.Image, edit: str, rng: random.Random) -> tuple[Image.Image, int]:
    """The edited image and the JPEG quality to save it at."""
    w, h = image.size
    if edit == "crop":  # imagededup's crop: a centre box keeping ~80 % of each side
        dx, dy = int(w * 0.1), int(h * 0.1)
        return image.crop((dx, dy, w - dx, h - dy)), 90
    if edit == "crop60":  # off-centre, keeping 60 % of each side
        cw, ch = int(w * 0.6), int(h * 0.6)
        x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
        return image.crop((x, y, x + cw, y + ch)), 85
    if edit == "hflip":
        return ImageOps.mirror(image), 90
    if edit == "hflip_q40":
        return ImageOps.mirror(image), 40
    if edit == "vflip":
        return ImageOps.flip(image), 90
    if edit == "rotate25":
        return image.rotate(25, resample=Image.BICUBIC, expand=False, fillcolor=(0, 0, 0)), 90
    if edit == "rotate35":
        return image.rotate(-35, resample=Image.BICUBIC, expand=True, fillcolor=(128, 128, 128)), 85
    if edit == "square":
        side = max(w, h)
        return image.resize((side, side), Image.BICUBIC), 90
    if edit == "square_q50":
        return image.resize((224, 224), Image.BICUBIC), 50
    if edit == "rot90":
        return image.transpose(Image.Transpose.ROTATE_90), 90
    raise ValueError(f"unknown edit {edit!r}")


def transformed_copies(originals: list[Path], folder: Path, variant: str = "ukbench", seed: int = 0) -> list[Item]:
    """Write each original and its edited copies (``EDITS[variant]``) under random names into ``folder``.

    Returns the truth (one ``Item`` per written file); nothing but the images goes into ``folder``.
    """
    if variant not in EDITS:
        raise ValueError(f"variant must be one of {sorted(EDITS)}")
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for source in originals:
        with Image.open(source) as opened:
            image = ImageOps.exif_transpose(opened).convert("RGB")
        for edit in ("original", *EDITS[variant]):
            edited, quality = (image, 95) if edit == "original" else _edit(image, edit, rng)
            path = folder / f"{secrets.token_hex(8)}.jpg"
            edited.save(path, "JPEG", quality=quality)
            items.append(Item(path, _name(source), edit))
    rng.shuffle(items)
    return items


def truth_pairs(items: list[Item]) -> set[frozenset[Path]]:
    """Every unordered pair of files that are copies of one original."""
    by_original: dict[str, list[Path]] = {}
    for item in items:
        by_original.setdefault(item.original, []).append(item.path)
    return {frozenset((a, b)) for paths in by_original.values() for i, a in enumerate(paths) for b in paths[i + 1:]}
