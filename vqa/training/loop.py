"""The training loop, with 🤗 accelerate: `python -m vqa train --preset full --out weights/shapes-vlp`, or
`accelerate launch -m vqa train …` / `torchrun --nproc_per_node N -m vqa train …` on several processes,
unchanged. Every step draws fresh scenes from the train split's seed stream, so the model never sees a
sample twice and the held-out splits stay unseen; one step optimises all of the recipe's objectives at once
(`vqa.training.objectives`).

Two phases. Perception first: for `vision_warmup_steps` only the vision tower and the patch head train, on
the patch-attribute objective (the role a pretrained object detector plays for LXMERT and UNITER): questions
name objects by their shapes, and a vision tower that can't yet tell the shapes apart leaves every such
question near chance. Then everything trains jointly; its first `curriculum_steps` draw scenes of at most two
objects. The model card (`weights/shapes-vlp/README.md`) has the measurements behind both choices.

No objective teaches left and right directly: the spatial questions are learned through the answers, once
the text side can read each patch's position (`output_position_encoding` in the model config).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path
from typing import Callable

import torch

from vqa.model import ShapesVLPForVQA, create_model
from vqa.model.processing import ShapesVLPProcessor
from vqa.tokenizer import PACKAGE_TOKENIZER_DIR, load_tokenizer
from vqa.training.objectives import TrainingObjectives, check_objectives
from vqa.training.recipes import TrainConfig, loss_weights, masking
from vqa.training.targets import BatchMaker, to_device
from vqa.training.validation import validate


def build_model(train_config: TrainConfig) -> ShapesVLPForVQA:
    """A fresh model of the recipe's architecture, with the recipe's config overrides."""
    return create_model(train_config.architecture, **train_config.model)


def lr_at(step: int, tc: TrainConfig) -> float:
    """`step` counts both phases. The perception phase: linear warm-up, then the peak rate.
    The joint phase starts its own linear warm-up (its text layers are fresh), then decays
    the rate on a cosine to min_learning_rate."""
    if step < tc.vision_warmup_steps:
        return tc.learning_rate * min(1.0, (step + 1) / tc.warmup_steps)
    step -= tc.vision_warmup_steps
    if step < tc.warmup_steps:
        return tc.learning_rate * (step + 1) / tc.warmup_steps
    progress = (step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps)
    return tc.min_learning_rate + 0.5 * (tc.learning_rate - tc.min_learning_rate) * (1 + math.cos(math.pi * progress))


def train(train_config: TrainConfig, out_dir: str | Path, save_dtype: torch.dtype = torch.float16, progress: bool = True,
          replica_file: str | Path | None = None, on_record: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> dict:
    """Train, validate every `eval_every` steps, save model + processor + logs to `out_dir`.
    replica_file: a path with "{rank}" in it where every process saves its own copy of the trained parameters
    and the loss of every step, to check that distributed training kept the copies identical and trained on the
    global batch.
    on_record: called on the main process with a record after every step ({"step", "phase", "minutes", "loss"})
    and with each validation record, for a live plot.
    should_stop: asked after every step; True ends training there, and what has been learned is saved (a
    single-process run: each process would have to agree on stopping)."""
    from accelerate import Accelerator
    from accelerate.utils import DistributedDataParallelKwargs, set_seed
    from tqdm.auto import tqdm

    # The perception phase trains the vision tower alone, and objectives weighted 0 are skipped: some
    # parameters get no gradient in a step, which DistributedDataParallel must be told to expect.
    # cpu=True where there is no GPU: accelerate then runs several processes (torchrun) over gloo instead of
    # leaving each one alone.
    accelerator = Accelerator(
        cpu=not torch.cuda.is_available(), gradient_accumulation_steps=train_config.gradient_accumulation_steps,
        kwargs_handlers=[DistributedDataParallelKwargs(find_unused_parameters=True)],
    )
    set_seed(train_config.seed)
    model = build_model(train_config)
    check_objectives(model, loss_weights(train_config), masking(train_config))
    if train_config.elongated_share and model.config.image_fit != "letterbox":
        raise ValueError("elongated training pictures need a model that letterboxes its pictures (image_fit 'letterbox'): "
                         "squashed, their circles would be drawn as ellipses")
    if train_config.vision_warmup_steps and not model.has_head("patch"):
        raise ValueError(f"the perception warm-up trains the patch head, which architecture {train_config.architecture!r} does not have: set vision_warmup_steps=0")
    processor = ShapesVLPProcessor.for_config(model.config, load_tokenizer(PACKAGE_TOKENIZER_DIR))
    no_decay = [p for n, p in model.named_parameters() if p.ndim < 2 or "embeddings" in n or "position" in n or "cls_token" in n]
    decay = [p for n, p in model.named_parameters() if not (p.ndim < 2 or "embeddings" in n or "position" in n or "cls_token" in n)]
    optimizer = torch.optim.AdamW(
        [{"params": decay, "weight_decay": train_config.weight_decay}, {"params": no_decay, "weight_decay": 0.0}],
        lr=train_config.learning_rate, betas=(0.9, 0.98),
    )
    # Stepped here once per optimiser step, not through accelerator.prepare: accelerate's wrapper steps a scheduler
    # once per process on every call, which would run the schedule N times too fast on N processes.
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: lr_at(s, train_config) / train_config.learning_rate)
    objectives, optimizer = accelerator.prepare(TrainingObjectives(model, train_config), optimizer)
    inner = accelerator.unwrap_model(objectives).model  # the model itself: validation and saving read it
    batches = BatchMaker(processor, train_config, accelerator.process_index, accelerator.num_processes)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "train_log.jsonl"
    log_file = log_path.open("w") if accelerator.is_main_process else None
    start = time.time()
    total_steps = train_config.vision_warmup_steps + train_config.steps
    bar = tqdm(range(total_steps), disable=not (progress and accelerator.is_main_process), desc=f"train[{train_config.preset}]")
    objectives.train()
    running: dict[str, float] = {}
    step_losses: list[float] = []  # the global batch's total loss at every step, for replica_file
    for step in bar:
        perceiving = step < train_config.vision_warmup_steps
        joint_step = step - train_config.vision_warmup_steps
        micro_losses = []
        for micro in range(train_config.gradient_accumulation_steps):
            batch = batches.perception_batch(step, micro) if perceiving else batches(joint_step, micro)
            with accelerator.accumulate(objectives):  # gradients are synchronised on the last micro-step only
                losses = objectives(to_device(batch, accelerator.device), perceiving)
                accelerator.backward(losses["total"])
                if accelerator.sync_gradients:
                    accelerator.clip_grad_norm_(objectives.parameters(), train_config.max_grad_norm)
                optimizer.step()
                optimizer.zero_grad(set_to_none=True)
            micro_losses.append(torch.stack([loss.detach() for loss in losses.values()]))
        scheduler.step()
        # the loss of the global batch: the mean over micro-steps and processes, as the gradients were averaged
        global_losses = accelerator.reduce(torch.stack(micro_losses).mean(0), reduction="mean").tolist()
        step_losses.append(global_losses[list(losses).index("total")])
        for k, v in zip(losses, global_losses):
            running[k] = 0.9 * running.get(k, v) + 0.1 * v
        bar.set_postfix({k: f"{v:.3f}" for k, v in running.items() if k in ("total", "classifier", "generative", "caption", "patch", "grounding", "mlm", "recon")})
        stopping = should_stop is not None and should_stop()
        if on_record is not None and accelerator.is_main_process:
            on_record({"step": step + 1, "phase": "perception" if perceiving else "joint", "minutes": round((time.time() - start) / 60, 3),
                       "loss": global_losses[list(losses).index("total")]})
        perception_done = perceiving and step + 1 == train_config.vision_warmup_steps
        is_eval = not perceiving and ((joint_step + 1) % train_config.eval_every == 0 or step + 1 == total_steps or stopping)
        if perception_done or is_eval:  # every process validates its share of the scenes
            metrics = validate(
                inner, processor, batches, train_config.eval_scenes, answers=is_eval,
                sum_across_processes=lambda counts: accelerator.reduce(counts, reduction="sum"),
                shard=accelerator.process_index, num_shards=accelerator.num_processes,
            )
        if (perception_done or is_eval) and accelerator.is_main_process:
            record = {"step": step + 1, "phase": "perception" if perceiving else "joint", "minutes": round((time.time() - start) / 60, 2), "lr": scheduler.get_last_lr()[0], **{f"loss_{k}": round(v, 4) for k, v in running.items()}, **metrics}
            log_file.write(json.dumps(record) + "\n")
            log_file.flush()
            if on_record is not None:
                on_record(record)
            bar.write(json.dumps(record))
            # a loadable snapshot at every evaluation: inspect a long run while it trains
            snapshot = out_dir / "checkpoint"
            inner.save_pretrained(snapshot)
            processor.save_pretrained(snapshot)
        if stopping:
            break
    accelerator.wait_for_everyone()
    summary = {"train_minutes": round((time.time() - start) / 60, 2), "total_steps": total_steps, "steps_done": step + 1}
    if replica_file is not None:
        replica = {"parameters": {name: p.detach().cpu() for name, p in inner.named_parameters()}, "losses": step_losses}
        torch.save(replica, str(replica_file).format(rank=accelerator.process_index))
    if accelerator.is_main_process:
        final = inner
        final.to(save_dtype).save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        (out_dir / "training_config.json").write_text(json.dumps({**asdict(train_config), **summary}, indent=2))
        log_file.close()
        # what this model learned, measured on its own training data: the app says when a picture or a question lies outside
        from vqa.domain import write_calibration

        write_calibration(out_dir, **train_config.domain_calibration)
    return summary
