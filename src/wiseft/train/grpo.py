"""GRPO on prompts with verifiable answers: sample a group per prompt, reward with the grader, update.

Why a plain loop and not TRL's `GRPOTrainer` (measured on the toy, TRL 1.16; figures in the README):
(1) TRL's weights after the same steps differ in bytes between 1 and 2 CPU threads, because the loss,
its gradient and the generation run on intra-op threads whose sums depend on the thread count; with our
sampler as TRL's generator the samples agree but the weights still differ, so the update itself is the
cause. (2) TRL writes `checkpoint-N/` in place, and a run killed while saving leaves a directory that
resume picks up and fails on; it also pickles the optimizer, scheduler, RNG state and arguments
(`optimizer.pt`, `scheduler.pt`, `rng_state.pth`, `training_args.bin`). (3) TRL's own resume is exact
(same bytes as an uninterrupted run), so that was no reason. (4) Speed decided nothing about the
trainer: with the same generator a step of this loop ran faster than `GRPOTrainer`'s (`bench/grpo.py`).
Keeping TRL would mean overriding its generation, its training step, its checkpoint writing and its
resume, i.e. everything but the loss; so this module replaces the trainer and keeps TRL's definitions of
the objective (`grpo_loss`, tested equal to `GRPOTrainer`'s loss and gradient on the same batch, with
TRL's defaults).

One step s, every part a pure function of (seed, s, the weights):
1. the prompts of step s (`epoch_batches`: seeded epochs, so a resumed run sees the same prompts);
2. `group_size` completions per prompt from `HFSampler` (its per-prompt random streams, seeded from
   (seed, s)); the sampled token ids are what the update trains on. The generator is the project's
   sampler rather than TRL's `generate` path because its samples are the same for 1 to 4 threads while
   it uses them all; `generate` is thread-independent only on one intra-op thread, where it was faster
   at the toy's small batches and no faster at larger ones, and it slowed down badly on two threads of
   a busy machine (`bench/grpo.py`). Any sampler can be passed in (`train(..., sampler=...)`);
3. rewards from the grader (`rewards.GraderReward`), group-relative advantages (`grpo_loss`);
4. one AdamW step on the GRPO loss, the batch cut into `micro_batches` fixed parts whose gradients are
   summed in order, each part on one core (`parts.PartPool`): the same bytes for 1 to 4 threads. Rows
   whose advantage is 0 add nothing to the gradient when β = 0 and are skipped.

Checkpoints are standard Hugging Face directories written atomically (`checkpoint-STEP/`: safetensors,
config, tokenizer, `trainer_state.json` with the step log so far, and the optimizer state as
`optimizer.safetensors` + `optimizer.json`, never pickled). Every step's record is appended to
`grpo_log.jsonl` beside them. `resume` loads the last checkpoint (weights, optimizer state, log) and
continues with the same bytes as an uninterrupted run. The policy runs without dropout (eval mode,
as TRL's `disable_dropout`); with β > 0 the reference is a frozen copy of the start.
"""

from __future__ import annotations

import copy
import json
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from wiseft.checkpoints import find_checkpoints
from wiseft.config import to_dict
from wiseft.devices import resolve_device
from wiseft.errors import ConfigError, TrainError
from wiseft.grading import Grader
from wiseft.metrics import pass_at_k
from wiseft.prompts import make_prompter
from wiseft.sampling import SamplingParams
from wiseft.train import grpo_loss, steplog
from wiseft.train.checkpoints import load_optimizer, load_weights, make_adamw, read_state, save_checkpoint
from wiseft.train.data import epoch_batches
from wiseft.train.grpo_config import RESUME_FREE, SCHEDULES, GRPOConfig, GRPOResult, GRPOStep, step_seed
from wiseft.train.grpo_loss import completion_logps
from wiseft.train.parts import PartPool, split_rows
from wiseft.train.rewards import GraderReward, check_golds

LOG_FILE = "grpo_log.jsonl"

