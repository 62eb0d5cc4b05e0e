"""A gallery index: the ITC embeddings of a gallery's items in a faiss index, and what each one stands for.

On disk an index is a folder:

    INDEX/index.json      which model (embedding space) built it, the vector size, the number of items
    INDEX/vectors.faiss   faiss index of the L2-normalised vectors (inner product = cosine similarity)
    INDEX/images.jsonl    one line per vector, in order: {"path": the picture, relative to INDEX}

Paths are stored relative to the index folder, so an index and its pictures can move together. A build
is resumable: pictures already in the index are skipped, and the index is saved every `checkpoint_every`
pictures, so an interrupted build loses at most that many. Searching opens the vectors memory-mapped
(faiss reads pages on demand), so a gallery larger than memory can still be searched.

The search is exhaustive (every vector is scored, no approximate neighbours), over vectors stored as 16-bit
floats (faiss's fp16 scalar quantizer): half the memory of float32, and a single query reads half the bytes,
which is what bounds it (bench/results/retrieval.txt). Cosine similarities move by less than 1e-3.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
from PIL import Image

from vqa.errors import InputError, VQAError
from vqa.image_io import load_image
from vqa.settings import NumberSetting

if TYPE_CHECKING:
    from vqa.backbones.base import Backbone

#: How many hits a search may return.
SEARCH_TOP_K = NumberSetting("top_k", "The number of hits", default=10, minimum=1, maximum=100)
#: How many ITC hits the ITM head re-scores: each one is a full pass of the fusion layers with the query.
RERANK_CANDIDATES = NumberSetting("rerank_candidates", "The number of re-ranked candidates", default=16, minimum=1,
                                  maximum=SEARCH_TOP_K.maximum)

FORMAT = "vqa-gallery-index/1"
MANIFEST_FILE = "index.json"
VECTORS_FILE = "vectors.faiss"
ENTRIES_FILE = "images.jsonl"
#: Pictures embedded per forward pass while building: large enough to amortise the per-call overhead,
#: small enough to keep one batch's activations in a few tens of MB.
BUILD_BATCH = 64
#: Pictures between two saves of an index being built (what an interrupted build can lose).
CHECKPOINT_EVERY = 1024
#: The file names of the formats `vqa.image_io` decodes (ALLOWED_FORMATS).
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".webp", ".gif", ".bmp"}


def _faiss():
    """faiss, imported on first use: only retrieval needs it."""
    import faiss

    return faiss


def _empty_vectors(dimension: int):
    """An exhaustive inner-product index of fp16 vectors (the module docstring says why)."""
    faiss = _faiss()
    return faiss.IndexScalarQuantizer(dimension, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)


class GalleryIndex:
    """Unit vectors of a gallery's items in one model's ITC space, searched by inner product (cosine), and
    the item behind each vector: a picture file, a picture in memory, or a text.

    Build one with `from_images` / `from_texts` (in memory), `build_index` (a folder of pictures, on disk),
    or open a saved one with `open`; search it with `Backbone.search`.
    """

    def __init__(self, vectors, modality: str, model: str, embedding_space: str, paths: list[str | None] | None = None,
                 images: list[Image.Image | None] | None = None, texts: list[str] | None = None, folder: Path | None = None):
        self.vectors = vectors  # a faiss index of (count, dimension) unit vectors
        self.modality = modality  # "image" or "text": what the items are
        self.model = model  # the name of the model that embedded them, for messages
        self.embedding_space = embedding_space  # `Backbone.embedding_space()` of that model
        self.folder = folder  # where it is saved; stored paths are relative to it
        count = self.vectors.ntotal
        self.paths = paths if paths is not None else [None] * count
        self.images = images if images is not None else [None] * count
        self.texts = texts
        if len(self.paths) != count or len(self.images) != count or (texts is not None and len(texts) != count):
            raise ValueError("one item per vector")

    # ----- building ------------------------------------------------------------------
    @classmethod
    def empty(cls, backbone: "Backbone", modality: str, dimension: int) -> "GalleryIndex":
        """An index with no items yet, in `backbone`'s embedding space of `dimension` numbers."""
        return cls(_empty_vectors(dimension), modality, backbone.name, backbone.embedding_space(),
                   paths=[], images=[], texts=[] if modality == "text" else None)

    @classmethod
    def from_images(cls, backbone: "Backbone", images: list[Any], batch_size: int = BUILD_BATCH) -> "GalleryIndex":
        """An in-memory index of `images` (PIL images, paths, bytes, ...), embedded `batch_size` at a time."""
        if not images:
            raise InputError("The gallery is empty: give at least one picture.")
        index = None
        for start in range(0, len(images), batch_size):
            batch = images[start : start + batch_size]
            pictures = [load_image(image) for image in batch]
            vectors = backbone.embed_images(pictures)  # (b, D)
            if index is None:
                index = cls.empty(backbone, "image", vectors.shape[1])
            index.add(vectors, paths=[str(image) if isinstance(image, (str, os.PathLike)) else None for image in batch], images=pictures)
        return index

    @classmethod
    def from_texts(cls, backbone: "Backbone", texts: list[str], batch_size: int = BUILD_BATCH) -> "GalleryIndex":
        """An in-memory index of `texts` (captions, product descriptions...): a picture query finds the texts
        that describe it."""
        if not texts:
            raise InputError("The gallery is empty: give at least one text.")
        vectors = np.concatenate([backbone.embed_text(texts[i : i + batch_size]) for i in range(0, len(texts), batch_size)])  # (N, D)
        index = cls.empty(backbone, "text", vectors.shape[1])
        index.add(vectors, texts=list(texts))
        return index

    def add(self, vectors: np.ndarray, paths: list[str | None] | None = None, images: list | None = None,
            texts: list[str] | None = None) -> None:
        """Append (n, D) unit vectors and the items they stand for."""
        n = vectors.shape[0]
        self.vectors.add(np.ascontiguousarray(vectors, dtype=np.float32))
        self.paths += paths if paths is not None else [None] * n
        self.images += images if images is not None else [None] * n
        if self.texts is not None:
            self.texts += texts

    # ----- searching -----------------------------------------------------------------
    def __len__(self) -> int:
        return self.vectors.ntotal

    @property
    def dimension(self) -> int:
        return self.vectors.d

    def check_model(self, backbone: "Backbone") -> None:
        """InputError unless `backbone` embeds into the space this index was built in: vectors of two models
        have unrelated directions, so their similarities would be meaningless."""
        if backbone.embedding_space() != self.embedding_space:
            raise InputError(
                f"This gallery index was built with the model '{self.model}'; '{backbone.name}' embeds pictures and "
                f"texts differently, so its queries cannot be compared with the index. Search it with '{self.model}', "
                f"or build a new index with '{backbone.name}'."
            )

    def nearest(self, vector: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """The `k` items most similar to a (D,) unit vector: (cosine similarities (k,), positions (k,)), best first."""
        if vector.shape != (self.dimension,):
            raise InputError(f"A query vector must have {self.dimension} numbers, not {vector.shape}.")
        k = min(k, len(self))
        if k == 0:
            return np.zeros(0, dtype=np.float32), np.zeros(0, dtype=np.int64)
        scores, positions = self.vectors.search(np.ascontiguousarray(vector[None], dtype=np.float32), k)  # (1, k) each
        keep = positions[0] >= 0  # faiss pads with -1 when it finds fewer
        return scores[0][keep], positions[0][keep]

    def path_of(self, position: int) -> str | None:
        """The picture file at `position`, as a path from where the index was opened (None when held in memory)."""
        path = self.paths[position]
        if path is None or self.folder is None:
            return path
        return os.path.normpath(os.path.join(self.folder, path))

    def text_of(self, position: int) -> str | None:
        return self.texts[position] if self.texts is not None else None

    def image_of(self, position: int) -> Image.Image:
        """The picture at `position`, read from its file when it is not held in memory."""
        if self.modality != "image":
            raise InputError("This gallery holds texts, not pictures.")
        image = self.images[position]
        return image if image is not None else load_image(self.path_of(position))

    # ----- on disk -------------------------------------------------------------------
    @classmethod
    def open(cls, folder: str | os.PathLike, writable: bool = False) -> "GalleryIndex":
        """A saved index. Read-only by default, with the vectors memory-mapped; `writable` loads them to add more."""
        folder = Path(folder)
        manifest_path = folder / MANIFEST_FILE
        if not manifest_path.is_file():
            raise InputError(f"'{folder.name}' is not a gallery index (it has no {MANIFEST_FILE}); build one with "
                             "`python -m vqa index build --images DIR --out INDEX`.")
        try:
            manifest = json.loads(manifest_path.read_text())
            with (folder / ENTRIES_FILE).open() as f:
                paths = [json.loads(line)["path"] for line in f if line.strip()]
            faiss = _faiss()
            flags = 0 if writable else faiss.IO_FLAG_MMAP | faiss.IO_FLAG_READ_ONLY
            vectors = faiss.read_index(str(folder / VECTORS_FILE), flags)
        except (OSError, ValueError, KeyError, RuntimeError) as exc:  # faiss raises RuntimeError for a damaged file
            raise InputError(f"The gallery index '{folder.name}' cannot be read ({type(exc).__name__}); build it again.") from exc
        if manifest.get("format") != FORMAT:
            raise InputError(f"'{folder.name}' was written in another index format ({manifest.get('format')!r}); build it again.")
        if vectors.ntotal > len(paths):
            # A build stopped between saving the vectors and their paths: the paths say which vectors are whole.
            vectors = faiss.read_index(str(folder / VECTORS_FILE)) if not writable else vectors
            vectors.remove_ids(faiss.IDSelectorRange(len(paths), vectors.ntotal))
        elif vectors.ntotal < len(paths):
            raise InputError(f"The gallery index '{folder.name}' has fewer vectors than pictures; build it again.")
        return cls(vectors, "image", manifest["model"], manifest["embedding_space"], paths=paths, folder=folder)

    def save(self, folder: str | os.PathLike | None = None) -> None:
        """Write the index into `folder` (default: where it was opened): an index of picture files whose paths
        are relative to that folder, as `build_index` makes. An in-memory gallery (`from_images`, `from_texts`)
        is rebuilt instead: its items live in this process."""
        folder = Path(folder) if folder is not None else self.folder
        if self.modality != "image" or any(image is not None for image in self.images) or None in self.paths:
            raise InputError("Only an index of picture files can be saved (python -m vqa index build); an in-memory gallery cannot.")
        folder.mkdir(parents=True, exist_ok=True)
        # Vectors first, then the paths that make them usable: a stop in between leaves extra vectors,
        # which `open` drops, never paths without vectors.
        _replace_atomically(folder / VECTORS_FILE, lambda tmp: _faiss().write_index(self.vectors, str(tmp)))
        _replace_atomically(folder / ENTRIES_FILE, lambda tmp: tmp.write_text("".join(json.dumps({"path": p}) + "\n" for p in self.paths)))
        manifest = {
            "format": FORMAT, "model": self.model, "embedding_space": self.embedding_space, "dimension": self.dimension,
            "count": len(self), "metric": "inner product of L2-normalised ITC embeddings (cosine similarity)",
            "faiss_index": type(self.vectors).__name__,
        }
        _replace_atomically(folder / MANIFEST_FILE, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2) + "\n"))
        self.folder = folder


