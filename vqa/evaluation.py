"""Evaluation of any backbone on shapes-world splits or on an outside JSONL data set.

`python -m vqa evaluate --split test --json` prints one JSON line:
- classifier_accuracy / generative_accuracy: exact match with the reference answer
  (VQA-style min(#matching references / 3, 1) when a question has 3+ references);
- families: per question family, both heads, with counts;
- compositional_accuracy: the classifier on the compositional split (held-out
  colour–shape pairs), with the generative head beside it;
- caption_score: object-mention recall: the share of objects whose full
  "size colour shape" phrase appears in the generated caption (caption_metric says so);
- pointing_accuracy: on questions about one object, the share where the peak of the
  fused layers' cross-attention from [CLS] (heads and layers averaged; `attention_maps.pointing_map`)
  falls inside the box of the object the answer is about (for a spatial question, the
  object on that side of the named one);
- classifier_wrong_kind_rate / generative_wrong_kind_rate: the share of questions answered with another
  kind of answer than the question asks for (a yes/no or a number to "what shape…?").
The held-out splits `unseen_phrasing` and `unseen_style` ask the same families in other words or show
them drawn another way (`vqa/data/unseen_phrasing.py`, `vqa/data/unseen_style.py`).
Everything runs through the public `Backbone` API, so the figures are what a user gets.

`python -m vqa evaluate --task retrieval --json` measures search instead (`evaluate_retrieval`):
text→image and image→text recall@1/5/10 on a gallery of generated scenes, by ITC alone and with ITM
re-ranking.
"""

from __future__ import annotations

import re
import time
from collections import Counter, defaultdict
from typing import Iterable

from vqa.attention_maps import peak_inside, pointing_map
from vqa.backbones.base import Backbone
from vqa.data.questions import SINGLE_REFERENT_FAMILIES
from vqa.data.splits import SPLIT_SCENES, iter_split, read_jsonl
from vqa.data.vocabulary import ANSWER_SYNONYMS, FAMILY_ANSWER_KIND, answer_kind
from vqa.errors import UnsupportedError, VQAError
from vqa.image_io import load_image

RECALL_AT = (1, 5, 10)


def normalise_answer(text: str) -> str:
    """Lower case, no punctuation or articles, and a person's other word for an answer mapped to the vocabulary's
    ("grey" -> "gray", "two" -> "2")."""
    text = re.sub(r"[^\w\s]", "", text.lower()).strip()
    text = re.sub(r"\b(a|an|the)\b", "", text)
    text = " ".join(text.split())
    return ANSWER_SYNONYMS.get(text, text)


def answer_accuracy(predicted: str, references: list[str]) -> float:
    matches = sum(normalise_answer(predicted) == normalise_answer(r) for r in references)
    if len(references) >= 3:
        return min(matches / 3, 1.0)
    return float(matches > 0)


def object_mention_recall(caption: str, objects: list[dict]) -> float:
    text = " " + normalise_answer(caption) + " "
    mentioned = sum(f" {o['size']} {o['color']} {o['shape']} " in text for o in objects)
    return mentioned / max(len(objects), 1)


def _records_from_split(split: str, num_scenes: int | None, image_size: int) -> Iterable[dict]:
    for ex in iter_split(split, num_scenes, image_size):
        scene = ex.scene.to_dict()
        for q in ex.questions:
            yield {
                "image": ex.image, "image_id": f"{split}/{ex.index}", "question": q.text, "answers": [q.answer],
                "family": q.family, "referent_box": list(ex.scene.page_box(q.referent)) if q.referent is not None else None,
                "captions": ex.captions, "objects": scene["objects"],
            }


