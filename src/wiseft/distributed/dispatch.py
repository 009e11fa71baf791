"""The driver's work queue: units of (variant, chunk of problems) handed to whichever actor is free.

A unit is the chunk of prompts a local run would give one `generate` call (the session's chunk of its
to-do list), so the actors make exactly the calls a single machine makes and draw the same bytes
(docs/ARCHITECTURE.md: "Ray"). Units are handed out to actors as they free up (pull, not a fixed
split), so an actor that drew a chunk of long answers holds up nothing but that chunk: each actor gets
one unit, then a second that waits in its mailbox (`depth`, so it never waits for the driver between
units) while more units are left than there are actors; near the end only free actors get units. Variants go in
plan order, and while the last units of a variant run, idle actors start on the next variant's units
(*lookahead*, same prompts and parameters but its temperature): their results are kept until the session
asks for them, or dropped when it asks for other chunks (a resumed run), so nothing changes but the idle
time. Each actor switches weights when it first meets a variant: at most once per variant per actor in a
run without faults.

Faults: a unit whose actor died (its process killed, its node gone) is put back at the head of the
queue, another actor draws it, and a new actor is started in the lost one's placement bundle (it joins
when it is ready; if the bundle cannot be placed again the run goes on with the others). A unit is
idempotent (seeds depend on the run seed and the prompt only), so a re-run draws the same samples, and
only the driver writes the store, so nothing is stored twice. An error raised by the engine inside an
actor (a bad model file, an impossible request) stops the run with that error.
"""

from __future__ import annotations

import dataclasses
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from wiseft.distributed.monitor import ActorStats, Monitor
from wiseft.errors import SamplingError, WiseftError
from wiseft.evaluate.plan import VariantSpec
from wiseft.sampling import Completion, SamplingParams

DEPTH = 2  # units an actor holds at once while many are left: one running, one waiting in its mailbox
POLL_S = 0.25  # longest wait for a result before the driver checks deadlines and reports progress
STOP_S = 30.0  # longest wait for idle actors to release their engines before they are killed
REPLACEMENTS_PER_ACTOR = 3  # lost actors replaced, per placement bundle, before the run gives up on them


@dataclass(frozen=True)
class Unit:
    """Prompts `start .. start+len(prompts)` of one variant's to-do list, `n` samples each."""

    spec: VariantSpec
    start: int
    prompts: tuple[str, ...]
    n: int
    params: SamplingParams
    attempt: int = 1
    lookahead: bool = False

    @property
    def key(self) -> tuple:
        return (self.spec.name, self.prompts, self.n, self.params)


def split_units(
    spec: VariantSpec,
    prompts: Sequence[str],
    n: int,
    params: SamplingParams,
    size: int,
    lookahead: bool = False,
) -> list[Unit]:
    """The session's chunks: consecutive runs of `size` prompts."""
    size = max(1, size)
    return [Unit(spec, s, tuple(prompts[s : s + size]), n, params, lookahead=lookahead)
            for s in range(0, len(prompts), size)]  # fmt: skip


@dataclass
class Slot:
    """One actor: its handle, its statistics, and the units it holds (running, then waiting)."""

    handle: Any
    stats: ActorStats
    units: list[Unit] = field(default_factory=list)
    since: float = 0.0  # when it was asked to start, then when its oldest unit was handed out
    holds: str | None = None  # the variant its weights will hold once its units are done
    ready: bool = False
    dead: bool = False


