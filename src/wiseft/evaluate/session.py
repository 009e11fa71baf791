"""The evaluation session: one run's task, prompts, store, grader, run id, timings and engine.

For each variant, `EvalSession.evaluate(spec)`:

1. materialises its weights (`engine.weights.materialise`; in memory, no checkpoint written);
2. samples only what the store lacks (`SampleStore.missing`), a chunk of problems at a time (or each unit
   a streaming engine finishes), committing each as it is produced, so a killed run resumes where it
   stopped;
3. grades what is not graded yet (whole problems: answer classes are per problem);
4. summarises from the store (`metrics.summarize`) into a `VariantResult`.

Every variant samples with the same seed, so variants see common random numbers (paired comparisons are
tighter), and the sampler's per-prompt random streams make a resumed run draw what an uninterrupted one
would have. Library code reports progress through `progress(variant_name, stage, done, total)` with
stage "sample" or "grade"; it never prints. Sampling reports add `detail="… samples/s, … tokens/s"`
for a callback that takes that keyword:
the variant's rates so far in this run (sampling time only), or, for a sampler that measures its own
throughput during a call (vLLM's `on_throughput`), its rates as it reports them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import inspect
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from wiseft import __version__
from wiseft.atomic import output_dir
from wiseft.config import to_dict
from wiseft.errors import SamplingError
from wiseft.evaluate.config import EvalConfig
from wiseft.evaluate.engine import Engine, StreamingSampler
from wiseft.evaluate.plan import VariantSpec
from wiseft.grading import Grader
from wiseft.grading.apply import grade_records
from wiseft.grading.thinking import count_thinking_tokens, split_token_ids
from wiseft.metrics import breakdown, problem_table, summarize
from wiseft.records import GROUP_FIELDS, sample_records
from wiseft.results import RunResults, Selection, VariantResult
from wiseft.store import SCHEMA_VERSION, SampleStore, VariantRow
from wiseft.tasks import Task, get_task

EvalProgress = Callable[..., None]  # (variant, stage, done, total[, detail=...])


def takes_detail(progress: EvalProgress | None) -> bool:
    """Whether a progress callback takes the `detail` keyword (older four-argument callbacks do not)."""
    if progress is None:
        return False
    try:
        params = inspect.signature(progress).parameters.values()
    except (TypeError, ValueError):
        return False
    named = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)
    return any(
        (p.name == "detail" and p.kind in named) or p.kind is inspect.Parameter.VAR_KEYWORD for p in params
    )


def rate_detail(samples: int, tokens: int, seconds: float) -> str:
    """The sampling rates shown beside the progress ("" before any time was measured)."""
    if seconds <= 0:
        return ""
    return f"{samples / seconds:.1f} samples/s, {tokens / seconds:.0f} tokens/s"


GRADE_BATCH_SAMPLES = 4096  # samples graded (and committed) together


@dataclass
class Timings:
    """Seconds spent in weight switches, the sampler, the grader, store reads/writes and summaries."""

    switch: float = 0.0
    sample: float = 0.0
    grade: float = 0.0
    store: float = 0.0
    score: float = 0.0

    def as_dict(self) -> dict[str, float]:
        return {k: round(v, 3) for k, v in dataclasses.asdict(self).items()}


def store_path(cfg: EvalConfig, out: str | os.PathLike) -> Path:
    """Where a run's samples go: `cfg.store`, or OUT/samples.db."""
    return Path(cfg.store) if cfg.store else Path(out) / "samples.db"


def load_task(cfg: EvalConfig, task: Task | None = None) -> Task:
    """The task of `cfg` (or the given Task object), cut to its first `cfg.limit` problems."""
    if task is None:
        task = get_task(cfg.task, data=cfg.data)
    if cfg.limit is not None and cfg.limit < len(task.problems):
        task = task.subset([p.id for p in task.problems[: cfg.limit]])
    return task


