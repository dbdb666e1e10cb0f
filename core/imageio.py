"""Image reading and writing as float32 arrays in [0, 1] (linear EXR values are kept as is).

8-bit and 16-bit PNG/TIFF/JPEG go through Pillow (tifffile for 16-bit RGB TIFF),
EXR through the ``OpenEXR`` module, imported only when an EXR is touched.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .errors import InputError

EXR_SUFFIXES = {".exr"}
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".bmp", ".hdr"}


def read_image(path: str | os.PathLike, *, exif_transpose: bool = False) -> np.ndarray:
    """Read an image as float32.

    Returns
    -------
    image : (H, W, 3) float32 for colour inputs, (H, W) for single-channel ones.
        Integer formats are scaled to [0, 1]; EXR/HDR values are returned unchanged.
        An alpha channel is dropped (use :func:`read_image_rgba` to keep it).
    """
    img = read_image_rgba(path, exif_transpose=exif_transpose)
    if img.ndim == 3 and img.shape[2] == 4:
        img = img[..., :3]
    if img.ndim == 3 and img.shape[2] == 2:
        img = img[..., 0]
    return img


def read_image_rgba(path: str | os.PathLike, *, exif_transpose: bool = False) -> np.ndarray:
    """Like :func:`read_image` but keeps alpha: (H, W), (H, W, 3) or (H, W, 4) float32."""
    return _to_float(read_image_native(path, exif_transpose=exif_transpose))


def read_image_native(path: str | os.PathLike, *, exif_transpose: bool = False) -> np.ndarray:
    """Read an image at its stored precision, alpha kept: uint8, uint16 or float32 (H, W[, C]).

    Integer files stay integers (an 8-bit collection stays 8-bit in memory); multiply by
    :func:`native_scale` of the dtype for [0, 1] values.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"image not found: {path} (check the path)")
    suffix = path.suffix.lower()
    try:
        if suffix in EXR_SUFFIXES:
            return read_exr(path)
        if suffix == ".hdr":
            return _read_radiance_hdr(path)
        if suffix in {".tif", ".tiff"}:
            arr = _read_tiff(path)
            if arr is not None:
                return arr
        if suffix == ".png" and _png_is_16bit_colour(path):
            arr = _read_png16_colour(path)
            if arr is not None:
                return arr
        return _to_native(_read_pillow(path, exif_transpose))
    except InputError:
        raise
    except Exception as exc:  # noqa: BLE001 - any decoder failure is bad input
        raise InputError(f"cannot read image {path}: {exc} (is it a valid image file?)") from None


def native_scale(dtype) -> float:
    """Factor taking values of :func:`read_image_native`'s dtype to [0, 1] (1 for floats)."""
    dtype = np.dtype(dtype)
    if dtype == np.uint8:
        return 1.0 / 255.0
    if dtype == np.uint16:
        return 1.0 / 65535.0
    return 1.0


def _to_native(arr: np.ndarray) -> np.ndarray:
    if arr.dtype in (np.uint8, np.uint16, np.float32):
        return arr
    if arr.dtype in (np.int32, np.uint32):
        return np.clip(arr, 0, 65535).astype(np.uint16)
    if arr.dtype == bool:
        return arr.astype(np.uint8) * np.uint8(255)
    return arr.astype(np.float32)


def _to_float(arr: np.ndarray) -> np.ndarray:
    arr = _to_native(arr)
    if arr.dtype == np.float32:
        return arr
    return arr.astype(np.float32) / np.float32(np.iinfo(arr.dtype).max)


def _read_pillow(path: Path, exif_transpose: bool) -> np.ndarray:
    from PIL import Image, ImageOps

    with Image.open(path) as im:
        if exif_transpose:
            im = ImageOps.exif_transpose(im)
        mode = im.mode
        if mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(im).astype(np.uint16) if mode != "I" else np.asarray(im)
            if mode == "I":
                arr = np.clip(arr, 0, 65535).astype(np.uint16)
            return arr
        if mode == "F":
            return np.asarray(im, dtype=np.float32)
        if mode in ("L", "RGB"):  # the JPEG case: no converted copy, no whole-image tobytes
            return _pillow_strips(im)
        if mode == "1":
            return np.asarray(im.convert("L"))
        if mode == "LA":
            return np.asarray(im)
        if mode in ("RGBA", "PA", "P") and ("transparency" in im.info or mode != "P"):
            return np.asarray(im.convert("RGBA"))
        return np.asarray(im.convert("RGB"))


