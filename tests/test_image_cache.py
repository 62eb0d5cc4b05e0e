"""The per-image encoding cache (`vqa/backbones/image_cache.py`): content keys and a bounded LRU.

A key must be equal for the same picture however it arrives and differ for anything that changes the
encoding; the cache must compute once per key, keep the most recently used entries and never hold more
than its bound.
"""

from __future__ import annotations

import gc
import weakref

import numpy as np
import pytest
from PIL import Image

from vqa.backbones import image_cache
from vqa.backbones.image_cache import ImageEncodingCache, image_key


def picture(seed=0, size=(6, 4), mode="RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = (size[1], size[0], 3) if mode == "RGB" else (size[1], size[0])
    return Image.fromarray(rng.integers(0, 256, channels, dtype=np.uint8)).convert(mode)


class CountingPicture:
    """Counts how often a picture's pixels are read for hashing."""

    def __init__(self, image: Image.Image):
        self.reads = 0
        original = image.tobytes

        def tobytes(*args, **kwargs):
            self.reads += 1
            return original(*args, **kwargs)

        image.tobytes = tobytes
        self.image = image


# ----- keys ----------------------------------------------------------------------------------------
def test_the_same_pixels_in_two_objects_share_a_key():
    assert image_key(picture(1)) == image_key(picture(1))


def test_different_pixels_get_different_keys():
    assert image_key(picture(1)) != image_key(picture(2))


def test_the_same_bytes_in_another_shape_get_another_key():
    wide = picture(3, size=(6, 4))
    tall = Image.frombytes("RGB", (4, 6), wide.tobytes())
    assert wide.tobytes() == tall.tobytes()
    assert image_key(wide) != image_key(tall)


def test_the_same_bytes_in_another_mode_get_another_key():
    grey = picture(4, size=(6, 4), mode="L")
    other = Image.frombytes("P", grey.size, grey.tobytes())
    assert image_key(grey) != image_key(other)


def test_what_else_the_encoding_depends_on_is_part_of_the_key():
    image = picture(5)
    assert image_key(image, "int8") != image_key(image, None)
    assert image_key(image, "int8") == image_key(picture(5), "int8")
    assert image_key(image, "int8", 224) != image_key(image, "int8", 384)


def test_a_key_is_hex_text_of_128_bits():
    key = image_key(picture(6))
    assert len(key) == 32 and int(key, 16) >= 0


def test_a_picture_object_is_hashed_once_per_kind_of_key():
    counting = CountingPicture(picture(7))
    first = image_key(counting.image, "int8")
    assert image_key(counting.image, "int8") == first and counting.reads == 1
    other = image_key(counting.image, None)
    assert other != first and counting.reads == 2
    assert image_key(counting.image, "int8") == first and image_key(counting.image, None) == other and counting.reads == 2


def test_a_collected_picture_is_forgotten():
    image = picture(8)
    image_key(image)
    identity = id(image)
    assert identity in image_cache._known_keys
    del image
    gc.collect()
    assert identity not in image_cache._known_keys


def test_a_new_picture_at_a_dead_pictures_address_is_hashed_afresh():
    """Python reuses ids; a key remembered for a collected picture must not be handed to its successor."""

    class Gone:
        pass

    gone = Gone()
    dead = weakref.ref(gone)
    del gone
    image = picture(9)
    label = f"{image.mode}:{image.size}:{()}"
    image_cache._known_keys[id(image)] = (dead, {label: "stale"})
    try:
        key = image_key(image)
        assert key != "stale" and key == image_key(picture(9))
        assert image_cache._known_keys[id(image)][0]() is image
    finally:
        image_cache._known_keys.pop(id(image), None)


def test_forgetting_an_unknown_picture_leaves_the_known_ones():
    counting = CountingPicture(picture(10))
    key = image_key(counting.image)
    known = dict(image_cache._known_keys)
    image_cache._forget(-1)  # an id no picture has: nothing to drop, and no error
    assert image_cache._known_keys == known
    assert image_key(counting.image) == key and counting.reads == 1  # still remembered: not hashed again


# ----- the LRU cache -------------------------------------------------------------------------------
def test_a_miss_computes_and_a_hit_returns_the_same_value():
    cache = ImageEncodingCache()
    calls = []
    first = cache.get_or_compute("a", lambda: calls.append("a") or object())
    assert cache.get_or_compute("a", lambda: calls.append("again") or object()) is first
    assert calls == ["a"] and (cache.misses, cache.hits) == (1, 1)
    cache.get_or_compute("a", lambda: calls.append("third") or object())
    assert calls == ["a"] and (cache.misses, cache.hits) == (1, 2)


def test_distinct_keys_do_not_collide():
    cache = ImageEncodingCache()
    assert cache.get_or_compute("a", lambda: 1) == 1
    assert cache.get_or_compute("b", lambda: 2) == 2
    assert cache.get_or_compute("a", lambda: 3) == 1 and len(cache) == 2


def test_the_cache_holds_at_most_its_bound_and_drops_the_oldest():
    cache = ImageEncodingCache(max_entries=2)
    for key in "abc":
        cache.get_or_compute(key, lambda key=key: key.upper())
    assert len(cache) == 2
    assert cache.get_or_compute("b", lambda: "recomputed") == "B"
    assert cache.get_or_compute("c", lambda: "recomputed") == "C"
    assert cache.get_or_compute("a", lambda: "recomputed") == "recomputed"


def test_using_an_entry_keeps_it_over_older_ones():
    cache = ImageEncodingCache(max_entries=2)
    cache.get_or_compute("a", lambda: "A")
    cache.get_or_compute("b", lambda: "B")
    cache.get_or_compute("a", lambda: "unused")
    cache.get_or_compute("c", lambda: "C")
    assert cache.get_or_compute("a", lambda: "recomputed") == "A"
    assert cache.get_or_compute("b", lambda: "recomputed") == "recomputed"


def test_the_default_bound_is_sixteen_entries():
    cache = ImageEncodingCache()
    for i in range(20):
        cache.get_or_compute(str(i), lambda i=i: i)
    assert len(cache) == 16
    assert cache.get_or_compute("4", lambda: "recomputed") == 4
    assert cache.get_or_compute("3", lambda: "recomputed") == "recomputed"


def test_a_value_computed_twice_at_once_counts_as_just_used():
    """Two callers may compute the same miss; the second to finish leaves the entry as the most recent."""
    cache = ImageEncodingCache(max_entries=2)
    cache.get_or_compute("a", lambda: "A")

    def slow_b():
        cache.get_or_compute("b", lambda: "B first")  # another caller finishes the same miss meanwhile
        cache.get_or_compute("a", lambda: "unused")  # and uses "a" after it
        return "B second"

    assert cache.get_or_compute("b", slow_b) == "B second"
    cache.get_or_compute("c", lambda: "C")
    assert cache.get_or_compute("b", lambda: "recomputed") == "B second"
    assert cache.misses == 4  # a, b twice, c


def test_clear_forgets_every_entry():
    cache = ImageEncodingCache()
    cache.get_or_compute("a", lambda: 1)
    cache.clear()
    assert len(cache) == 0
    assert cache.get_or_compute("a", lambda: 2) == 2


@pytest.mark.parametrize("bound", [1, 3])
def test_any_bound_is_kept(bound):
    cache = ImageEncodingCache(max_entries=bound)
    for i in range(bound + 2):
        cache.get_or_compute(i, lambda i=i: i)
        assert len(cache) == min(i + 1, bound)