@dataclass(frozen=True)
class Prompts:
    """The rendered prompt of every problem of a run, and the stop strings that go with them."""

    text: dict[str, str]
    stop: tuple[str, ...]

    @classmethod
    def render(cls, cfg: EvalConfig, task: Task, engine: Engine) -> Prompts:
        """Render with the run's prompt style, then check prompt + --max-new-tokens against the model's
        context before anything is sampled or written."""
        prompter = cfg.prompter()
        text = {
            p.id: prompter.render(p.question, task.template, task.instruction, engine.tokenizer)
            for p in task.problems
        }
        prompts = cls(text, prompter.stop(task.stop))
        prompts.check_context(engine, cfg.max_new_tokens)
        return prompts

    def digest(self, cfg: EvalConfig, tokenizer) -> str | None:
        """A hash of how the prompts are made (style, worked examples, system prompt, template text, the
        chat template), which keys the store's variants whenever the prompt is not the task's plain one:
        other prompts, other samples. None for the plain prompt, whose variants keep the keys they had
        before prompt styles existed."""
        if cfg.prompt == "plain" and cfg.prompt_template is None:
            return None
        prompter = cfg.prompter()
        chat = getattr(tokenizer, "chat_template", None) if cfg.prompt == "chat" else None
        made = [prompter.style, prompter.fewshot, prompter.system, prompter.template, chat]
        return hashlib.sha256(json.dumps(made, default=str).encode()).hexdigest()[:16]

    def check_context(self, engine: Engine, max_new_tokens: int) -> None:
        if not engine.max_context:
            return
        longest_id, longest = max(((pid, len(engine.tokenizer(t)["input_ids"])) for pid, t in self.text.items()),
                                  key=lambda kv: kv[1])  # fmt: skip
        if longest + max_new_tokens > engine.max_context:
            raise SamplingError(
                f"problem {longest_id!r}: its prompt ({longest} tokens) plus --max-new-tokens {max_new_tokens} "
                f"exceeds the model's context of {engine.max_context} tokens; lower --max-new-tokens to "
                f"{max(engine.max_context - longest, 0)} or use fewer worked examples (--fewshot)"
            )


def versions(grader_name: str | None = None) -> dict:
    import torch
    import transformers

    return {"wiseft": __version__, "torch": torch.__version__, "transformers": transformers.__version__,
            "grader": grader_name, "store_schema": SCHEMA_VERSION}  # fmt: skip


