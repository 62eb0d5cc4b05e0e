"""A small LRU cache of per-image encodings, keyed by image content.

Encoding the image is the expensive half of answering. A user asks several
questions about one picture, the attention view re-asks the same one, and
the classifier and generative heads both need it: encode once, reuse.
The key is a hash of the pixels (not the object identity), so the same upload
arriving twice as two PIL objects still hits. Bounded by entry count so
resident memory stays flat on a long-running server.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from collections import OrderedDict
from typing import Any, Callable

from PIL import Image

# Keys already computed for a picture object: one request asks both heads and the domain check about
# the same loaded picture, and hashing a 25-megapixel one takes a noticeable fraction of a second.
# (PIL images cannot be dictionary keys, so the table goes by id and forgets a picture when it is collected.)
_known_keys: dict[int, tuple[weakref.ref, dict[str, str]]] = {}
_known_keys_lock = threading.Lock()


def _forget(image_id: int) -> None:
    with _known_keys_lock:
        _known_keys.pop(image_id, None)


def image_key(image: Image.Image, *parts: object) -> str:
    """Content hash of an image plus anything else the encoding depends on (computed once per picture object)."""
    label = f"{image.mode}:{image.size}:{parts}"
    with _known_keys_lock:
        entry = _known_keys.get(id(image))
        known = entry[1].get(label) if entry is not None and entry[0]() is image else None
    if known is not None:
        return known
    digest = hashlib.blake2b(digest_size=16)
    digest.update(label.encode())
    digest.update(image.tobytes())
    key = digest.hexdigest()
    with _known_keys_lock:
        entry = _known_keys.get(id(image))
        if entry is None or entry[0]() is not image:
            entry = (weakref.ref(image, lambda _, image_id=id(image): _forget(image_id)), {})
            _known_keys[id(image)] = entry
        entry[1][label] = key
    return key


class ImageEncodingCache:
    """Thread-safe LRU: `get_or_compute(key, fn)` runs `fn` only on a miss."""

    def __init__(self, max_entries: int = 16):
        self.max_entries = max_entries
        self._entries: OrderedDict[str, Any] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_compute(self, key: str, compute: Callable[[], Any]) -> Any:
        with self._lock:
            if key in self._entries:
                self._entries.move_to_end(key)
                self.hits += 1
                return self._entries[key]
        value = compute()  # outside the lock: two threads may compute the same miss, never block each other
        with self._lock:
            self.misses += 1
            self._entries[key] = value
            self._entries.move_to_end(key)
            while len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
        return value

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)
