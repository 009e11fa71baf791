"""What the driver knows of its actors and queue: throughput for the progress display, and the run's record.

`Monitor` keeps, per actor, the units, samples and tokens it drew, its busy seconds (sampling + weight
switches, as the actor measured them), its switches and its state; for the queue, units queued, running,
done and re-queued; and one row per unit drawn (variant, which prompts, which actor, attempt, seconds).
`progress` (the session's callback) gets one line per actor and one for the queue, with stage "ray":
`progress(label, "ray", done, total, detail)`, where `detail` is the throughput text; a 4-argument
callback gets the same without `detail`. `record()` is what results.json keeps under machine.ray.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, field

EMIT_EVERY_S = 0.5


@dataclass
class ActorStats:
    label: str
    bundle: int
    state: str = "starting"  # starting | ready | lost | stopped
    where: dict = field(default_factory=dict)
    units: int = 0
    samples: int = 0
    tokens: int = 0
    busy_s: float = 0.0
    switches: int = 0
    ready_at: float | None = None
    last_at: float | None = None
    lost_units: int = 0
    cpu_s: float = 0.0  # the actor process's CPU seconds, start-up included
    sample_cpu_s: float = 0.0  # CPU seconds of its units' sampling
    asked_at: float | None = None

    def start_s(self) -> float:
        """Seconds from asking for the actor to its engine being loaded."""
        if self.ready_at is None or self.asked_at is None:
            return 0.0
        return self.ready_at - self.asked_at

    def rate(self) -> float:
        """Samples per second of wall time since the actor was ready."""
        if self.ready_at is None or self.last_at is None or self.last_at <= self.ready_at:
            return 0.0
        return self.samples / (self.last_at - self.ready_at)

    def busy(self) -> float:
        span = (self.last_at or 0.0) - (self.ready_at or 0.0)
        return min(1.0, self.busy_s / span) if span > 0 else 0.0

    def detail(self) -> str:
        host = f"{self.where.get('host', '?')}:{self.where.get('pid', '?')}"
        nice = self.where.get("niceness") or 0  # > 0: every other process on its node comes first
        return (f"{self.rate():.1f} samples/s, busy {self.busy():.0%}, {self.switches} switches, "
                f"{self.state} on {host}" + (f", niceness {nice}" if nice > 0 else ""))  # fmt: skip

    def as_dict(self) -> dict:
        return {"actor": self.label, "bundle": self.bundle, "state": self.state, **self.where,
                "units": self.units, "samples": self.samples, "tokens": self.tokens,
                "busy_s": round(self.busy_s, 3), "cpu_s": round(self.cpu_s, 3),
                "sample_cpu_s": round(self.sample_cpu_s, 3), "start_s": round(self.start_s(), 3), "switches": self.switches, "lost_units": self.lost_units,
                "samples_per_s": round(self.rate(), 3), "busy_frac": round(self.busy(), 4)}  # fmt: skip


class Monitor:
    def __init__(self, progress: Callable | None = None, clock: Callable[[], float] = time.monotonic):
        self.progress = progress
        self.detail = progress is not None and _takes_detail(progress)
        self.clock = clock
        self.actors: list[ActorStats] = []
        self.units: list[dict] = []
        self.queued = self.running = self.done = self.requeued = 0
        self.engine_info: dict = {}  # what the first ready actor's engine reports (Engine.info)
        self.first_at: float | None = None  # the first unit handed out
        self.last_at: float | None = None  # the last unit finished
        self._last_emit = 0.0

    def add_actor(self, bundle: int) -> ActorStats:
        stats = ActorStats(f"actor {len(self.actors)}", bundle, asked_at=self.clock())
        self.actors.append(stats)
        return stats

    def ready(self, stats: ActorStats, where: dict) -> None:
        where = dict(where)
        self.engine_info.update(where.pop("engine_info", None) or {})
        stats.state, stats.where, stats.ready_at = "ready", where, self.clock()

    def finished(self, stats: ActorStats, unit, result, seconds: float) -> None:
        samples = sum(len(row) for row in result.completions)
        stats.units += 1
        stats.samples += samples
        stats.tokens += result.tokens
        stats.busy_s += result.sample_s + result.switch_s
        stats.switches += int(result.switched)
        stats.cpu_s = max(stats.cpu_s, result.cpu_s)
        stats.sample_cpu_s += result.sample_cpu_s
        stats.last_at = self.last_at = self.clock()
        self.done += 1
        self._row(stats, unit, "done", seconds, samples)

    def lost(self, stats: ActorStats, unit, seconds: float) -> None:
        stats.state = "lost"
        if unit is not None:
            stats.lost_units += 1
            self.requeued += 1
            self._row(stats, unit, "lost", seconds, 0)

    def _row(self, stats: ActorStats, unit, outcome: str, seconds: float, samples: int) -> None:
        self.units.append({"variant": unit.spec.name, "start": unit.start, "problems": len(unit.prompts),
                           "actor": stats.label, "pid": stats.where.get("pid"), "node": stats.where.get("ip"),
                           "attempt": unit.attempt, "lookahead": unit.lookahead, "outcome": outcome,
                           "samples": samples, "seconds": round(seconds, 4),
                           "at": round(self.clock() - (self.first_at or self.clock()), 4)})  # fmt: skip

    def emit(self, force: bool = False) -> None:
        """Report each actor and the queue to the progress callback, at most every EMIT_EVERY_S."""
        now = self.clock()
        if self.progress is None or (not force and now - self._last_emit < EMIT_EVERY_S):
            return
        self._last_emit = now
        total = self.done + self.running + self.queued
        queue = f"{self.queued} queued, {self.running} running, {self.done} done, {self.requeued} re-queued"
        self._send("queue", self.done, total, queue)
        for a in self.actors:
            self._send(a.label, a.units, max(self.done, 1), a.detail())

    def _send(self, label: str, done: int, total: int, detail: str) -> None:
        if self.detail:
            self.progress(label, "ray", done, total, detail)  # type: ignore[misc]
        else:
            self.progress(label, "ray", done, total)  # type: ignore[misc]

    def dispatched(self) -> None:
        if self.first_at is None:
            self.first_at = self.clock()

    def span(self) -> float:
        """Seconds from the first unit handed out to the last one finished."""
        return (self.last_at or 0.0) - self.first_at if self.first_at is not None else 0.0

    def record(self) -> dict:
        """The run's record: every actor, every unit, and the busy share: the actors' busy seconds over
        the seconds they were ready until the last unit finished (start-up is the cluster's, not idling)."""
        end = self.last_at or 0.0
        ready = sum(end - a.ready_at for a in self.actors if a.ready_at is not None and a.units)
        busy = sum(a.busy_s for a in self.actors)
        return {"actors": [a.as_dict() for a in self.actors], "units": list(self.units),
                "span_s": round(self.span(), 3), "busy_share": round(busy / ready, 4) if ready > 0 else None,
                "switches": sum(a.switches for a in self.actors), "requeued": self.requeued}  # fmt: skip


def _takes_detail(fn: Callable) -> bool:
    """Whether `fn` accepts a fifth positional argument."""
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError):
        return False
    if any(p.kind is p.VAR_POSITIONAL for p in params):
        return True
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    return len(positional) >= 5
