"""What the evaluating commands share at parse time: their flags, generated from the configs, and the
config a run reads from YAML and flags. Nothing here loads numpy, torch or transformers: `wiseft --help`
and argument parsing import this module; the closing tables (`cli.tables`) load inside `run`."""

from __future__ import annotations

import argparse
import importlib.util
import sys
from pathlib import Path
from typing import Any

from wiseft.config import add_options, load, option_dests
from wiseft.network import looks_like_hub_name


def add_eval_args(p: argparse.ArgumentParser, cls: type, default_out: str) -> None:
    """`--config`, one flag per option of `cls` (help and default from the dataclass), -o and --force."""
    p.add_argument("--config", help="YAML file with any of the settings below (flags override it)")
    add_options(p, cls)
    p.add_argument("-o", "--output", default=default_out, help=f"output directory (default {default_out})")
    p.add_argument("--force", action="store_true", help="recompute results in an output that has them")


def load_config(cls: type, args: argparse.Namespace, **fixed: Any):
    """The frozen config of `cls`: the YAML `--config`, then every flag given, then `fixed` values."""
    flags = {name: getattr(args, name) for name in option_dests(cls) if getattr(args, name, None) is not None}
    flags.update({k: v for k, v in fixed.items() if v is not None})
    return load(cls, args.config, flags)


def start_ray_early(cfg) -> None:
    """With a `ray:` section, ask the cluster for the run's actors now, before this command imports torch
    and transformers, so that the actors' own imports run meanwhile (`distributed.early`; ~4 s of a Ray
    command's start on the project's VM). Errors are the run's own (an unreachable cluster, one too small
    for the actors); the actors are stopped when the command ends if its run never used them
    (`stop_early_actors`). It does nothing without Ray installed, or when a model, run directory, recipe
    or data path the command names is neither on disk nor a Hub name: the run then reports its input (or
    how to install Ray) in one line before it starts anything, as it would without this head start."""
    if getattr(cfg, "ray", None) is None or importlib.util.find_spec("ray") is None:
        return
    if any(not Path(p).expanduser().exists() and not looks_like_hub_name(p) for p in cfg.input_paths()):
        return
    from wiseft.distributed.early import prestart

    prestart(cfg)


def stop_early_actors() -> None:
    """When a command ends (also on an error): stop the actors `start_ray_early` asked for that its run
    never adopted, so that an error in this process leaves no actor holding the cluster's CPUs."""
    early = sys.modules.get("wiseft.distributed.early")
    if early is not None:
        early.stop_unadopted()
