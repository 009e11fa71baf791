"""`wiseft train`: supervised fine-tuning (`sft`), RL (`grpo`, in cli/grpo.py) and the toy world's base
model (`toy-base`)."""

from __future__ import annotations

import argparse

from wiseft.cli import grpo as grpo_cli
from wiseft.cli.progress import LogLines, stderr_console
from wiseft.errors import ConfigError


def register(subparsers) -> None:
    parser = subparsers.add_parser("train", help="fine-tune a causal LM; build the toy base model")
    sub = parser.add_subparsers(dest="train_command", metavar="STAGE")

    sft = sub.add_parser(
        "sft",
        help="supervised fine-tuning on prompt/completion pairs, with HF checkpoints on a schedule",
        description="Fine-tune any causal LM (a Hugging Face directory) on prompt/completion pairs, loss on "
        "completion tokens only, writing checkpoint-STEP/ directories (safetensors, config, tokenizer).",
    )
    sft.add_argument("--model", required=True, help="Hugging Face model directory to start from")
    sft.add_argument("--data", required=True, help="JSONL file of prompt/completion lines, or a dataset name")
    sft.add_argument("--split", default="train", help="dataset split when --data is a dataset name")
    sft.add_argument("--prompt-field", default="prompt")
    sft.add_argument("--completion-field", default="completion")
    sft.add_argument("-o", "--output", required=True, help="run directory; checkpoints go in it")
    _training_flags(sft)
    sft.add_argument(
        "--resume",
        action="store_true",
        help="continue from the last checkpoint in --output (needed when it already holds checkpoints)",
    )
    sft.set_defaults(func=run_sft)
    grpo_cli.register(sub)

    toy = sub.add_parser(
        "toy-base",
        help="pretrain the toy world's sloppy base model and write its SFT/test data as JSONL",
        description="Stage 1 of the demo's recipe: a fresh ~0.6 M-parameter GPT-2-style model trained on "
        "sloppy running-sum text. Writes OUT/base (HF directory), OUT/sft.jsonl and OUT/test.jsonl (the "
        "demo's problems; `--task toy --data OUT/test.jsonl` evaluates on them). Unset flags take the "
        "demo's recipe (wiseft.train.toy.ToyRecipe).",
    )
    toy.add_argument("-o", "--output", required=True)
    toy.add_argument(
        "--steps", type=int, help="the most steps of one pretraining attempt (default 1600; the gate usually "
        "ends it sooner)",
    )  # fmt: skip
    toy.add_argument(
        "--attempts", type=int, help="fresh starts (another seed each) while the gate is not passed within "
        "--steps (default 3; 1: none)",
    )  # fmt: skip
    toy.add_argument(
        "--gate",
        type=float,
        help="end pretraining once the base writes the gold chain of its gate problems with this mean "
        "probability, checked every 25 steps (default 0.08; 0: train all --steps)",
    )
    toy.add_argument("--batch-size", type=int, help="pretraining batch size")
    toy.add_argument("--lr", type=float, help="pretraining learning rate")
    toy.add_argument("--seed", type=int, help="pretraining seed (weights and text)")
    toy.add_argument("--data-seed", type=int, help="seed of the SFT/test problems")
    toy.add_argument("--n-sft", type=int, help="SFT problems written")
    toy.add_argument("--n-test", type=int, help="test problems written")
    toy.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    toy.add_argument("--force", action="store_true", help="replace --output if it exists")
    toy.set_defaults(func=run_toy_base)
    parser.set_defaults(func=lambda args: parser.print_help() or 2)