__all__ = [
    "LOG_FILE",
    "RESUME_FREE",
    "SCHEDULES",
    "GRPOConfig",
    "GRPOResult",
    "GRPOStep",
    "check_output",
    "completion_logps",
    "pass_ks",
    "step_seed",
    "train",
]


# --- the run ------------------------------------------------------------------------------------------


def train(
    model,
    tokenizer,
    task,
    cfg: GRPOConfig,
    out_dir: str | os.PathLike,
    *,
    problems: Sequence | None = None,
    resume: bool = False,
    meta: dict[str, Any] | None = None,
    on_step: Callable[[GRPOStep], None] | None = None,
    grader=None,
    sampler=None,
) -> GRPOResult:
    """Train `model` (the start) with GRPO on `problems` of `task` (default: all) for `cfg.steps` steps.

    `task` gives prompts, gold answers, stop strings and the grader kind. `grader` (a `wiseft.grading.
    Grader`, closed by the caller) and `sampler` (anything with `generate(prompts, n, params)`) default
    to ones built here. With `resume`, the last checkpoint in `out_dir` is loaded and training continues
    after it (its settings and `meta` must match); a run already complete returns at once.
    """
    import torch

    problems = list(task.problems if problems is None else problems)
    check_golds(task.name, problems)
    out = Path(out_dir)
    existing = check_output(out, resume)
    device = resolve_device(cfg.device)
    if cfg.threads:
        torch.set_num_threads(cfg.threads)
    run = _Run(model, tokenizer, task, problems, cfg, device, grader, sampler)  # checks before any write
    start, history, restored = 0, [], None
    try:
        out.mkdir(parents=True, exist_ok=True)
        if existing:
            start, history, restored = run.resume(existing, meta or {})
        steplog.rewrite_log(out / LOG_FILE, history)
        t0 = time.perf_counter()
        records = run.loop(start, history, out, meta or {}, restored, on_step, t0)
    finally:
        run.close()
    model.eval()
    return GRPOResult(
        out, find_checkpoints(out, strict=False), start, tuple(records), time.perf_counter() - t0
    )


def check_output(out: Path, resume: bool) -> dict[int, Path]:
    """The checkpoints already in `out` (by step); an error when `out` holds a run and `resume` is off."""
    if out.exists() and not out.is_dir():
        raise TrainError(f"output {out} exists and is not a directory; choose another -o/--output")
    existing = find_checkpoints(out, strict=False)
    if existing and not resume:
        raise TrainError(
            f"output {out} already holds checkpoints {list(existing)}; pass --resume to continue or choose "
            f"another -o/--output"
        )
    if not existing and out.is_dir() and (out / LOG_FILE).exists() and not resume:
        raise TrainError(
            f"output {out} already holds a GRPO log; pass --resume or choose another -o/--output"
        )
    return existing


