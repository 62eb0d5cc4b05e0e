"""One safe way in for every image and question (UI, API, CLI, evaluation).

Everything a user sends us is untrusted: an "image" may be a 4 KB PNG that
claims to be 100 megapixels (a *decompression bomb*), a text file renamed
``.png``, a half-uploaded JPEG, a 16-bit scan, a transparent logo, an
animated GIF or a phone photo stored sideways with an EXIF "rotate me" flag.
A question may be empty, 10,000 characters long or full of invisible
control characters.

This module turns all of that into exactly two things the models can use:

* :func:`load_image` returns an upright RGB ``PIL.Image.Image``;
* :func:`clean_question` returns a tidy, non-empty ``str``.

Anything else ends in :class:`vqa.errors.InputError` with a message written
for the person using the demo. No other exception escapes for bad input, so
callers only ever need ``except InputError``.

The order of the checks matters and is the main lesson here: *cheap checks
first, expensive work last*. We look at the file size before reading the
file, at the header (width and height) before decoding the pixels, and only
then let Pillow allocate memory for the image.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import os
import re
import stat
import unicodedata
import warnings
from pathlib import Path
from typing import Any

from PIL import Image, ImageOps

from vqa.errors import InputError

try:  # NumPy is optional: without it nobody can hand us an ndarray anyway.
    import numpy as np
except ImportError:  # pragma: no cover - numpy ships with torch
    np = None


# ----- limits and constants -----------------------------------------------------------

#: Largest encoded image we accept, in bytes (10 MB, decimal, as file browsers show it).
#: Phone photos are 2-6 MB; anything bigger is almost always a mistake or an attack,
#: and we hold the whole file in memory while decoding it.
MAX_IMAGE_BYTES = 10_000_000

#: Largest decoded image we accept, in pixels (25 megapixels, e.g. 5000x5000).
#: Pillow's own default is about 89 megapixels (~270 MB as RGB) which is far more
#: than a demo server should decode per request. Every model here resizes to
#: 224-384 px anyway, so 25 MP loses nothing. An RGB image at the limit takes 75 MB.
MAX_IMAGE_PIXELS = 25_000_000

#: Longest question we accept, in characters (after cleaning). VQA questions are a
#: sentence long; the text encoders truncate at a few dozen tokens.
MAX_QUESTION_CHARS = 300

#: The only file formats Pillow may even *try* to parse. Each extra format is extra
#: parser code exposed to untrusted bytes (TIFF and PSD in particular have a long
#: history of decoder bugs), so we allow the five that browsers and phones produce.
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "GIF", "BMP")

#: Colour that transparent pixels are laid onto. Models expect opaque RGB; simply
#: dropping the alpha channel exposes whatever RGB values hide under alpha=0, which
#: is often black or random noise. White matches how browsers show most logos.
ALPHA_BACKGROUND = (255, 255, 255)

#: Smallest width/height. A 1x1 "image" carries no visual content to ask about.
MIN_IMAGE_SIDE = 2

#: Longest side may be at most this many times the shortest. Models resize to a
#: square, so a 5000x20 strip becomes a smear of meaningless pixels.
MAX_ASPECT_RATIO = 50

#: The note stored in ``image.info["vqa_note"]`` when only the first frame was used.
ANIMATED_NOTE = "Animated image: the first frame was used."

_FORMAT_LIST = ", ".join(ALLOWED_FORMATS[:-1]) + " or " + ALLOWED_FORMATS[-1]
_UNREADABLE = (
    f"This file is not a readable image ({_FORMAT_LIST}). It may be damaged, "
    "cut short during upload, or a different kind of file with an image name."
)
_ACCEPTED_TYPES = (
    "a PIL image, a file path, raw bytes, a 'data:image/...;base64,' URL, "
    "a NumPy array or a dict with a 'path' or 'url' key"
)
_URL_SCHEME = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*://")
_HIGH_BIT_DEPTH_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I", "F")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")


# ----- images ------------------------------------------------------------------------


def load_image(
    source: Any,
    *,
    max_bytes: int = MAX_IMAGE_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Image.Image:
    """Return `source` as a new, upright RGB image, or raise :class:`InputError`.

    `source` may be:

    * a ``PIL.Image.Image`` (validated and converted; the caller's object is
      never modified, and its *current* frame is used);
    * a path (``str`` or ``pathlib.Path``);
    * the encoded file as ``bytes``, ``bytearray`` or ``memoryview``;
    * a data URL string, ``"data:image/png;base64,..."``;
    * a NumPy array, HxW, HxWx1, HxWx3 or HxWx4, ``uint8`` (0..255), ``bool``
      or float in [0, 1];
    * a dict as Gradio sends it: ``{"path": ...}`` or ``{"url": "data:..."}``.

    Only PNG, JPEG, WEBP, GIF and BMP files are decoded. Transparent pixels are
    laid onto :data:`ALPHA_BACKGROUND`, EXIF orientation is applied, 16-bit
    images are scaled (not clipped) to 8 bits and animations give their first
    frame; in that case ``image.info["vqa_note"]`` says so, so the UI can tell
    the user. Otherwise ``image.info`` is empty: metadata such as EXIF (which
    may contain GPS positions) is dropped.

    `max_bytes` limits the encoded size and `max_pixels` the decoded size;
    both are checked *before* the expensive step they protect.
    """
    if source is None:
        raise InputError("No image was given. Please upload an image.")
    if isinstance(source, Image.Image):
        return _from_pil(source, max_pixels)
    if np is not None and isinstance(source, np.ndarray):
        return _from_array(source, max_pixels)
    if isinstance(source, dict):
        source = _unwrap_dict(source)
    if isinstance(source, (bytes, bytearray, memoryview)):
        data = _bytes_from_buffer(source, max_bytes)
    elif isinstance(source, str) and source.lstrip()[:5].lower() == "data:":
        data = _bytes_from_data_url(source.strip(), max_bytes)
    elif isinstance(source, (str, os.PathLike)):
        data = _bytes_from_path(source, max_bytes)
    else:
        raise InputError(
            f"Cannot read an image from a {type(source).__name__}; "
            f"pass {_ACCEPTED_TYPES}."
        )
    return _decode(data, max_pixels)


# ----- step 1: turn every kind of source into bytes, checking the size first ----------


def _unwrap_dict(source: dict) -> Any:
    """Pick the file out of a Gradio-style dict (``FileData``)."""
    # Gradio saves uploads to a temporary file and sends its path; when the file
    # is not on this machine it sends a URL instead. Prefer the local path.
    path = source.get("path")
    if isinstance(path, (str, os.PathLike)) and str(path):
        return path
    url = source.get("url")
    if isinstance(url, str) and url:
        return url
    # We never recurse into nested values: a dict may only point at a path or URL.
    raise InputError("The image dict has no usable 'path' or 'url' entry.")


def _check_byte_count(n_bytes: int, max_bytes: int) -> None:
    if n_bytes > max_bytes:
        # Round the size *up* so "10,000,001 bytes" never reads as "10 MB".
        size_mb = math.ceil(n_bytes / 100_000) / 10
        raise InputError(
            f"The image file is {size_mb:g} MB; the limit is {max_bytes / 1_000_000:g} MB."
        )
    if n_bytes == 0:
        raise InputError("The image file is empty (0 bytes).")


def _bytes_from_buffer(source: bytes | bytearray | memoryview, max_bytes: int) -> bytes:
    n_bytes = source.nbytes if isinstance(source, memoryview) else len(source)
    _check_byte_count(n_bytes, max_bytes)
    return bytes(source)  # a private copy: the caller may change a bytearray later


def _bytes_from_data_url(url: str, max_bytes: int) -> bytes:
    """Decode ``data:[<type>][;base64],<payload>`` after checking its size."""
    header, comma, payload = url[5:].partition(",")
    if not comma:
        raise InputError("The data: URL is malformed (it has no comma before the data).")
    if not header.lower().endswith(";base64"):
        raise InputError("Only base64 data: URLs are supported ('data:image/png;base64,...').")
    # Every 4 base64 characters encode 3 bytes, minus one byte per '=' of padding.
    # So we know the decoded size from the string length alone, without allocating
    # the decoded bytes. (With embedded line breaks this over-estimates slightly,
    # which errs on the safe side.)
    payload = payload.strip()
    padding = len(payload) - len(payload.rstrip("="))
    _check_byte_count(len(payload) * 3 // 4 - min(padding, 2), max_bytes)
    if any(ch.isspace() for ch in payload):
        payload = "".join(payload.split())  # some encoders wrap lines every 76 chars
    payload += "=" * (-len(payload) % 4)  # be lenient about missing padding
    try:
        return base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:  # ValueError: non-ASCII characters
        raise InputError("The data: URL does not contain valid base64 data.") from exc


def _display_name(path: str | os.PathLike) -> str:
    """Only the file name, shortened: full server paths should not reach the user."""
    name = Path(os.fsdecode(path)).name or os.fsdecode(path)
    return name if len(name) <= 60 else name[:57] + "..."


def _bytes_from_path(path: str | os.PathLike, max_bytes: int) -> bytes:
    """Read a file into memory, never more than `max_bytes` + 1 bytes of it."""
    if isinstance(path, str):
        if not path.strip():
            raise InputError("No image was given (the file name is empty).")
        if _URL_SCHEME.match(path):
            raise InputError(
                "Images are not downloaded from web addresses (the demo works offline). "
                "Save the image and upload the file instead."
            )
    name = _display_name(path)
    # stat() first: it never blocks, whereas open() on a named pipe waits forever,
    # and it tells us the size before we read a single byte.
    try:
        info = os.stat(path)
    except FileNotFoundError as exc:
        raise InputError(f"There is no file called {name!r}.") from exc
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the name
        raise InputError(f"The file {name!r} cannot be opened.") from exc
    if stat.S_ISDIR(info.st_mode):
        raise InputError(f"{name!r} is a folder, not an image file.")
    if not stat.S_ISREG(info.st_mode):
        raise InputError(f"{name!r} is not a regular file.")
    _check_byte_count(info.st_size, max_bytes)
    # We read the file ourselves instead of giving Pillow the path: the handle is
    # closed at once (Gradio deletes its temporary files), and the read is bounded
    # by the size we just checked, even if the file grows between stat() and open().
    # (Not read(max_bytes + 1): Python allocates the full requested size up front.)
    try:
        with open(path, "rb") as handle:
            data = handle.read(info.st_size + 1)
    except PermissionError as exc:
        raise InputError(f"The file {name!r} cannot be read (permission denied).") from exc
    except OSError as exc:
        raise InputError(f"The file {name!r} cannot be read.") from exc
    if len(data) != info.st_size:
        raise InputError(f"The file {name!r} changed while it was being read; please try again.")
    return data


# ----- step 2: decode, checking the header before the pixels -------------------------


def _check_geometry(size: tuple[int, int], max_pixels: int) -> None:
    """Reject images that are too large, too small or too thin, from the size alone."""
    width, height = size
    pixels = width * height
    if pixels > max_pixels:
        raise InputError(
            f"The image is {width}×{height} pixels ({pixels / 1_000_000:.3g} megapixels); "
            f"the limit is {max_pixels / 1_000_000:g} megapixels. Please use a smaller image."
        )
    if min(width, height) < MIN_IMAGE_SIDE:
        raise InputError(
            f"The image is {width}×{height} pixels; it must be at least "
            f"{MIN_IMAGE_SIDE}×{MIN_IMAGE_SIDE} pixels."
        )
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        raise InputError(
            f"The image is {width}×{height} pixels: one side is more than "
            f"{MAX_ASPECT_RATIO} times the other. Please crop it to the part you want to ask about."
        )


def _decode(data: bytes, max_pixels: int) -> Image.Image:
    # About Pillow's own bomb protection: Image.open() compares the size with the
    # global Image.MAX_IMAGE_PIXELS (~89 MP) and *warns* above it (raises above 2x).
    # We do not lower that global: it is shared by every library in the process
    # (Gradio, transformers' image processors, matplotlib...) and changing it would
    # silently change their behaviour. Our own, stricter `max_pixels` check runs
    # right after the header is read, before any pixel is decoded. The warnings
    # filter covers the gap above Pillow's warning threshold: without it, a caller
    # who raises `max_pixels` past ~89 MP would only get a warning for a bomb.
    # (catch_warnings() swaps a process-wide filter list, which is not thread-safe
    # before Python 3.14; that is acceptable because safety never depends on it.)
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        try:
            # Image.open() is lazy: it parses only the header. `formats=` stops
            # Pillow from trying its ~40 other parsers on the bytes.
            image = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
            raise InputError(
                "The image is too large to decode safely (it claims more than "
                f"{(Image.MAX_IMAGE_PIXELS or 0) / 1_000_000:.0f} megapixels)."
            ) from exc
        except Exception as exc:
            # Pillow documents no closed list of exceptions for malformed input: in
            # practice OSError, SyntaxError, ValueError, EOFError, struct.error,
            # zlib.error, IndexError... all occur. The contract of this module is
            # "bad input -> InputError", so we catch them all *only around the calls
            # that parse untrusted bytes*, and keep the original as __cause__.
            raise InputError(_UNREADABLE) from exc

        with image:
            _check_geometry(image.size, max_pixels)  # header only; nothing decoded yet
            try:
                # Camera JPEGs with a preview picture (format "MPO") also have
                # several frames, but they are not an animation.
                animated = bool(getattr(image, "is_animated", False)) and image.format != "MPO"
                image.load()  # the expensive step: decode frame 0 into memory
            except Exception as exc:  # same reasoning as above
                raise InputError(_UNREADABLE) from exc
            return _finish(image, ANIMATED_NOTE if animated else None)


def _from_pil(image: Image.Image, max_pixels: int) -> Image.Image:
    """Validate a caller's PIL image. We only read it; every step returns a new image."""
    _check_geometry(image.size, max_pixels)
    # We do not seek(): that would change the caller's object. Gradio hands us
    # images at frame 0, so "current frame" is the first frame in practice.
    try:
        # A lazily opened image may still be undecoded (and damaged): checking for
        # more frames and loading both parse file data, hence the broad except.
        animated = bool(getattr(image, "is_animated", False)) and image.format != "MPO"
        image.load()
    except Exception as exc:
        raise InputError(_UNREADABLE) from exc
    return _finish(image, ANIMATED_NOTE if animated else None)


