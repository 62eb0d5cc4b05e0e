"""`vqa.image_io.load_image` to the letter: the exact message each refusal gets, the exact limits, and the
exact grey levels of 16-bit, 32-bit and float pictures.

`tests/test_image_io.py` checks the loader against hostile files with some tolerance; these tests pin
down what a user reads and sees, one pixel value or one character at a time. Everything is built in
memory and a few pixels large.
"""

from __future__ import annotations

import base64
import builtins
import io
import os
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from vqa import image_io
from vqa.errors import InputError
from vqa.image_io import ANIMATED_NOTE, load_image


def encode(image: Image.Image, fmt: str = "PNG", **params) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **params)
    return buffer.getvalue()


def png_of_length(remainder: int) -> bytes:
    """A valid PNG whose length leaves `remainder` when divided by 3 (how much base64 padding it gets)."""
    for width in range(2, 40):
        data = encode(Image.new("RGB", (width, 2), "red"))
        if len(data) % 3 == remainder:
            return data
    raise AssertionError("no PNG of that length")


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def refusal(source, **limits) -> str:
    with pytest.raises(InputError) as excinfo:
        load_image(source, **limits)
    return str(excinfo.value)


def grey_levels(image: Image.Image) -> list[int]:
    """The grey level of each pixel of the first row of the loaded picture."""
    loaded = load_image(image)
    assert loaded.mode == "RGB"
    return [loaded.getpixel((x, 0))[0] for x in range(loaded.width)]


def row(values, dtype) -> Image.Image:
    """A picture two rows high whose rows both hold `values`."""
    return Image.fromarray(np.array([values, values], dtype=dtype))


