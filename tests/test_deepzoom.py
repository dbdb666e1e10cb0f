"""DeepZoom planes: pyramid structure as OpenLIME reads it, round trips, model folders, CLI, bad input."""
import json
import math
import xml.etree.ElementTree as ET

import numpy as np
import pytest

from conftest import run_cli
from pnrelight.errors import InputError
from pnrelight.formats import deepzoom
from pnrelight.formats.rti_folder import AUTO_DEEPZOOM_SIDE, choose_layout, load_model, save_model
from pnrelight.imageio import read_image, read_image_native, to_uint8
from pnrelight.rti.model import RTIModel, relight
from pnrelight.rti.synthetic import write_example
from test_rti_folder import random_neural, smooth_field

H, W = 220, 300  # not multiples of any tile size used here: edge tiles everywhere


def plane_image(h=H, w=W, seed=0):
    """A smooth 8-bit RGB image, like a coefficient plane."""
    rng = np.random.default_rng(seed)
    f = smooth_field(rng, h, w, 3, cell=16)
    return to_uint8((f - f.min()) / (f.max() - f.min()))


def openlime_level_count(width, height, tile):
    """OpenLIME LayoutTiles.initDeepzoom: nlevels = ceil(log2(max(w, h) / tilesize)) + 1."""
    return math.ceil(math.log2(max(width, height) / tile)) + 1 if max(width, height) > tile else 1


@pytest.mark.parametrize("width,height,tile", [(300, 220, 256), (256, 256, 256), (257, 10, 256), (513, 300, 256),
                                               (300, 220, 64), (4097, 3000, 254), (1, 1, 256)])
def test_level_count_and_sizes_follow_openlime(width, height, tile):
    sizes = deepzoom.level_sizes(width, height, tile)
    assert len(sizes) == deepzoom.level_count(width, height, tile) == openlime_level_count(width, height, tile)
    assert sizes[-1] == (width, height)
    assert max(sizes[0]) <= tile  # the root level is one tile
    for (w0, h0), (w1, h1) in zip(sizes, sizes[1:]):
        assert (w0, h0) == (max(w1 >> 1, 1), max(h1 >> 1, 1))


def test_halving_is_a_rounded_box_average_in_strips():
    rng = np.random.default_rng(2)
    level = rng.integers(0, 256, (23, 17, 3)).astype(np.uint8)
    expected = np.floor(level[:22, :16].reshape(11, 2, 8, 2, 3).astype(float).mean(axis=(1, 3)) + 0.5)
    for strip in (1, 4, 256):  # strips of output rows bound the temporaries; the result is the same
        np.testing.assert_array_equal(deepzoom._halve(level, (8, 11), strip=strip), expected)
    thin = rng.integers(0, 256, (1, 9, 3)).astype(np.uint8)  # elongated images reach 1 pixel on one side first
    np.testing.assert_allclose(deepzoom._halve(thin, (4, 1)), thin[:, :8].reshape(1, 4, 2, 3).mean(axis=2), atol=0.5)


@pytest.mark.parametrize("tile,overlap", [(256, 0), (64, 0), (100, 1), (64, 2)])
def test_write_read_round_trip(tmp_path, tile, overlap):
    image = plane_image()
    dzi = deepzoom.write_dzi(image, tmp_path, "plane_0", tile_size=tile, overlap=overlap, quality=98)
    assert dzi == tmp_path / "plane_0.dzi"

    # the descriptor, read with a plain XML parser as a browser's DOMParser would
    root = ET.parse(dzi).getroot()
    ns = "{http://schemas.microsoft.com/deepzoom/2008}"
    assert root.tag == f"{ns}Image"
    assert (root.get("TileSize"), root.get("Overlap"), root.get("Format")) == (str(tile), str(overlap), "jpg")
    size = root.find(f"{ns}Size")
    assert (size.get("Width"), size.get("Height")) == (str(W), str(H))

    # every level, every tile, with the overlap only on sides that have a neighbour
    files = tmp_path / "plane_0_files"
    sizes = deepzoom.level_sizes(W, H, tile)
    assert sorted(int(p.name) for p in files.iterdir()) == list(range(len(sizes)))
    for level, (lw, lh) in enumerate(sizes):
        cols, rows = math.ceil(lw / tile), math.ceil(lh / tile)
        names = sorted(p.name for p in (files / str(level)).iterdir())
        assert names == sorted(f"{c}_{r}.jpg" for c in range(cols) for r in range(rows))
        for c in range(cols):
            for r in range(rows):
                tw = min(lw, (c + 1) * tile + overlap) - max(0, c * tile - overlap)
                th = min(lh, (r + 1) * tile + overlap) - max(0, r * tile - overlap)
                assert read_image_native(files / str(level) / f"{c}_{r}.jpg").shape == (th, tw, 3)

    back = deepzoom.read_dzi(dzi)
    assert back.dtype == np.uint8 and back.shape == (H, W, 3)
    err = np.abs(back.astype(int) - image)
    assert err.mean() < 0.7 and err.max() <= 6  # JPEG q98 4:4:4 (as the planes): 0.53 and 4 measured

    # the level below full resolution is the 2x2 average of the image
    lw, lh = sizes[-2]
    half = image[:2 * lh, :2 * lw].reshape(lh, 2, lw, 2, 3).mean(axis=(1, 3))
    level = np.concatenate([np.concatenate([read_image_native(files / str(len(sizes) - 2) / f"{c}_{r}.jpg")
                                            [(r > 0) * overlap:, (c > 0) * overlap:][:tile, :tile]
                                            for c in range(math.ceil(lw / tile))], axis=1)
                            for r in range(math.ceil(lh / tile))], axis=0)
    assert level.shape == (lh, lw, 3) and np.abs(level - half).mean() < 1.0


