"""The training loop, with 🤗 accelerate: `python -m vqa train --preset full --out weights/shapes-vlp`, or
`accelerate launch -m vqa train …` / `torchrun --nproc_per_node N -m vqa train …` on several processes,
unchanged. Every step draws fresh scenes from the train split's seed stream, so the model never sees a
sample twice and the held-out splits stay unseen; one step optimises all of the recipe's objectives at once
(`vqa.training.objectives`).

Two phases. Perception first: for `vision_warmup_steps` only the vision tower and the patch head train, on
the patch-attribute objective (the role a pretrained object detector plays for LXMERT and UNITER): questions
name objects by their shapes, and a vision tower that can't yet tell the shapes apart leaves every such
question near chance. Then everything trains jointly; its first `curriculum_steps` draw scenes of at most two
objects. The model card (`weights/shapes-vlp/README.md`) has the measurements behind both choices. A recipe
that starts from a pretrained vision tower (`vision_init`, `vqa.training.vision_tower`) needs no perception phase.

A recipe runs for its number of steps, or for a time budget (`minutes`): then the joint phase ends when the
time is spent, and its learning rate and validations follow the clock (`JointClock`).

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
from vqa.training.vision_tower import load_vision_tower, tower_folder


# Share of a time budget (TrainConfig.minutes) kept for the last validation, saving and the domain calibration.
OVERHEAD_SHARE = 0.15
# Under a time budget, validations take at most this share of the joint phase's time: a slow machine, where a
# validation costs many steps, validates less often than eval_every asks.
VALIDATION_SHARE = 0.2


def build_model(train_config: TrainConfig) -> ShapesVLPForVQA:
    """A fresh model of the recipe's architecture, with the recipe's config overrides, its vision tower
    copied from `vision_init` when the recipe names one."""
    model = create_model(train_config.architecture, **train_config.model)
    if train_config.vision_init:
        load_vision_tower(model, tower_folder(train_config.vision_init))
    return model


def lr_at(step: int, tc: TrainConfig, time_spent: float = 0.0) -> float:
    """`step` counts both phases. The perception phase: linear warm-up, then the peak rate.
    The joint phase starts its own linear warm-up (its text layers are fresh), then decays
    the rate on a cosine to min_learning_rate; time_spent, the share of a time budget's joint phase
    already spent, moves the cosine on where the clock is ahead of the steps."""
    if step < tc.vision_warmup_steps:
        return tc.learning_rate * min(1.0, (step + 1) / tc.warmup_steps)
    step -= tc.vision_warmup_steps
    if step < tc.warmup_steps:
        return tc.learning_rate * (step + 1) / tc.warmup_steps
    progress = max((step - tc.warmup_steps) / max(1, tc.steps - tc.warmup_steps), time_spent)
    return tc.min_learning_rate + 0.5 * (tc.learning_rate - tc.min_learning_rate) * (1 + math.cos(math.pi * min(1.0, progress)))


class JointClock:
    """How much of the joint phase is done: the share of its steps, or, under a time budget, the larger of
    that and the share of its time; and whether a validation is due (every eval_every / steps of the phase).
    The time is read once a step and agreed on by every process (`agree`, the mean over processes), so that all
    of them set the same learning rate, validate together and stop at the same step."""

    def __init__(self, tc: TrainConfig, start: float, agree: Callable[[float], float] = lambda value: value):
        self.tc, self.agree = tc, agree
        self.deadline = start + tc.minutes * 60 * (1 - OVERHEAD_SHARE) if tc.minutes else None
        self.joint_start: float | None = None
        self.time_spent = 0.0  # share of the joint phase's time spent, at the last tick
        self.validations = 0
        self.validated_at = 0.0  # time_spent when the last validation ended, and its cost in the same unit
        self.validation_cost = 0.0

    def tick(self) -> None:
        """Read the clock after a joint step (under a time budget only)."""
        if self.deadline is None:
            return
        now = time.time()
        if self.joint_start is None:
            self.joint_start = now
        self.time_spent = self.agree(min(1.0, (now - self.joint_start) / max(1e-6, self.deadline - self.joint_start)))

    def done(self, joint_step: int) -> float:
        """Share of the joint phase done after `joint_step` (0-based)."""
        return max((joint_step + 1) / self.tc.steps, self.time_spent)

    def validation_due(self, joint_step: int) -> bool:
        due = int(self.done(joint_step) * self.tc.steps / self.tc.eval_every + 1e-9)
        training_since = self.time_spent - self.validated_at
        if due <= self.validations or training_since < self.validation_cost * (1 - VALIDATION_SHARE) / VALIDATION_SHARE:
            return False
        self.validations = due
        return True

    def validated(self) -> None:
        """Note the end of a validation, and what it cost, after reading the clock again."""
        before = self.time_spent
        self.tick()
        self.validated_at, self.validation_cost = self.time_spent, self.time_spent - before

    def out_of_time(self) -> bool:
        return self.time_spent >= 1.0


def train(train_config: TrainConfig, out_dir: str | Path, save_dtype: torch.dtype = torch.float16, progress: bool = True,
          replica_file: str | Path | None = None, on_record: Callable[[dict], None] | None = None,
          should_stop: Callable[[], bool] | None = None) -> dict:
    """Train, validate every `eval_every` steps (under a time budget, every eval_every / steps of its joint
    phase's time), save model + processor + logs to `out_dir`.
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
    objectives, optimizer = accelerator.prepare(TrainingObjectives(model, train_config), optimizer)
    inner = accelerator.unwrap_model(objectives).model  # the model itself: validation and saving read it
    batches = BatchMaker(processor, train_config, accelerator.process_index, accelerator.num_processes)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    log_path = out_dir / "train_log.jsonl"
    log_file = log_path.open("w") if accelerator.is_main_process else None
    start = time.time()
    clock = JointClock(train_config, start, agree=lambda value: accelerator.reduce(torch.tensor([value], device=accelerator.device), reduction="mean").item())
    total_steps = train_config.vision_warmup_steps + train_config.steps
    bar = tqdm(range(total_steps), disable=not (progress and accelerator.is_main_process), desc=f"train[{train_config.preset}]")
    objectives.train()
    running: dict[str, float] = {}
    step_losses: list[float] = []  # the global batch's total loss at every step, for replica_file
    for step in bar:
        perceiving = step < train_config.vision_warmup_steps
        joint_step = step - train_config.vision_warmup_steps
        if not perceiving and clock.joint_start is None:
            clock.tick()  # the joint phase's time starts now
        # set here, once per optimiser step, rather than by a scheduler that accelerate would step once per process
        learning_rate = lr_at(step, train_config, clock.time_spent)
        for group in optimizer.param_groups:
            group["lr"] = learning_rate
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
        # the loss of the global batch: the mean over micro-steps and processes, as the gradients were averaged
        global_losses = accelerator.reduce(torch.stack(micro_losses).mean(0), reduction="mean").tolist()
        step_losses.append(global_losses[list(losses).index("total")])
        for k, v in zip(losses, global_losses):
            running[k] = 0.9 * running.get(k, v) + 0.1 * v
        bar.set_postfix({k: f"{v:.3f}" for k, v in running.items() if k in ("total", "classifier", "generative", "caption", "patch", "grounding", "mlm", "recon")})
        if not perceiving:
            clock.tick()
        out_of_time = clock.out_of_time()
        stopping = (should_stop is not None and should_stop()) or out_of_time
        if on_record is not None and accelerator.is_main_process:
            on_record({"step": step + 1, "phase": "perception" if perceiving else "joint", "minutes": round((time.time() - start) / 60, 3),
                       "loss": global_losses[list(losses).index("total")]})
        perception_done = perceiving and step + 1 == train_config.vision_warmup_steps
        is_eval = not perceiving and (clock.validation_due(joint_step) or step + 1 == total_steps or stopping)
        if perception_done or is_eval:  # every process validates its share of the scenes
            metrics = validate(
                inner, processor, batches, train_config.eval_scenes, answers=is_eval,
                sum_across_processes=lambda counts: accelerator.reduce(counts, reduction="sum"),
                shard=accelerator.process_index, num_shards=accelerator.num_processes,
            )
            if is_eval:
                clock.validated()
        if (perception_done or is_eval) and accelerator.is_main_process:
            record = {"step": step + 1, "phase": "perception" if perceiving else "joint", "minutes": round((time.time() - start) / 60, 2), "lr": learning_rate, **{f"loss_{k}": round(v, 4) for k, v in running.items()}, **metrics}
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
    summary = {"train_minutes": round((time.time() - start) / 60, 2), "total_steps": total_steps, "steps_done": step + 1,
               "ended_by": "steps" if step + 1 == total_steps else "time" if out_of_time else "stop"}
    if replica_file is not None:
        replica = {"parameters": {name: p.detach().cpu() for name, p in inner.named_parameters()}, "losses": step_losses}
        torch.save(replica, str(replica_file).format(rank=accelerator.process_index))
    if accelerator.is_main_process:
        final = inner
        final.to(save_dtype).save_pretrained(out_dir)
        processor.save_pretrained(out_dir)
        (out_dir / "training_config.json").write_text(json.dumps({**asdict(train_config), **summary}, indent=2))
        log_file.close()
        if train_config.steps:  # a perception-only run (pretrain-vision) has learned no answers to calibrate
            # what this model learned, measured on its own training data: the app says when a picture or a question lies outside
            from vqa.domain import write_calibration

            write_calibration(out_dir, **train_config.domain_calibration)
    return summary