class _Run:
    """The pieces of one run: policy, reference, sampler, reward, optimizer, the part pool."""

    def __init__(self, model, tokenizer, task, problems, cfg: GRPOConfig, device: str, grader, sampler):
        import torch

        from wiseft.sampling.hf import HFSampler  # imports torch at its top: loaded with torch, here

        self.cfg, self.task, self.tok, self.device = cfg, task, tokenizer, device
        prompter = make_prompter(cfg.prompt_style)
        self.stop = prompter.stop(task.stop)
        self.model = model.to(device).eval()
        self.ref = _frozen_copy(self.model) if cfg.beta else None
        self.prompts = {
            p.id: prompter.render(p.question, task.template, task.instruction, tokenizer) for p in problems
        }
        self.special = cfg.prompt_style != "chat"  # a chat template already holds its special tokens
        self.prompt_ids = self._encode_prompts(problems)
        self.batch_at = epoch_batches(problems, cfg.prompts_per_step, cfg.seed)
        self.own_grader = grader is None
        self.grader = grader if grader is not None else _grader(task, cfg)
        self.reward = GraderReward(task, self.grader, cfg.format_reward)
        if sampler is None:
            sampler = HFSampler(
                self.model, tokenizer, add_special_tokens=self.special, threads=cfg.threads or None
            )
        self.sampler = sampler
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.optimizer = make_adamw(self.model, cfg.lr, (cfg.beta1, cfg.beta2), cfg.weight_decay)
        cpu = not str(device).startswith("cuda")
        self.pool = PartPool(cfg.micro_batches, cfg.threads or torch.get_num_threads(), cpu)
        self.pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        self.zero_streak = 0

    def close(self) -> None:
        self.pool.close()
        if self.own_grader:
            self.grader.close()

    def _encode_prompts(self, problems) -> dict[str, list[int]]:
        """Token ids of every prompt (as the sampler encodes them), checked against the model's length."""
        config = self.model.config.get_text_config()
        limit = getattr(config, "max_position_embeddings", None) or getattr(config, "n_positions", None)
        ids = {}
        for p in problems:
            ids[p.id] = self.tok(self.prompts[p.id], add_special_tokens=self.special)["input_ids"]
            if limit and len(ids[p.id]) + self.cfg.max_completion_length > limit:
                raise ConfigError(
                    f"problem {p.id!r}: its prompt ({len(ids[p.id])} tokens) plus --max-completion-length "
                    f"{self.cfg.max_completion_length} exceeds the model's {limit} positions; lower "
                    "--max-completion-length or drop long problems"
                )
        return ids

    # --- resume and the loop -------------------------------------------------------------------------

    def resume(self, existing: dict[int, Path], meta: dict) -> tuple[int, list[dict], bool]:
        """Load the last checkpoint; return (its step, the step log so far, whether the optimizer state was
        restored)."""
        start = max(existing)
        ckpt = existing[start]
        if start > self.cfg.steps:
            raise TrainError(f"{ckpt} is beyond --steps {self.cfg.steps}; raise --steps to continue training")
        state = read_state(ckpt, "log_history")
        if state.get("stage") != "grpo":
            raise TrainError(f"{ckpt} is not a GRPO checkpoint; delete it or choose another -o/--output")
        _check_same_run(state, self.cfg, meta, ckpt)
        load_weights(self.model, ckpt)
        restored = load_optimizer(self.optimizer, ckpt)
        history = list(state["log_history"])
        for record in history:
            self.zero_streak = self.zero_streak + 1 if record.get("all_zero_reward") else 0
        return start, history, restored

    def loop(self, start, history, out: Path, meta, restored, on_step, t0) -> list[dict]:
        records = []
        schedule = set(self.cfg.checkpoint_steps())
        for step in range(start + 1, self.cfg.steps + 1):
            record = self.step(step)
            history.append(record)
            records.append(record)
            steplog.append_record(out / LOG_FILE, record)
            saved = None
            if step in schedule:
                state = {
                    "global_step": step, "max_steps": self.cfg.steps, "stage": "grpo",
                    "config": to_dict(self.cfg), "seed": self.cfg.seed, "log_history": history,
                    "resumed_from": start, "optimizer_restored": restored, "meta": meta,
                }  # fmt: skip
                optimizer = self.optimizer if self.cfg.save_optimizer else None
                saved = save_checkpoint(self.model, self.tok, out, step, state, optimizer)
            warning = self._zero_warning(record)
            if on_step:
                on_step(GRPOStep(step, self.cfg.steps, record, time.perf_counter() - t0, saved, warning))
        return records

    def _zero_warning(self, record: dict) -> str | None:
        self.zero_streak = self.zero_streak + 1 if record["all_zero_reward"] else 0
        n = self.cfg.warn_zero_reward_after
        if n and self.zero_streak == n:
            return (
                f"reward has been 0 for every completion of the last {n} steps: nothing to learn (no group "
                "holds a correct answer); check the prompt format and --max-completion-length, or start "
                "from a stronger model"
            )
        return None

    # --- one step ------------------------------------------------------------------------------------

    def step(self, step: int) -> dict:
        import torch

        cfg, seconds = self.cfg, {}
        t = time.perf_counter()
        batch = self.batch_at(step)
        groups = self.sample(batch, step)
        seconds["generate"] = time.perf_counter() - t
        t = time.perf_counter()
        completions = [c for group in groups for c in group]
        golds = [p.gold for p in batch for _ in range(cfg.group_size)]
        rewards = self.reward(golds, [c.text for c in completions])
        seconds["reward"] = time.perf_counter() - t
        t = time.perf_counter()
        values = torch.tensor(rewards.values, dtype=torch.float32)
        adv, zero_std = grpo_loss.advantages(values, cfg.group_size, cfg.scale_rewards)
        rows = [
            (self.prompt_ids[p.id], _completion_ids(c, self.tok))
            for p, group in zip(batch, groups, strict=True)
            for c in group
        ]
        update = self.update(rows, adv, step)
        seconds["update"] = time.perf_counter() - t
        return _record(step, cfg, rewards, values, zero_std, [len(c) for _, c in rows], update, seconds)

    def sample(self, batch, step: int) -> list[list]:
        """`group_size` completions per problem of `batch`. A prompt that occurs twice in the batch gets
        independent samples for each occurrence (its j-th copy is sampled with seed (seed, step, j))."""
        cfg = self.cfg
        occurrences: dict[int, list[int]] = {}
        seen: dict[str, int] = {}
        for i, p in enumerate(batch):
            text = self.prompts[p.id]
            occurrences.setdefault(seen.get(text, 0), []).append(i)
            seen[text] = seen.get(text, 0) + 1
        out: list = [None] * len(batch)
        for j, idx in sorted(occurrences.items()):
            params = SamplingParams(
                temperature=cfg.temperature, top_p=cfg.top_p, top_k=cfg.top_k,
                max_new_tokens=cfg.max_completion_length, stop=self.stop,
                seed=step_seed(cfg.seed, step, j),
            )  # fmt: skip
            comps = self.sampler.generate([self.prompts[batch[i].id] for i in idx], cfg.group_size, params)
            for i, group in zip(idx, comps, strict=True):
                out[i] = group
        return out

    def update(self, rows, adv, step: int) -> dict:
        """One optimizer step on the GRPO loss of `rows` (prompt ids, completion ids) with advantages `adv`."""
        import torch

        cfg = self.cfg
        totals = grpo_loss.BatchTotals(len(rows), sum(len(c) for _, c in rows), cfg.max_completion_length)
        used = [i for i in range(len(rows)) if cfg.beta or float(adv[i]) != 0.0]
        parts = [[used[k] for k in r] for r in split_rows(len(used), cfg.micro_batches)] if used else []
        lr = cfg.lr_at(step)
        with self.pool.one_thread():
            results = self.pool.map(lambda part: self._part(rows, adv, part, totals), parts)
            loss = torch.zeros(())
            for part_loss, _, _ in results:
                loss = loss + part_loss.cpu()
            kl = sum(float(k) for _, k, _ in results if k is not None) if cfg.beta else None
            self._set_grads([grads for _, _, grads in results])
            norm = torch.nn.utils.clip_grad_norm_(self.params, cfg.grad_clip or float("inf"))
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            self.optimizer.step()
            self.optimizer.zero_grad(set_to_none=True)
        value = float(loss)
        if not math.isfinite(value) or not math.isfinite(float(norm)):
            raise TrainError(f"the GRPO loss or its gradient became non-finite at step {step}; lower --lr")
        kl_mean = kl / max(1, totals.tokens) if kl is not None else None
        return {
            "loss": value,
            "grad_norm": float(norm),
            "lr": lr,
            "kl": kl_mean,
            "rows_skipped": len(rows) - len(used),
        }

    def _part(self, rows, adv, part: list[int], totals):
        """(loss, summed KL, gradients) of one part of the batch."""
        import torch

        chosen = [rows[i] for i in part]
        logps, mask = completion_logps(self.model, chosen, self.pad, self.device, self.cfg.temperature)
        ref = None
        if self.ref is not None:
            with torch.no_grad():
                ref, _ = completion_logps(self.ref, chosen, self.pad, self.device, self.cfg.temperature)
        a = adv[part].to(self.device)
        loss, kl = grpo_loss.part_loss(logps, a, mask, totals, self.cfg.loss_type, self.cfg.beta, ref)
        grads = torch.autograd.grad(loss, self.params, allow_unused=True)
        return loss.detach(), kl, grads

    def _set_grads(self, part_grads: list) -> None:
        """Sum the parts' gradients in part order into `.grad`; with no part (every advantage 0, β = 0)
        the gradient is zero, and AdamW still steps, as TRL's would."""
        import torch

        for j, param in enumerate(self.params):
            grad = None
            for grads in part_grads:
                g = grads[j]
                if g is not None:
                    grad = g.clone() if grad is None else grad.add_(g)
            param.grad = grad if grad is not None or part_grads else torch.zeros_like(param)


