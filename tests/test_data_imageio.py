"""Robust image input: every kind of bad or unusual file gives an upright RGB uint8
image or a one-line ImageReadError naming the file; writes are atomic."""
import os
import struct
import zlib

import cv2
import numpy as np
import pytest
from PIL import Image

from modify_ms.data import imageio
from modify_ms.data.imageio import (MAX_PIXELS, MIN_SIDE, ImageReadError, decode_image, read_image,
                                    save_image_atomic)
from modify_ms.data.sources import open_source, verify_source


def _rgb(h=40, w=48, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 255, w, dtype=np.float64)[None, :, None] * np.ones((h, 1, 3))
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def _png_header_only(width, height):
    """A PNG that declares width x height (IHDR only, no pixel data): tests size limits
    without allocating the pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


def _write(path, data):
    with open(path, "wb") as fh:
        fh.write(data)
    return str(path)


def _one_line(exc, path):
    text = str(exc)
    assert "\n" not in text
    assert str(path) in text
    return text


# ----------------------------------------------------------------------------- conversions

def test_plain_rgb_png_roundtrip(tmp_path):
    img = _rgb()
    path = tmp_path / "a.png"
    save_image_atomic(str(path), img)
    out = read_image(str(path))
    assert out.dtype == np.uint8 and out.shape == (40, 48, 3)
    np.testing.assert_array_equal(out, img)


def test_exif_orientation_is_applied(tmp_path):
    ys, xs = np.mgrid[0:40, 0:64]
    upright = np.stack([xs * 4, ys * 6, np.full_like(xs, 90)], axis=2).astype(np.uint8)  # smooth: JPEG-friendly
    stored = np.ascontiguousarray(np.rot90(upright, 1))  # sensor layout, 64 x 40
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 degrees clockwise to display
    path = tmp_path / "phone.jpg"
    Image.fromarray(stored).save(path, quality=98, exif=exif.tobytes())
    out = read_image(str(path))
    assert out.shape == upright.shape  # (40, 64, 3), not (64, 40, 3)
    assert np.abs(out.astype(int) - upright).mean() < 2.0  # JPEG loss only
    assert np.abs(out.astype(int) - upright[::-1, ::-1]).mean() > 40  # and not upside down


def test_grayscale_becomes_rgb(tmp_path):
    gray = _rgb()[:, :, 0]
    path = tmp_path / "g.png"
    Image.fromarray(gray, "L").save(path)
    out = read_image(str(path))
    assert out.shape == (40, 48, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[:, :, c], gray)


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    img = _rgb()
    path = tmp_path / "c.jpg"
    Image.fromarray(img).convert("CMYK").save(path, quality=98)
    assert Image.open(path).mode == "CMYK"
    out = read_image(str(path))
    assert out.shape == (40, 48, 3)
    assert np.abs(out.astype(int) - img).mean() < 6.0


def test_rgba_is_composited_over_white(tmp_path):
    rgba = np.zeros((20, 20, 4), np.uint8)
    rgba[:, :10] = (200, 10, 30, 255)  # opaque left half
    rgba[:, 10:] = (0, 0, 0, 0)  # transparent right half
    path = tmp_path / "t.png"
    Image.fromarray(rgba, "RGBA").save(path)
    out = read_image(str(path))
    assert out.shape == (20, 20, 3)
    np.testing.assert_array_equal(out[0, 0], (200, 10, 30))
    np.testing.assert_array_equal(out[0, 15], (255, 255, 255))


def test_16bit_gray_and_rgb_are_scaled(tmp_path):
    gray16 = np.full((20, 20), 0x8080, np.uint16)
    cv2.imwrite(str(tmp_path / "g16.png"), gray16)
    out = read_image(str(tmp_path / "g16.png"))
    assert out.dtype == np.uint8 and out.shape == (20, 20, 3)
    assert np.all(out == 128)  # 0x8080 * 255 / 65535 = 128
    rgb16 = np.zeros((20, 20, 3), np.uint16)
    rgb16[...] = (0x1000, 0x8000, 0xFF00)  # R, G, B
    cv2.imwrite(str(tmp_path / "c16.png"), rgb16[:, :, ::-1])  # OpenCV writes BGR
    out = read_image(str(tmp_path / "c16.png"))
    assert out.dtype == np.uint8
    np.testing.assert_allclose(out[0, 0], (16, 128, 255), atol=1)


def test_palette_images_with_and_without_transparency(tmp_path):
    img = _rgb()
    Image.fromarray(img).convert("P", palette=Image.ADAPTIVE, colors=16).save(tmp_path / "p.png")
    out = read_image(str(tmp_path / "p.png"))
    assert out.shape == (40, 48, 3) and np.abs(out.astype(int) - img).mean() < 20
    pal = Image.new("P", (20, 20), 0)
    pal.putpalette([0, 0, 0, 250, 0, 0] + [0] * 762)
    pal.paste(1, (0, 0, 10, 20))
    pal.info["transparency"] = 0
    pal.save(tmp_path / "pt.gif", transparency=0)
    out = read_image(str(tmp_path / "pt.gif"))
    np.testing.assert_array_equal(out[5, 5], (250, 0, 0))
    np.testing.assert_array_equal(out[5, 15], (255, 255, 255))  # transparent -> white


# ----------------------------------------------------------------------------- errors

def test_corrupt_and_non_image_files(tmp_path):
    cases = {
        "noise.png": np.random.default_rng(1).integers(0, 256, 4000, dtype=np.uint8).tobytes(),
        "notes.jpg": b"this is a text file, not a photo\n" * 10,
    }
    for name, data in cases.items():
        path = _write(tmp_path / name, data)
        with pytest.raises(ImageReadError) as err:
            read_image(path)
        assert "not an image file" in _one_line(err.value, path)
    empty = _write(tmp_path / "empty.png", b"")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(empty)
    with pytest.raises(ImageReadError, match="file not found"):
        read_image(str(tmp_path / "missing.png"))


@pytest.mark.parametrize("ext", [".jpg", ".png"])
def test_truncated_files(tmp_path, ext):
    data = imageio.encode_image(_rgb(64, 64), ext)
    path = _write(tmp_path / f"cut{ext}", data[: len(data) // 2])
    with pytest.raises(ImageReadError) as err:
        read_image(path)
    text = _one_line(err.value, path)
    assert "cannot decode image" in text and "truncated" in text


def test_size_limits(tmp_path):
    small = tmp_path / "tiny.png"
    Image.fromarray(np.zeros((MIN_SIDE - 1, 40, 3), np.uint8)).save(small)
    with pytest.raises(ImageReadError) as err:
        read_image(str(small))
    assert f"smaller than the {MIN_SIDE} px minimum side" in _one_line(err.value, small)
    assert MAX_PIXELS == 50_000_000
    big = _write(tmp_path / "big.png", _png_header_only(10000, 6000))  # 60 MP
    with pytest.raises(ImageReadError) as err:
        read_image(big)
    assert "60.0 MP), above the 50 MP limit" in _one_line(err.value, big)
    bomb = _write(tmp_path / "bomb.png", _png_header_only(30000, 30000))  # above Pillow's own bomb limit
    with pytest.raises(ImageReadError, match="above the 50 MP limit"):
        read_image(bomb)


def test_bytes_input_is_named(tmp_path):
    with pytest.raises(ImageReadError, match=r"^archive.zip:x.png: not an image file"):
        decode_image(b"garbage" * 20, name="archive.zip:x.png")


# ----------------------------------------------------------------------------- writing

def test_save_is_atomic_and_leaves_no_temp_files(tmp_path, monkeypatch):
    target = tmp_path / "out" / "img.png"
    save_image_atomic(str(target), _rgb())
    assert os.listdir(tmp_path / "out") == ["img.png"]
    assert oct(os.stat(target).st_mode & 0o777) == oct(0o644)

    def failing_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(imageio.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_image_atomic(str(tmp_path / "out" / "second.png"), _rgb())
    assert os.listdir(tmp_path / "out") == ["img.png"]  # no partial output, no temp file
    with pytest.raises(ValueError, match="expected a uint8"):
        save_image_atomic(str(tmp_path / "out" / "bad.png"), np.zeros((4, 4, 3), np.float32))
    with pytest.raises(ValueError, match="cannot write images with extension"):
        save_image_atomic(str(tmp_path / "out" / "bad.xyz"), _rgb())


# ----------------------------------------------------------------------------- folders

def test_folder_skips_bad_files_with_reasons(tmp_path):
    good = tmp_path / "good"
    (good / "nested").mkdir(parents=True)
    save_image_atomic(str(good / "ok1.png"), _rgb())
    save_image_atomic(str(good / "nested" / "ok2.jpg"), _rgb(seed=3))
    _write(good / "fake.jpg", b"not an image at all" * 10)
    data = imageio.encode_image(_rgb(64, 64), ".jpg")
    _write(good / "cut.jpg", data[: len(data) // 2])
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(good / "tiny.png")
    _write(good / "big.png", _png_header_only(9000, 9000))
    _write(good / "readme.txt", b"ignored")
    _write(good / ".hidden.png", b"ignored too")
    source = open_source(str(good))
    assert source.ignored == 1  # readme.txt
    header = verify_source(source, "header")
    full = verify_source(source, "full")
    reasons = {os.path.basename(name): reason for name, reason in full.skipped}
    assert sorted(os.path.basename(n) for n in full.names) == ["ok1.png", "ok2.jpg"]
    assert reasons["fake.jpg"] == "not an image file (unknown or corrupt format)"
    assert "truncated" in reasons["cut.jpg"]
    assert "minimum side" in reasons["tiny.png"]
    assert "50 MP limit" in reasons["big.png"]
    # the header check cannot see truncated pixel data; the full check can
    assert "cut.jpg" in [os.path.basename(n) for n in header.names]
    assert len(header.skipped) == 3


def test_jpeg_reduced_decoding_keeps_both_sides_large_enough(tmp_path):
    ys, xs = np.mgrid[0:600, 0:1000]
    img = np.stack([xs % 256, ys % 256, (xs + ys) % 256], axis=2).astype(np.uint8)
    save_image_atomic(str(tmp_path / "big.jpg"), img)
    save_image_atomic(str(tmp_path / "big.png"), img)
    reduced = decode_image(str(tmp_path / "big.jpg"), reduce_to=140)
    assert reduced.shape == (150, 250, 3)  # 1/4 scale: the smallest DCT scale with both sides >= 140
    assert decode_image(str(tmp_path / "big.jpg"), reduce_to=200).shape == (300, 500, 3)
    assert decode_image(str(tmp_path / "big.png"), reduce_to=140).shape == (600, 1000, 3)