def png_header_claiming(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds almost nothing: Pillow refuses it from the header."""
    def chunk(tag: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data))

    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\x00\x00")) + chunk(b"IEND", b"")


# ----- what each refusal says ----------------------------------------------------------------------
def test_no_image_says_to_upload_one():
    assert refusal(None) == "No image was given. Please upload an image."


def test_an_empty_file_says_it_is_empty(tmp_path):
    (tmp_path / "empty.png").write_bytes(b"")
    assert refusal(tmp_path / "empty.png") == "The image file is empty (0 bytes)."
    assert refusal(b"") == "The image file is empty (0 bytes)."


def test_an_empty_file_name_says_no_image_was_given():
    assert refusal("   ") == "No image was given (the file name is empty)."


def test_a_web_address_says_to_upload_the_file_instead():
    assert refusal("https://example.com/cat.png") == (
        "Images are not downloaded from web addresses (the demo works offline). "
        "Save the image and upload the file instead."
    )


def test_a_named_pipe_is_not_a_regular_file(tmp_path):
    pipe = tmp_path / "pipe.png"
    os.mkfifo(pipe)
    assert refusal(pipe) == "'pipe.png' is not a regular file."


def test_the_root_folder_is_named_as_a_folder():
    assert refusal("/") == "'/' is a folder, not an image file."


def test_file_names_up_to_sixty_characters_are_shown_whole(tmp_path):
    name = "n" * 56 + ".png"
    assert refusal(tmp_path / name) == f"There is no file called '{name}'."


def test_longer_file_names_are_cut_to_sixty_characters(tmp_path):
    name = "a" * 53 + "bcdefgh.png"  # 64 characters
    assert refusal(tmp_path / name) == f"There is no file called '{'a' * 53}bcde...'."
    name = "a" * 57 + "bcd.png"  # 64 characters
    assert refusal(tmp_path / name) == f"There is no file called '{'a' * 57}...'."


def test_a_name_of_sixty_one_characters_is_cut(tmp_path):
    name = "x" * 57 + ".png"  # 61 characters
    assert refusal(tmp_path / name) == f"There is no file called '{'x' * 57}...'."


def failing_open(path, error: OSError):
    """builtins.open that raises `error` for `path` and opens everything else."""
    real_open = builtins.open

    def opener(file, *args, **kwargs):
        if str(file) == str(path):
            raise error
        return real_open(file, *args, **kwargs)

    return opener


def test_an_unreadable_file_says_permission_denied(tmp_path, monkeypatch):
    path = tmp_path / "locked.png"
    path.write_bytes(encode(Image.new("RGB", (4, 4))))

    monkeypatch.setattr(builtins, "open", failing_open(path, PermissionError(13, "Permission denied")))
    assert refusal(path) == "The file 'locked.png' cannot be read (permission denied)."


def test_a_file_that_fails_to_read_says_so(tmp_path, monkeypatch):
    path = tmp_path / "flaky.png"
    path.write_bytes(encode(Image.new("RGB", (4, 4))))

    monkeypatch.setattr(builtins, "open", failing_open(path, OSError(5, "Input/output error")))
    assert refusal(path) == "The file 'flaky.png' cannot be read."


def test_a_file_that_grows_while_read_is_refused_after_reading_one_byte_more(tmp_path, monkeypatch):
    """The read is bounded by the size checked before it, so a growing file never costs more memory."""
    path = tmp_path / "growing.png"
    data = encode(Image.new("RGB", (4, 4)))
    path.write_bytes(data)
    requested = []
    real_open = builtins.open

    class Growing(io.BytesIO):
        def read(self, size=-1):
            requested.append(size)
            return super().read(size)

    def growing(file, mode="r", *args, **kwargs):
        if str(file) == str(path):
            return Growing(data + b"\x00" * 1000)
        return real_open(file, mode, *args, **kwargs)

    monkeypatch.setattr(builtins, "open", growing)
    assert refusal(path) == "The file 'growing.png' changed while it was being read; please try again."
    assert requested == [len(data) + 1]


def test_a_dict_with_an_empty_path_uses_its_url():
    data = encode(Image.new("RGB", (4, 3), "blue"))
    loaded = load_image({"path": "", "url": "data:image/png;base64," + b64(data)})
    assert loaded.size == (4, 3) and loaded.getpixel((0, 0)) == (0, 0, 255)


@pytest.mark.parametrize("source", [{}, {"url": 5}, {"url": ""}, {"path": None, "url": None}])
def test_a_dict_without_a_usable_entry_says_so(source):
    assert refusal(source) == "The image dict has no usable 'path' or 'url' entry."


# ----- data: URLs ----------------------------------------------------------------------------------
def test_a_data_url_without_a_comma_is_malformed():
    assert refusal("data:image/png;base64") == "The data: URL is malformed (it has no comma before the data)."


def test_a_data_url_that_is_not_base64_is_refused():
    assert refusal("data:image/png,%89PNG") == "Only base64 data: URLs are supported ('data:image/png;base64,...')."


def test_a_data_url_without_a_media_type_still_loads():
    loaded = load_image("data:;base64," + b64(encode(Image.new("RGB", (5, 2), "green"))))
    assert loaded.size == (5, 2) and loaded.getpixel((0, 0)) == (0, 128, 0)


def test_a_stray_comma_in_the_data_is_invalid_base64():
    url = "data:image/png;base64," + b64(encode(Image.new("RGB", (4, 4)))) + ","
    assert refusal(url) == "The data: URL does not contain valid base64 data."


def test_a_character_outside_base64_is_refused_not_skipped():
    encoded = b64(encode(Image.new("RGB", (4, 4))))
    assert refusal("data:image/png;base64," + encoded[:8] + "!" + encoded[8:]) == (
        "The data: URL does not contain valid base64 data."
    )


@pytest.mark.parametrize("remainder", [0, 1, 2])
@pytest.mark.parametrize("padded", [True, False], ids=["padded", "unpadded"])
def test_a_data_url_of_exactly_the_limit_loads_and_one_byte_less_refuses(remainder, padded):
    """The size is worked out from the base64 text before decoding, to the byte, with or without '=' padding."""
    data = png_of_length(remainder)
    encoded = b64(data) if padded else b64(data).rstrip("=")
    url = "data:image/png;base64," + encoded
    assert load_image(url, max_bytes=len(data)).size == Image.open(io.BytesIO(data)).size
    assert refusal(url, max_bytes=len(data) - 1).startswith("The image file is ")


def test_a_memoryview_is_measured_in_bytes_not_items():
    data = encode(Image.new("RGB", (4, 4)))
    data += b"\x00" * (-len(data) % 4)
    words = memoryview(data).cast("I")
    assert refusal(words, max_bytes=len(data) - 1) == f"The image file is 0.1 MB; the limit is {(len(data) - 1) / 1_000_000:g} MB."
    assert load_image(words, max_bytes=len(data)).size == (4, 4)


# ----- pixel limits --------------------------------------------------------------------------------
def test_a_picture_of_exactly_the_pixel_limit_loads():
    assert load_image(Image.new("RGB", (10, 10)), max_pixels=100).size == (10, 10)
    assert refusal(Image.new("RGB", (10, 10)), max_pixels=99).startswith("The image is 10×10 pixels (0.0001 megapixels)")


def test_the_pixel_count_is_shown_in_megapixels_to_three_digits():
    assert refusal(Image.new("1", (1235, 1000)), max_pixels=1_000_000) == (
        "The image is 1235×1000 pixels (1.24 megapixels); the limit is 1 megapixels. Please use a smaller image."
    )


def test_a_decompression_bomb_is_refused_with_pillows_own_limit():
    assert refusal(png_header_claiming(20000, 20000)) == (
        "The image is too large to decode safely (it claims more than 89 megapixels)."  # Pillow's default limit
    )


def test_the_bomb_message_follows_pillows_limit_when_an_application_changes_it(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1_500_000)
    assert refusal(png_header_claiming(2000, 2000)) == (
        "The image is too large to decode safely (it claims more than 2 megapixels)."
    )


# ----- animations ----------------------------------------------------------------------------------
def gif_frames() -> bytes:
    frames = [Image.new("RGB", (6, 4), "red"), Image.new("RGB", (6, 4), "blue")]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def camera_jpeg() -> bytes:
    """A JPEG with a preview picture (MPO), as phone cameras write them: two frames, not an animation."""
    return encode(Image.new("RGB", (8, 8), "red"), "MPO", save_all=True, append_images=[Image.new("RGB", (8, 8), "blue")])


def test_an_opened_animation_passed_as_a_pil_image_gets_the_note():
    loaded = load_image(Image.open(io.BytesIO(gif_frames())))
    assert loaded.info == {"vqa_note": ANIMATED_NOTE} and loaded.getpixel((0, 0)) == (255, 0, 0)


def test_a_single_frame_pil_image_gets_no_note():
    assert load_image(Image.open(io.BytesIO(encode(Image.new("RGB", (6, 4)), "GIF")))).info == {}


def test_a_camera_jpeg_with_a_preview_is_not_an_animation():
    data = camera_jpeg()
    assert Image.open(io.BytesIO(data)).format == "MPO"
    assert load_image(data).info == {}
    assert load_image(Image.open(io.BytesIO(data))).info == {}


# ----- NumPy arrays --------------------------------------------------------------------------------
def test_a_colour_bool_array_is_black_and_white():
    array = np.zeros((2, 3, 3), dtype=bool)
    array[0, 0] = True
    loaded = load_image(array)
    assert loaded.getpixel((0, 0)) == (255, 255, 255) and loaded.getpixel((1, 0)) == (0, 0, 0)


def test_a_float_array_may_touch_both_ends_of_zero_to_one():
    assert grey_levels(np.array([[0.0, 0.5, 1.0], [0.0, 0.5, 1.0]])) == [0, 128, 255]


@pytest.mark.parametrize("values", [[-0.01, 0.5], [0.0, 1.01]])
def test_a_float_array_outside_zero_to_one_says_to_use_uint8(values):
    assert refusal(np.array([values, values])) == (
        "A float image array must have values between 0 and 1 (use uint8 for values 0..255)."
    )


def test_a_float_array_with_nan_says_so():
    assert refusal(np.array([[0.0, np.nan], [0.0, 0.0]])) == "The image array contains NaN or infinite values."


@pytest.mark.parametrize("dtype", [np.int64, np.int16, np.uint16])
def test_an_integer_array_may_touch_both_ends_of_zero_to_255(dtype):
    assert grey_levels(np.array([[0, 1, 254, 255]] * 2, dtype=dtype)) == [0, 1, 254, 255]


@pytest.mark.parametrize("values", [[-1, 5], [0, 256]])
def test_an_integer_array_outside_zero_to_255_is_refused(values):
    assert refusal(np.array([values, values], dtype=np.int32)) == "An integer image array must have values between 0 and 255."


# ----- colour modes --------------------------------------------------------------------------------
def test_a_premultiplied_grey_picture_is_laid_on_white():
    """Mode "La" stores grey already multiplied by alpha; Pillow converts it only through "LA"."""
    loaded = load_image(Image.new("La", (2, 2), (100, 128)))
    assert loaded.getpixel((0, 0)) == (227, 227, 227)


def test_a_mode_pillow_cannot_convert_names_the_mode():
    image = Image.new("P", (2, 2))
    image.info["transparency"] = (1, 2)
    assert refusal(image) == "Images in colour mode 'P' are not supported."


# ----- grey levels of 16-bit, 32-bit and float pictures --------------------------------------------
def test_16_bit_pictures_are_scaled_from_the_full_16_bit_range():
    assert grey_levels(row([0, 128, 129, 255, 32768, 33025, 65535], np.uint16)) == [0, 0, 1, 1, 128, 129, 255]


def test_a_dark_16_bit_picture_stays_dark():
    """Its bit depth is known, so values that would fit in 8 bits are still read as 16-bit ones."""
    assert grey_levels(row([0, 128, 129, 255], np.uint16)) == [0, 0, 1, 1]


def test_32_bit_pictures_of_8_bit_values_keep_their_values():
    assert grey_levels(row([0, 1, 128, 255], np.int32)) == [0, 1, 128, 255]


def test_32_bit_pictures_just_over_8_bit_values_are_read_as_16_bit():
    assert grey_levels(row([0, 256], np.int32)) == [0, 1]


def test_32_bit_pictures_of_16_bit_values_are_scaled_from_16_bits():
    assert grey_levels(row([0, 129, 300, 1000], np.int32)) == [0, 1, 1, 4]
    assert grey_levels(row([30000, 33025, 65535], np.int32)) == [117, 129, 255]


def test_32_bit_pictures_beyond_16_bits_are_stretched():
    assert grey_levels(row([0, 33025, 65536], np.int32)) == [0, 128, 255]
    assert grey_levels(row([0, 35000, 70000], np.int32)) == [0, 128, 255]


def test_negative_32_bit_pictures_are_stretched_from_their_own_range():
    assert grey_levels(row([-5, 0, 5], np.int32)) == [0, 128, 255]


def test_a_constant_picture_outside_every_range_is_white():
    assert grey_levels(row([-7, -7], np.int32)) == [255, 255]


def test_float_pictures_in_zero_to_one_use_that_range():
    assert grey_levels(row([0.0, 0.25, 0.5, 1.0], np.float32)) == [0, 64, 128, 255]


def test_float_pictures_beyond_one_are_read_as_8_bit():
    assert grey_levels(row([0.0, 2.0], np.float32)) == [0, 2]


def test_32_bit_pictures_of_zeros_and_ones_are_nearly_black():
    assert grey_levels(row([0, 1], np.int32)) == [0, 1]


def test_float_pictures_with_negative_values_are_stretched():
    assert grey_levels(row([-1.0, 0.0, 1.0], np.float32)) == [0, 128, 255]


@pytest.mark.parametrize("bad", [np.inf, -np.inf, np.nan])
@pytest.mark.parametrize("first", [True, False], ids=["first", "later"])
def test_float_pictures_with_a_nan_or_infinite_value_anywhere_are_refused(bad, first):
    values = [bad, 0.0, 0.5] if first else [0.0, 0.5, bad]
    assert refusal(row(values, np.float32)) == "The image contains NaN or infinite values."
