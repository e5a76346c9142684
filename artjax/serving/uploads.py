"""What a visitor uploads, checked before the model sees it: Pillow opens it with the allowed
decoders only (not the client's Content-Type), under a pixel limit with the decompression-bomb
warning turned into an error, and reads it to the end (a truncated file is an error). The model
gets JPEG or PNG bytes that TensorFlow decodes as `inference.readable_image` gives it: the
file itself where it is an RGB or grey JPEG, else an 8-bit RGB PNG (CMYK, 16-bit, alpha,
palettes converted), upright where EXIF says the camera was turned.
"""

from __future__ import annotations

import io
import re
import warnings

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

DEFAULT_FORMATS = ("JPEG", "PNG", "WEBP", "BMP", "TIFF")
EXIF_ORIENTATION = 0x0112
BOMBS_ARE_ERRORS = ("error", None, Image.DecompressionBombWarning, None, 0)  # a warnings filter


class UploadError(ValueError):
    """An upload the service refuses: `status` is the HTTP status, the message says why."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


def _identify(raw: bytes) -> str | None:
    """The format Pillow would read `raw` as with every decoder (header only), or None."""
    try:
        with Image.open(io.BytesIO(raw)) as image:
            return image.format
    except Exception:
        return None


def _as_rgb8(image: Image.Image) -> Image.Image:
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):  # 16-bit grey: scale to 8 bits
        values = np.asarray(image, np.uint32)
        top = 65535 if image.mode != "I" or values.max() > 255 else 255
        return Image.fromarray((values * 255 // top).astype(np.uint8), "L").convert("RGB")
    return image.convert("RGB")


def model_bytes(raw: bytes, max_pixels: int, formats=DEFAULT_FORMATS) -> bytes:
    """The upload as JPEG or PNG bytes for the model; an UploadError (400 not an image or
    truncated, 413 over `max_pixels`, 415 a format outside `formats`) otherwise."""
    if not raw:
        raise UploadError(400, "the upload is empty")
    Image.MAX_IMAGE_PIXELS = max_pixels  # the bomb check of Image.open, from the flag
    # process-wide (catch_warnings is not thread-safe, and uploads are read in threads)
    if BOMBS_ARE_ERRORS not in warnings.filters:
        warnings.filterwarnings("error", category=Image.DecompressionBombWarning)
    try:
        with Image.open(io.BytesIO(raw), formats=list(formats)) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise UploadError(
                    413,
                    f"the image has {width} x {height} pixels, over --max_pixels={max_pixels:,}",
                )
            image.load()
            fmt, mode = image.format, image.mode
            turned = image.getexif().get(EXIF_ORIENTATION, 1) not in (1, None)
            # PNG is always rewritten: Pillow reads a 16-bit RGB PNG as 8-bit "RGB", TensorFlow
            # as uint16
            if fmt == "JPEG" and mode in ("RGB", "L") and not turned:
                return raw
            upright = ImageOps.exif_transpose(image) if turned else image
            buffer = io.BytesIO()
            _as_rgb8(upright).save(buffer, "PNG")
            return buffer.getvalue()
    except UploadError:
        raise
    except (Image.DecompressionBombWarning, Image.DecompressionBombError) as e:
        # one number, the flag's: Pillow's own message names its limit (twice ours) beside it
        size = re.search(r"\((\d+) pixels\)", str(e))
        found = f" (the image has {int(size.group(1)):,} pixels)" if size else ""
        raise UploadError(413, f"the image is over --max_pixels={max_pixels:,}{found}") from e
    except UnidentifiedImageError as e:
        found = _identify(raw)
        if found:
            raise UploadError(
                415, f"{found} images are not accepted; send one of {', '.join(formats)}"
            ) from e
        raise UploadError(400, "the upload is not an image Pillow can read") from e
    except (OSError, SyntaxError, ValueError) as e:  # Pillow's truncated and corrupt files
        raise UploadError(400, f"the image is truncated or corrupt ({e})") from e