def evaluate_records(backbone: Backbone, records: Iterable[dict], heads=("classifier", "generative"), pointing: bool = True,
                     captions: bool = True, progress=None) -> dict:
    totals = defaultdict(float)
    counts = defaultdict(int)
    per_family = defaultdict(lambda: defaultdict(float))
    captioned: set[str] = set()
    errors = 0
    start = time.perf_counter()
    for n, record in enumerate(records):
        image = record["image"]
        try:
            image = load_image(image)
        except VQAError:
            errors += 1
            continue
        family = record.get("family", "all")
        per_family[family]["n"] += 1
        judged = False  # whether this question's in-domain verdict is counted yet
        for head in heads:
            if head not in backbone.capabilities:
                continue
            result = None
            try:
                result = backbone.answer(image, record["question"], head=head)
                score = answer_accuracy(result.answer, record["answers"])
                if not judged:
                    totals["in_domain"] += result.in_domain
                    counts["in_domain"] += 1
                    judged = True
            except VQAError:
                errors += 1
                score = 0.0
            totals[head] += score
            counts[head] += 1
            per_family[family][head] += score
            if family in FAMILY_ANSWER_KIND and score == 0.0:
                totals[f"{head}_wrong_kind"] += answer_kind(result.answer if result is not None else "") != FAMILY_ANSWER_KIND[family]
        box = record.get("referent_box")
        if pointing and box and family in SINGLE_REFERENT_FAMILIES and "explain" in backbone.capabilities:
            totals["pointing"] += float(peak_inside(pointing_map(backbone.explain(image, record["question"])), box))
            counts["pointing"] += 1
        image_id = record.get("image_id", str(record.get("image")))
        if captions and record.get("objects") and "caption" in backbone.capabilities and image_id not in captioned:
            captioned.add(image_id)
            totals["caption"] += object_mention_recall(backbone.caption(image).text, record["objects"])
            counts["caption"] += 1
        if progress:
            progress(n)
    result = {f"{head}_accuracy": round(totals[head] / counts[head], 4) for head in heads if counts[head]}
    result["questions"] = max((counts[h] for h in heads), default=0)
    for head in heads:
        if counts[head] and any(family in FAMILY_ANSWER_KIND for family in per_family):
            # answers of another kind than the question asks for ("yes" to "what shape…?"), out of all questions
            result[f"{head}_wrong_kind_rate"] = round(totals[f"{head}_wrong_kind"] / counts[head], 4)
    result["families"] = {
        family: {**{head: round(values[head] / values["n"], 4) for head in heads if head in backbone.capabilities}, "n": int(values["n"])}
        for family, values in sorted(per_family.items())
    }
    if counts["in_domain"]:
        # the share of questions the model judged inside what it learned (vqa.domain)
        result["in_domain_rate"] = round(totals["in_domain"] / counts["in_domain"], 4)
    if counts["pointing"]:
        result["pointing_accuracy"] = round(totals["pointing"] / counts["pointing"], 4)
        result["pointing_questions"] = counts["pointing"]
    if counts["caption"]:
        result["caption_score"] = round(totals["caption"] / counts["caption"], 4)
        result["caption_metric"] = "object-mention recall (size colour shape)"
        result["captions"] = counts["caption"]
    result["errors"] = errors
    result["seconds"] = round(time.perf_counter() - start, 1)
    return result


def evaluate(backbone: Backbone, split: str = "test", data: str | None = None, num_scenes: int | None = None,
             compositional_scenes: int | None = None, image_size: int = 96, progress=None) -> dict:
    """Evaluate on a generated split (plus the compositional split when split == "test") or a JSONL file."""
    if data:
        report = evaluate_records(backbone, read_jsonl(data), progress=progress)
        return {"data": str(data), "model": backbone.name, "quantization": backbone.quantization, **report}
    report = evaluate_records(backbone, _records_from_split(split, num_scenes, image_size), progress=progress)
    report = {"split": split, "scenes": num_scenes or SPLIT_SCENES[split], "model": backbone.name, "quantization": backbone.quantization, **report}
    if split == "test":
        comp = evaluate_records(backbone, _records_from_split("compositional", compositional_scenes, image_size), pointing=False, captions=False)
        report["compositional_accuracy"] = comp.get("classifier_accuracy")
        report["compositional_generative_accuracy"] = comp.get("generative_accuracy")
        report["compositional_questions"] = comp["questions"]
        report["compositional_families"] = comp["families"]
        report["compositional_in_domain_rate"] = comp.get("in_domain_rate")
    return report


