"""The one place that reads and writes image files.

Every image that enters modify_ms (datasets, the single-photo path, the align
tool, built-in data) is decoded by ``decode_image`` into an upright RGB uint8
array of shape (H, W, 3):

* EXIF orientation is applied (phone photos are stored sideways);
* grayscale, CMYK, palette, 16-bit and alpha images become RGB uint8
  (alpha is composited over white, 16-bit values are scaled by 255/65535);
* corrupt, truncated, empty and non-image files, images larger than
  ``MAX_PIXELS`` (50 megapixels) and images with a side below ``MIN_SIDE``
  (16 px) raise ``ImageReadError`` with a one-line message naming the file.

Writing goes through ``save_image_atomic``: the encoded bytes go to a temporary
file in the target folder which is then renamed over the target, so a reader
never sees half an image.
"""
from __future__ import annotations

import io
import os
import tempfile
import warnings
from typing import BinaryIO, Union

import numpy as np
from PIL import Image, ImageOps

MAX_PIXELS = 50_000_000  # 50 MP: larger inputs are refused (decoding alone would take >150 MB)
MIN_SIDE = 16  # smaller images carry no usable face at any model resolution
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".ppm", ".pgm")
_WRITE_FORMATS = {".png": "PNG", ".jpg": "JPEG", ".jpeg": "JPEG", ".webp": "WEBP", ".bmp": "BMP",
                  ".tif": "TIFF", ".tiff": "TIFF"}
WRITABLE_EXTENSIONS = tuple(_WRITE_FORMATS)  # the output file's extension chooses its format


class InputError(ValueError):
    """Bad input: ``str(exc)`` is one line '<name>: <reason>'; ``.name`` and ``.reason``
    are kept apart for skip summaries."""

    def __init__(self, name: str, reason: str = None):
        if reason is None:
            name, reason = "", name
        self.name, self.reason = name, reason
        super().__init__(f"{name}: {reason}" if name else reason)

    def __reduce__(self):  # picklable across worker processes
        return (type(self), (self.name, self.reason))


