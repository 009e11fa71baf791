"""`wiseft train grpo`: GRPO with grader rewards from a checkpoint or from a mix made in memory."""

from __future__ import annotations

import argparse
from pathlib import Path

from wiseft.cli.grade import parse_task_options
from wiseft.cli.progress import LogLines, stderr_console
from wiseft.config import write_resolved
from wiseft.devices import resolve_device
from wiseft.errors import TaskError
from wiseft.grids import parse_ks

EPILOG = """examples:
  wiseft train grpo --model sft/checkpoint-600 --task toy --task-option split=sft -o rl-final
  wiseft train grpo --init sft/checkpoint-75 sft/checkpoint-600 --delta 0.5 --task toy -o rl-mix
  wiseft train grpo --init-recipe recipe.yaml --task gsm8k --data ../shared/data --beta 0.04 -o rl
  wiseft train grpo ... -o rl-mix --resume        # continue after the last checkpoint, same bytes
"""


def register(sub) -> None:
    p = sub.add_parser(
        "grpo",
        help="RL (GRPO) with the grader as reward, from a checkpoint or from a mix without writing it",
        description="Group-relative policy optimisation on a task's prompts: sample a group of completions "
        "per prompt, reward 1 when the grader verifies the answer (plus --format-reward for any answer), "
        "update. Writes checkpoint-STEP/ (HF format, atomic) and grpo_log.jsonl (one line per step).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    start = p.add_argument_group("start (exactly one)")
    start.add_argument("--model", help="Hugging Face model directory to start from")
    start.add_argument(
        "--init", nargs=2, metavar=("EARLY", "FINAL"), help="start from the mix of two checkpoints"
    )
    start.add_argument("--delta", type=float, help="with --init: θ = δ·EARLY + (1−δ)·FINAL")
    start.add_argument("--init-recipe", help="start from a merge recipe YAML (as `wiseft merge --config`)")
    data = p.add_argument_group("prompts")
    data.add_argument("--task", required=True, help="task: gsm8k, math, math500, aime24, aime25, jsonl, toy")
    data.add_argument("--data", help="local data file or directory of the task")
    data.add_argument("--task-option", action="append", default=[], metavar="KEY=VALUE",
                      help="task option, repeatable (toy: seed=, n_sft=, split=sft; jsonl: answer_field=)")  # fmt: skip
    data.add_argument("--limit", type=int, help="train on the first N problems only")
    data.add_argument(
        "--prompt", choices=("plain", "chat"), default="plain", help="prompt style (default plain)"
    )
    p.add_argument("-o", "--output", required=True, help="run directory: checkpoints and grpo_log.jsonl")
    p.add_argument("--resume", action="store_true", help="continue after the last checkpoint in --output")
    _rl_flags(p.add_argument_group("GRPO (defaults as TRL's GRPOConfig)"))
    _run_flags(p.add_argument_group("checkpoints and machine"))
    p.set_defaults(func=run)


def _rl_flags(g) -> None:
    g.add_argument("--steps", type=int, default=100, help="optimizer steps (default 100)")
    g.add_argument("--prompts-per-step", type=int, default=8, help="prompts per step (default 8)")
    g.add_argument("--group-size", type=int, default=8, help="completions per prompt (default 8)")
    g.add_argument("--beta", type=float, default=0.0, help="KL coefficient; 0 needs no reference (default 0)")
    g.add_argument("--lr", type=float, default=1e-6, help="peak learning rate (default 1e-6)")
    g.add_argument("--min-lr", type=float, default=0.0, help="learning rate the schedule ends at (default 0)")
    g.add_argument("--schedule", choices=("constant", "linear", "cosine"), default="linear")
    g.add_argument("--warmup-steps", type=int, default=0)
    g.add_argument("--weight-decay", type=float, default=0.0)
    g.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm (0: off)")
    g.add_argument("--loss-type", choices=("dapo", "grpo", "dr_grpo"), default="dapo")
    g.add_argument("--scale-rewards", choices=("group", "batch", "none"), default="group")
    g.add_argument(
        "--max-completion-length", type=int, default=512, help="tokens per completion (default 512)"
    )
    g.add_argument("--temperature", type=float, default=1.0)
    g.add_argument("--top-p", type=float, default=1.0)
    g.add_argument("--top-k", type=int, default=0)
    g.add_argument("--format-reward", type=float, default=0.0, help="reward for giving any final answer")
    g.add_argument("--seed", type=int, default=0)


def _run_flags(g) -> None:
    g.add_argument("--save-every", type=int, default=0, help="write a checkpoint every N steps")
    g.add_argument(
        "--save-steps", default="", help="comma-separated steps to checkpoint at (the last always is)"
    )
    g.add_argument("--no-optimizer-state", action="store_true",
                   help="do not store the optimizer state (smaller checkpoints; a resume restarts AdamW)")  # fmt: skip
    g.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    g.add_argument("--threads", type=int, default=0, help="CPU threads (0: torch's default)")
    g.add_argument("--micro-batches", type=int, default=2,
                   help="parts each batch's gradient is summed from, in a fixed order (default 2)")  # fmt: skip
    g.add_argument("--timeout", type=float, default=5.0, help="seconds per answer verification (default 5)")
    g.add_argument("--workers", type=int, default=0, help="verifier processes (0: automatic)")
    g.add_argument("--warn-zero-reward-after", type=int, default=10,
                   help="warn when every reward was 0 for N steps in a row (0: never)")  # fmt: skip


def config_from_args(args):
    from wiseft.train.grpo import GRPOConfig

    return GRPOConfig(
        steps=args.steps, prompts_per_step=args.prompts_per_step, group_size=args.group_size, beta=args.beta,
        lr=args.lr, min_lr=args.min_lr, schedule=args.schedule, warmup_steps=args.warmup_steps,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, loss_type=args.loss_type,
        scale_rewards=args.scale_rewards, max_completion_length=args.max_completion_length,
        temperature=args.temperature, top_p=args.top_p, top_k=args.top_k, format_reward=args.format_reward,
        prompt_style=args.prompt, save_every=args.save_every, save_steps=parse_ks(args.save_steps, "--save-steps") if args.save_steps.strip() else (),
        save_optimizer=not args.no_optimizer_state, seed=args.seed, device=args.device, threads=args.threads,
        micro_batches=args.micro_batches, warn_zero_reward_after=args.warn_zero_reward_after,
        grade_timeout=args.timeout, grade_workers=args.workers,
    )  # fmt: skip


def _local(path: str) -> str:
    """An existing local path made absolute (a resumed run compares it); anything else as given."""
    p = Path(path)
    return str(p.resolve()) if p.exists() else path


def run(args) -> int:
    from wiseft.tasks import get_task
    from wiseft.train import grpo
    from wiseft.train.start import Start, load_start

    _quiet_transformers()
    cfg = config_from_args(args)
    start = Start(
        model=_local(args.model) if args.model else None,
        init=tuple(_local(p) for p in args.init or ()),
        delta=args.delta,
        recipe=_local(args.init_recipe) if args.init_recipe else None,
    )
    options = parse_task_options(args.task_option)
    task = get_task(args.task, data=args.data, **options)
    if args.limit is not None and args.limit < 1:
        raise TaskError(f"--limit must be at least 1, got {args.limit}")
    problems = task.problems[: args.limit] if args.limit else task.problems
    out = Path(args.output)
    grpo.check_output(out, args.resume)  # before the (slow) start is loaded
    model, tokenizer = load_start(start, resolve_device(cfg.device))
    meta = {
        "stage": "grpo",
        "start": start.describe(),
        "task": {"name": args.task, "data": _local(args.data) if args.data else None, "options": options,
                 "limit": args.limit, "problems": len(problems), "prompt": args.prompt},
    }  # fmt: skip
    console = stderr_console()
    result = _train_with_progress(console, cfg, lambda on_step: grpo.train(
        model, tokenizer, task, cfg, out, problems=problems, resume=args.resume, meta=meta, on_step=on_step
    ))  # fmt: skip
    write_resolved(out, cfg, name="grpo_config.yaml")
    _summary(console, result, out, cfg)
    return 0


def _quiet_transformers() -> None:
    """No loading bars or padding warnings from transformers: our progress bar is the one shown, and
    completions are right-padded without a mask on purpose (train.grpo)."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def _train_with_progress(console, cfg, fn):
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    columns = [
        TextColumn("[bold]grpo"), BarColumn(), MofNCompleteColumn(),
        TextColumn("reward {task.fields[reward]:.3f}±{task.fields[std]:.3f}  kl {task.fields[kl]}  "
                   "len {task.fields[length]:.1f}  zero-var {task.fields[zero]:.2f}"),
        TimeRemainingColumn(),
    ]  # fmt: skip
    lines = LogLines(console)
    with Progress(*columns, console=console, disable=not console.is_terminal) as bar:
        task = bar.add_task("grpo", total=cfg.steps, reward=0.0, std=0.0, kl="-", length=0.0, zero=0.0)

        def on_step(p):
            r = p.record
            kl = f"{r['kl']:.4f}" if r["kl"] is not None else "-"
            bar.update(task, completed=p.step, reward=r["reward_mean"], std=r["reward_std"], kl=kl,
                       length=r["completion_length"], zero=r["zero_std_fraction"])  # fmt: skip
            detail = f"reward {r['reward_mean']:.3f}±{r['reward_std']:.3f} kl {kl} zero-var {r['zero_std_fraction']:.2f}"
            lines.update("grpo", "grpo", p.step, cfg.steps, detail)
            if p.saved is not None:
                bar.console.print(f"  saved {p.saved}  (step {p.step}, reward {r['reward_mean']:.3f})")
            if p.warning:
                bar.console.print(f"[yellow]warning:[/] step {p.step}: {p.warning}")

        return fn(on_step)


def _summary(console, result, out: Path, cfg) -> None:
    from rich.table import Table

    table = Table(title=f"wiseft train grpo: {len(result.checkpoints)} checkpoints in {out}")
    for column in ("checkpoint", "step", "reward", "pass@1", "zero-var"):
        table.add_column(column, justify="left" if column == "checkpoint" else "right")
    log = {r["step"]: r for r in result.records}
    for step, path in result.checkpoints.items():
        r = log.get(step)
        cells = (
            [f"{r['reward_mean']:.3f}", f"{r['pass_at_k']['1']:.3f}", f"{r['zero_std_fraction']:.2f}"]
            if r
            else ["", "", ""]
        )
        table.add_row(str(path), str(step), *cells)
    console.print(table)
    if result.records:
        console.print(
            f"{len(result.records)} steps in {result.seconds:.1f} s; step log in {out / 'grpo_log.jsonl'}"
        )
    else:
        console.print(f"nothing to do: {out} already holds step {cfg.steps}")
