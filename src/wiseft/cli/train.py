"""`wiseft train`: supervised fine-tuning (`sft`), RL (`grpo`, in cli/grpo.py) and the toy world's base
model (`toy-base`)."""

from __future__ import annotations

import argparse
from pathlib import Path

from wiseft.cli import grpo as grpo_cli
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
        description="Stage 1 of the demo's recipe: a fresh ~0.6 M-parameter Llama trained on sloppy "
        "running-sum text. Writes OUT/base (HF directory), OUT/sft.jsonl and OUT/test.jsonl.",
    )
    toy.add_argument("-o", "--output", required=True)
    toy.add_argument("--steps", type=int, default=800)
    toy.add_argument("--batch-size", type=int, default=128)
    toy.add_argument("--lr", type=float, default=2e-3)
    toy.add_argument("--seed", type=int, default=2, help="pretraining seed (weights and text; default 2)")
    toy.add_argument("--data-seed", type=int, default=5, help="seed of the SFT/test problems")
    toy.add_argument("--n-sft", type=int, default=32)
    toy.add_argument("--n-test", type=int, default=400)
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
    p.add_argument("--save-optimizer", action="store_true", help="also save optimizer.pt (exact resume)")
    p.add_argument("--max-length", type=int, default=0, help="truncate examples to N tokens (0: never)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    p.add_argument(
        "--micro-batches",
        type=int,
        default=1,
        help="split each batch into N parts, gradients summed in a fixed order; on CPU the parts run "
        "side by side, one core each, with the same result for any --threads (default 1)",
    )


def _parse_steps(text: str) -> tuple[int, ...]:
    if not text.strip():
        return ()
    try:
        return tuple(sorted({int(s) for s in text.split(",") if s.strip()}))
    except ValueError as exc:
        raise ConfigError(f"--save-steps must be comma-separated integers, got {text!r}") from exc


def _sft_config(args):
    from wiseft.train.sft import SFTConfig

    return SFTConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        min_lr=args.min_lr,
        schedule=args.schedule,
        warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay,
        grad_clip=args.grad_clip,
        save_every=args.save_every,
        save_steps=_parse_steps(args.save_steps),
        save_optimizer=args.save_optimizer,
        max_length=args.max_length,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
        micro_batches=args.micro_batches,
    )


def _progress(description: str):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    return Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("loss {task.fields[loss]:.4f}  lr {task.fields[lr]:.2e}"),
        TimeRemainingColumn(),
    )


def _train_with_progress(description: str, steps: int, fn):
    """Run `fn(on_step)` under a rich progress bar; return its result."""
    from rich.console import Console
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()  # rows are right-padded without a mask on purpose (see train.sft)

    console = Console(stderr=True)
    with _progress(description) as bar:
        task = bar.add_task(description, total=steps, loss=float("nan"), lr=0.0)

        def on_step(p):
            bar.update(task, completed=p.step, loss=p.loss, lr=p.lr)
            if p.saved is not None:
                bar.console.print(f"  saved {p.saved}  (step {p.step}, loss {p.loss:.4f})")

        result = fn(on_step)
    return result, console


def _summary_table(result, title: str):
    from rich.table import Table

    table = Table(title=title)
    table.add_column("checkpoint")
    table.add_column("step", justify="right")
    for step, path in result.checkpoints.items():
        table.add_row(str(path), str(step))
    return table


def run_sft(args) -> int:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from wiseft.config import write_resolved
    from wiseft.errors import TrainError
    from wiseft.train.sft import epoch_batches, list_checkpoints, load_dataset_pairs, read_jsonl_pairs, train

    cfg = _sft_config(args)
    out = Path(args.output)
    if list_checkpoints(out) and not args.resume:
        raise TrainError(
            f"output {out} already holds checkpoints; pass --resume to continue or choose another -o/--output"
        )
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise TrainError(f"--model {model_dir} is not a Hugging Face model directory (no config.json)")
    data = Path(args.data)
    if data.exists() or args.data.endswith((".jsonl", ".json")):
        pairs = read_jsonl_pairs(data, args.prompt_field, args.completion_field)
    else:
        pairs = load_dataset_pairs(args.data, args.split, args.prompt_field, args.completion_field)
    tok = AutoTokenizer.from_pretrained(str(model_dir))
    model = AutoModelForCausalLM.from_pretrained(str(model_dir), dtype="float32")
    out.mkdir(parents=True, exist_ok=True)
    write_resolved(out, cfg, name="train_config.yaml")
    meta = {"stage": "sft", "model": str(model_dir), "data": args.data, "n_examples": len(pairs)}
    result, console = _train_with_progress(
        "sft",
        cfg.steps,
        lambda on_step: train(
            model,
            tok,
            epoch_batches(pairs, cfg.batch_size, cfg.seed),
            cfg,
            out,
            resume=args.resume,
            meta=meta,
            on_step=on_step,
        ),
    )
    console.print(_summary_table(result, f"wiseft train sft: {len(result.checkpoints)} checkpoints in {out}"))
    if result.losses:
        console.print(
            f"final loss {result.losses[-1]:.4f}; {len(result.losses)} steps in {result.seconds:.1f} s"
        )
    else:
        console.print(f"nothing to do: {out} already holds step {cfg.steps}")
    return 0


def run_toy_base(args) -> int:
    import shutil

    from wiseft.atomic import atomic_dir
    from wiseft.train import toy

    recipe = toy.ToyRecipe(
        data_seed=args.data_seed,
        n_sft=args.n_sft,
        n_test=args.n_test,
        pretrain_seed=args.seed,
        pretrain_steps=args.steps,
        pretrain_batch=args.batch_size,
        pretrain_lr=args.lr,
        threads=args.threads,
    )
    with atomic_dir(args.output, force=args.force) as tmp:
        result, console = _train_with_progress(
            "pretrain", recipe.pretrain_steps, lambda on_step: toy.pretrain(recipe, tmp / "pretrain", on_step)
        )
        last = result.checkpoints[max(result.checkpoints)]
        shutil.move(str(last), str(tmp / "base"))
        shutil.rmtree(tmp / "pretrain")
        toy.write_split_jsonl(recipe.splits(), tmp)
    console.print(
        f"toy base model in {Path(args.output) / 'base'}; SFT data in {Path(args.output) / 'sft.jsonl'}"
    )
    return 0