class EvalSession:
    """What all variants of one run share. Open it with `EvalSession.open(...)` (a context manager)."""

    def __init__(
        self, cfg: EvalConfig, task: Task, engine: Engine, store: SampleStore, grader: Grader, command: str,
        prompts: Prompts, progress: EvalProgress | None = None, run_config: dict | None = None,
    ):  # fmt: skip
        self.cfg = cfg
        self.task = task
        self.engine = engine
        self.store = store
        self.grader = grader
        self.progress = progress
        self._sampled = 0  # problems sampled of the variant being sampled (for rate reports)
        self.timings = Timings()
        self.rows: dict[str, VariantRow] = {}  # the store's row of each evaluated variant, by name
        self.ids = [p.id for p in task.problems]
        self.prompts = prompts.text
        self.stop = prompts.stop
        self.prompt_digest = prompts.digest(cfg, engine.tokenizer)
        # Problem fields every problem has (MATH's subject and level): metrics are broken down by them.
        self.groups = {
            f: [p.meta[f] for p in task.problems]
            for f in GROUP_FIELDS
            if all(f in p.meta for p in task.problems)
        }
        store.add_problems(
            task.name, [(p.id, p.gold, self.prompts[p.id], p.store_meta()) for p in task.problems]
        )
        self.run_id = store.begin_run(command, run_config if run_config is not None else to_dict(cfg))

    @classmethod
    @contextlib.contextmanager
    def open(
        cls, cfg: EvalConfig, task: Task, engine: Engine, out_dir: str | os.PathLike, command: str,
        progress: EvalProgress | None = None, run_config: dict | None = None,
    ) -> Iterator[EvalSession]:  # fmt: skip
        """A session whose store is `cfg.store` (default OUT/samples.db) and whose grader fits the task;
        the run is marked finished when the block completes. `run_config` is what the store records as
        the run's configuration (default: `cfg`)."""
        prompts = Prompts.render(cfg, task, engine)
        with (
            output_dir(out_dir) as out,
            SampleStore(store_path(cfg, out)) as store,
            Grader(task.grader_kind, workers=cfg.workers, problem_budget=cfg.problem_budget,
                   thinking=cfg.thinking()) as grader,
        ):  # fmt: skip
            session = cls(cfg, task, engine, store, grader, command, prompts, progress, run_config)
            yield session
            store.end_run(session.run_id)

    # --- one variant ---------------------------------------------------------------------------------
    def evaluate(self, spec: VariantSpec) -> VariantResult:
        """Materialise, sample what is missing, grade what is ungraded, and summarise one variant."""
        t0 = time.perf_counter()
        self.engine.weights.materialise(spec)
        self.timings.switch += time.perf_counter() - t0
        row = self.rows[spec.name] = self._variant_row(spec)
        self._sample(row, spec)
        self._grade(row, spec)
        t0 = time.perf_counter()
        per_problem = self.store.problem_samples(row, self.ids, self.cfg.n)
        table = problem_table(per_problem, self.cfg.k, seed=self.cfg.seed)
        summary = summarize(per_problem, self.cfg.k, seed=self.cfg.seed, n_boot=self.cfg.n_boot, table=table)
        if self.groups:
            summary["groups"] = breakdown(
                per_problem, self.groups, self.cfg.k, seed=self.cfg.seed, n_boot=self.cfg.n_boot
            )
        self.timings.score += time.perf_counter() - t0
        return VariantResult(spec.name, spec.kind, spec.delta, spec.temperature, spec.step, summary,
                             per_problem=tuple(per_problem), table=table, ablation=spec.ablation)  # fmt: skip

    def evaluate_all(self, specs: Sequence[VariantSpec]) -> list[VariantResult]:
        return [self.evaluate(spec) for spec in specs]

    def records(self, name: str) -> list[dict]:
        """The graded sample records of an evaluated variant, by problem then sample index, each with its
        problem's `gold`, `prompt` and `meta` (the question and the group fields, `Problem.store_meta`)."""
        return self.store.records(self.rows[name], self.ids, self.cfg.n, with_problem=True)

    def _params(self, spec: VariantSpec):
        return self.cfg.sampling_params(spec.temperature, self.stop)

    def _variant_row(self, spec: VariantSpec) -> VariantRow:
        params = self._params(spec)
        sampling = {k: v for k, v in dataclasses.asdict(params).items() if k != "temperature"}
        sampling["prompt"] = self.cfg.prompt
        if self.prompt_digest is not None:  # other prompt text, other samples
            sampling["prompt_digest"] = self.prompt_digest
        if self.engine.name != "hf":  # another engine draws other samples from the same seed
            sampling["engine"] = self.engine.name
        return self.store.variant(
            spec.name, spec.kind, self.task.name, self.engine.weights.fingerprints(spec), sampling,
            recipe=spec.recipe, temperature=spec.temperature, seed=self.cfg.seed, step=spec.step,
            run_id=self.run_id,
        )  # fmt: skip

    def _sample(self, row: VariantRow, spec: VariantSpec) -> None:
        todo = self.store.missing(row, self.ids, self.cfg.n)
        self._sampled = len(self.ids) - len(todo)  # problems of this variant in the store
        self._tick(spec.name, "sample", self._sampled, len(self.ids))
        measured = self._report_rates(spec.name)
        drawn, tokens, start = 0, 0, self.timings.sample
        for chunk, completions in self._units(todo, self._params(spec)):
            t1 = time.perf_counter()
            self.store.add_samples(row, sample_records(chunk, completions, self._thinking_fields))
            self.timings.store += time.perf_counter() - t1
            self._sampled += len(chunk)
            drawn += sum(len(row) for row in completions)
            tokens += sum(c.n_tokens for row in completions for c in row)
            detail = "" if measured else rate_detail(drawn, tokens, self.timings.sample - start)
            self._tick(spec.name, "sample", self._sampled, len(self.ids), detail)

    def _report_rates(self, name: str) -> bool:
        """Have a sampler that measures its own rates (vLLM's `on_throughput`) report them with the
        sampling progress of variant `name`; False when it does not (the session measures them)."""
        sampler = self.engine.sampler
        if not hasattr(sampler, "on_throughput"):
            return False

        def rates(t) -> None:
            if takes_detail(self.progress):
                detail = rate_detail(t.samples, t.tokens, t.seconds)
                self.progress(name, "sample", self._sampled, len(self.ids), detail=detail)

        sampler.on_throughput = rates
        return True

    def _units(self, todo: list[str], params) -> Iterator[tuple[list[str], list]]:
        """(problem ids, their completions) as the sampler finishes them: a chunk at a time, or each
        unit of a streaming sampler. Sampling time is what the sampler spends between yields."""
        sampler, n, size = self.engine.sampler, self.cfg.n, self.cfg.chunk
        if isinstance(sampler, StreamingSampler):
            t0 = time.perf_counter()
            for indices, completions in sampler.stream([self.prompts[p] for p in todo], n, params, size):
                self.timings.sample += time.perf_counter() - t0
                yield [todo[i] for i in indices], completions
                t0 = time.perf_counter()
            return
        for start in range(0, len(todo), size):
            chunk = todo[start : start + size]
            t0 = time.perf_counter()
            completions = sampler.generate([self.prompts[p] for p in chunk], n, params)
            self.timings.sample += time.perf_counter() - t0
            yield chunk, completions

    def _thinking_fields(self, problem_id: str, completion) -> dict:
        """Whether the sample closed a thinking block and how many of its tokens are thinking (exact from
        the generated ids when the sampler kept them); nothing when thinking is not looked for."""
        tags = self.cfg.thinking()
        if tags is None:
            return {}
        close, opener = tags
        opened = bool(opener) and self.prompts[problem_id].rstrip().endswith(opener)
        text = completion.text
        if close not in text and not opened and not (opener and text.lstrip().startswith(opener)):
            return {"think_closed": False, "thinking_tokens": 0}
        ids = getattr(completion, "token_ids", None)
        if ids is not None:
            encode = self.engine.tokenizer.encode
            counts = split_token_ids(ids, encode(close, add_special_tokens=False),
                                     encode(opener, add_special_tokens=False) if opener else None, opened)  # fmt: skip
        else:
            counts = count_thinking_tokens(text, self.engine.tokenizer, close, opener, opened)
        return {"think_closed": counts.closed, "thinking_tokens": counts.thinking}

    def _grade(self, row: VariantRow, spec: VariantSpec) -> None:
        ungraded = self.store.ungraded_problems(row, self.ids, self.cfg.n, self.grader.name)
        done = len(self.ids) - len(ungraded)
        self._tick(spec.name, "grade", done, len(self.ids))
        step = max(1, GRADE_BATCH_SAMPLES // self.cfg.n)
        for start in range(0, len(ungraded), step):
            chunk = ungraded[start : start + step]
            records = self.store.records(row, chunk, self.cfg.n)
            t0 = time.perf_counter()
            graded = grade_records(records, self.task, self.grader)
            t1 = time.perf_counter()
            self.store.add_grades(row, graded)
            self.timings.grade += t1 - t0
            self.timings.store += time.perf_counter() - t1
            done += len(chunk)
            self._tick(spec.name, "grade", done, len(self.ids))

    def _tick(self, name: str, stage: str, done: int, total: int, detail: str = "") -> None:
        if self.progress is not None:
            if detail and takes_detail(self.progress):
                self.progress(name, stage, done, total, detail=detail)
            else:
                self.progress(name, stage, done, total)

    # --- the run -------------------------------------------------------------------------------------
    def results(self, variants: list[VariantResult], best: Selection | None, **extra) -> RunResults:
        """The run's `RunResults` (`extra`: early_step, and the demo's fields)."""
        task = {"name": self.task.name, "n_problems": len(self.ids), "source": self.task.source,
                "example_prompt": self.prompts[self.ids[0]]}  # fmt: skip
        run_versions = versions(self.grader.name)
        run_versions["engine"] = self.engine.name
        if "vllm_version" in self.engine.info:
            run_versions["vllm"] = self.engine.info["vllm_version"]
        if "engine_choice" in self.engine.info:  # --engine auto: what it chose and why
            run_versions["engine_choice"] = self.engine.info["engine_choice"]
        if self.engine.describe is not None:
            extra.setdefault("machine", self.engine.describe())
        return RunResults(
            config=to_dict(self.cfg), versions=run_versions, task=task, variants=variants,
            best=best, timings=self.timings.as_dict(), **extra,
        )  # fmt: skip
