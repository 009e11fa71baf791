"""`wiseft fisher`: a model's diagonal Fisher, for `wiseft merge --method fisher`."""

from __future__ import annotations

import argparse

from wiseft.cli.progress import stdout_console
from wiseft.errors import ConfigError

EPILOG = """examples:
  wiseft fisher A --data val.jsonl -o A.fisher          # {"text": ...} or {"prompt": ..., "completion": ...} lines
  wiseft merge A B --method fisher --fisher A.fisher --fisher B.fisher -o merged
"""


def register(subparsers) -> None:
    p = subparsers.add_parser(
        "fisher",
        help="compute a model's diagonal Fisher (for Fisher merging)",
        description="Diagonal Fisher information of a model on a JSONL of texts or prompt/completion pairs: "
        "the mean squared gradient of the log-likelihood of tokens sampled from the model itself.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", help="model directory or Hub name")
    p.add_argument("--data", required=True, help="JSONL: {text} or {prompt, completion} per line")
    p.add_argument("-o", "--output", required=True, help="output Fisher directory (written atomically)")
    p.add_argument("--seed", type=int, default=0, help="seed of the sampled targets (default 0)")
    p.add_argument("--max-examples", type=int, help="use at most this many examples (default: all)")
    p.add_argument("--max-length", type=int, default=512, help="truncate examples to this many tokens")
    p.add_argument("--force", action="store_true", help="replace an existing output directory")
    p.set_defaults(func=run)


def run(args) -> int:
    from wiseft.train.fisher import compute_fisher

    if args.max_length < 2:
        raise ConfigError(f"--max-length {args.max_length}: needs at least 2 tokens")
    if args.max_examples is not None and args.max_examples < 1:
        raise ConfigError(f"--max-examples {args.max_examples}: needs at least 1")
    meta = compute_fisher(
        args.model, args.data, args.output, args.seed, args.max_examples, args.max_length, args.force
    )
    stdout_console().print(
        f"wrote {args.output}: diagonal Fisher of {meta['model']} over {meta['examples']} examples "
        f"(seed {meta['seed']}, norm {meta['norm']:.4g})",
        soft_wrap=True,
        markup=False,
    )
    return 0