def test_tiles_aligned_to_jpeg_blocks_decode_to_the_single_jpeg(tmp_path):
    """Tile origins on multiples of 8 without overlap cut the same 8x8 DCT blocks as one JPEG: identical bytes."""
    model = random_neural(h=H, w=W)
    single = load_model(save_model(model, tmp_path / "image", layout="image"), source="planes")
    for tile, overlap, exact in [(256, 0, True), (64, 0, True), (100, 1, False)]:
        tiled = load_model(save_model(model, tmp_path / f"dz{tile}", layout="deepzoom", tile_size=tile, overlap=overlap), source="planes")
        byte_diff = np.abs(tiled.coefficients - single.coefficients) / (np.ptp(single.coefficients, axis=(0, 1)) / 255)
        if exact:
            np.testing.assert_array_equal(tiled.coefficients, single.coefficients)
        else:
            assert byte_diff.mean() < 1.0 and byte_diff.max() < 12


def test_model_folder_layouts(tmp_path, coin_ptm):
    image = save_model(coin_ptm, tmp_path / "image", layout="image")
    tiled = save_model(coin_ptm, tmp_path / "tiled", layout="deepzoom", tile_size=32)
    assert sorted(p.name for p in image.glob("plane_*")) == [f"plane_{j}.jpg" for j in range(6)]
    assert sorted(p.name for p in tiled.glob("plane_*")) == sorted([f"plane_{j}.dzi" for j in range(6)] + [f"plane_{j}_files" for j in range(6)])
    info = json.loads((tiled / "info.json").read_text())
    assert info["pnrelight"]["layout"] == "deepzoom" and info["pnrelight"]["tile_size"] == 32 and info["pnrelight"]["overlap"] == 0
    assert info["format"] == "jpg" and info["width"] == 64  # what OpenLIME reads is unchanged
    a, b = load_model(image, source="planes"), load_model(tiled, source="planes")
    np.testing.assert_array_equal(a.coefficients, b.coefficients)  # 32-pixel tiles: whole JPEG blocks
    # a loaded deepzoom model re-saved as image carries no stale tiling keys
    again = json.loads((save_model(b, tmp_path / "again", layout="image") / "info.json").read_text())["pnrelight"]
    assert again["layout"] == "image" and "tile_size" not in again


def test_auto_layout_threshold(tmp_path):
    assert choose_layout("auto", AUTO_DEEPZOOM_SIDE, AUTO_DEEPZOOM_SIDE) == "image"
    assert choose_layout("auto", AUTO_DEEPZOOM_SIDE + 1, 10) == "deepzoom"
    assert choose_layout("auto", 10, AUTO_DEEPZOOM_SIDE + 1) == "deepzoom"
    assert choose_layout("image", 10**5, 10**5) == "image"
    with pytest.raises(InputError, match="unknown plane layout"):
        choose_layout("tiles", 10, 10)
    # a real (thin) model over the threshold is written as a pyramid by default
    rng = np.random.default_rng(1)
    wide = RTIModel(kind="ptm", colorspace="rgb", coefficients=rng.random((4, AUTO_DEEPZOOM_SIDE + 1, 18), np.float32), terms=6)
    folder = save_model(wide, tmp_path / "wide")
    assert (folder / "plane_0.dzi").is_file() and not (folder / "plane_0.jpg").exists()
    assert deepzoom.read_dzi_header(folder / "plane_0.dzi")["width"] == AUTO_DEEPZOOM_SIDE + 1


def test_foreign_deepzoom_folders_load(tmp_path):
    """Folders like OpenLIME's HSH sample (no pnrelight block, planes only as .dzi), with either level numbering."""
    model = random_neural(h=H, w=W, hidden=(20, 20))
    reference = load_model(save_model(model, tmp_path / "ref", layout="image"), source="planes")
    for numbering in ("openlime", "microsoft"):
        folder = save_model(model, tmp_path / numbering, layout="deepzoom")
        (folder / "coefficients.npy").unlink()
        info = json.loads((folder / "info.json").read_text())
        del info["pnrelight"]
        (folder / "info.json").write_text(json.dumps(info))
        if numbering == "microsoft":  # level 0 = 1x1 pixel, as vips writes: full resolution is level ceil(log2 300) = 9
            for files in folder.glob("plane_*_files"):
                for level in sorted((int(p.name) for p in files.iterdir()), reverse=True):
                    (files / str(level)).rename(files / str(level + 8))
        loaded = load_model(folder)
        np.testing.assert_array_equal(loaded.coefficients, reference.coefficients)
        result = run_cli("rti", "relight", folder, "--light", "0.3", "0.2", "-o", tmp_path / f"{numbering}.png")
        assert result.returncode == 0, result.stderr
        relit = read_image(tmp_path / f"{numbering}.png")
        assert np.abs(relit - relight(reference, [0.3, 0.2])).max() <= 1 / 255 + 1e-6


