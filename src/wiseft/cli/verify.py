"""`wiseft verify SAMPLES --verifier PATH --kind orm|prm|likelihood`: score samples with a verifier.

SAMPLES is a sample store (scores go into it, beside the verifier's id; resumable: a rerun scores only
what is missing) or a JSONL file of sample records (written again to -o with `score`, `verifier` and
`vote_transform` on each record). `wiseft score` then reports best@k and weighted maj@k.
"""

from __future__ import annotations

import argparse
import time

from wiseft.cli.progress import LogLines, stderr_console, stdout_console
from wiseft.errors import ConfigError

KINDS = ("orm", "prm", "likelihood")
DTYPES = ("float32", "bfloat16", "float16")
GIB = 1 << 30
MAX_BUDGET_GIB = 1 << 12
# Flags of one verifier kind (argparse dest → the kinds that take it); each is a verifier option.
KIND_FLAGS = {
    "template": ("orm", "prm"),
    "system": ("orm", "prm"),
    "aggregation": ("prm",),
    "separator": ("prm",),
    "step_delimiter": ("prm",),
    "positive_token": ("prm",),
    "negative_token": ("prm",),
    "add_special_tokens": ("likelihood",),
}
COMMON_FLAGS = ("device", "max_tokens", "max_rows", "max_batch_tokens", "workers")


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}") from None
    if number < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value!r}")
    return number


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "verify",
        help="score samples with a verifier (reward model, process reward model or likelihood) for best@k",
        description="Score every sample of a sample store (scores written into it, resumable) or of a JSONL "
        "of sample records with an outcome reward model, a process reward model or a model's own likelihood. "
        "`wiseft score` then adds best@k and weighted maj@k.",
    )
    p.add_argument("samples", help="sample store (samples.db) or JSONL of sample records")
    p.add_argument(
        "--verifier", required=True, metavar="PATH", help="verifier directory (safetensors) or Hub name"
    )
    p.add_argument("--kind", required=True, choices=KINDS,
                   help="orm: *ForSequenceClassification; prm: step scores at a separator; likelihood: a causal "
                   "LM's mean log-probability of the completion")  # fmt: skip
    p.add_argument("--variant", action="append", help="score only this variant (repeatable; default: all)")
    p.add_argument("--input", default="auto", choices=("auto", "prompt", "question"),
                   help="problem text the verifier reads: the sampler's prompt or the bare question (default "
                   "auto: the question for a chat-template verifier, else the prompt)")  # fmt: skip
    g = p.add_argument_group("verifier options")
    g.add_argument(
        "--aggregation", choices=("min", "last", "prod"), help="prm: step scores → score (default min)"
    )
    g.add_argument("--separator", help="prm: the step separator token (default <extra_0>)")
    g.add_argument(
        "--step-delimiter", help="prm: text that splits a completion into steps (default a blank line)"
    )
    g.add_argument("--positive-token", help="prm read from a causal LM: the 'good step' token (e.g. +)")
    g.add_argument("--negative-token", help="prm read from a causal LM: the 'bad step' token (e.g. -)")
    g.add_argument("--template", choices=("auto", "chat", "plain"),
                   help="orm/prm: chat template or plain prompt+completion (default auto)")  # fmt: skip
    g.add_argument("--system", help="orm/prm: a system prompt (chat template only)")
    g.add_argument("--no-special-tokens", dest="add_special_tokens", action="store_const", const=False,
                   help="likelihood: prompts already carry their special tokens (no BOS added)")  # fmt: skip
    g.add_argument("--trust-remote-code", action="store_true",
                   help="run code that ships with the checkpoint (off: only transformers' own architectures)")  # fmt: skip
    r = p.add_argument_group("resources")
    r.add_argument("--device", help="cpu, cuda or cuda:N (default: cuda when available)")
    r.add_argument("--dtype", choices=DTYPES, help="weights dtype (default float32 on CPU, bfloat16 on CUDA)")
    r.add_argument("--threads", type=_positive, help="CPU threads for torch (default: torch's)")
    r.add_argument("--max-rows", type=_positive, help="most samples per batch")
    r.add_argument("--max-batch-tokens", type=_positive, help="most padded tokens per batch")
    r.add_argument(
        "--max-tokens", type=_positive, help="longest sample in tokens (default: the model's context)"
    )
    r.add_argument("--cpu-budget-gib", type=float, help="CPU: GiB for a batch's activations (default 1)")
    r.add_argument(
        "--workers", type=_positive, help="CPU: batches scored side by side (default: from the model size)"
    )
    r.add_argument("--chunk", type=_positive, default=1024,
                   help="store: samples scored and committed together (default 1024)")  # fmt: skip
    p.add_argument("-o", "--output", help="JSONL input: scored JSONL to write (default SAMPLES.scored.jsonl)")
    p.add_argument("--force", action="store_true", help="JSONL input: replace an existing output file")
    p.set_defaults(func=run)