def _from_array(array: Any, max_pixels: int) -> Image.Image:
    """Turn a NumPy array into an image, after checking shape, size and values."""
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[:, :, 0]
    if not (array.ndim == 2 or (array.ndim == 3 and array.shape[2] in (3, 4))):
        raise InputError(
            f"A NumPy image must have shape HxW, HxWx3 or HxWx4; this one has {array.shape}."
        )
    height, width = array.shape[:2]
    _check_geometry((width, height), max_pixels)  # before touching any values

    kind = array.dtype.kind
    if kind == "b":
        array = array.astype(np.uint8) * 255
    elif kind == "f":
        if not np.isfinite(array).all():
            raise InputError("The image array contains NaN or infinite values.")
        if array.size and (array.min() < 0 or array.max() > 1):
            raise InputError(
                "A float image array must have values between 0 and 1 "
                "(use uint8 for values 0..255)."
            )
        array = np.rint(array * 255).astype(np.uint8)
    elif kind in "iu":
        if array.dtype != np.uint8 and array.size and (array.min() < 0 or array.max() > 255):
            raise InputError("An integer image array must have values between 0 and 255.")
        array = array.astype(np.uint8)
    else:
        raise InputError(f"Cannot use an image array of type {array.dtype}; use uint8.")
    # fromarray() picks L / RGB / RGBA from the shape; RGBA is flattened below.
    image = Image.fromarray(np.ascontiguousarray(array))
    return _finish(image, None)