def _training_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--steps", type=int, default=600, help="optimizer steps (default 600)")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=1e-3, help="peak learning rate")
    p.add_argument("--min-lr", type=float, default=1e-4, help="final learning rate of the cosine schedule")
    p.add_argument("--schedule", choices=["cosine", "constant"], default="cosine")
    p.add_argument("--warmup-steps", type=int, default=50)
    p.add_argument("--weight-decay", type=float, default=0.0)
    p.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    p.add_argument("--save-every", type=int, default=0, help="write a checkpoint every N steps")
    p.add_argument(
        "--save-steps",
        default="",
        help="comma-separated steps to checkpoint at, e.g. 10,25,50 (the last step is always saved)",
    )
    p.add_argument(
        "--save-optimizer", action="store_true", help="also save the optimizer state (exact resume)"
    )
    p.add_argument("--max-length", type=int, default=0, help="truncate examples to N tokens (0: never)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument("--threads", type=int, default=None, help="CPU threads (default: torch's)")
    p.add_argument(
        "--micro-batches",
        type=int,
        default=1,
        help="split each batch into N parts, gradients summed in a fixed order; on CPU the parts run "
        "side by side, one core each, with the same result for any --threads (default 1)",
    )
    p.add_argument(
        "--micro-split", choices=("length", "rows"), default="length",
        help="how the parts are cut: 'length' sorts rows by length and evens out the parts' padded sizes "
        "(less padding), 'rows' takes consecutive rows in equal counts (default length)",
    )  # fmt: skip


def _parse_steps(text: str) -> tuple[int, ...]:
    if not text.strip():
        return ()
    try:
        return tuple(sorted({int(s) for s in text.split(",") if s.strip()}))
    except ValueError as exc:
        raise ConfigError(f"--save-steps must be comma-separated integers, got {text!r}") from exc


def _sft_config(args):
    from wiseft.train.sft import SFTConfig

    names = ("steps", "batch_size", "lr", "min_lr", "schedule", "warmup_steps", "weight_decay", "grad_clip",
             "save_every", "save_optimizer", "max_length", "seed", "device", "threads", "micro_batches",
             "micro_split")  # fmt: skip
    device = None if args.device == "auto" else args.device
    return SFTConfig(**{n: getattr(args, n) for n in names if n != "device"}, device=device,
                     save_steps=_parse_steps(args.save_steps))  # fmt: skip


def _train_with_progress(description: str, steps: int, fn):
    """Run `fn(on_step)` under a progress bar (plain lines when output is piped); return its result."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # rows are right-padded without a mask on purpose (see train.sft)
    console = stderr_console()
    columns = (
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"), TimeRemainingColumn(),
    )  # fmt: skip
    lines = LogLines(console)
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task(description, total=steps, loss=float("nan"), lr=0.0)

        def on_step(p):
            bar.update(task, completed=p.step, loss=p.loss, lr=p.lr)
            lines.update(description, description, p.step, steps, f"loss {p.loss:.4f}")
            if p.saved is not None:
                console.print(f"  saved {p.saved}  (step {p.step}, loss {p.loss:.4f})", highlight=False)

        result = fn(on_step)
    return result, console


def run_sft(args) -> int:
    from rich.table import Table

    from wiseft.train.sft import finetune_from_files

    cfg = _sft_config(args)
    result, console = _train_with_progress(
        "sft",
        cfg.steps,
        lambda on_step: finetune_from_files(
            args.model, args.data, args.output, cfg, split=args.split, prompt_field=args.prompt_field,
            completion_field=args.completion_field, resume=args.resume, on_step=on_step,
        ),
    )  # fmt: skip
    table = Table(title=f"wiseft train sft: {len(result.checkpoints)} checkpoints in {args.output}")
    table.add_column("checkpoint")
    table.add_column("step", justify="right")
    for step, path in result.checkpoints.items():
        table.add_row(str(path), str(step))
    console.print(table)
    if result.losses:
        console.print(
            f"final loss {result.losses[-1]:.4f}; {len(result.losses)} steps in {result.seconds:.1f} s"
        )
    else:
        console.print(f"nothing to do: {args.output} already holds step {cfg.steps}")
    return 0


def run_toy_base(args) -> int:
    import dataclasses

    from wiseft.train import toy

    given = {"data_seed": args.data_seed, "n_sft": args.n_sft, "n_test": args.n_test, "pretrain_seed": args.seed,
             "pretrain_steps": args.steps, "pretrain_batch": args.batch_size, "pretrain_lr": args.lr,
             "pretrain_gate": args.gate, "pretrain_attempts": args.attempts}  # fmt: skip
    changes = {k: v for k, v in given.items() if v is not None}
    recipe = dataclasses.replace(toy.ToyRecipe(), threads=args.threads, **changes)
    _, console = _train_with_progress(
        "pretrain",
        recipe.pretrain_ceiling,
        lambda on_step: toy.write_toy_world(recipe, args.output, on_step, args.force),
    )
    console.print(f"toy base model in {args.output}/base; SFT data in {args.output}/sft.jsonl")
    return 0