def verifier_options(args) -> dict:
    """The `load_verifier` options of the flags given; a flag of another kind is a ConfigError."""
    options = {}
    for dest, kinds in KIND_FLAGS.items():
        value = getattr(args, dest)
        if value is None:
            continue
        if args.kind not in kinds:
            flag = "--no-special-tokens" if dest == "add_special_tokens" else "--" + dest.replace("_", "-")
            raise ConfigError(f"{flag} applies to --kind {' or '.join(kinds)}, not {args.kind}")
        options[dest] = value
    options.update({name: getattr(args, name) for name in COMMON_FLAGS if getattr(args, name) is not None})
    if args.trust_remote_code:
        options["trust_remote_code"] = True
    if args.cpu_budget_gib is not None:
        if not 0 < args.cpu_budget_gib <= MAX_BUDGET_GIB:
            raise ConfigError(f"--cpu-budget-gib must be in (0, {MAX_BUDGET_GIB}], got {args.cpu_budget_gib}")
        options["budget_bytes"] = int(args.cpu_budget_gib * GIB)
    if args.dtype is not None:
        import torch

        options["dtype"] = getattr(torch, args.dtype)
    return options


class VerifyProgress:
    """A bar per variant with samples/s; plain lines at each quarter when output is not a terminal."""

    def __init__(self, console):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self.bar = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
            TimeElapsedColumn(), console=console, transient=False, disable=not console.is_terminal,
        )  # fmt: skip
        self.lines = LogLines(console)
        self.tasks: dict[str, tuple[object, float, int]] = {}

    def __enter__(self):
        self.bar.__enter__()
        return self

    def __exit__(self, *exc):
        return self.bar.__exit__(*exc)

    def __call__(self, name: str, done: int, total: int) -> None:
        if name not in self.tasks:
            task = self.bar.add_task(f"scoring {name}", total=total, rate="")
            self.tasks[name] = (task, time.perf_counter(), done)
        task, t0, first = self.tasks[name]
        elapsed = time.perf_counter() - t0
        rate = f"{(done - first) / elapsed:,.1f} samples/s" if done > first and elapsed > 0 else ""
        self.bar.update(task, completed=done, total=total, rate=rate)  # type: ignore[arg-type]
        self.lines.update(name, f"scoring {name}", done, total, rate)


def run(args) -> int:
    from wiseft.evaluate.verifying import verify_file

    options = verifier_options(args)
    if args.threads is not None:
        import torch

        torch.set_num_threads(args.threads)
    with VerifyProgress(stderr_console()) as progress:
        report = verify_file(
            args.samples, args.verifier, args.kind, options, variants=args.variant, reads=args.input,
            output=args.output, force=args.force, chunk=args.chunk, progress=progress,
        )  # fmt: skip
    closing_table(stdout_console(), report)
    return 0


def closing_table(console, report) -> None:
    from rich.table import Table

    ident = report.identity
    table = Table(
        title=f"verifier {ident['id']} ({ident['kind']}, reads the {ident['input']}) → {report.written}"
    )
    for col in ("variant", "samples", "scored now", "scored before", "mean score", "time", "samples/s"):
        table.add_column(col, justify="left" if col == "variant" else "right", no_wrap=col == "variant")
    for row in report.variants:
        table.add_row(
            row.name, str(row.samples), str(row.scored), str(row.before),
            "-" if row.mean is None else f"{row.mean:.4g}", f"{row.seconds:.1f} s",
            "-" if row.rate is None else f"{row.rate:,.1f}",
        )  # fmt: skip
    console.print(table)
    console.print(
        f"votes for wmaj@k: {ident['vote_transform']}(score). Next: wiseft score {report.written} --k 1,4,… "
        f"(--verifier {ident['id']} when the samples carry scores of other verifiers too)",
        highlight=False,
    )
