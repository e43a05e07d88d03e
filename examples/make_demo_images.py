"""Write demo photos (scikit-learn / scikit-image samples, freely usable) and edited copies.

    python examples/make_demo_images.py demo/
    lookalike compare demo/china.jpg demo/china_edited.jpg
    lookalike index demo --catalog demo
    lookalike eval pairs demo/pairs.csv

Also writes ``pairs.csv`` (path_a,path_b,label,kind; paths relative to it), the format ``lookalike eval
pairs`` and ``lookalike calibrate`` read: a toy set to try the commands on, far too small to calibrate with.
"""

from __future__ import annotations

import sys
from pathlib import Path

from PIL import Image, ImageDraw, ImageEnhance
from skimage import data as skdata
from sklearn.datasets import load_sample_image


def main(folder: str = "demo") -> None:
    out = Path(folder)
    out.mkdir(parents=True, exist_ok=True)
    photos = {
        "china": Image.fromarray(load_sample_image("china.jpg")),
        "flower": Image.fromarray(load_sample_image("flower.jpg")),
        "astronaut": Image.fromarray(skdata.astronaut()),
        "coffee": Image.fromarray(skdata.coffee()),
        "chelsea": Image.fromarray(skdata.chelsea()),
    }
    for name, image in photos.items():
        image.save(out / f"{name}.jpg", quality=92)
    # An edited copy: crop, resize, a caption, brighter, low JPEG quality.
    edited = photos["china"].crop((30, 20, 600, 400)).resize((400, 266))
    ImageDraw.Draw(edited).text((10, 240), "SALE -20%", fill=(255, 255, 0))
    ImageEnhance.Brightness(edited).enhance(1.2).save(out / "china_edited.jpg", quality=45)
    photos["coffee"].transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(out / "coffee_flipped.jpg", quality=80)
    pairs = [
        ("china.jpg", "china_edited.jpg", 1, "pos_edited"),
        ("coffee.jpg", "coffee_flipped.jpg", 1, "pos_hflip"),
        ("china.jpg", "flower.jpg", 0, "neg_other_photo"),
        ("coffee.jpg", "chelsea.jpg", 0, "neg_other_photo"),
        ("astronaut.jpg", "chelsea.jpg", 0, "neg_other_photo"),
        ("flower.jpg", "coffee_flipped.jpg", 0, "neg_other_photo"),
    ]
    lines = ["path_a,path_b,label,kind", *(f"{a},{b},{label},{kind}" for a, b, label, kind in pairs)]
    (out / "pairs.csv").write_text("\n".join(lines) + "\n")
    print(f"wrote {len(photos) + 2} images and pairs.csv ({len(pairs)} labelled pairs) to {out}/")


if __name__ == "__main__":
    main(*sys.argv[1:2])
