import numpy as np
import pytest

from pnrelight.errors import InputError
from pnrelight.imageio import read_image, read_image_rgba, write_image


@pytest.mark.parametrize("suffix,bits,tol", [(".png", 8, 0.5 / 255), (".png", 16, 0.5 / 65535), (".tif", 16, 0.5 / 65535), (".exr", 32, 1e-7)])
def test_round_trip(tmp_path, suffix, bits, tol):
    img = np.random.default_rng(1).random((6, 9, 3)).astype(np.float32)
    path = write_image(tmp_path / f"x{suffix}", img, bits=bits)
    np.testing.assert_allclose(read_image(path), img, atol=tol + 1e-7)


def test_rgba_and_grey(tmp_path):
    rgba = np.random.default_rng(2).random((4, 5, 4)).astype(np.float32)
    write_image(tmp_path / "a.png", rgba)
    assert read_image_rgba(tmp_path / "a.png").shape == (4, 5, 4)
    assert read_image(tmp_path / "a.png").shape == (4, 5, 3)
    write_image(tmp_path / "g.png", rgba[..., 0])
    assert read_image(tmp_path / "g.png").shape == (4, 5)


def test_unreadable(tmp_path):
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(InputError, match="cannot read image"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(InputError, match="not found"):
        read_image(tmp_path / "missing.png")
