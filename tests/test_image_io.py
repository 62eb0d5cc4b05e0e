"""Tests for vqa.image_io: every bad input ends in InputError, every good one in RGB.

All fixture images are generated here with Pillow (or by hand, for files Pillow
will not write), mostly a few pixels large, so the whole file runs in seconds.
"""

from __future__ import annotations

import base64
import io
import re
import struct
import subprocess
import sys
import textwrap
import tracemalloc
import unicodedata
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, ImageFile, ImageOps

# The repository root is not installed as a package; make `import vqa` work when
# pytest is started from anywhere (a root conftest.py would make this redundant).
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from vqa import image_io  # noqa: E402
from vqa.errors import InputError  # noqa: E402
from vqa.image_io import (  # noqa: E402
    ANIMATED_NOTE,
    MAX_QUESTION_CHARS,
    clean_question,
    load_image,
)

WHITE = (255, 255, 255)  # what shows where a picture is transparent
UNREADABLE = re.escape("This file is not a readable image (PNG, JPEG, WEBP, GIF or BMP).")


# ----- helpers -------------------------------------------------------------------------


def encode(image: Image.Image, fmt: str, **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def noise(size=(32, 32), mode="RGB", seed=0) -> Image.Image:
    """Random pixels: they do not compress, so a truncated file really lacks data."""
    rng = np.random.default_rng(seed)
    channels = len(mode)
    return Image.fromarray(rng.integers(0, 256, (size[1], size[0], channels), dtype=np.uint8))


def png_chunk(tag: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))