def evaluate_retrieval(backbone: Backbone, split: str = "test", num_scenes: int | None = None, image_size: int = 96,
                       rerank_candidates: int | None = None, progress: bool = False) -> dict:
    """Search measured on the first `num_scenes` scenes of `split` (default: all 1,000 test scenes), each
    scene's canonical caption (its first reference caption) as its text: every caption searched for among the
    pictures (`text_to_image_r1`, `_r5`, `_r10`) and every picture among the captions (`image_to_text_*`),
    by ITC alone ("itc") and with the top `rerank_candidates` re-ranked by ITM ("itm_rerank").

    A hit counts when its scene's canonical caption is the query scene's, word for word: scenes with the same
    objects in the same left-to-right order share that caption (a fifth of the test scenes do, mostly single
    objects), and nothing in the words tells those pictures apart. "strict" counts only the query's own scene.

    One re-ranked search per query gives both orders: the candidates come back with their ITC rank
    (`rank_before_rerank`), and the ITC top 10 are among them as long as at least 10 are re-ranked.
    """
    from tqdm.auto import tqdm

    from vqa.retrieval import RERANK_CANDIDATES, GalleryIndex

    if "retrieval" not in backbone.capabilities:
        raise UnsupportedError(f"{backbone.name} cannot search: it has no image-text contrastive head.")
    depth = max(RECALL_AT)
    rerank = "itm" in backbone.capabilities
    candidates = RERANK_CANDIDATES.check(RERANK_CANDIDATES.default if rerank_candidates is None else rerank_candidates)
    top_k = max(depth, candidates) if rerank else depth  # every candidate back, to read the ITC order off them too
    start = time.perf_counter()
    examples = list(iter_split(split, num_scenes, image_size))
    captions = [example.captions[0] for example in examples]
    pictures = [example.image for example in examples]
    picture_gallery = GalleryIndex.from_images(backbone, pictures)
    caption_gallery = GalleryIndex.from_texts(backbone, captions)
    modes = ("itc", "itm_rerank") if rerank else ("itc",)
    ranks = defaultdict(list)  # (mode, measure) -> the 1-based rank of each query's first right hit, None past `depth`
    search_start = time.perf_counter()
    for i in tqdm(range(len(examples)), desc="retrieval", disable=not progress):
        same_caption = {
            "text_to_image": lambda hit: captions[hit.position] == captions[i], "strict_text_to_image": lambda hit: hit.position == i,
            "image_to_text": lambda hit: hit.text == captions[i], "strict_image_to_text": lambda hit: hit.position == i,
        }
        for direction, query, gallery in (("text_to_image", captions[i], picture_gallery), ("image_to_text", pictures[i], caption_gallery)):
            found = backbone.search(query, gallery, top_k=top_k, rerank=rerank, rerank_candidates=candidates)
            orders = {"itc": sorted(found, key=lambda hit: hit.rank_before_rerank)[:depth], "itm_rerank": found[:depth]}
            for mode in modes:
                for measure in (direction, f"strict_{direction}"):
                    ranks[mode, measure].append(_first_rank(orders[mode], same_caption[measure]))
    seconds_searching = time.perf_counter() - search_start
    report = {"task": "retrieval", "split": split, "scenes": len(examples), "model": backbone.name, "quantization": backbone.quantization,
              "query": "each scene's first reference caption",
              "scenes_sharing_their_caption": sum(n for n in Counter(captions).values() if n > 1)}
    for mode in modes:
        report[mode] = {f"{direction}_r{k}": _recall(ranks[mode, direction], k) for direction in ("text_to_image", "image_to_text") for k in RECALL_AT}
        report[mode]["strict"] = {f"{direction}_r{k}": _recall(ranks[mode, f"strict_{direction}"], k)
                                  for direction in ("text_to_image", "image_to_text") for k in RECALL_AT}
    if rerank:
        report["itm_rerank"]["candidates"] = candidates
    report["ms_per_query"] = round(seconds_searching * 1000 / (2 * len(examples)), 1)
    report["seconds"] = round(time.perf_counter() - start, 1)
    return report


def _first_rank(hits, is_right) -> int | None:
    """The 1-based rank of the first right hit, None when none of `hits` is."""
    return next((rank for rank, hit in enumerate(hits, 1) if is_right(hit)), None)


def _recall(ranks: list[int | None], k: int) -> float:
    """The share of queries with a right hit among their first `k`."""
    return round(sum(rank is not None and rank <= k for rank in ranks) / max(len(ranks), 1), 4)
