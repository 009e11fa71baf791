"""RL runs in the report: each GRPO run's per-step log drawn against the RL step, one curve per start.

`wiseft train grpo` writes `grpo_log.jsonl` beside its checkpoints (one JSON object per step: reward_mean,
kl, completion_length, zero_std_fraction, pass_at_k over each group, …; `train.steplog`). The report
finds the logs of a run directory (`find_rl_logs`: DIR itself, DIR/*/ and DIR/rl/*/, the demo's layout),
reads them as untrusted input (`read_rl_log`: sizes bounded, every field it draws checked, a bad line is a
one-line error naming the file and line), and draws two figures: reward and Pass@k of the groups against
the step, and the run's health (the fraction of groups with zero reward variance, completion length and
KL when it was computed). The section appears only when at least one log was found.
"""

from __future__ import annotations

import functools
import json
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from wiseft.errors import ConfigError
from wiseft.report.style import axes, figure, percent_axis, shared_legend, suptitle, title

if TYPE_CHECKING:
    from matplotlib.figure import Figure

LOG_NAME = "grpo_log.jsonl"
MAX_LOG_BYTES = 64 << 20
MAX_LINE_CHARS = 1 << 20
MAX_RUNS = 12
ORDER = ("final", "mix", "early")  # the demo's starts first, in this order
COLORS = {"final": "#1f5fa8", "mix": "#e8710a", "early": "#7a7a7a"}
OTHER_COLORS = ("#2a9d4b", "#b3126a", "#6b2503", "#0b3463", "#f0a500", "#5b8fd1")
SMOOTH_MIN_STEPS = 12  # from this many steps a running mean is drawn over the raw values


@dataclass(frozen=True)
class RLRun:
    """One RL run's per-step values (None where a step did not record the quantity)."""

    label: str
    path: Path
    steps: list[int] = field(default_factory=list)
    reward: list[float] = field(default_factory=list)
    pass_at_k: dict[int, list[float | None]] = field(default_factory=dict)
    zero_std: list[float] = field(default_factory=list)
    length: list[float] = field(default_factory=list)
    kl: list[float | None] = field(default_factory=list)

    @property
    def group(self) -> int | None:
        """The largest k of the per-step Pass@k (the group size)."""
        return max(self.pass_at_k) if self.pass_at_k else None


def find_rl_logs(run_dir: str | os.PathLike) -> list[tuple[str, Path]]:
    """(label, log path) of every RL run in `run_dir`: DIR/grpo_log.jsonl, DIR/*/grpo_log.jsonl and
    DIR/rl/*/grpo_log.jsonl; a run's label is its directory's name. The demo's starts come first."""
    root = Path(run_dir)
    if not root.is_dir():
        return []
    found = [root / LOG_NAME] + sorted(root.glob(f"*/{LOG_NAME}")) + sorted(root.glob(f"rl/*/{LOG_NAME}"))
    logs = [(p.parent.name, p) for p in found if p.is_file()]
    if len(logs) > MAX_RUNS:
        raise ConfigError(
            f"{root}: {len(logs)} RL step logs ({LOG_NAME}) found; the report draws at most {MAX_RUNS}"
        )
    rank = {name: i for i, name in enumerate(ORDER)}
    return sorted(logs, key=lambda item: rank.get(item[0], len(ORDER)))


def load_rl_runs(run_dir: str | os.PathLike) -> list[RLRun]:
    """Every RL run's log found in `run_dir` (`find_rl_logs`), read and checked."""
    return [read_rl_log(path, label) for label, path in find_rl_logs(run_dir)]


def read_rl_log(path: str | os.PathLike, label: str | None = None) -> RLRun:
    """The per-step values of a `grpo_log.jsonl`. A torn last line (a run killed mid-write) is skipped;
    anything else malformed raises `ConfigError` naming the file and line."""
    path = Path(path)
    lines = _lines(path)
    run = RLRun(label if label is not None else path.parent.name, path)
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        where = f"{path}:{i + 1}"
        if len(line) > MAX_LINE_CHARS:
            raise ConfigError(f"{where}: line longer than {MAX_LINE_CHARS} characters; not a GRPO step log")
        try:
            record = json.loads(line)
        except ValueError:
            if i == len(lines) - 1:  # no newline after it: the write was cut short
                break
            raise ConfigError(f"{where}: not valid JSON; the GRPO step log is damaged") from None
        _add_step(run, record, where)
    return run