# --- helpers -----------------------------------------------------------------------------------------


def _frozen_copy(model):
    ref = copy.deepcopy(model).eval()
    for p in ref.parameters():
        p.requires_grad_(False)
    return ref


def _grader(task, cfg: GRPOConfig):
    return Grader(kind=task.grader_kind, workers=cfg.grade_workers or None, timeout=cfg.grade_timeout)


def _completion_ids(completion, tokenizer) -> list[int]:
    """The sampled token ids of a completion; for a sampler that gives only text, its tokenisation (plus
    EOS when it stopped)."""
    if completion.token_ids is not None:
        return list(completion.token_ids)
    ids = tokenizer(completion.text, add_special_tokens=False)["input_ids"]
    eos = tokenizer.eos_token_id
    if completion.finish_reason == "stop" and eos is not None:
        ids.append(eos)
    return ids or [eos if eos is not None else tokenizer.pad_token_id]


def pass_ks(group: int) -> list[int]:
    """The k of the per-step Pass@k: powers of two up to the group size, and the group size."""
    ks, k = [], 1
    while k < group:
        ks.append(k)
        k *= 2
    return ks + [group]


def _record(step, cfg: GRPOConfig, rewards, values, zero_std, lengths, update, seconds) -> dict:
    """The step's log record (JSON-able)."""
    n = len(rewards.correct)
    correct = [sum(rewards.correct[i : i + cfg.group_size]) for i in range(0, n, cfg.group_size)]
    std = float(values.std()) if n > 1 else 0.0
    return {
        "step": step,
        "reward_mean": float(values.mean()),
        "reward_std": std,
        "kl": update["kl"],
        "completion_length": sum(lengths) / len(lengths),
        "zero_std_fraction": float(zero_std.float().mean()),
        "accuracy": rewards.stats.correct / n,
        "pass_at_k": {
            str(k): sum(pass_at_k(cfg.group_size, c, k) for c in correct) / len(correct)
            for k in pass_ks(cfg.group_size)
        },
        "answered": rewards.stats.answered / n,
        "timeouts": rewards.stats.timeouts,
        "all_zero_reward": bool(float(values.abs().max()) == 0.0),
        "loss": update["loss"],
        "grad_norm": update["grad_norm"],
        "lr": update["lr"],
        "rows_skipped": update["rows_skipped"],
        "seconds": {k: round(v, 4) for k, v in seconds.items()},
    }


# --- resume ----------------------------------------------------------------------------------------


def _check_same_run(state: dict, cfg: GRPOConfig, meta: dict, ckpt: Path) -> None:
    """A resumed run must compute what the interrupted one would have: same settings and start."""
    ours = json.loads(json.dumps(to_dict(cfg)))
    theirs = state.get("config") or {}
    differ = sorted(k for k in ours if k not in RESUME_FREE and ours[k] != theirs.get(k))
    if differ:
        detail = ", ".join(f"--{k.replace('_', '-')} {theirs.get(k)!r} -> {ours[k]!r}" for k in differ[:4])
        raise TrainError(
            f"{ckpt} was trained with other settings ({detail}); resume with the same settings or choose "
            "another -o/--output"
        )
    if json.loads(json.dumps(meta)) != state.get("meta"):
        raise TrainError(
            f"{ckpt} was started from {state.get('meta')!r}, not {meta!r}; resume with the same start and "
            "task or choose another -o/--output"
        )