def _pillow_strips(im) -> np.ndarray:
    """An 8-bit L/RGB Pillow image as (H, W[, 3]) uint8, copied out in row strips.

    ``np.asarray(im)`` goes through ``tobytes()``, which holds the raw bytes twice (chunks, then
    their join): 4-5x the image at peak on a 24 MP JPEG; strips keep the extra to one strip.
    """
    im.load()
    w, h = im.size
    out = np.empty((h, w, 3) if im.mode == "RGB" else (h, w), np.uint8)
    rows = max(1, (4 << 20) // max(1, w * 3))
    for y in range(0, h, rows):
        out[y:y + rows] = np.asarray(im.crop((0, y, w, min(h, y + rows))))
    return out


def _png_is_16bit_colour(path: Path) -> bool:
    """Pillow reads 16-bit RGB(A) PNGs as 8-bit; detect them from the IHDR chunk."""
    with open(path, "rb") as f:
        head = f.read(26)
    return len(head) == 26 and head[:8] == b"\x89PNG\r\n\x1a\n" and head[24] == 16 and head[25] in (2, 6)


def _read_png16_colour(path: Path) -> np.ndarray | None:
    try:
        import cv2
    except ImportError:  # e.g. inside Blender: fall back to Pillow's 8-bit reading
        return None
    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        return None
    arr = arr[..., [2, 1, 0, 3]] if arr.shape[2] == 4 else arr[..., ::-1]
    return np.ascontiguousarray(arr)


def _read_tiff(path: Path) -> np.ndarray | None:
    try:
        import tifffile
    except ImportError:
        return None
    arr = tifffile.imread(path)
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
        arr = np.moveaxis(arr, 0, -1)
    return _to_native(arr)


def read_exr(path: str | os.PathLike) -> np.ndarray:
    """Read an EXR's RGB(A) (or single Y) channels as float32 (H, W, C)."""
    import OpenEXR

    with OpenEXR.File(str(path)) as f:
        channels = f.channels()
        if "RGB" in channels or "RGBA" in channels:
            key = "RGBA" if "RGBA" in channels else "RGB"
            return np.asarray(channels[key].pixels, dtype=np.float32)
        names = list(channels)
        by_name = {n.split(".")[-1]: n for n in names}
        if all(c in by_name for c in "RGB"):
            planes = [np.asarray(channels[by_name[c]].pixels, dtype=np.float32) for c in "RGB"]
            if "A" in by_name:
                planes.append(np.asarray(channels[by_name["A"]].pixels, dtype=np.float32))
            return np.stack(planes, axis=-1)
        first = np.asarray(channels[names[0]].pixels, dtype=np.float32)
        return first


def _read_radiance_hdr(path: Path) -> np.ndarray:
    import cv2  # Radiance .hdr is the one format we leave to OpenCV

    arr = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise InputError(f"cannot read HDR image {path} (is it a Radiance .hdr file?)")
    return np.ascontiguousarray(arr[..., ::-1]).astype(np.float32)


def to_uint8(image: np.ndarray) -> np.ndarray:
    """Round [0, 1] floats to uint8 with clipping."""
    return np.clip(np.rint(np.asarray(image, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def to_uint16(image: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(np.asarray(image, dtype=np.float64) * 65535.0), 0, 65535).astype(np.uint16)


def write_image(path: str | os.PathLike, image: np.ndarray, *, bits: int = 8, quality: int = 95, atomic: bool = True) -> Path:
    """Write (H, W), (H, W, 3) or (H, W, 4) floats in [0, 1] as PNG/JPEG/TIFF (8 or 16 bit) or EXR.

    The file appears atomically (temporary name, then rename) unless ``atomic`` is False: for
    the many files of a folder that is itself written atomically (DeepZoom tiles).
    """
    from .atomic import atomic_output_file

    path = Path(path)
    suffix = path.suffix.lower()
    if not atomic:
        if suffix in EXR_SUFFIXES:
            write_exr(path, image)
        else:
            _write_pillow(path, image, bits=bits, quality=quality, suffix=suffix)
        return path
    with atomic_output_file(path) as tmp:
        if suffix in EXR_SUFFIXES:
            write_exr(tmp, image)
        else:
            _write_pillow(tmp, image, bits=bits, quality=quality, suffix=suffix)
    return path


def _write_pillow(path: Path, image: np.ndarray, *, bits: int, quality: int, suffix: str) -> None:
    from PIL import Image

    image = np.asarray(image)
    if bits == 16:
        if suffix in {".tif", ".tiff"}:
            import tifffile

            tifffile.imwrite(path, to_uint16(image))
            return
        if suffix != ".png":
            raise ValueError("16-bit output needs .png or .tif")
        if image.ndim == 2:
            Image.fromarray(to_uint16(image)).save(path, format="PNG")
            return
        _write_png16_rgb(path, to_uint16(image))
        return
    arr = image if image.dtype == np.uint8 else to_uint8(image)
    fmt = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".tif": "TIFF", ".tiff": "TIFF", ".bmp": "BMP"}.get(suffix)
    if fmt is None:
        raise ValueError(f"unsupported image suffix {suffix}")
    kwargs = {"quality": quality, "subsampling": 0} if fmt == "JPEG" else {}
    Image.fromarray(arr).save(path, format=fmt, **kwargs)


def _write_png16_rgb(path: Path, arr: np.ndarray) -> None:
    """Pillow cannot write 16-bit RGB PNG: the project's zlib encoder does."""
    from .formats.png import write_png

    write_png(path, np.asarray(arr, dtype=np.uint16))


HALF_MAX = 65504.0  # largest finite float16


def write_exr(path: str | os.PathLike, image: np.ndarray | None, channels: dict[str, np.ndarray] | None = None, *,
              half: bool = False) -> None:
    """Write RGB(A) (or extra named single channels) to a ZIP-compressed scanline EXR.

    image : (H, W), (H, W, 3) or (H, W, 4), or None for the named ``channels`` alone; written as
    float32, or as half floats with ``half`` (values clamped to +-65504 first: half has no larger
    finite number, and an inf would poison any later sum of frames). The bytes depend only on the
    pixels (no time stamp), so the same image always gives the same file.
    """
    import OpenEXR

    dtype = np.float16 if half else np.float32

    def cast(a):
        a = np.asarray(a, dtype=np.float32)
        if half:
            a = np.clip(a, -HALF_MAX, HALF_MAX)
        return np.ascontiguousarray(a.astype(dtype))

    header = {"compression": OpenEXR.ZIP_COMPRESSION, "type": OpenEXR.scanlineimage}
    chans = {}
    if image is not None:
        image = cast(image)
        chans["Y" if image.ndim == 2 else "RGBA" if image.shape[2] == 4 else "RGB"] = image
    if channels:
        chans.update({k: cast(v) for k, v in channels.items()})
    with OpenEXR.File(header, chans) as f:
        f.write(str(path))


def exr_info(path: str | os.PathLike) -> dict:
    """An EXR's layout: ``{"channels": {name: numpy dtype name}, "compression": str, "size": (W, H)}``."""
    import OpenEXR

    with OpenEXR.File(str(path)) as f:
        header = f.header()
        window = header["dataWindow"]
        size = (int(window[1][0] - window[0][0] + 1), int(window[1][1] - window[0][1] + 1))
        chans = {}
        for name, ch in f.channels().items():
            px = np.asarray(ch.pixels)
            if len(name) > 1 and px.ndim == 3 and px.shape[2] == len(name):  # grouped RGB(A)
                chans.update({c: px.dtype.name for c in name})
            else:
                chans[name] = px.dtype.name
        return {"channels": chans, "compression": str(header["compression"]).split(".")[-1], "size": size}
