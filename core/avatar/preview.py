"""Contact sheet of an avatar: labelled tiles on a grid (one PNG a person can check at a glance)."""
from __future__ import annotations

import numpy as np


def draw_landmarks(image: np.ndarray, points_px: np.ndarray, *, color=(0.1, 1.0, 0.2), radius: int | None = None) -> np.ndarray:
    """Copy of ``image`` (H, W, 3) in [0, 1] with dots at ``points_px`` (N, 2) pixel coordinates (u right, v down)."""
    import cv2

    img = np.ascontiguousarray(np.asarray(image, dtype=np.float32).copy())
    h, w = img.shape[:2]
    r = radius if radius is not None else max(1, int(round(min(h, w) / 300)))
    for u, v in np.asarray(points_px, dtype=np.float64):
        if np.isfinite(u) and np.isfinite(v):
            cv2.circle(img, (int(u), int(v)), r, tuple(float(c) for c in color), -1, lineType=cv2.LINE_AA)
    return img


def crop_box(mask: np.ndarray, margin: float = 0.25) -> tuple[int, int, int, int]:
    """Square (top, bottom, left, right) box around the True pixels of ``mask`` (H, W), grown by ``margin``, clipped to the image."""
    h, w = mask.shape
    rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
    if rows.size == 0:
        return 0, h, 0, w
    cy, cx = (rows[0] + rows[-1]) / 2, (cols[0] + cols[-1]) / 2
    half = max(rows[-1] - rows[0], cols[-1] - cols[0]) * (0.5 + margin)
    half = min(half, max(h, w) / 2)
    top, left = int(max(0, cy - half)), int(max(0, cx - half))
    return top, int(min(h, cy + half)), left, int(min(w, cx + half))


def _fit_tile(image: np.ndarray, tile: int) -> np.ndarray:
    import cv2

    img = np.asarray(image, dtype=np.float32)
    if img.ndim == 2:
        img = np.repeat(img[..., None], 3, axis=2)
    img = np.clip(img[..., :3], 0.0, 1.0)
    h, w = img.shape[:2]
    s = tile / max(h, w)
    nh, nw = max(1, int(round(h * s))), max(1, int(round(w * s)))
    small = cv2.resize(img, (nw, nh), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    out = np.ones((tile, tile, 3), dtype=np.float32)
    top, left = (tile - nh) // 2, (tile - nw) // 2
    out[top : top + nh, left : left + nw] = small
    return out


def contact_sheet(tiles: list[tuple[str, np.ndarray]], *, columns: int = 4, tile: int = 256, label_height: int = 22) -> np.ndarray:
    """Grid of labelled images.

    tiles : list of (label, image (h, w, 3) or (h, w) in [0, 1], sRGB for display); each image is
    scaled to fit a ``tile`` x ``tile`` cell. Returns (rows * (tile + label_height), columns * tile, 3) float32.
    """
    rows = -(-len(tiles) // columns)
    cell_h = tile + label_height
    sheet = np.ones((rows * cell_h, columns * tile, 3), dtype=np.float32)
    for k, (label, image) in enumerate(tiles):
        r, c = divmod(k, columns)
        y, x = r * cell_h, c * tile
        sheet[y + label_height : y + cell_h, x : x + tile] = _fit_tile(image, tile)
        _draw_label(sheet, str(label), x + 4, y, tile - 8, label_height)
    return sheet


def _label_font(size: int):
    """Pillow's built-in TrueType font (shipped inside Pillow >= 10.1, anti-aliased) or None."""
    try:
        from PIL import ImageFont

        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # old Pillow or no FreeType
        return None


def _draw_label(sheet: np.ndarray, text: str, x: int, y: int, width: int, height: int) -> None:
    """Black anti-aliased ``text`` into sheet[y : y + height, x : x + width] (in place).

    OpenCV's Hershey stroke font has no real lower case at small sizes (an "i" comes out as a
    dotless stroke that resamples into odd glyphs), so labels are drawn with a TrueType font.
    """
    font = _label_font(max(8, int(round(height * 0.68))))
    if font is None:
        import cv2

        cv2.putText(sheet, text, (x, y + height - 6), cv2.FONT_HERSHEY_SIMPLEX, height / 48, (0.0, 0.0, 0.0), 1, cv2.LINE_AA)
        return
    from PIL import Image, ImageDraw

    canvas = Image.new("L", (width, height), 0)
    ImageDraw.Draw(canvas).text((0, height // 2), text, fill=255, font=font, anchor="lm")
    ink = np.asarray(canvas, dtype=np.float32)[..., None] / 255.0
    region = sheet[y : y + height, x : x + width]
    region *= 1.0 - ink[: region.shape[0], : region.shape[1]]
