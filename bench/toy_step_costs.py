"""What a training step of `wiseft demo` costs, per recipe choice: the demo's micro-batched step on the
pretraining batches (128 sloppy rows) and on the SFT batches (32 clean rows), for the recipe (round 6:
the tanh GELU approximation, micro-batches of equal rows) beside round 8's candidate (exact GELU,
micro-batches cut by length; measured on 10 runs and not adopted, docs/TOY-LOG.md) and single changes,
measured in the same run. Two figures per row: CPU ms with the parts run one after the other on one
thread (the step's CPU cost whatever the load), and wall ms with the parts side by side on two threads
(the demo's default). Median of --repeats runs of --steps steps each, rows interleaved so that a change
of load touches every row alike.

    PYTHONPATH=src python bench/toy_step_costs.py            # the default table
    PYTHONPATH=src python bench/toy_step_costs.py --steps 10 --repeats 3

A row here says what a step costs; whether the effect still shows is a 10-run claims table
(docs/TOY-LOG.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from wiseft.tasks.toy import sft_pairs, sloppy_batches
from wiseft.train import sft, toy
from wiseft.train.checkpoints import make_adamw
from wiseft.train.data import Collator, epoch_batches

ROWS = [  # (label, activation, micro-batch split: SFTConfig.micro_split)
    ("round 6 (recipe): gelu_pytorch_tanh, parts of equal rows", "gelu_pytorch_tanh", "rows"),
    ("round 8 (not adopted): gelu, parts by length", "gelu", "length"),
    ("gelu, parts of equal rows", "gelu", "rows"),
    ("gelu_pytorch_tanh, parts by length", "gelu_pytorch_tanh", "length"),
    ("relu, parts by length", "relu", "length"),
]


def batches(stage: str, steps: int) -> list:
    recipe = toy.ToyRecipe()
    collate = Collator(toy.toy_tokenizer())
    if stage == "pretrain":
        batch_at = sloppy_batches(0, recipe.pretrain_batch, recipe.sloppy, exclude=recipe.splits().test_keys)
    else:
        batch_at = epoch_batches(sft_pairs(recipe.splits()), recipe.sft_batch, recipe.sft_seed)
    return [collate(batch_at(s)) for s in range(1, steps + 3)]


def step_ms(stage: str, data: list, activation: str, split: str, threads: int) -> float:
    """ms of one optimizer step: CPU time on one thread, or wall time with `threads` threads."""
    torch.set_num_threads(threads)
    recipe = toy.ToyRecipe()
    model = toy.toy_model(dataclasses.replace(recipe.model, activation=activation), toy.toy_tokenizer(), 0)
    model.train()
    base = recipe.pretrain_config() if stage == "pretrain" else recipe.sft_config()
    cfg = dataclasses.replace(base, threads=threads, micro_split=split)
    stepper = sft._MicroBatches(model, cfg, "cpu")
    optimizer = make_adamw(model, cfg.lr, (cfg.beta1, cfg.beta2), cfg.weight_decay)
    clock = time.process_time if threads == 1 else time.perf_counter
    for b in data[:2]:  # warm-up
        optimizer.zero_grad(set_to_none=True)
        stepper.step(*b, optimizer)
    t0 = clock()
    for b in data[2:]:
        optimizer.zero_grad(set_to_none=True)
        stepper.step(*b, optimizer)
    elapsed = clock() - t0
    stepper.close()
    return elapsed / (len(data) - 2) * 1000


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, ISA {torch.backends.cpu.get_cpu_capability()}")
    for stage in ("pretrain", "sft"):
        data = batches(stage, args.steps)
        cells = {(label, t): [] for label, _, _ in ROWS for t in (1, 2)}
        for _ in range(args.repeats):
            for label, activation, split in ROWS:
                for threads in (1, 2):
                    cells[label, threads].append(step_ms(stage, data, activation, split, threads))
        med = {key: statistics.median(values) for key, values in cells.items()}
        ref = ROWS[0][0]
        print(f"\n{stage} step ({len(data[0][0])} rows), median of {args.repeats}")
        print("| recipe | CPU ms, 1 thread | vs round 6 | wall ms, 2 threads | vs round 6 |")
        print("|---|---|---|---|---|")
        for label, _, _ in ROWS:
            one, two = med[label, 1], med[label, 2]
            print(
                f"| {label} | {one:.1f} | {one / med[ref, 1]:.2f}x | {two:.1f} | {two / med[ref, 2]:.2f}x |"
            )


if __name__ == "__main__":
    main()
