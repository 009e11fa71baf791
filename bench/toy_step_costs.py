"""What recipe-level options of `wiseft demo` would buy: CPU milliseconds of one pretraining step of the
toy model (the demo's micro-batched step, parts run one after the other on one thread, so the figure is
the step's CPU cost whatever the load), per activation and per batch size, beside the demo's recipe
measured in the same run. Median of --repeats runs of --steps steps each.

    PYTHONPATH=src python bench/toy_step_costs.py            # the default table
    PYTHONPATH=src python bench/toy_step_costs.py --steps 10 --repeats 3

Not a recipe change: a row here only says what a step would cost; whether the effect still shows is a new
10-run claims table (docs/TOY-LOG.md).
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import time

import torch

from wiseft.tasks.toy import sloppy_batches
from wiseft.train import toy
from wiseft.train.checkpoints import make_adamw
from wiseft.train.data import Collator
from wiseft.train.sft import _MicroBatches

ROWS = [  # (label, activation, batch size)
    ("recipe: gelu_pytorch_tanh, batch 128", "gelu_pytorch_tanh", 128),
    ("gelu (exact erf)", "gelu", 128),
    ("relu", "relu", 128),
    ("silu", "silu", 128),
    ("gelu_pytorch_tanh, batch 256 (per 128 rows)", "gelu_pytorch_tanh", 256),
]


def step_ms(activation: str, batch: int, steps: int) -> float:
    """CPU ms of one optimizer step (per 128 rows of text) on one thread."""
    torch.set_num_threads(1)
    recipe = toy.ToyRecipe()
    tok = toy.toy_tokenizer()
    model = toy.toy_model(dataclasses.replace(recipe.model, activation=activation), tok, 0)
    model.train()
    cfg = dataclasses.replace(recipe.pretrain_config(), batch_size=batch, threads=1)
    stepper = _MicroBatches(model, cfg, "cpu")
    optimizer = make_adamw(model, cfg.lr, (cfg.beta1, cfg.beta2), cfg.weight_decay)
    batch_at = sloppy_batches(0, batch, recipe.sloppy, exclude=recipe.splits().test_keys)
    collate = Collator(tok)
    batches = [collate(batch_at(s)) for s in range(1, steps + 3)]
    for b in batches[:2]:  # warm-up
        optimizer.zero_grad(set_to_none=True)
        stepper.step(*b, optimizer)
    t0 = time.process_time()
    for b in batches[2:]:
        optimizer.zero_grad(set_to_none=True)
        stepper.step(*b, optimizer)
    stepper.close()
    return (time.process_time() - t0) / steps * 1000 * 128 / batch


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    print(f"torch {torch.__version__}, ISA {torch.backends.cpu.get_cpu_capability()}, 1 thread")
    results = {label: [] for label, _, _ in ROWS}
    for _ in range(args.repeats):  # interleaved, so a change of load touches every row alike
        for label, activation, batch in ROWS:
            results[label].append(step_ms(activation, batch, args.steps))
    base = statistics.median(results[ROWS[0][0]])
    print(f"| pretraining step (per 128 rows), median of {args.repeats} | CPU ms | vs recipe |")
    print("|---|---|---|")
    for label, values in results.items():
        med = statistics.median(values)
        print(f"| {label} | {med:.1f} | {med / base:.2f}x |")


if __name__ == "__main__":
    main()
