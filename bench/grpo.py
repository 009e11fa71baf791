"""Benchmark: GRPO steps/s on the toy, our sampler as the generator versus TRL's default generation.

The model is the toy shape (GPT-2, width 128, 3 layers, 0.6 M parameters) after a short pretraining on
the toy's sloppy text (built once, cached in ~/.cache/wiseft-bench), so completions look like the
demo's: a few partial sums ending in "$". Each step: 8 toy prompts × a group of 8, at most 16 new tokens
(the demo's length), T = 1, β = 0, grader rewards (exact integers) plus a format reward of 0.5 for any
answer, so that groups differ and every update has work to do. The setups, each run `--runs`
times (median shown), steps/s over `--steps` steps after one warm-up step:

1. `wiseft train grpo` as shipped: `HFSampler` as the generator;
2. the same loop with TRL's default generation, i.e. one transformers `generate` call over the
   left-padded prompts, each repeated group-size times (as `GRPOTrainer._generate_single_turn` does),
   and (with --threads > 1) the same on one intra-op thread, which keeps its samples thread-independent;
3. TRL's `GRPOTrainer` with its default generation (the baseline);
4. TRL's `GRPOTrainer` with `HFSampler` as its `rollout_func`.

    python bench/grpo.py [--runs 3] [--steps 6] [--threads 2]

Needs the `train` extra (trl) for rows 3-4; they are skipped without it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from merge import CACHE  # noqa: E402  (bench/merge.py: the cache location)

PROMPTS, GROUP, MAX_NEW, FORMAT = 8, 8, 16, 0.5


def toy_base() -> Path:
    """The toy model after 150 steps of sloppy pretraining (cached)."""
    from wiseft.train import toy

    path = CACHE / "toy-grpo-base"
    if (path / "config.json").is_file():
        return path
    recipe = toy.ToyRecipe(pretrain_steps=150)
    with tempfile.TemporaryDirectory() as tmp:
        result = toy.pretrain(recipe, Path(tmp) / "pretrain")
        last = result.checkpoints[max(result.checkpoints)]
        path.parent.mkdir(parents=True, exist_ok=True)
        last.rename(path)
    return path


def task():
    from wiseft.tasks import get_task

    return get_task("toy", seed=5, n_sft=96, n_test=400, split="sft")


class GenerateSampler:
    """TRL's default generation as a sampler: one `model.generate` over the left-padded batch of prompts,
    each repeated n times, sampling at the given temperature, stopping at the model's EOS ids. With
    `one_thread`, generate runs on one intra-op thread (then its samples do not depend on --threads)."""

    def __init__(self, model, tokenizer, one_thread: bool = False):
        self.model, self.tok, self.one_thread = model, tokenizer, one_thread

    def generate(self, prompts, n, params):
        from wiseft.sampling.base import Completion

        ids = [self.tok(p)["input_ids"] for p in prompts for _ in range(n)]
        width = max(len(x) for x in ids)
        pad = self.tok.pad_token_id
        input_ids = torch.tensor([[pad] * (width - len(x)) + x for x in ids])
        mask = (torch.arange(width)[None, :] >= torch.tensor([width - len(x) for x in ids])[:, None]).long()
        torch.manual_seed(params.seed)
        threads = torch.get_num_threads()
        if self.one_thread:
            torch.set_num_threads(1)
        with torch.no_grad():
            out = self.model.generate(
                input_ids=input_ids, attention_mask=mask, do_sample=True, temperature=params.temperature,
                top_k=0, top_p=1.0, max_new_tokens=params.max_new_tokens, pad_token_id=pad,
            )[:, width:]  # fmt: skip
        torch.set_num_threads(threads)
        eos = set(self.model.generation_config.eos_token_id)
        comps = []
        for row in out.tolist():
            cut = next((i + 1 for i, t in enumerate(row) if t in eos), len(row))
            row = row[:cut]
            text = self.tok.decode([t for t in row if t not in eos], skip_special_tokens=True)
            comps.append(
                Completion(text, len(row), "stop" if cut < params.max_new_tokens else "length", tuple(row))
            )
        return [comps[i * n : (i + 1) * n] for i in range(len(prompts))]


def run_ours(base: Path, steps: int, threads: int, sampler: str) -> float:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from wiseft.train import grpo

    tok = AutoTokenizer.from_pretrained(base)
    model = AutoModelForCausalLM.from_pretrained(base, dtype=torch.float32)
    cfg = grpo.GRPOConfig(
        steps=steps + 2, prompts_per_step=PROMPTS, group_size=GROUP, lr=1e-5, max_completion_length=MAX_NEW,
        threads=threads, grade_workers=1, save_optimizer=False, format_reward=FORMAT,
    )  # fmt: skip
    times = []
    last = [time.perf_counter()]

    def on_step(p):
        now = time.perf_counter()
        times.append(now - last[0])
        last[0] = now

    gen = (
        GenerateSampler(model, tok, one_thread=sampler == "generate-1")
        if sampler.startswith("generate")
        else None
    )
    with tempfile.TemporaryDirectory() as tmp:
        last[0] = time.perf_counter()
        grpo.train(model, tok, task(), cfg, Path(tmp) / "run", on_step=on_step, sampler=gen)
    return steps / sum(times[1:-1])  # not the first step (set-up) nor the last (it writes a checkpoint)


def run_trl(base: Path, steps: int, threads: int, sampler: str) -> float:
    import datasets
    from transformers import AutoTokenizer, PrinterCallback, TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    from wiseft.grading import Grader
    from wiseft.train.rewards import GraderReward

    t = task()
    tok = AutoTokenizer.from_pretrained(base)
    tok.padding_side = "left"
    golds = {p.question: p.gold for p in t.problems}
    grader = Grader(kind="int")
    reward = GraderReward(t, grader, format_reward=FORMAT)

    def reward_fn(prompts, completions, **kw):
        return reward([golds[p] for p in prompts], completions).values

    times = []

    class Timer(TrainerCallback):
        def on_step_begin(self, args, state, control, **kw):
            self.t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):
            times.append(time.perf_counter() - self.t)

    rollout = _hf_rollout(tok, threads) if sampler == "ours" else None
    with tempfile.TemporaryDirectory() as tmp:
        args = GRPOConfig(
            output_dir=tmp, use_cpu=True, bf16=False, per_device_train_batch_size=PROMPTS * GROUP,
            num_generations=GROUP, max_completion_length=MAX_NEW, temperature=1.0, beta=0.0, learning_rate=1e-5,
            max_steps=steps + 1, save_strategy="no", logging_steps=1000, report_to="none", disable_tqdm=True,
            model_init_kwargs={"dtype": "float32"}, seed=0,
        )  # fmt: skip
        data = datasets.Dataset.from_list([{"prompt": p.question} for p in t.problems])
        trainer = GRPOTrainer(model=str(base), reward_funcs=[reward_fn], args=args, train_dataset=data,
                              processing_class=tok, callbacks=[Timer()], rollout_func=rollout)  # fmt: skip
        trainer.remove_callback(PrinterCallback)  # it prints every log dict
        trainer.train()
    grader.close()
    return steps / sum(times[1:])


def _hf_rollout(tok, threads: int):
    from wiseft.sampling.base import SamplingParams
    from wiseft.sampling.hf import HFSampler

    def rollout(prompts, trainer):
        unique = prompts[::GROUP]
        sampler = HFSampler(trainer.model, tok, threads=threads)
        params = SamplingParams(temperature=1.0, max_new_tokens=MAX_NEW, seed=trainer.state.global_step)
        trainer.model.eval()
        groups = sampler.generate(unique, GROUP, params)
        trainer.model.train()
        ids = [tok(p)["input_ids"] for p in unique]
        return {
            "prompt_ids": [ids[i] for i in range(len(unique)) for _ in range(GROUP)],
            "completion_ids": [list(c.token_ids) for g in groups for c in g],
            "logprobs": None,
        }

    return rollout


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--steps", type=int, default=6)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()
    console = Console()
    base = toy_base()
    setups = [("wiseft grpo, HFSampler (ours)", run_ours, "ours"),
              ("wiseft grpo, generate (TRL's default generation)", run_ours, "generate")]  # fmt: skip
    if args.threads > 1:
        setups.append(("wiseft grpo, generate on one intra-op thread", run_ours, "generate-1"))
    try:
        import trl  # noqa: F401

        setups += [("TRL GRPOTrainer, default generation (baseline)", run_trl, "generate"),
                   ("TRL GRPOTrainer, HFSampler as rollout_func", run_trl, "ours")]  # fmt: skip
    except ImportError:
        console.print("trl is not installed: the GRPOTrainer rows are skipped (pip install 'wiseft[train]')")
    results = {name: [] for name, _, _ in setups}
    for r in range(args.runs):  # interleaved, so a change in machine load hits every setup alike
        for name, fn, sampler in setups:
            results[name].append(fn(base, args.steps, args.threads, sampler))
            console.print(f"run {r + 1}: {name}: {results[name][-1]:.2f} steps/s")
    trl_default = "TRL GRPOTrainer, default generation (baseline)"
    baseline = statistics.median(results[trl_default]) if trl_default in results else None
    table = Table(title=f"GRPO on the toy: {PROMPTS} prompts × {GROUP}, ≤{MAX_NEW} tokens, {args.threads} threads, "
                        f"median of {args.runs}")  # fmt: skip
    for col in ("setup", "steps/s (median)", "runs", "vs TRL default"):
        table.add_column(col, justify="left" if col == "setup" else "right")
    for name, values in results.items():
        med = statistics.median(values)
        ratio = f"{med / baseline:.2f}×" if baseline else "-"
        table.add_row(name, f"{med:.2f}", " ".join(f"{v:.2f}" for v in values), ratio)
    console.print(table)
    return 0


if __name__ == "__main__":
    sys.exit(main())