class Dispatcher:
    """Units to actors and results back, over plain Ray actor calls (`ray.wait`)."""

    def __init__(
        self, new_actor: Callable[[int], Any], bundles: int, fingerprints: Callable[[VariantSpec], dict],
        monitor: Monitor, start_timeout: float, lookahead: bool = True, depth: int = DEPTH,
    ):  # fmt: skip
        import ray

        self.ray = ray
        self.new_actor = new_actor
        self.fingerprints = fingerprints
        self.monitor = monitor
        self.start_timeout = start_timeout
        self.use_lookahead = lookahead
        self.depth = max(1, depth)
        self.slots: list[Slot] = []  # live actors, started or starting
        self.pending: dict[Any, tuple[Slot, Unit | None]] = {}  # ref -> (actor, its unit; None: its start)
        self.queue: deque[Unit] = deque()
        self.ahead: deque[Unit] = deque()  # the next variant's units, drawn when the queue is empty
        self.cache: dict[tuple, list[list[Completion]]] = {}  # finished lookahead units by key
        self.wanted: dict[tuple, Unit] = {}
        self.next_name: str | None = None
        self.replacements_left = REPLACEMENTS_PER_ACTOR * bundles
        for bundle in range(bundles):
            self._start(bundle)

    # --- one variant -----------------------------------------------------------------------------
    def run(
        self, spec: VariantSpec, prompts: Sequence[str], n: int, params: SamplingParams, size: int,
        next_spec: VariantSpec | None = None,
    ) -> Iterator[tuple[Unit, list[list[Completion]]]]:  # fmt: skip
        """Sample `prompts` under `spec` in units of `size`; yield each unit as it finishes."""
        units = split_units(spec, prompts, n, params, size)
        self.wanted = {u.key: u for u in units}
        ready = [(u, self.cache[u.key]) for u in units if u.key in self.cache]
        self.cache.clear()
        skip = self._running() | {u.key for u, _ in ready}
        self.queue = deque(u for u in units if u.key not in skip)
        self.ahead = deque(self._lookahead(next_spec, prompts, n, params, size))
        self.next_name = next_spec.name if next_spec is not None else None
        self.monitor.queued = len(self.queue)
        for unit, completions in ready:
            del self.wanted[unit.key]
            yield unit, completions
        while self.wanted:
            self._fill()
            yield from self._collect()

    def _lookahead(self, spec, prompts, n, params, size) -> list[Unit]:
        if spec is None or not self.use_lookahead:
            return []
        return split_units(
            spec, prompts, n, dataclasses.replace(params, temperature=spec.temperature), size, True
        )

    def _running(self) -> set[tuple]:
        return {unit.key for _, unit in self.pending.values() if unit is not None}

    # --- handing out -----------------------------------------------------------------------------
    def _fill(self) -> None:
        """Every free actor gets a unit; then, while more units are left than actors, a second one."""
        ready = [s for s in self.slots if s.ready]
        for depth in range(1, self.depth + 1):
            while free := [s for s in ready if len(s.units) < depth]:
                if depth > 1 and len(self.queue) + len(self.ahead) <= len(ready):
                    return  # the last units: only free actors take them
                unit = self._next_unit()
                if unit is None:
                    return
                same = [s for s in free if s.holds == unit.spec.name]  # no switch needed there
                self._send((same or free)[0], unit)

    def _send(self, slot: Slot, unit: Unit) -> None:
        if not slot.units:
            slot.since = time.monotonic()
        slot.units.append(unit)
        slot.holds = unit.spec.name
        ref = slot.handle.run.remote(
            unit.spec, self.fingerprints(unit.spec), list(unit.prompts), unit.n, unit.params
        )
        self.pending[ref] = (slot, unit)
        self.monitor.dispatched()
        self.monitor.running += 1

    def _next_unit(self) -> Unit | None:
        if self.queue:
            self.monitor.queued -= 1
            return self.queue.popleft()
        running = self._running()
        while self.ahead:
            unit = self.ahead.popleft()
            if unit.key not in self.cache and unit.key not in running:
                return unit
        return None

    # --- results ---------------------------------------------------------------------------------
    def _collect(self) -> Iterator[tuple[Unit, list[list[Completion]]]]:
        """One round: whatever finished within POLL_S, handled; the wanted units among them yielded
        (after the free actors got new units, so they work while the session commits)."""
        if not self.pending:
            raise SamplingError(
                "every Ray actor was lost and no more replacements are allowed; see the Ray logs"
            )
        refs = list(self.pending)
        done, _ = self.ray.wait(refs, num_returns=1, timeout=POLL_S)
        if done:
            done, _ = self.ray.wait(refs, num_returns=len(refs), timeout=0)
        out = []
        for ref in done:
            slot, unit = self.pending.pop(ref)
            if unit is None:
                self._started(ref, slot)
                continue
            completions = self._finished(ref, slot, unit)
            if completions is None:
                continue
            if unit.key in self.wanted:  # (a lookahead unit may sit elsewhere in this variant's to-do list)
                out.append((self.wanted.pop(unit.key), completions))
            elif unit.lookahead and unit.spec.name == self.next_name:
                self.cache[unit.key] = completions  # the next variant's, kept until it is asked for
        self._check_deadline()
        self._fill()
        self.monitor.emit()
        yield from out

    def _finished(self, ref, slot: Slot, unit: Unit) -> list[list[Completion]] | None:
        slot.units.remove(unit)
        self.monitor.running -= 1
        seconds = time.monotonic() - slot.since
        slot.since = time.monotonic()
        try:
            result = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            what = f"unit {unit.start}..{unit.start + len(unit.prompts) - 1} of {unit.spec.name}"
            raise _engine_error(exc, slot, what) from None
        except _lost_errors(self.ray):
            self.monitor.lost(slot.stats, unit, seconds)
            self._requeue(unit)
            self._replace(slot)
            return None
        self.monitor.finished(slot.stats, unit, result, result.sample_s + result.switch_s)
        return result.completions

    def _started(self, ref, slot: Slot) -> None:
        try:
            where = self.ray.get(ref)
        except self.ray.exceptions.RayTaskError as exc:
            raise _engine_error(exc, slot, "start") from None
        except _lost_errors(self.ray):
            self.monitor.lost(slot.stats, None, 0.0)
            self._replace(slot)
            return
        slot.ready = True
        self.monitor.ready(slot.stats, where)

    def _requeue(self, unit: Unit) -> None:
        if unit.key in self.wanted:
            self.queue.appendleft(dataclasses.replace(self.wanted[unit.key], attempt=unit.attempt + 1))
            self.monitor.queued += 1
        elif unit.lookahead and unit.spec.name == self.next_name:
            self.ahead.appendleft(dataclasses.replace(unit, attempt=unit.attempt + 1))

    # --- actors ----------------------------------------------------------------------------------
    def _start(self, bundle: int) -> None:
        slot = Slot(self.new_actor(bundle), self.monitor.add_actor(bundle), since=time.monotonic())
        self.slots.append(slot)
        self.pending[slot.handle.start.remote()] = (slot, None)

    def _replace(self, slot: Slot) -> None:
        """A lost actor: killed for good (once, whichever of its calls failed first), and a new one started
        in its placement bundle while replacements are left."""
        if slot.dead:
            return
        slot.dead = True
        self.slots.remove(slot)
        self._kill(slot)
        if self.replacements_left > 0:
            self.replacements_left -= 1
            self._start(slot.stats.bundle)

    def _kill(self, slot: Slot) -> None:
        try:
            self.ray.kill(slot.handle, no_restart=True)
        except Exception:  # noqa: BLE001 - already gone
            pass

    def _check_deadline(self) -> None:
        """No actor has become ready within the start timeout: the cluster cannot run them."""
        if any(s.ready for s in self.slots):
            return
        waiting = [s for s in self.slots if not s.ready]
        if waiting and all(time.monotonic() - s.since > self.start_timeout for s in waiting):
            raise SamplingError(
                f"no Ray actor became ready within {self.start_timeout:g} s (--ray-start-timeout); the "
                "cluster could not place or start them (see `ray status`)"
            )

    def close(self) -> None:
        """Stop every actor (running units are abandoned; the driver stored what had finished). Idle
        actors first release their engine's processes (`EngineWorker.stop`, up to STOP_S)."""
        slots, self.slots = self.slots, []
        self.pending.clear()
        if self.ray.is_initialized():  # (at exit Ray may have shut down first; a call would restart it)
            idle = [s.handle.stop.remote() for s in slots if s.ready and not s.units]
            if idle:
                self.ray.wait(idle, num_returns=len(idle), timeout=STOP_S)
            for slot in slots:
                self._kill(slot)
        for slot in slots:
            slot.stats.state = "stopped"


def _lost_errors(ray) -> tuple[type[BaseException], ...]:
    """What a dead actor, process or node raises for its calls (the unit itself was fine)."""
    e = ray.exceptions
    return (e.RayActorError, e.WorkerCrashedError, e.NodeDiedError, e.ObjectLostError, e.LocalRayletDiedError)


def _engine_error(exc, slot: Slot, what: str) -> WiseftError:
    """The library's own error raised inside an actor, or a SamplingError naming the actor and unit."""
    cause = getattr(exc, "cause", None)
    if isinstance(cause, WiseftError):
        return cause
    where = f"{slot.stats.label} ({slot.stats.where.get('host', '?')}:{slot.stats.where.get('pid', '?')})"
    text = str(cause or exc).strip().splitlines()
    return SamplingError(
        f"Ray {where} failed in {what}: {type(cause or exc).__name__}: {text[-1] if text else ''}"
    )
