"""Regenerate the RTI figures of README.md and docs/model_folder.md from the bundled example.

Run: .venv/bin/python docs/make_figures.py   (writes docs/images/rti_*.png, model_folder.png)
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from pnrelight.formats.mlic import load_mlic  # noqa: E402
from pnrelight.formats.rti_folder import save_model  # noqa: E402
from pnrelight.imageio import read_image, to_uint8  # noqa: E402
from pnrelight.lights import direction_from_xy  # noqa: E402
from pnrelight.rti.fit import fit_linear  # noqa: E402
from pnrelight.rti.model import relight  # noqa: E402
from pnrelight.rti.preview import preview_strip, tile_row  # noqa: E402

OUT = REPO / "docs" / "images"
EXAMPLE = REPO / "assets" / "examples" / "rti_synthetic"


def labelled(img: np.ndarray, text: str, scale: int = 2) -> Image.Image:
    im = Image.fromarray(to_uint8(img)).resize((img.shape[1] * scale, img.shape[0] * scale), Image.NEAREST)
    canvas = Image.new("RGB", (im.width, im.height + 22), "white")
    canvas.paste(im, (0, 22))
    ImageDraw.Draw(canvas).text((4, 4), text, fill="black")
    return canvas


def hstack(images: list[Image.Image], gap: int = 6) -> Image.Image:
    w = sum(i.width for i in images) + gap * (len(images) - 1)
    h = max(i.height for i in images)
    out = Image.new("RGB", (w, h), "white")
    x = 0
    for i in images:
        out.paste(i, (x, 0))
        x += i.width + gap
    return out


def main() -> None:
    OUT.mkdir(parents=True, exist_ok=True)
    mlic = load_mlic(EXAMPLE)
    hsh = fit_linear(mlic, "hsh", 9)
    Image.fromarray(to_uint8(preview_strip(hsh))).save(OUT / "rti_fit_preview.png")
    model = hsh
    student_dir = REPO / "demo_out" / "rti_student"
    if (student_dir / "info.json").is_file():
        from pnrelight.formats.rti_folder import load_model
        model = load_model(student_dir)
    lights = {"left (-0.7, 0.1)": (-0.7, 0.1), "top (0, 0.6)": (0.0, 0.6), "grazing (0.97, 0)": (0.97, 0.0)}
    Image.fromarray(to_uint8(tile_row([relight(model, direction_from_xy(*xy)) for xy in lights.values()], gap=6))).save(OUT / "rti_relight.png")
    with tempfile.TemporaryDirectory() as tmp:
        folder = save_model(hsh, Path(tmp) / "hsh9")
        planes = [labelled(read_image(folder / f"plane_{j}.jpg"), f"plane_{j}.jpg", scale=1) for j in range(4)]
        relit = labelled(relight(hsh, direction_from_xy(-0.5, 0.4)), "relit (-0.5, 0.4)", scale=1)
        fig = hstack(planes + [Image.new("RGB", (30, planes[0].height), "white"), relit])
        draw = ImageDraw.Draw(fig)
        draw.text((4, fig.height - 12), "", fill="black")
        fig.save(OUT / "model_folder.png")
    print("wrote", *sorted(p.name for p in OUT.glob("*.png")))


if __name__ == "__main__":
    main()
