"""The data sets the benchmarks build, in one place: every generator of evaluation data lives here.

Copy detection / dedup (``transformed_copies``): the field's dedup protocol ("transformed
UKBench", as imagededup and Immaculate publish it): each original photo gets edited copies; the
copies and their original are duplicates of each other, every other pair is not -- including
other views of one object, which are separate originals. Copies are written under random file
names into a folder, and the truth is returned to the caller (never written inside the folder),
so a tool can not cheat from the names. Two variants, so nothing is tuned to one set:

- ``"ukbench"``: the published edits -- a centre crop, a horizontal flip, a vertical flip, a
  25 degree rotation with black filled corners, a resize to a square (aspect not kept).
- ``"hard"``: other amounts and a lossy save -- an off-centre crop keeping 60 %, a horizontal
  flip saved at JPEG quality 40, a vertical flip, a 35 degree rotation with grey corners and the
  canvas expanded, a squash to a small square at JPEG 50, and a 90 degree rotation.

Pairs (``make_hard_pairs``): the harder edit set made from the DEV originals (combined crop +
resize + text + JPEG q12-22, blur, heavy crop, colour/gamma, rotation + crop, mirror + JPEG,
occlusion), with random and look-alike negatives; written once under ``.lookalike/bench-cache/hard``.
``other_shot_pairs``: every pair of photos of one object in the DEV view groups (another shot,
never a copy), the Middlebury stereo pairs left out (a few pixels apart: too ambiguous).

The DEV set (``../shared/data``, or ``LOOKALIKE_SHARED_DIR``) is read in place, never copied into
the repository.
"""

from __future__ import annotations

import csv
import os
import random
import secrets
import sys
from dataclasses import dataclass
from itertools import combinations
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance, ImageFilter, ImageFont, ImageOps

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
from lookalike.quality.evaluation import load_groups  # noqa: E402

SHARED = Path(os.environ.get("LOOKALIKE_SHARED_DIR", REPO.parent / "shared"))
DEV = SHARED / "data"
CACHE = REPO / ".lookalike" / "bench-cache"


# ------------------------------------------------------------------------- harder edits


def _text(img: Image.Image, rng: random.Random) -> Image.Image:
    img = img.convert("RGBA")
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    size = max(12, img.height // 8)
    font = ImageFont.load_default(size=size)
    words = rng.choice(["SALE -50%", "© lookalike", "SAMPLE", "www.shop.example", "NEW IN"])
    x = rng.randint(0, max(1, img.width // 3))
    y = rng.randint(0, max(1, img.height - size - 2))
    draw.text((x, y), words, fill=(255, 255, 255, 200), font=font, stroke_width=2, stroke_fill=(0, 0, 0, 200))
    return Image.alpha_composite(img, layer).convert("RGB")


def _crop(img: Image.Image, frac: float, rng: random.Random) -> Image.Image:
    w, h = img.size
    cw, ch = int(w * frac), int(h * frac)
    x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
    return img.crop((x, y, x + cw, y + ch))


def _jpeg(img: Image.Image, quality: int) -> Image.Image:
    import io

    buf = io.BytesIO()
    img.save(buf, "JPEG", quality=quality)
    buf.seek(0)
    return Image.open(buf).convert("RGB")


def _edits(img: Image.Image, rng: random.Random) -> dict[str, Image.Image]:
    w, h = img.size
    combo = _crop(img, rng.uniform(0.75, 0.88), rng)
    combo = combo.resize((max(32, int(combo.width * 0.5)), max(32, int(combo.height * 0.5))), Image.BICUBIC)
    combo = _jpeg(_text(combo, rng), rng.randint(12, 22))
    blur = img.filter(ImageFilter.GaussianBlur(rng.uniform(2.5, 4.0)))
    heavy = _crop(img, rng.uniform(0.55, 0.65), rng)
    color = ImageEnhance.Color(img).enhance(rng.choice([0.3, 1.9]))
    gamma = rng.uniform(0.6, 1.5)
    color = Image.eval(color, lambda v: int(255 * (v / 255) ** gamma))
    rot = img.rotate(rng.uniform(10, 20) * rng.choice([-1, 1]), Image.BICUBIC, expand=False)
    rot = rot.crop((int(w * 0.1), int(h * 0.1), int(w * 0.9), int(h * 0.9)))
    flip = _jpeg(ImageEnhance.Brightness(ImageOps.mirror(img)).enhance(rng.uniform(0.7, 1.3)), 35)
    occl = img.copy()
    draw = ImageDraw.Draw(occl)
    bw, bh = int(w * 0.45), int(h * 0.45)
    bx, by = rng.randint(0, w - bw), rng.randint(0, h - bh)
    draw.rectangle((bx, by, bx + bw, by + bh), fill=tuple(rng.randint(0, 255) for _ in range(3)))
    return {"combo": combo, "blur": blur, "heavy_crop": heavy, "color_gamma": color, "rotate_crop": rot,
            "hflip_jpeg": flip, "occlusion": occl}


def make_hard_pairs(dev: Path = DEV, out: Path = CACHE / "hard", seed: int = 7) -> Path:
    """Generate the harder pair set once; returns its ``pairs.csv`` (paths relative to it)."""
    csv_path = out / "pairs.csv"
    if csv_path.is_file():
        return csv_path
    rng = random.Random(seed)
    originals = sorted((dev / "pairs" / "originals").glob("*.jpg"))
    look_alike: dict[str, str] = {}
    with (dev / "pairs.csv").open(newline="") as handle:
        for row in csv.DictReader(handle):
            if row["kind"] == "neg_hard_similar_look":
                look_alike.setdefault(Path(row["path_a"]).name, row["path_b"])
                look_alike.setdefault(Path(row["path_b"]).name, row["path_a"])
    (out / "edited").mkdir(parents=True, exist_ok=True)
    rows = []
    for original in originals:
        img = Image.open(original).convert("RGB")
        rel_a = os.path.relpath(original, out)
        for kind, edited in _edits(img, rng).items():
            name = f"edited/{original.stem}__{kind}.jpg"
            edited.save(out / name, quality=90)
            rows.append((rel_a, name, 1, f"pos_{kind}"))
            other = rng.choice([o for o in originals if o != original])
            rows.append((os.path.relpath(other, out), name, 0, "neg_random"))
        if original.name in look_alike:
            rows.append((os.path.relpath(dev / look_alike[original.name], out), f"edited/{original.stem}__combo.jpg", 0,
                         "neg_similar_look_combo"))
    with csv_path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["path_a", "path_b", "label", "kind"])
        writer.writerows(rows)
    return csv_path


def other_shot_pairs(groups_csv: Path = DEV / "groups.csv") -> list[tuple[Path, Path]]:
    groups = load_groups(groups_csv)
    by_group: dict[str, list[Path]] = {}
    for path, group in zip(groups.paths, groups.groups):
        by_group.setdefault(group, []).append(path)
    return [pair for g, ps in by_group.items() if not g.startswith("middlebury") for pair in combinations(ps, 2)]


# --- transformed copies (dedup) ---------------------------------------------------------------
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