def test_read_plane_hook_reads_the_tiles(tmp_path):
    """Blender passes its own loader (float32 byte/255): the tiles go through it and give the same model."""
    model = random_neural(h=H, w=W)
    folder = save_model(model, tmp_path / "m", layout="deepzoom", tile_size=128)
    seen = []

    def reader(path):
        seen.append(path.relative_to(folder).as_posix())
        return read_image(path)

    hooked = load_model(folder, source="planes", read_plane=reader)
    np.testing.assert_array_equal(hooked.coefficients, load_model(folder, source="planes").coefficients)
    assert sorted(seen) == sorted(f"plane_{j}_files/2/{c}_{r}.jpg" for j in (1, 2, 3) for c in range(3) for r in range(2))


def _broken(tmp_path, coin_ptm, damage):
    folder = save_model(coin_ptm, tmp_path / "m", layout="deepzoom", tile_size=40)  # 64x64: tiles 40 and 24 wide
    damage(folder)
    return folder


@pytest.mark.parametrize("damage,message", [
    (lambda f: (f / "plane_2.dzi").write_text("<Image TileSize='32'><Size Width="), "plane_2.dzi is not valid DeepZoom XML"),
    (lambda f: (f / "plane_2.dzi").write_text("<Image TileSize='big' Overlap='0'><Size Width='64' Height='64'/></Image>"), "must be integers"),
    (lambda f: (f / "plane_2.dzi").write_text("<Picture/>"), "is not a DeepZoom descriptor"),
    (lambda f: (f / "plane_3_files" / "1" / "1_0.jpg").unlink(), "tile 1/1_0.jpg is missing"),
    (lambda f: (f / "plane_4_files" / "1" / "1_1.jpg").write_bytes((f / "plane_4_files" / "0" / "0_0.jpg").read_bytes()), "tile 1/1_1.jpg is 32x32, expected 24x24"),
    (lambda f: __import__("shutil").rmtree(f / "plane_5_files"), "no tile levels"),
    (lambda f: (f / "plane_1_files" / "1" / "0_0.jpg").write_bytes(b"not a jpeg"), "cannot read image"),
])
def test_bad_pyramids_are_one_line_errors(tmp_path, coin_ptm, damage, message):
    folder = _broken(tmp_path, coin_ptm, damage)
    with pytest.raises(InputError, match=message.replace(".", r"\.")) as err:
        load_model(folder, source="planes")
    assert "\n" not in str(err.value)
    result = run_cli("rti", "relight", folder, "--planes", "--light", "0.1", "0.2", "-o", tmp_path / "out.png")
    assert result.returncode == 2 and result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert not (tmp_path / "out.png").exists()


def test_cli_tiles_flag(tmp_path):
    from pnrelight_cli.main import main as pnrelight

    mlic = write_example(tmp_path / "mlic", size=40, train_lights=12, test_lights=2)
    assert pnrelight(["--no-progress", "rti", "fit", str(mlic), "--basis", "hsh", "--tiles", "-o", str(tmp_path / "tiled")]) == 0
    assert pnrelight(["--no-progress", "rti", "fit", str(mlic), "--basis", "hsh", "-o", str(tmp_path / "plain")]) == 0
    assert (tmp_path / "tiled" / "plane_8.dzi").is_file() and not (tmp_path / "tiled" / "plane_0.jpg").exists()
    assert (tmp_path / "plain" / "plane_8.jpg").is_file() and not (tmp_path / "plain" / "plane_0.dzi").exists()
    tiled, plain = load_model(tmp_path / "tiled", source="planes"), load_model(tmp_path / "plain", source="planes")
    np.testing.assert_array_equal(tiled.coefficients, plain.coefficients)  # 40x40 in one tile at offset 0
    assert "--tiles" in run_cli("rti", "distill", "--help").stdout


@pytest.fixture(scope="module")
def coin_ptm():
    from pnrelight.formats.mlic import MLIC
    from pnrelight.lights import hemisphere_directions
    from pnrelight.rti.fit import fit_linear
    from pnrelight.rti.synthetic import relief_coin, render

    normals, albedo, mask = relief_coin(64)
    dirs = hemisphere_directions(16, min_elevation_deg=15)
    mlic = MLIC(images=render(normals, albedo, dirs), directions=dirs, names=[f"{i}.png" for i in range(16)], mask=None, folder=None)
    return fit_linear(mlic, "ptm")