class ImageReadError(InputError):
    """An input file that is not a usable image (the message names the file)."""


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def _to_rgb(img: Image.Image) -> np.ndarray:
    """Any Pillow mode -> RGB uint8 (H, W, 3)."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit grayscale (PNG/TIFF); 'I' holds 16-bit PNGs too. Scale 0..65535 -> 0..255.
        gray = np.asarray(img).astype(np.float64)
        gray = np.clip(np.rint(gray * (255.0 / 65535.0)), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "F":  # float images: take values as 0..1 when they fit there, else 0..255
        gray = np.asarray(img).astype(np.float64)
        scale = 255.0 if np.nanmax(gray) <= 1.0 else 1.0
        gray = np.clip(np.rint(np.nan_to_num(gray) * scale), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    if mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
        mode = "RGBA"
    if mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    if mode != "RGB":  # L, 1, P, CMYK, YCbCr, LAB, HSV
        img = img.convert("RGB")
    return np.asarray(img)


def decode_image(source: Union[str, bytes], name: str = "", reduce_to: int = 0) -> np.ndarray:
    """Decode a file path or encoded bytes into an upright RGB uint8 (H, W, 3) array.

    ``name`` is what error messages call the input (defaults to the path).
    ``reduce_to``: the caller only needs both sides >= reduce_to, so JPEGs may be
    decoded at 1/2, 1/4 or 1/8 scale (DCT scaling: about 3x faster for 1024 -> 256).
    """
    label = name or (source if isinstance(source, str) else "<bytes>")
    if isinstance(source, str):
        if not os.path.isfile(source):
            raise ImageReadError(label, "file not found")
        if os.path.getsize(source) == 0:
            raise ImageReadError(label, "empty file")
        stream = source
    else:
        if len(source) == 0:
            raise ImageReadError(label, "empty file")
        stream = io.BytesIO(source)
    try:
        with warnings.catch_warnings():
            # Pillow warns (and above 2x its own limit raises) about huge images; we apply our own limit.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                width, height = img.size
                if width * height > MAX_PIXELS:
                    raise ImageReadError(label, f"image is {width}x{height} ({width * height / 1e6:.1f} MP), "
                        f"above the {MAX_PIXELS // 1_000_000} MP limit; downscale it first")
                if min(width, height) < MIN_SIDE:
                    raise ImageReadError(label, f"image is {width}x{height}, smaller than the "
                                         f"{MIN_SIDE} px minimum side")
                if reduce_to and img.format == "JPEG":
                    img.draft(None, (reduce_to, reduce_to))  # keeps both sides >= reduce_to
                img.load()
                img = ImageOps.exif_transpose(img) or img
                rgb = _to_rgb(img)
    except ImageReadError:
        raise
    except Image.DecompressionBombError:
        raise ImageReadError(label, f"image is above the {MAX_PIXELS // 1_000_000} MP limit") from None
    except Image.UnidentifiedImageError:
        raise ImageReadError(label, "not an image file (unknown or corrupt format)") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        if "truncated" in reason or isinstance(exc, EOFError):
            reason = f"truncated or damaged image data ({reason})"
        raise ImageReadError(label, f"cannot decode image: {reason}") from None
    return np.ascontiguousarray(rgb, dtype=np.uint8)


def read_image(path: str) -> np.ndarray:
    """Read an image file as an upright RGB uint8 (H, W, 3) array (see ``decode_image``)."""
    return decode_image(path, name=path)


def probe_image(source: Union[str, bytes, BinaryIO], name: str = "") -> None:
    """Cheap header check (no pixel decoding): raises ImageReadError for non-images and
    images outside the size limits. Truncated pixel data is only found by ``decode_image``."""
    label = name or (source if isinstance(source, str) else "<bytes>")
    if isinstance(source, str) and not os.path.isfile(source):
        raise ImageReadError(label, "file not found")
    stream = io.BytesIO(source) if isinstance(source, (bytes, bytearray)) else source
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(stream) as img:
                width, height = img.size
    except Image.DecompressionBombError:
        raise ImageReadError(label, f"image is above the {MAX_PIXELS // 1_000_000} MP limit") from None
    except (Image.UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError):
        raise ImageReadError(label, "not an image file (unknown or corrupt format)") from None
    if width * height > MAX_PIXELS:
        raise ImageReadError(label, f"image is {width}x{height} ({width * height / 1e6:.1f} MP), "
                             f"above the {MAX_PIXELS // 1_000_000} MP limit; downscale it first")
    if min(width, height) < MIN_SIDE:
        raise ImageReadError(label, f"image is {width}x{height}, smaller than the {MIN_SIDE} px minimum side")


def encode_image(image: np.ndarray, ext: str = ".png", quality: int = 95) -> bytes:
    """RGB uint8 (H, W, 3) or gray (H, W) -> encoded bytes in the format named by ``ext``."""
    array = np.asarray(image)
    if array.dtype != np.uint8 or array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] != 3):
        raise ValueError(f"expected a uint8 (H, W, 3) or (H, W) image, got {array.dtype} {array.shape}")
    fmt = _WRITE_FORMATS.get(ext.lower())
    if fmt is None:
        raise ValueError(f"cannot write images with extension '{ext}'")
    buf = io.BytesIO()
    options = {"quality": quality} if fmt in ("JPEG", "WEBP") else {}
    Image.fromarray(array).save(buf, format=fmt, **options)
    return buf.getvalue()


def write_bytes_atomic(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` via a temporary file in the same folder and a rename."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tmp_", suffix=os.path.basename(path)[-16:], dir=folder)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.chmod(tmp, 0o644)  # mkstemp creates 0600; outputs are ordinary readable files
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_image_atomic(path: str, image: np.ndarray, quality: int = 95) -> None:
    """Save an RGB uint8 image; the file appears complete or not at all."""
    ext = os.path.splitext(path)[1] or ".png"
    write_bytes_atomic(path, encode_image(image, ext, quality))
