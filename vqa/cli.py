"""Command line: `python -m vqa {ask,caption,train,pretrain-vision,zoo,evaluate,index,search,export-data,build-tokenizer}`."""

from __future__ import annotations

import argparse
import json
import sys
import time


def _train(args) -> int:
    from vqa.training import preset, scratch_preset, train

    overrides = dict(steps=args.steps, seed=args.seed, learning_rate=args.lr, images_per_step=args.images_per_step, minutes=args.minutes)
    # a pretrained tower was made for the preset's own architecture: another one learns to see by itself
    config = scratch_preset(args.preset, **overrides) if args.architecture else preset(args.preset, **overrides)
    if args.architecture:
        from dataclasses import replace

        from vqa.model import load_architecture

        # Another architecture trains with its own objectives and its own layers (the preset keeps only its
        # sizes); without a patch head it has no perception phase, and one that squashes its pictures gets
        # no elongated pages (squashed, their circles would be ellipses).
        spec = load_architecture(args.architecture)
        sizes = {k: v for k, v in config.model.items() if k not in ("vision_layers", "text_layers", "fusion_layer", "decoder_layers")}
        letterboxes = spec.get("vision", {}).get("fit") == "letterbox"
        config = replace(config, architecture=args.architecture, loss_weights=None, model=sizes,
                         vision_warmup_steps=config.vision_warmup_steps if "patch" in spec["heads"] else 0,
                         elongated_share=config.elongated_share if letterboxes else 0.0)
    summary = train(config, args.out, progress=not args.no_progress)
    print(json.dumps(summary))
    return 0


def _pretrain_vision(args) -> int:
    """The preset's perception phase alone, for `args.steps` steps; its vision tower saved to `args.out`."""
    import tempfile
    from dataclasses import replace
    from pathlib import Path

    import torch

    from vqa.model import ShapesVLPForVQA
    from vqa.training import preset, train
    from vqa.training.vision_tower import save_vision_tower

    if args.preset == "zoo":  # the tower the zoo's members share
        from vqa.zoo.members import tower_recipe

        base = tower_recipe() if args.seed is None else replace(tower_recipe(), seed=args.seed)
    else:
        base = preset(args.preset, seed=args.seed)
    recipe = replace(base, steps=0, vision_warmup_steps=args.steps, vision_init=None)
    with tempfile.TemporaryDirectory() as folder:
        summary = train(recipe, folder, save_dtype=torch.float32, progress=not args.no_progress)
        record = json.loads((Path(folder) / "train_log.jsonl").read_text().splitlines()[-1])
        model = ShapesVLPForVQA.from_pretrained(folder)
    info = {"recipe": args.preset, "perception_steps": args.steps, "seed": recipe.seed, "train_minutes": summary["train_minutes"],
            "val_patch_accuracy": record["val_patch_accuracy"]}
    save_vision_tower(model, args.out, info)
    print(json.dumps(info))
    return 0


def _zoo(args) -> int:
    from vqa.zoo import train_zoo
    from vqa.zoo.run import redraw

    if args.redraw:
        redraw(args.out)
        return 0
    results = train_zoo(args.members, args.minutes_per_member, args.out, base=args.base, eval_scenes=args.eval_scenes,
                        progress=not args.no_progress)
    print(json.dumps({name: {"best_head": m["best_head"], "test_accuracy": m["test_accuracy"], "train_minutes": m["train_minutes"]}
                      for name, m in results["members"].items()}))
    return 0


def _load_model(args):
    """The model named by --model / --quantize, loaded without transformers' "Loading weights" bar:
    it takes milliseconds here and would be the only thing on stderr."""
    import transformers

    import vqa

    transformers.utils.logging.disable_progress_bar()
    return vqa.load(args.model, quantize=args.quantize)


def _answer_record(result) -> dict:
    return {"head": result.head, "answer": result.answer, "score": round(result.score, 4),
            "candidates": [[a, round(p, 4)] for a, p in result.candidates], "latency_ms": round(result.latency_ms, 1),
            "in_domain": result.in_domain, "domain_note": result.domain_note}


def _answer_line(result) -> str:
    others = ", ".join(f"{a} {p:.2f}" for a, p in result.candidates[1:])
    return f"{result.head:>10}: {result.answer}  (p={result.score:.3f}{'; ' + others if others else ''})"


