"""Content-based image retrieval: find pictures by text or by picture.

Two steps, as in ALBEF, BLIP and LAVIS's multimodal search:

    query ─ ITC embedding (`Backbone.embed_text` / `embed_images`) ─► nearest gallery vectors (faiss) ─► candidates
    candidates ─ ITM (`Backbone.match`: the model reads query and item together) ─► re-ranked hits

The first step is one vector against the index, so it scales to large galleries; the second reads each
candidate with the query, which is slower but tells near-duplicates apart. `Backbone.search` runs both;
`GalleryIndex` holds the vectors (on disk for a folder of pictures, in memory for a list of pictures or texts).

    python -m vqa index build --images DIR --out INDEX
    python -m vqa search INDEX "a red circle left of a blue square"
"""

from vqa.retrieval.index import (
    RERANK_CANDIDATES,
    SEARCH_TOP_K,
    BuildReport,
    GalleryIndex,
    build_index,
    image_files,
)

__all__ = ["RERANK_CANDIDATES", "SEARCH_TOP_K", "BuildReport", "GalleryIndex", "build_index", "image_files"]