def _lines(path: Path) -> list[str]:
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise ConfigError(f"RL step log {path} cannot be read ({exc.strerror})") from None
    if size > MAX_LOG_BYTES:
        raise ConfigError(f"RL step log {path} is {size} bytes, over the limit of {MAX_LOG_BYTES}")
    try:
        return path.read_text(encoding="utf-8").split("\n")
    except UnicodeDecodeError:
        raise ConfigError(f"RL step log {path} is not UTF-8 text; is it a grpo_log.jsonl?") from None


def _number(record: dict, key: str, where: str, lo: float = -math.inf, hi: float = math.inf, null=False):
    x = record.get(key)
    if x is None and null:
        return None
    if isinstance(x, bool) or not isinstance(x, (int, float)) or not (lo <= x <= hi):  # NaN fails too
        allowed = f" in [{lo:g}, {hi:g}]" if math.isfinite(lo) or math.isfinite(hi) else ""
        raise ConfigError(
            f"{where}: field {key!r} must be a finite number{allowed}{' or null' if null else ''}, "
            f"got {json.dumps(x)[:40]}"
        )
    return float(x)


def _add_step(run: RLRun, record, where: str) -> None:
    if not isinstance(record, dict):
        raise ConfigError(f"{where}: expected a JSON object (one GRPO step), got {type(record).__name__}")
    step = record.get("step")
    last = run.steps[-1] if run.steps else 0
    if isinstance(step, bool) or not isinstance(step, int) or step <= last:
        raise ConfigError(
            f"{where}: field 'step' must be an integer above the previous step {last}, got {step!r}"
        )
    pass_k = record.get("pass_at_k")
    if not isinstance(pass_k, dict) or not pass_k:
        raise ConfigError(f'{where}: field \'pass_at_k\' must be an object such as {{"1": 0.5, "8": 0.9}}')
    ks = {}
    for key in list(pass_k)[:64]:
        if not (isinstance(key, str) and key.isdigit() and 1 <= int(key) <= 1 << 20):
            raise ConfigError(
                f"{where}: field 'pass_at_k' has key {key[:20]!r}; expected a positive integer k"
            )
        ks[int(key)] = _number(pass_k, key, f"{where}: pass_at_k", 0.0, 1.0)
    run.steps.append(step)
    run.reward.append(_number(record, "reward_mean", where))
    run.zero_std.append(_number(record, "zero_std_fraction", where, 0.0, 1.0))
    run.length.append(_number(record, "completion_length", where, 0.0))
    run.kl.append(_number(record, "kl", where, null=True))
    for k in set(ks) | set(run.pass_at_k):
        run.pass_at_k.setdefault(k, [None] * (len(run.steps) - 1)).append(ks.get(k))


# --- figures ---------------------------------------------------------------------------------------------
def _color(run: RLRun, i: int) -> str:
    return COLORS.get(run.label, OTHER_COLORS[i % len(OTHER_COLORS)])


def _label(run: RLRun) -> str:
    return ("RL from " + run.label).replace("$", r"\$")  # a directory name is never mathtext


def _smooth(values: Sequence[float | None], window: int) -> np.ndarray:
    """Trailing running mean over `window` steps (missing values skipped)."""
    xs = np.array([np.nan if v is None else v for v in values], dtype=float)
    out = np.full(xs.shape, np.nan)
    for i in range(len(xs)):
        part = xs[max(0, i - window + 1) : i + 1]
        if np.isfinite(part).any():
            out[i] = np.nanmean(part)
    return out