def _ask(args) -> int:
    model = _load_model(args)
    heads = ("classifier", "generative") if args.head == "both" else (args.head,)
    answers = model.ask(args.image, args.question, heads=heads, top_k=args.top_k, decoding=args.decoding, num_beams=args.num_beams)
    results = [result for result in (answers.classifier, answers.generative) if result is not None]
    if not args.json:
        print("\n".join(_answer_line(result) for result in results))
        if not answers.in_domain:
            print(f"outside what this model learned: {answers.domain_note}")
    elif args.head == "both":  # one document keyed by head, so the output parses as one JSON value
        print(json.dumps({result.head: _answer_record(result) for result in results}))
    else:
        print(json.dumps(_answer_record(results[0])))
    return 0


def _caption(args) -> int:
    model = _load_model(args)
    result = model.caption(args.image, decoding=args.decoding, num_captions=args.num_captions, num_beams=max(args.num_beams, args.num_captions))
    if args.json:
        print(json.dumps({"caption": result.text, "score": round(result.score, 4), "candidates": [[t, round(p, 4)] for t, p in result.candidates],
                          "in_domain": result.in_domain, "domain_note": result.domain_note}))
    else:
        for text, probability in result.candidates:
            print(f"{probability:.3f}  {text}")
    return 0


def _evaluate(args) -> int:
    from vqa.errors import InputError
    from vqa.evaluation import evaluate, evaluate_retrieval

    if args.task == "retrieval" and args.data:
        raise InputError("--task retrieval searches generated scenes by their captions; it does not read --data.")
    model = _load_model(args)
    if args.task == "retrieval":
        report = evaluate_retrieval(model, split=args.split, num_scenes=args.num_scenes, rerank_candidates=args.rerank_candidates,
                                    progress=sys.stderr.isatty())
        print(json.dumps(report) if args.json else json.dumps(report, indent=2))
        return 0
    report = evaluate(model, split=args.split, data=args.data, num_scenes=args.num_scenes, compositional_scenes=args.num_scenes and max(1, args.num_scenes // 2))
    print(json.dumps(report) if args.json else json.dumps(report, indent=2))
    return 0


def _index_build(args) -> int:
    from vqa.retrieval import build_index

    model = _load_model(args)
    report = build_index(model, args.images, args.out, batch_size=args.batch_size, progress=not args.no_progress)
    for name, reason in report.unreadable:
        print(f"skipped {name}: {reason}", file=sys.stderr)
    print(json.dumps({"added": report.added, "already_indexed": report.already_indexed, "unreadable": len(report.unreadable),
                      "total": report.total, "model": model.name}))
    return 0


def _search(args) -> int:
    from pathlib import Path

    from vqa.errors import InputError
    from vqa.retrieval import GalleryIndex

    if (args.query is None) == (args.image is None):
        raise InputError("Search with a text or with --image FILE (one of the two).")
    gallery = GalleryIndex.open(args.index)
    model = _load_model(args)
    query = args.query if args.image is None else Path(args.image)
    start = time.perf_counter()
    hits = model.search(query, gallery, top_k=args.top_k, rerank=not args.no_rerank)
    latency_ms = (time.perf_counter() - start) * 1000
    reranked = any(hit.itm_score is not None for hit in hits)
    if args.json:
        print(json.dumps({"query": args.query, "image": args.image and Path(args.image).name, "reranked": reranked,
                          "latency_ms": round(latency_ms, 1), "hits": [
                              {"rank": rank, "path": hit.path, "itc_score": round(hit.itc_score, 4),
                               "itm_score": None if hit.itm_score is None else round(hit.itm_score, 4),
                               "rank_before_rerank": hit.rank_before_rerank} for rank, hit in enumerate(hits, 1)]}))
        return 0
    for rank, hit in enumerate(hits, 1):
        itm = "" if hit.itm_score is None else f"  itm={hit.itm_score:.3f}"
        moved = f"  (ITC rank {hit.rank_before_rerank})" if reranked and hit.rank_before_rerank != rank else ""
        print(f"{rank:>3}. {hit.path}  itc={hit.itc_score:.3f}{itm}{moved}")
    return 0


def _export(args) -> int:
    from vqa.data.splits import export_jsonl

    for split in args.splits:
        path = export_jsonl(split, args.out, num_scenes=args.num_scenes, image_size=args.image_size)
        print(path)
    return 0


def _calibrate_domain(args) -> int:
    import transformers

    from vqa.domain import write_calibration

    transformers.utils.logging.disable_progress_bar()
    calibration = write_calibration(args.model)
    print(json.dumps({"image_threshold": round(calibration.image_threshold, 4), **calibration.figures}))
    return 0


def _build_tokenizer(args) -> int:
    from vqa.tokenizer import PACKAGE_TOKENIZER_DIR, build_tokenizer

    tokenizer = build_tokenizer(PACKAGE_TOKENIZER_DIR)
    print(f"{len(tokenizer)} tokens -> {PACKAGE_TOKENIZER_DIR}")
    return 0


def _model_args(p) -> None:
    p.add_argument("--model", default=None, help="model folder or hub id (default: $VQA_MODEL or weights/shapes-vlp)")
    p.add_argument("--quantize", default=None, choices=["none", "int8", "bnb-int8", "bnb-nf4"],
                   help="run the model quantized: int8 (PyTorch, faster on CPU), bnb-int8 or bnb-nf4 (bitsandbytes, less memory); "
                        "default: full precision")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m vqa", description="Visual question answering with a small vision-language model.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("train", help="train the embedded model on generated shapes-world data")
    p.add_argument("--preset", default="full", choices=["full", "quick", "quick-scratch", "smoke"],
                   help="full: the shipped model (<= 60 min on 2 CPU cores); quick: a classroom model, from the pretrained vision tower in "
                        "weights/vision/quick; quick-scratch: the same model learning to see by itself")
    p.add_argument("--out", required=True, help="output model folder")
    p.add_argument("--architecture", help="train this architecture (see vqa.model.list_architectures()) with its own objectives, on the preset's schedule")
    p.add_argument("--steps", type=int, help="override the preset's number of steps")
    p.add_argument("--seed", type=int, help="override the preset's seed")
    p.add_argument("--lr", type=float, help="override the preset's peak learning rate")
    p.add_argument("--images-per-step", type=int, help="override the preset's images per step")
    p.add_argument("--minutes", type=float, help="a time budget: the joint phase ends when it is spent, its schedule following the clock (--steps is then a ceiling)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_train)

    p = sub.add_parser("pretrain-vision", help="train a preset's vision tower alone (its perception phase) and save it for recipes to start from")
    p.add_argument("--preset", default="quick", choices=["full", "quick", "smoke", "zoo"],
                   help="the preset whose model sizes and perception objective are used; zoo: the tower the zoo's members share (default: %(default)s)")
    p.add_argument("--steps", type=int, default=1000, help="perception steps (default: %(default)s)")
    p.add_argument("--seed", type=int, help="override the preset's seed")
    p.add_argument("--out", required=True, help="output folder, e.g. weights/vision/quick")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(run=_pretrain_vision)

    from vqa.retrieval import RERANK_CANDIDATES
    from vqa.retrieval.index import BUILD_BATCH
    from vqa.zoo.members import MEMBERS

    p = sub.add_parser("zoo", help="train, measure and plot the architecture zoo on the same data and CPU budget")
    p.add_argument("--members", nargs="+", choices=MEMBERS, help="the members to (re)train (default: all)")
    p.add_argument("--minutes-per-member", type=float, default=8.0, help="training minutes per member on this machine (default: %(default)s)")
    p.add_argument("--out", default="weights/zoo", help="output folder (default: %(default)s)")
    p.add_argument("--base", default="quick", choices=["quick", "smoke"], help="base recipe: quick (the zoo) or smoke (tiny models, for tests)")
    p.add_argument("--eval-scenes", type=int, default=100, help="test scenes per member (default: %(default)s)")
    p.add_argument("--redraw", action="store_true", help="only rewrite the plots, the table and the cards from results.json")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(run=_zoo)

    p = sub.add_parser("ask", help="answer a question about an image")
    p.add_argument("image", help="image file (PNG, JPEG, WEBP, GIF or BMP)")
    p.add_argument("question", help="the question, in quotes")
    p.add_argument("--head", default="both", choices=["classifier", "generative", "both"],
                   help="classifier: scores a fixed answer vocabulary; generative: writes the answer; both (default): each head the model has")
    p.add_argument("--top-k", type=int, default=3, help="candidate answers to list per head, best first (default: %(default)s)")
    p.add_argument("--decoding", default="greedy", choices=["greedy", "beam", "nucleus"],
                   help="how the generative head writes its answer (default: %(default)s)")
    p.add_argument("--num-beams", type=int, default=3, help="beams for --decoding beam (default: %(default)s)")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object: a head's answer, or with --head both one such object per head, keyed by head")
    _model_args(p)
    p.set_defaults(run=_ask)

    p = sub.add_parser("caption", help="describe an image")
    p.add_argument("image", help="image file (PNG, JPEG, WEBP, GIF or BMP)")
    p.add_argument("--decoding", default="beam", choices=["greedy", "beam", "nucleus"], help="how the caption is written (default: %(default)s)")
    p.add_argument("--num-captions", type=int, default=1, help="captions to print, best first (default: %(default)s)")
    p.add_argument("--num-beams", type=int, default=3, help="beams for --decoding beam; at least --num-captions are used (default: %(default)s)")
    p.add_argument("--json", action="store_true", help="print one JSON object: the best caption, its score and every candidate")
    _model_args(p)
    p.set_defaults(run=_caption)

    p = sub.add_parser("evaluate", help="accuracy, per-family, compositional, caption and pointing metrics; or search recall")
    p.add_argument("--task", default="vqa", choices=["vqa", "retrieval"],
                   help="vqa (default): answers, captions and pointing; retrieval: text->image and image->text recall@1/5/10 "
                        "with each scene's first caption as the query, by ITC alone and with ITM re-ranking")
    p.add_argument("--rerank-candidates", type=int, help=f"retrieval: ITC hits re-scored by ITM per query (default: {RERANK_CANDIDATES.default})")
    p.add_argument("--split", default="test", choices=["val", "test", "compositional", "unseen_phrasing", "unseen_style"],
                   help="generated split to evaluate on; test also scores the compositional split (default: %(default)s)")
    p.add_argument("--data", help="a JSONL file {image, question, answers[, family, referent_box]} instead of a generated split")
    p.add_argument("--num-scenes", type=int, help="evaluate on the first N scenes only (compositional: N/2)")
    p.add_argument("--json", action="store_true", help="print the report as one JSON line (default: indented JSON)")
    _model_args(p)
    p.set_defaults(run=_evaluate)

    p = sub.add_parser("index", help="build a gallery index to search pictures by text or by picture")
    index_commands = p.add_subparsers(dest="index_command", required=True, help="build: embed a folder of pictures into an index")
    p = index_commands.add_parser("build", help="embed a folder of pictures into an index folder (resumable: known pictures are skipped)")
    p.add_argument("--images", required=True, help="folder of pictures (PNG, JPEG, WEBP, GIF or BMP; subfolders too)")
    p.add_argument("--out", required=True, help="index folder to create or add to")
    p.add_argument("--batch-size", type=int, default=BUILD_BATCH, help="pictures embedded per forward pass (default: %(default)s)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    _model_args(p)
    p.set_defaults(run=_index_build)

    p = sub.add_parser("search", help="find pictures in a gallery index by a text or by a picture")
    p.add_argument("index", help="index folder (python -m vqa index build)")
    p.add_argument("query", nargs="?", help="what to look for, in quotes")
    p.add_argument("--image", help="search by this picture instead of a text")
    p.add_argument("--top-k", type=int, default=5, help="hits to list, best first (default: %(default)s)")
    p.add_argument("--no-rerank", action="store_true", help=f"rank by ITC similarity alone, without ITM re-ranking of the top {RERANK_CANDIDATES.default}")
    p.add_argument("--json", action="store_true", help="print one JSON object: the hits with their ITC and ITM scores")
    _model_args(p)
    p.set_defaults(run=_search)

    p = sub.add_parser("export-data", help="write generated splits as images + JSONL")
    p.add_argument("--out", required=True, help="output folder: <split>.jsonl files and images/<split>/*.png")
    p.add_argument("--splits", nargs="+", default=["val", "test", "compositional"], choices=["train", "val", "test", "compositional", "unseen_phrasing", "unseen_style"],
                   help="splits to write (default: val test compositional)")
    p.add_argument("--num-scenes", type=int, help="scenes per split (train needs it)")
    p.add_argument("--image-size", type=int, default=96, help="image width and height in pixels (default: %(default)s, the training size)")
    p.set_defaults(run=_export)

    p = sub.add_parser("calibrate-domain", help="measure what an embedded model learned (its pictures and words) and save it in its folder")
    p.add_argument("--model", default="weights/shapes-vlp", help="the embedded model folder (default: weights/shapes-vlp)")
    p.set_defaults(run=_calibrate_domain)

    p = sub.add_parser("build-tokenizer", help="rebuild vqa/data/tokenizer from bert-base-uncased's vocabulary")
    p.set_defaults(run=_build_tokenizer)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.run(args)
    except Exception as exc:  # noqa: BLE001 - the CLI prints project errors plainly instead of a traceback
        from vqa.errors import VQAError

        if isinstance(exc, VQAError):
            print(f"error: {exc}", file=sys.stderr)
            return 2
        raise