def _replace_atomically(path: Path, write: Callable[[Path], Any]) -> None:
    """Write through a temporary file and rename it over `path`: a reader never sees half a file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def image_files(folder: str | os.PathLike) -> list[Path]:
    """The picture files under `folder` (any depth), by the formats `vqa.image_io` reads, in a stable order."""
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError(f"'{folder.name}' is not a folder of pictures.")
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())


@dataclass
class BuildReport:
    """What one `build_index` run did."""

    added: int  # pictures embedded by this run
    already_indexed: int  # pictures skipped because the index had them
    total: int  # pictures in the index now
    unreadable: list[tuple[str, str]] = field(default_factory=list)  # (file name, why), left out of the index


def build_index(backbone: "Backbone", images: str | os.PathLike, out: str | os.PathLike, batch_size: int = BUILD_BATCH,
                checkpoint_every: int = CHECKPOINT_EVERY, progress: bool = True) -> BuildReport:
    """Embed the pictures under `images` into the index folder `out`, creating it or adding to it.

    Pictures already in the index are skipped, so running it again after a stop (or after adding pictures
    to the folder) embeds only what is new. An index built with another model is refused."""
    from tqdm.auto import tqdm

    if batch_size < 1 or checkpoint_every < 1:
        raise InputError("The batch size and the pictures between saves must be at least 1.")
    out = Path(out)
    files = image_files(images)
    index = GalleryIndex.open(out, writable=True) if (out / MANIFEST_FILE).exists() else None
    if index is not None:
        index.check_model(backbone)
    known = set(index.paths) if index is not None else set()
    # Stored relative to the index folder, so the same picture gets the same key from any working directory.
    keyed = [(file, os.path.relpath(os.path.abspath(file), os.path.abspath(out))) for file in files]
    todo = [(file, key) for file, key in keyed if key not in known]
    report = BuildReport(added=0, already_indexed=len(keyed) - len(todo), total=len(known))
    since_save = 0
    with tqdm(total=len(todo), unit="image", desc="embedding", disable=not progress) as bar:
        for start in range(0, len(todo), batch_size):
            pictures, keys = [], []
            for file, key in todo[start : start + batch_size]:
                try:
                    pictures.append(load_image(file))
                    keys.append(key)
                except VQAError as exc:  # one bad file should not stop a gallery of thousands
                    report.unreadable.append((file.name, str(exc)))
            if pictures:
                vectors = backbone.embed_images(pictures)  # (b, D)
                if index is None:
                    index = GalleryIndex.empty(backbone, "image", vectors.shape[1])
                index.add(vectors, paths=keys)
                report.added += len(keys)
                since_save += len(keys)
            bar.update(len(todo[start : start + batch_size]))
            if index is not None and since_save >= checkpoint_every:
                index.save(out)
                since_save = 0
    if index is None:
        raise InputError(f"No readable pictures ({', '.join(sorted(IMAGE_SUFFIXES))}) under '{Path(images).name}'.")
    index.save(out)
    report.total = len(index)
    return report