def _series(ax, runs: Sequence[RLRun], get, percent: bool) -> None:
    """One curve per run: the raw values thin, their running mean bold (from SMOOTH_MIN_STEPS steps)."""
    scale = 100.0 if percent else 1.0
    for i, run in enumerate(runs):
        values = get(run)
        ys = np.array([np.nan if v is None else v * scale for v in values], dtype=float)
        color = _color(run, i)
        if len(run.steps) >= SMOOTH_MIN_STEPS:
            ax.plot(run.steps, ys, color=color, linewidth=0.7, alpha=0.35, label="_nolegend_")
            window = max(3, len(run.steps) // 10)
            ax.plot(run.steps, _smooth(values, window) * scale, color=color, label=_label(run))
        else:
            ax.plot(run.steps, ys, color=color, marker="o", label=_label(run), clip_on=False)
    ax.set_xlabel("RL step")


def plot_rl_curves(runs: Sequence[RLRun]) -> Figure | None:
    """Reward, Pass@1 and Pass@G (G the group size) of each step's groups against the step."""
    runs = [r for r in runs if r.steps]
    if not runs:
        return None
    g = min(r.group for r in runs)
    panels = [("mean reward", lambda r: r.reward, False)]
    panels.append(("Pass@1 of the groups", lambda r: r.pass_at_k.get(1, [None] * len(r.steps)), True))
    if g > 1:
        panels.append((f"Pass@{g} of the groups", lambda r: r.pass_at_k.get(g, [None] * len(r.steps)), True))
    fig = figure(len(panels), width=3.6, height=3.0)
    axs = axes(fig, len(panels))
    for ax, (name, get, percent) in zip(axs, panels, strict=True):
        _series(ax, runs, get, percent)
        title(ax, name, 3.3)
        if percent:
            percent_axis(ax, name.split(" ")[0])
        else:
            ax.set_ylabel("reward")
    shared_legend(fig, axs[0])
    suptitle(fig, "RL (GRPO) against the step: reward and Pass@k of each step's groups, one curve per start")
    return fig


def plot_rl_health(runs: Sequence[RLRun]) -> Figure | None:
    """Zero-variance groups, completion length and (when computed) KL against the step."""
    runs = [r for r in runs if r.steps]
    if not runs:
        return None
    panels = [("groups with zero reward variance", lambda r: r.zero_std, True),
              ("completion length (tokens)", lambda r: r.length, False)]  # fmt: skip
    if any(v is not None for r in runs for v in r.kl):
        panels.append(("KL to the start (per token)", lambda r: r.kl, False))
    fig = figure(len(panels), width=3.6, height=3.0)
    axs = axes(fig, len(panels))
    for ax, (name, get, percent) in zip(axs, panels, strict=True):
        _series(ax, runs, get, percent)
        title(ax, name, 3.3)
        if percent:
            percent_axis(ax, "groups")
    shared_legend(fig, axs[0])
    suptitle(fig, "RL health: groups with nothing to learn (all rewards equal), length and KL")
    return fig


# Name (the PNG's stem), title, caption, function: the RL section's figures in order.
RL_PLOTS = [
    ("rl_reward", "RL: reward and Pass@k against the step",
     "Mean reward and Pass@1/Pass@G over each step's groups of G samples on the RL prompts (not the test "
     "problems), one curve per start; thin: each step, bold: running mean.", plot_rl_curves),
    ("rl_health", "RL: zero-variance groups, length and KL",
     "A group whose rewards all agree gives no gradient: a start with collapsed diversity has many.",
     plot_rl_health),
]  # fmt: skip


def rl_figure_builders(runs: Sequence[RLRun]) -> dict:
    """Each RL plot's builder by name (the figure, or None without data), as `plots.figure_builders`."""
    return {name: functools.partial(fn, runs) for name, _title, _caption, fn in RL_PLOTS}


def _last_mean(values: Sequence[float | None], n: int) -> str:
    tail = [v for v in values[-n:] if v is not None]
    return f"{sum(tail) / len(tail):.3f}" if tail else "–"


def rl_table(runs: Sequence[RLRun]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): per run its steps and the mean of the last tenth of the steps of each quantity."""
    header = ["run", "steps", "reward (first)", "reward (last 10%)", "Pass@1 (last 10%)", "Pass@G (last 10%)",
              "zero-variance groups (last 10%)", "length (last 10%)", "log"]  # fmt: skip
    rows = []
    for run in runs:
        n = max(1, len(run.steps) // 10)
        g = run.group
        rows.append([
            run.label, str(len(run.steps)), f"{run.reward[0]:.3f}" if run.reward else "–",
            _last_mean(run.reward, n), _last_mean(run.pass_at_k.get(1, []), n),
            f"{_last_mean(run.pass_at_k.get(g, []), n)} (G={g})" if g else "–",
            _last_mean(run.zero_std, n), _last_mean(run.length, n), str(run.path),
        ])  # fmt: skip
    return header, rows