# ----- step 3: the same finishing for every source -----------------------------------


def _finish(image: Image.Image, note: str | None) -> Image.Image:
    """Apply EXIF orientation, convert to RGB and attach the note (new image)."""
    result = _to_rgb(_upright(image))
    if result is image:  # cannot happen today (convert() copies); guard the promise
        result = image.copy()
    # A fresh info dict: downstream code needs no metadata, and EXIF may hold
    # private data (GPS position, camera serial number).
    result.info = {"vqa_note": note} if note else {}
    return result


def _upright(image: Image.Image) -> Image.Image:
    """Rotate/flip as the EXIF Orientation tag says; ignore an unreadable EXIF block."""
    try:
        return ImageOps.exif_transpose(image)
    except Exception:
        # EXIF is a small TIFF file inside the image, parsed from untrusted bytes;
        # a broken one raises almost anything. A photo the wrong way round is far
        # better than no answer, so we fall back to the pixels as stored.
        return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Convert any Pillow mode to RGB without clipping 16-bit data or showing hidden pixels."""
    try:
        if image.mode in _HIGH_BIT_DEPTH_MODES:
            return _to_8bit_gray(image).convert("RGB")
        if image.mode == "La":  # premultiplied; Pillow can only convert it via LA
            image = image.convert("LA")
        # "transparency" in info: palette, grey or RGB PNGs/GIFs with one
        # transparent colour or a palette alpha table.
        if image.mode in _ALPHA_MODES or "transparency" in image.info:
            rgba = image.convert("RGBA")
            background = Image.new("RGBA", rgba.size, ALPHA_BACKGROUND + (255,))
            return Image.alpha_composite(background, rgba).convert("RGB")
        return image.convert("RGB")  # 1, L, P, CMYK, YCbCr, RGB (a copy)...
    except InputError:
        raise  # already explained (InputError is a ValueError, so let it through first)
    except (ValueError, OSError) as exc:
        raise InputError(f"Images in colour mode {image.mode!r} are not supported.") from exc


def _to_8bit_gray(image: Image.Image) -> Image.Image:
    """Scale a 16-bit, 32-bit integer or float image to 8-bit grey ("L").

    Pillow's plain ``convert("L")`` *clips* these (every value above 255 becomes
    white), which turns a normal 16-bit photo into a white rectangle.
    """
    if image.mode.startswith("I;16"):
        low, high = 0, 65535  # the bit depth is known: use the full 16-bit range
        image = image.convert("I")
    else:
        low, high = image.getextrema()
        finite = math.isfinite(low) and math.isfinite(high)
        if finite and image.mode == "F" and np is not None:
            # getextrema() skips a NaN unless it is the first value, so look at every value.
            finite = bool(np.isfinite(np.asarray(image)).all())
        if not finite:
            raise InputError("The image contains NaN or infinite values.")
        # Modes I and F do not say which range they use, so we infer it from the
        # values, trying the common conventions first and stretching otherwise.
        if image.mode == "F" and 0 <= low and high <= 1:
            low, high = 0, 1  # float images in [0, 1]
        elif 0 <= low and high <= 255:
            low, high = 0, 255  # already 8-bit values
        elif 0 <= low and high <= 65535:
            low, high = 0, 65535  # 16-bit values (how older Pillow opened 16-bit PNGs)
        elif high == low:
            low, high = low - 1, high  # a constant image: avoid dividing by zero
    scale = 255 / (high - low)
    offset = -low * scale + 0.5  # + 0.5 rounds instead of truncating
    # For I and F images point() accepts exactly this "x * scale + offset" form.
    return image.point(lambda value: value * scale + offset).convert("L")


# ----- questions ---------------------------------------------------------------------

# Format characters that carry meaning in real text and must be kept: the zero-width
# (non-)joiners shape Persian, Arabic and Indic words and glue emoji together.
_KEEP_FORMAT_CHARS = frozenset("\u200c\u200d")


def clean_question(question: Any, *, max_chars: int = MAX_QUESTION_CHARS) -> str:
    """Return `question` tidied up, or raise :class:`InputError`.

    * must be a ``str``;
    * control and other invisible characters (Unicode categories ``C*``) are
      removed, except that tabs and line breaks become spaces and the
      zero-width (non-)joiners that real scripts need are kept;
    * Unicode NFC normalisation, so "é" typed two ways is one string;
    * runs of whitespace become one space, ends are stripped;
    * empty, or with no letter or digit in any script (only punctuation, emoji
      or zero-width joiners) -> "Please type a question."; longer than
      `max_chars` -> error.

    Any script is welcome: "这是什么颜色？" comes back unchanged.
    """
    if not isinstance(question, str):
        raise InputError(f"The question must be text, not {type(question).__name__}.")
    # Bound the work for absurd inputs (a megabyte pasted into the API) before
    # walking the string character by character.
    if len(question) > 100 * max_chars:
        raise _too_long(len(question), max_chars)

    kept = []
    for char in question:
        category = unicodedata.category(char)
        if char.isspace():
            kept.append(" ")  # tab, newline, no-break space... (collapsed below)
        elif category[0] != "C" or char in _KEEP_FORMAT_CHARS:
            kept.append(char)
        # else: drop NUL, escape codes, bidi overrides, zero-width spaces, lone
        # surrogates (which cannot even be encoded as UTF-8), private use...
    # NFC *after* removing controls: a removed character could otherwise leave a
    # letter and an accent side by side that NFC would combine.
    text = unicodedata.normalize("NFC", "".join(kept))
    text = " ".join(text.split())

    if not any(unicodedata.category(char)[0] in "LN" for char in text):
        # Nothing a model could read: answering "???" confidently teaches the wrong lesson.
        raise InputError("Please type a question." + (" It needs at least one word." if text else ""))
    if len(text) > max_chars:
        # We reject rather than truncate: cutting a question silently can change its
        # meaning ("Is there a dog that is not ..."), and the user could not tell.
        raise _too_long(len(text), max_chars)
    return text


def _too_long(n_chars: int, max_chars: int) -> InputError:
    return InputError(
        f"The question is {n_chars} characters long; the limit is {max_chars}. "
        "Please shorten it."
    )