def png_bomb(width: int, height: int) -> bytes:
    """A valid, all-black 1-bit PNG of width x height, built row by row.

    Pillow would need width*height bytes of memory just to *create* such an image
    (144 MB for 12000x12000), so we write the file by hand: one zlib stream fed the
    same all-zero row `height` times. 12000x12000 compresses to about 17 KB.
    """
    row = b"\x00" * (1 + (width + 7) // 8)  # filter byte + packed 1-bit pixels
    compressor = zlib.compressobj(9)
    idat = b"".join(compressor.compress(row) for _ in range(height)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)  # 1-bit greyscale
    return (
        b"\x89PNG\r\n\x1a\n"
        + png_chunk(b"IHDR", header)
        + png_chunk(b"IDAT", idat)
        + png_chunk(b"IEND", b"")
    )


def psd_file() -> bytes:
    """A valid 2x2 red RGB Photoshop file (Pillow reads PSD but cannot write it)."""
    header = b"8BPS" + struct.pack(">H6xHIIHH", 1, 3, 2, 2, 8, 3)  # v1, 3 channels, 2x2, 8 bit, RGB
    sections = struct.pack(">III", 0, 0, 0)  # colour mode data, resources, layers: empty
    pixels = struct.pack(">H", 0) + bytes([255] * 4 + [0] * 4 + [0] * 4)  # raw planar R, G, B
    return header + sections + pixels


def data_url(data: bytes, media_type="image/png") -> str:
    return f"data:{media_type};base64," + base64.b64encode(data).decode("ascii")


def assert_rgb(image: Image.Image) -> None:
    assert isinstance(image, Image.Image)
    assert image.mode == "RGB"
    assert min(image.size) >= 2


def close_to(actual, expected, tolerance=2) -> bool:
    return all(abs(a - e) <= tolerance for a, e in zip(actual, expected))


@pytest.fixture(scope="module")
def bomb_path(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("bad") / "bomb.png"
    path.write_bytes(png_bomb(12000, 12000))  # 144 megapixels
    return path


# ----- module contract -----------------------------------------------------------------


def test_loading_leaves_pillows_global_state_as_it_was(bomb_path):
    """The loader must not switch on "decode whatever is there" for the whole process, nor change Pillow's
    global bomb limit that other libraries rely on, whatever it was given. (The limits themselves are
    pinned by the messages a user reads: test_oversized_file_rejected_from_its_size_without_reading_it,
    test_pixel_cap_is_checked_from_the_header, test_question_cleaning.py.)"""
    before = (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS)
    data = encode(noise((64, 64)), "PNG")
    for source, kwargs in ((data[: len(data) // 2], {}), (bomb_path, {}), (bomb_path, {"max_pixels": 10**9}), (data, {})):
        try:
            load_image(source, **kwargs)
        except InputError:
            pass
    assert (ImageFile.LOAD_TRUNCATED_IMAGES, Image.MAX_IMAGE_PIXELS) == before == (False, int(1024 * 1024 * 1024 // 4 // 3))
    assert issubclass(InputError, ValueError)  # a caller catching ValueError also catches every refusal


# ----- sources ---------------------------------------------------------------------------


def test_all_source_kinds_give_the_same_image(tmp_path):
    original = noise((8, 6))
    png = encode(original, "PNG")
    path = tmp_path / "ok.png"
    path.write_bytes(png)
    sources = [
        original,
        str(path),
        path,
        png,
        bytearray(png),
        memoryview(png),
        data_url(png),
        np.asarray(original),
        {"path": str(path)},
        {"path": path, "url": None, "orig_name": "ok.png", "meta": {"_type": "gradio.FileData"}},
        {"path": None, "url": data_url(png)},
    ]
    for source in sources:
        image = load_image(source)
        assert_rgb(image)
        assert image.size == (8, 6)
        assert image.tobytes() == original.tobytes(), type(source)
        assert image.info == {}


@pytest.mark.parametrize(
    "source, message",
    [
        (None, "No image was given"),
        (42, "Cannot read an image from a int"),
        ([1, 2, 3], "Cannot read an image from a list"),
        ("", "No image was given"),
        ({}, "no usable 'path' or 'url'"),
        ({"path": {"nested": "x"}}, "no usable 'path' or 'url'"),
        ("https://example.com/cat.png", "not downloaded from web addresses"),
        ({"url": "http://localhost/cat.png"}, "not downloaded from web addresses"),
        (b"", "empty"),
        ("no/such/file.png", "There is no file called 'file.png'"),
        ("bad\x00name.png", "cannot be opened"),
    ],
)
def test_bad_sources(source, message):
    with pytest.raises(InputError, match=message):
        load_image(source)


def test_folder_is_not_an_image(tmp_path):
    with pytest.raises(InputError, match="is a folder"):
        load_image(tmp_path)


# ----- size limits, checked before the expensive step ----------------------------------


def test_oversized_file_rejected_from_its_size_without_reading_it(tmp_path):
    path = tmp_path / "huge.png"
    with open(path, "wb") as handle:
        handle.truncate(11_000_000)  # sparse: takes no disk space or time to create
    tracemalloc.start()
    try:
        with pytest.raises(InputError) as caught:
            load_image(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert str(caught.value) == "The image file is 11 MB; the limit is 10 MB."
    assert peak < 1_000_000  # the 11 MB were never read


def test_size_just_over_the_limit_is_not_shown_as_the_limit():
    with pytest.raises(InputError, match=r"is 10\.1 MB; the limit is 10 MB"):
        load_image(b"x" * 10_000_001)


def test_oversized_bytes_and_custom_limit():
    png = encode(noise((8, 8)), "PNG")
    with pytest.raises(InputError, match="the limit is"):
        load_image(png, max_bytes=len(png) - 1)
    assert_rgb(load_image(png, max_bytes=len(png)))


def test_data_url_size_is_checked_before_decoding():
    # Not valid base64 at all: if the size check came second, the message would
    # complain about base64 instead.
    url = "data:image/png;base64," + "!" * 4000
    with pytest.raises(InputError, match="The image file is .* MB; the limit is 0.001 MB"):
        load_image(url, max_bytes=1000)


def test_data_url_variants():
    png = encode(noise((4, 4)), "PNG")
    encoded = base64.b64encode(png).decode()
    wrapped = "\n".join(textwrap.wrap(encoded, 76))
    assert_rgb(load_image("data:image/png;base64," + wrapped))  # MIME line breaks
    assert_rgb(load_image("  DATA:image/png;base64," + encoded.rstrip("=") + "  "))  # no padding
    with pytest.raises(InputError, match="valid base64"):
        load_image("data:image/png;base64,@@@@not*base64@@@@")
    with pytest.raises(InputError, match="valid base64"):
        load_image("data:image/png;base64,ÄÖÜ=")
    with pytest.raises(InputError, match="Only base64"):
        load_image("data:image/png,%89PNG")
    with pytest.raises(InputError, match="malformed"):
        load_image("data:image/png;base64")
    with pytest.raises(InputError, match=UNREADABLE):  # valid base64, not an image
        load_image(data_url(b"hello world", "text/plain"))


def test_pixel_cap_is_checked_from_the_header(tmp_path):
    # 6000x6000 = 36 MP: above our 25 MP cap, below Pillow's own ~89 MP warning.
    path = tmp_path / "big.png"
    path.write_bytes(png_bomb(6000, 6000))
    with pytest.raises(InputError, match=r"6000×6000 pixels \(36 megapixels\); the limit is 25"):
        load_image(path)
    with pytest.raises(InputError, match="the limit is 0.0001 megapixels"):
        load_image(noise((20, 20)), max_pixels=100)  # PIL inputs are capped too


def test_decompression_bomb_rejected_with_bounded_python_memory(bomb_path):
    assert bomb_path.stat().st_size < 20_000  # 17 KB on disk, 144 MP when decoded
    tracemalloc.start()
    try:
        with pytest.raises(InputError, match="megapixels"):
            load_image(bomb_path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 2_000_000


def test_bomb_still_rejected_when_caller_raises_the_cap(bomb_path):
    # 144 MP is above Pillow's warning threshold (~89 MP): the loader turns that
    # DecompressionBombWarning into an error, locally, without leaking the filter.
    filters_before = list(warnings.filters)
    with pytest.raises(InputError, match="too large to decode safely"):
        load_image(bomb_path, max_pixels=10**9)
    assert warnings.filters == filters_before


@pytest.mark.skipif(sys.platform != "linux", reason="ru_maxrss is in kB on Linux only")
def test_decompression_bomb_peak_memory_in_a_fresh_process(bomb_path):
    # tracemalloc does not see Pillow's C allocations, so measure the real peak
    # resident memory of a fresh interpreter. Decoding the bomb would take at
    # least 144 MB (432 MB as RGB); rejecting it from the header takes ~nothing.
    script = textwrap.dedent(
        f"""
        import resource, sys
        sys.path.insert(0, {str(ROOT)!r})
        from vqa.errors import InputError
        from vqa.image_io import load_image
        before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        try:
            load_image({str(bomb_path)!r})
        except InputError:
            pass
        else:
            sys.exit("the bomb was accepted")
        after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        print((after - before) * 1024)
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout.strip()) < 50_000_000


def test_webp_bomb_rejected(tmp_path):
    # An animated WebP whose canvas header was patched to 6000x6000.
    frames = [Image.new("RGB", (2, 2), colour) for colour in ("red", "blue")]
    data = bytearray(
        encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], lossless=True)
    )
    vp8x = data.index(b"VP8X") + 8  # chunk payload: 4 bytes flags, 3 width-1, 3 height-1
    data[vp8x + 4 : vp8x + 10] = (5999).to_bytes(3, "little") * 2
    with pytest.raises(InputError, match="6000×6000"):
        load_image(bytes(data))


# ----- unreadable and forbidden files --------------------------------------------------


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_truncated_files(tmp_path, fmt):
    data = encode(noise((64, 64)), fmt)
    path = tmp_path / f"cut.{fmt.lower()}"
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(InputError, match=UNREADABLE):
        load_image(path)
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_text_renamed_png(tmp_path):
    path = tmp_path / "notes.png"
    path.write_text("This is not an image.\n" * 10)
    with pytest.raises(InputError, match=UNREADABLE):
        load_image(path)


def test_formats_outside_the_allowed_list_are_not_parsed(tmp_path):
    tiff = encode(Image.new("RGB", (4, 4), "red"), "TIFF")
    psd = psd_file()
    ico = encode(Image.new("RGB", (16, 16), "red"), "ICO")
    for name, data in (("x.tiff", tiff), ("x.psd", psd), ("x.ico", ico)):
        assert Image.open(io.BytesIO(data)).size  # Pillow itself *could* read them
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(InputError, match=UNREADABLE):
            load_image(path)


def test_every_allowed_format_loads():
    image = Image.new("RGB", (6, 4), (200, 30, 30))
    for fmt in image_io.ALLOWED_FORMATS:
        loaded = load_image(encode(image, fmt))
        assert_rgb(loaded)
        assert loaded.size == (6, 4)
        assert close_to(loaded.getpixel((3, 2)), (200, 30, 30), tolerance=12), fmt


# ----- geometry ---------------------------------------------------------------------------


def test_tiny_images():
    with pytest.raises(InputError, match=r"1×1 pixels; it must be at least 2×2"):
        load_image(encode(Image.new("RGB", (1, 1)), "PNG"))
    with pytest.raises(InputError, match="at least 2×2"):
        load_image(Image.new("RGB", (5, 1)))
    assert load_image(Image.new("RGB", (2, 2))).size == (2, 2)


def test_extreme_aspect_ratio():
    assert load_image(Image.new("RGB", (100, 2))).size == (100, 2)  # exactly 50:1 is fine
    with pytest.raises(InputError, match="more than 50 times"):
        load_image(encode(Image.new("RGB", (102, 2)), "PNG"))
    with pytest.raises(InputError, match="more than 50 times"):
        load_image(np.zeros((510, 10), dtype=np.uint8))


# ----- colour modes -------------------------------------------------------------------------


def pixel_image(mode: str, value, size=(4, 4)) -> Image.Image:
    return Image.new(mode, size, value)


@pytest.mark.parametrize(
    "image, expected",
    [
        (pixel_image("RGBA", (0, 0, 0, 0)), WHITE),  # transparent black -> white
        (pixel_image("RGBA", (255, 0, 0, 255)), (255, 0, 0)),
        (pixel_image("RGBA", (0, 0, 255, 128)), (127, 127, 255)),  # half-transparent blue
        (pixel_image("LA", (0, 0)), WHITE),
        (pixel_image("LA", (90, 255)), (90, 90, 90)),
        (pixel_image("CMYK", (0, 0, 0, 0)), (255, 255, 255)),
        (pixel_image("CMYK", (255, 0, 0, 0)), (0, 255, 255)),
        (pixel_image("I;16", 32896), (128, 128, 128)),  # 16-bit mid-grey stays mid-grey
        (pixel_image("I;16", 65535), (255, 255, 255)),
        (pixel_image("I;16", 1000), (4, 4, 4)),  # dark, not clipped to white
        (pixel_image("I", 40000), (156, 156, 156)),  # 16-bit values in a 32-bit image
        (pixel_image("I", 100), (100, 100, 100)),  # 8-bit values in a 32-bit image
        (pixel_image("F", 0.5), (128, 128, 128)),  # float in [0, 1]
        (pixel_image("1", 1), (255, 255, 255)),
        (pixel_image("L", 77), (77, 77, 77)),
        (pixel_image("RGBa", (0, 0, 0, 0)), WHITE),
    ],
    ids=lambda x: x.mode if isinstance(x, Image.Image) else "",
)
def test_modes_from_pil_images(image, expected):
    before = (image.mode, image.size, image.tobytes(), dict(image.info))
    result = load_image(image)
    assert_rgb(result)
    assert result is not image
    assert close_to(result.getpixel((0, 0)), expected, tolerance=1), result.getpixel((0, 0))
    assert (image.mode, image.size, image.tobytes(), dict(image.info)) == before  # untouched


def test_palette_images_with_and_without_transparency():
    plain = Image.new("P", (4, 4), 1)
    plain.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    assert load_image(encode(plain, "PNG")).getpixel((0, 0)) == (10, 200, 30)

    transparent = Image.new("P", (4, 4), 0)  # index 0 is black *and* transparent
    transparent.putpalette([0, 0, 0, 10, 200, 30] + [0] * 762)
    transparent.putpixel((1, 1), 1)
    for fmt in ("PNG", "GIF"):
        loaded = load_image(encode(transparent, fmt, transparency=0))
        assert loaded.getpixel((0, 0)) == WHITE, fmt
        assert loaded.getpixel((1, 1)) == (10, 200, 30), fmt


@pytest.mark.parametrize(
    "image, fmt, expected",
    [
        (pixel_image("RGBA", (0, 0, 0, 0)), "PNG", WHITE),
        (pixel_image("LA", (0, 0)), "PNG", WHITE),
        (pixel_image("I;16", 32896), "PNG", (128, 128, 128)),  # a real 16-bit PNG
        (pixel_image("1", 1), "PNG", (255, 255, 255)),
        (pixel_image("1", 0), "BMP", (0, 0, 0)),
        (pixel_image("L", 77), "PNG", (77, 77, 77)),
        (pixel_image("CMYK", (0, 0, 0, 0)), "JPEG", (255, 255, 255)),
        (pixel_image("RGBA", (0, 0, 0, 0)), "WEBP", WHITE),
    ],
    ids=lambda x: x if isinstance(x, str) else (x.mode if isinstance(x, Image.Image) else ""),
)
def test_modes_from_files(image, fmt, expected):
    data = encode(image, fmt, **({"lossless": True} if fmt == "WEBP" else {}))
    result = load_image(data)
    assert_rgb(result)
    assert close_to(result.getpixel((0, 0)), expected, tolerance=2), result.getpixel((0, 0))


def test_rgb_png_with_transparent_colour_key():
    image = Image.new("RGB", (4, 4), (0, 0, 0))
    image.putpixel((1, 1), (255, 0, 0))
    result = load_image(encode(image, "PNG", transparency=(0, 0, 0)))
    assert result.getpixel((0, 0)) == WHITE
    assert result.getpixel((1, 1)) == (255, 0, 0)


def test_lazily_opened_damaged_pil_image(tmp_path):
    data = encode(noise((64, 64)), "PNG")
    lazy = Image.open(io.BytesIO(data[: len(data) // 2]))  # header fine, pixels missing
    with pytest.raises(InputError, match=UNREADABLE):
        load_image(lazy)


def test_float_image_with_nan_is_rejected():
    with pytest.raises(InputError, match="NaN"):
        load_image(pixel_image("F", float("nan")))


# ----- animation and orientation --------------------------------------------------------


@pytest.mark.parametrize("fmt", ["GIF", "WEBP", "PNG"])  # PNG = APNG
def test_animated_image_gives_first_frame_and_a_note(fmt):
    colours = ((255, 0, 0), (0, 255, 0), (0, 0, 255))
    frames = [Image.new("RGB", (8, 8), colour) for colour in colours]
    extra = {"lossless": True} if fmt == "WEBP" else {}
    data = encode(frames[0], fmt, save_all=True, append_images=frames[1:], duration=100, **extra)
    result = load_image(data)
    assert_rgb(result)
    assert close_to(result.getpixel((4, 4)), (255, 0, 0), tolerance=2)
    assert result.info["vqa_note"] == ANIMATED_NOTE == "Animated image: the first frame was used."
    # A still image carries no note.
    assert "vqa_note" not in load_image(encode(frames[1], fmt)).info


def test_exif_orientation_is_applied():
    # Stored 40 wide x 20 high, left half red, right half blue; orientation 6 means
    # "rotate 90° clockwise to display", so upright it is 20x40 with red on top.
    stored = Image.new("RGB", (40, 20), (0, 0, 255))
    stored.paste((255, 0, 0), (0, 0, 20, 20))
    exif = Image.Exif()
    exif[0x0112] = 6
    result = load_image(encode(stored, "JPEG", exif=exif.tobytes(), quality=95))
    assert result.size == (20, 40)
    assert close_to(result.getpixel((10, 5)), (255, 0, 0), tolerance=40)
    assert close_to(result.getpixel((10, 35)), (0, 0, 255), tolerance=40)
    assert result.info == {}  # EXIF (possibly with GPS data) is not passed on


def malformed_exif() -> bytes:
    """Orientation 6 plus a RowsPerStrip tag stored as text: Pillow reads the
    orientation, rotates, then fails (struct.error) re-writing the EXIF block."""
    entries = [
        struct.pack(">HHI", 0x0112, 3, 1) + struct.pack(">HH", 6, 0),  # Orientation, SHORT
        struct.pack(">HHI", 0x0116, 2, 4) + b"Cam\x00",  # RowsPerStrip as ASCII
    ]
    ifd = struct.pack(">H", len(entries)) + b"".join(entries) + b"\0\0\0\0"
    return b"Exif\x00\x00MM\x00*" + struct.pack(">I", 8) + ifd


@pytest.mark.parametrize(
    "exif",
    [
        malformed_exif(),
        b"Exif\x00\x00garbage!",
        b"Exif\x00\x00II*\x00\xff\xff\xff\x7f",  # first IFD far past the end
        b"Exif\x00\x00MM\x00*\x00\x00\x00\x08\xff\xff",  # 65535 entries, none present
    ],
)
def test_malformed_exif_never_crashes(exif):
    data = encode(Image.new("RGB", (8, 4), "red"), "JPEG", exif=exif)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow warns "Corrupt EXIF data"
        result = load_image(data)
    assert_rgb(result)
    assert result.size in ((8, 4), (4, 8))
    assert close_to(result.getpixel((1, 1)), (255, 0, 0), tolerance=40)  # the picture itself, not a blank stand-in


def test_exif_failure_falls_back_to_unrotated_image(monkeypatch):
    def broken(image, **kwargs):
        raise struct.error("unpack requires a buffer of 4 bytes")

    monkeypatch.setattr(ImageOps, "exif_transpose", broken)
    result = load_image(Image.new("RGB", (8, 4), "red"))
    assert result.size == (8, 4)


# ----- NumPy arrays ----------------------------------------------------------------------


def test_numpy_arrays():
    grey = np.full((4, 6), 90, dtype=np.uint8)
    assert load_image(grey).getpixel((0, 0)) == (90, 90, 90)
    assert load_image(grey[:, :, None]).size == (6, 4)  # HxWx1
    rgb = np.zeros((4, 6, 3), dtype=np.uint8)
    rgb[..., 0] = 200
    assert load_image(rgb).getpixel((5, 3)) == (200, 0, 0)
    rgba = np.zeros((4, 6, 4), dtype=np.uint8)  # fully transparent black
    assert load_image(rgba).getpixel((0, 0)) == WHITE
    assert load_image(np.full((4, 6, 3), 0.5)).getpixel((0, 0)) == (128, 128, 128)
    assert load_image(np.full((4, 6), 0.5, dtype=np.float32)).getpixel((0, 0)) == (128, 128, 128)
    assert load_image(np.ones((4, 6), dtype=bool)).getpixel((0, 0)) == (255, 255, 255)
    assert load_image(np.full((4, 6), 30, dtype=np.int64)).getpixel((0, 0)) == (30, 30, 30)
    assert load_image(rgb[:, ::2]).size == (3, 4)  # a non-contiguous view


def test_numpy_result_does_not_share_memory():
    array = np.zeros((4, 4, 3), dtype=np.uint8)
    image = load_image(array)
    array[:] = 255
    assert image.getpixel((0, 0)) == (0, 0, 0)


@pytest.mark.parametrize(
    "array, message",
    [
        (np.zeros((4, 4, 2), dtype=np.uint8), "shape"),
        (np.zeros((2, 4, 4, 3), dtype=np.uint8), "shape"),
        (np.zeros(16, dtype=np.uint8), "shape"),
        (np.full((4, 4), 2.0), "between 0 and 1"),
        (np.full((4, 4), -0.1), "between 0 and 1"),
        (np.full((4, 4), np.nan), "NaN"),
        (np.full((4, 4), 300, dtype=np.int32), "between 0 and 255"),
        (np.zeros((4, 4), dtype=np.complex64), "type complex64"),
        (np.array([["a", "b"], ["c", "d"]]), "type <U1"),
        (np.zeros((0, 0), dtype=np.uint8), "at least 2×2"),
        (np.zeros((6000, 5000), dtype=np.bool_), "megapixels"),
    ],
)
def test_bad_numpy_arrays(array, message):
    with pytest.raises(InputError, match=message):
        load_image(array)


# ----- questions -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("What colour is the car?", "What colour is the car?"),
        ("  what\tcolour\nis   the\r\ncar?  ", "what colour is the car?"),
        ("what\x00 is\x1b[31m this\x7f?", "what is[31m this?"),
        ("is \u202eit\u200b red?", "is it red?"),  # bidi override, zero-width space
        ("cafe\u0301?", "café?"),  # NFC: e + combining accent -> é
        ("这是什么颜色？", "这是什么颜色？"),
        ("ما لون السيارة؟", "ما لون السيارة؟"),
        ("می\u200cخواهم", "می\u200cخواهم"),  # Persian keeps its zero-width non-joiner
        ("how many 👨\u200d👩\u200d👧?", "how many 👨\u200d👩\u200d👧?"),
        ("lone \ud800 surrogate?", "lone surrogate?"),
        ("\u00a0non-breaking\u3000spaces\u2028", "non-breaking spaces"),
    ],
)
def test_clean_question(raw, expected):
    assert clean_question(raw) == expected


@pytest.mark.parametrize("raw", ["", "   ", "\t\n\r", "\x00\x01\u200b", "\u3000"])
def test_empty_questions(raw):
    with pytest.raises(InputError, match="^Please type a question.$"):
        clean_question(raw)


@pytest.mark.parametrize("raw", [None, 42, b"what?", ["what?"]])
def test_question_must_be_text(raw):
    with pytest.raises(InputError, match="must be text"):
        clean_question(raw)


def test_long_questions_are_rejected_not_truncated():
    assert len(clean_question("a" * 300)) == 300
    assert clean_question("  " + "a" * 300 + "  ") == "a" * 300  # padding does not count
    with pytest.raises(InputError, match="301 characters long; the limit is 300"):
        clean_question("a" * 301)
    with pytest.raises(InputError, match="10000 characters long; the limit is 300"):
        clean_question("a" * 10_000)
    with pytest.raises(InputError, match="the limit is 10"):
        clean_question("a" * 11, max_chars=10)
    with pytest.raises(InputError, match="characters long"):
        clean_question("x" * 5_000_000)  # rejected without walking all of it


# ----- property tests: only InputError ever escapes -------------------------------------


def seed_files() -> list[bytes]:
    small = noise((8, 8), mode="RGBA")
    frames = [Image.new("RGB", (8, 8), c) for c in ("red", "blue")]
    exif = Image.Exif()
    exif[0x0112] = 6
    return [
        encode(small, "PNG"),
        encode(small.convert("RGB"), "JPEG", exif=exif.tobytes()),
        encode(small, "WEBP"),
        encode(frames[0], "GIF", save_all=True, append_images=frames[1:]),
        encode(small.convert("RGB"), "BMP"),
        encode(Image.new("I;16", (8, 8), 300), "PNG"),
    ]


SEEDS = seed_files()


@st.composite
def image_like_bytes(draw) -> bytes:
    """Valid small images with random bytes written over, cut off or spliced in."""
    data = bytearray(draw(st.sampled_from(SEEDS)))
    for _ in range(draw(st.integers(1, 4))):
        start = draw(st.integers(0, len(data)))
        patch = draw(st.binary(max_size=8))
        action = draw(st.sampled_from(["overwrite", "insert", "truncate"]))
        if action == "overwrite":
            data[start : start + len(patch)] = patch
        elif action == "insert":
            data[start:start] = patch
        else:
            del data[start:]
    return bytes(data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(st.binary(max_size=256), image_like_bytes()))
def test_arbitrary_bytes_only_raise_input_error(data):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # Pillow's own "Corrupt EXIF" etc. warnings
        try:
            # A small pixel cap keeps a mutated header from making us decode
            # megapixels on every example; the bomb tests cover the default cap.
            image = load_image(data, max_pixels=1_000_000)
        except InputError:
            return
    assert image.mode == "RGB"
    assert min(image.size) >= 2


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.characters(exclude_categories=()), max_size=400))
def test_arbitrary_text_only_raises_input_error(text):
    try:
        cleaned = clean_question(text)
    except InputError:
        return
    assert 1 <= len(cleaned) <= MAX_QUESTION_CHARS
    assert cleaned == cleaned.strip() and "  " not in cleaned
    assert all(ch == " " or not ch.isspace() for ch in cleaned)
    assert all(
        unicodedata.category(ch)[0] != "C" or ch in "\u200c\u200d" for ch in cleaned
    )
    assert unicodedata.is_normalized("NFC", cleaned)
    assert clean_question(cleaned) == cleaned  # cleaning twice changes nothing
