"""Realistic results dicts for the report tests, in exactly the shape of docs/ARCHITECTURE.md.

Each variant is simulated: per-problem success rates ρ_x drawn from a Beta distribution whose mean is the
variant's accuracy and whose concentration is its diversity (a small concentration piles ρ at 0 and 1:
collapse), correct counts c_x ~ Binomial(n, ρ_x), and then the summary computed from those counts with the
DESIGN §4 formulas in float64 (pass@k by the product form, a percentile bootstrap over problems). The story
is the paper's: over SFT, Pass@1 rises while Pass@k falls; the δ=0.5 mix recovers Pass@k; temperatures of
the final model trade one for the other.
"""

from __future__ import annotations

import copy
import math
from html.parser import HTMLParser

import numpy as np


def _pass_at_k(n: int, c: np.ndarray, k: int) -> np.ndarray:
    out = np.ones(len(c))
    for j, cj in enumerate(c):
        if n - cj >= k:
            out[j] = 1.0 - math.prod(1.0 - k / i for i in range(n - cj + 1, n + 1))
    return out


def _maj_at_k(n: int, c: np.ndarray, k: int) -> np.ndarray:
    """P(correct answers are a strict majority of k draws without replacement) — a fixture proxy."""
    out = np.zeros(len(c))
    for j, cj in enumerate(c):
        total = math.comb(n, k)
        out[j] = sum(math.comb(cj, m) * math.comb(n - cj, k - m) for m in range(k // 2 + 1, k + 1)) / total
    return out


def _stat(per_problem: np.ndarray, rng: np.random.Generator, n_boot: int = 200) -> dict:
    idx = rng.integers(0, len(per_problem), size=(n_boot, len(per_problem)))
    boots = per_problem[idx].mean(axis=1)
    return {
        "value": float(per_problem.mean()),
        "lo": float(np.percentile(boots, 2.5)),
        "hi": float(np.percentile(boots, 97.5)),
    }


def make_summary(
    acc: float,
    conc: float,
    *,
    seed: int,
    n_problems: int = 40,
    n: int = 16,
    ks: tuple[int, ...] = (1, 2, 4, 8, 16),
    scores: bool = True,
    tokens: float | None = 120.0,
) -> dict:
    rng = np.random.default_rng(seed)
    rho = rng.beta(acc * conc, (1 - acc) * conc, size=n_problems)
    c = rng.binomial(n, rho)
    r = c / n
    metrics = {}
    for k in ks:
        if k > n:
            continue
        metrics[f"pass@{k}"] = _stat(_pass_at_k(n, c, k), rng)
    for k in ks:
        if 1 < k <= n:
            metrics[f"maj@{k}"] = _stat(_maj_at_k(n, c, k), rng)
            if scores:  # a scorer that is right a bit more often than chance: between pass@1 and pass@k
                metrics[f"best@{k}"] = _stat(0.5 * (_pass_at_k(n, c, 1) + _pass_at_k(n, c, k)), rng)
    mean_rho, var = float(r.mean()), float(r.var())
    bias2 = (1 - mean_rho) ** 2
    bv = {
        "mean_rho": mean_rho,
        "bias2": bias2,
        "var": var,
        "bound": {str(k): (bias2 + var) ** (k / 2) for k in ks if k <= n},
        "one_minus_pass": {str(k): 1 - metrics[f"pass@{k}"]["value"] for k in ks if k <= n},
        "one_minus_pass_plugin": {str(k): float(np.mean((1 - r) ** k)) for k in ks if k <= n},
    }
    # Distinct answers: wrong samples spread over a few answers, more so when the model is diverse.
    spread = min(1.0, 2.0 / max(conc, 0.2))
    distinct = 1 + (n - 1) * (1 - r) * (1 - spread) * 0.6 + rng.uniform(0, 0.3, n_problems)
    hist, edges = np.histogram(r, bins=10, range=(0.0, 1.0))
    summary = {
        "n_problems": n_problems,
        "n": n,
        "metrics": metrics,
        "bias_variance": bv,
        "diversity": {
            "mean_distinct": float(distinct.mean()),
            "frac_distinct": float(distinct.mean() / n),
            "rho_hist": hist.tolist(),
            "rho_edges": edges.tolist(),
        },
    }
    if tokens is not None:
        summary["tokens"] = {"mean": float(tokens), "median": float(tokens) * 0.95, "truncated_frac": 0.02}
    return summary


def make_problems(
    acc: float,
    conc: float,
    *,
    seed: int,
    n_problems: int = 40,
    n: int = 16,
    scores: bool = True,
    tokens: float | None = 120.0,
) -> list:
    """Graded samples for `metrics.summarize` (or a store), simulated like `make_summary`.

    Correct samples share answer class 0; a wrong sample picks one of a few wrong classes (more of them
    for a diverse model) or no answer at all (−1).
    """
    from wiseft.metrics import ProblemSamples

    rng = np.random.default_rng(seed)
    rho = rng.beta(acc * conc, (1 - acc) * conc, size=n_problems)
    n_wrong = max(1, round(6 / max(conc, 0.5)))
    out = []
    for x, r in enumerate(rho):
        correct = rng.random(n) < r
        wrong = rng.integers(1, n_wrong + 1, size=n)
        wrong[rng.random(n) < 0.1] = -1
        classes = np.where(correct, 0, wrong)
        length = rng.poisson(tokens, size=n) if tokens is not None else None
        out.append(
            ProblemSamples(
                correct=correct,
                classes=classes,
                scores=(correct + rng.normal(0, 0.8, size=n)) if scores else None,
                n_tokens=length,
                truncated=(length > 1.4 * tokens) if tokens is not None else None,
                problem_id=f"p{x}",
            )
        )
    return out


STEPS = (50, 100, 200, 400, 800)
DELTAS = (0.0, 0.25, 0.5, 0.75, 1.0)
TEMPS = (0.7, 1.0, 1.3, 1.6)


def variant(name, kind, summary, delta=None, temperature=1.0, step=None) -> dict:
    """One entry of results["variants"], as sweeps and the demo write it."""
    return {
        "name": name,
        "kind": kind,
        "delta": delta,
        "temperature": temperature,
        "step": step,
        "summary": summary,
    }


def make_results(
    *,
    trajectory: bool = True,
    sweep: bool = True,
    temperatures: bool = True,
    scores: bool = True,
    tokens: bool = True,
    ks: tuple[int, ...] = (1, 2, 4, 8, 16),
    best: bool = True,
    real_summaries: bool = False,
) -> dict:
    """A results dict with any of: the trajectory (raw + mixed δ=0.5), a δ sweep, temperatures.

    `real_summaries` computes each summary with `wiseft.metrics.summarize` (n_boot=200) from simulated
    graded samples instead of the fixture's own float64 formulas.
    """
    variants = []
    seed = 0

    def add(name, kind, acc, conc, delta=None, temperature=1.0, step=None, tok=120.0):
        nonlocal seed
        seed += 1
        if real_summaries:
            from wiseft.metrics import summarize

            problems = make_problems(acc, conc, seed=seed, scores=scores, tokens=tok if tokens else None)
            summary = summarize(problems, ks, seed=0, n_boot=200)
        else:
            summary = make_summary(acc, conc, seed=seed, ks=ks, scores=scores, tokens=tok if tokens else None)
        variants.append(variant(name, kind, summary, delta, temperature, step))

    if trajectory:
        for i, step in enumerate(STEPS):
            t = i / (len(STEPS) - 1)
            add(
                f"checkpoint-{step}",
                "checkpoint",
                0.30 + 0.30 * t,
                4.0 - 3.6 * t,
                step=step,
                tok=150 - 40 * t,
            )
        for i, step in enumerate(STEPS):
            t = i / (len(STEPS) - 1)
            add(f"delta=0.500,step={step}", "mix", 0.33 + 0.32 * t, 4.0 - 1.8 * t, delta=0.5, step=step)
    if sweep:
        for d in DELTAS:
            acc = 0.60 - 0.30 * d + 0.8 * d * (1 - d)  # final 0.60, early 0.30, the middle higher
            conc = 0.4 + 3.6 * d + 2.0 * d * (1 - d)
            add(f"delta={d:.3f},T=1.0", "mix", acc, conc, delta=d, tok=110 + 50 * d)
    if temperatures:
        for j, temp in enumerate(TEMPS):
            add(f"final,T={temp:g}", "temperature", 0.66 - 0.09 * j, 0.3 + 0.9 * j, delta=None,
                temperature=temp, tok=105 + 12 * j)  # fmt: skip
    results = {
        "config": {
            "task": "toy",
            "n": 16,
            "k": list(ks),
            "seed": 0,
            "delta": list(DELTAS),
            "temperature": list(TEMPS),
            "anchors": {"early": "run/checkpoint-50", "final": "run/checkpoint-800"},
        },
        "versions": {"wiseft": "0.1.0", "grader": "math-verify==0.9.0", "torch": "2.13.0"},
        "variants": variants,
        "best": None,
    }
    if best and sweep:
        results["best"] = {  # Pass@1: Pass@16 of n=16 samples saturates at 100 % and ties
            "metric": "pass@1",
            "variant": "delta=0.500,T=1.0",
            "how": "highest Pass@1 on the validation split (20 problems); reported on the test split",
        }
    return results


def drop(results: dict, section: str) -> dict:
    """A copy with one summary section (e.g. 'tokens', 'bias_variance') removed from every variant."""
    out = copy.deepcopy(results)
    for v in out["variants"]:
        v["summary"].pop(section, None)
    return out


def make_demo_like_results(ks: tuple[int, ...] = (1, 2, 4, 8, 16)) -> dict:
    """The shape `wiseft demo` writes: a base, checkpoints by step (T=1), mixes strictly inside (0, 1) at
    the final step, temperatures of the final model, `roles` naming early and final, and claims."""
    steps = (25, 75, 150, 300)
    variants = []

    def add(name, kind, acc, conc, seed, delta=None, temperature=1.0, step=None):
        summary = make_summary(acc, conc, seed=seed, ks=ks)
        variants.append(variant(name, kind, summary, delta, temperature, step))

    add("base,T=1", "base", 0.1, 3.0, 100)
    for i, step in enumerate(steps):
        add(f"step={step},T=1", "checkpoint", 0.3 + 0.1 * i, 3.0 - 0.8 * i, 101 + i, step=step)
    for j, d in enumerate((0.25, 0.5, 0.75)):
        add(f"delta={d:.3f},T=1", "mix", 0.62 - 0.05 * j, 1.5 + j, 110 + j, delta=d, step=steps[-1])
    for j, t in enumerate((0.7, 1.3, 1.6)):
        add(f"step={steps[-1]},final,T={t:g}", "temperature", 0.6 - 0.1 * j, 0.5 + j, 120 + j, temperature=t,
            step=steps[-1])  # fmt: skip
    return {
        "config": {"n": 16},
        "versions": {"grader": "int"},
        "task": {"name": "toy", "n_problems": 40, "source": "toy generator seed 5"},
        "variants": variants,
        "best": {"metric": "pass@1", "variant": "delta=0.500,T=1", "how": "highest pass@1 among the mixes"},
        "roles": {"early": "step=75,T=1", "final": "step=300,T=1", "mix": "delta=0.500,T=1"},
        "claims": [
            {
                "key": "a",
                "statement": "Pass@1 rose while Pass@k fell over SFT",
                "held": True,
                "evidence": "pass@1 +0.10 [+0.05, +0.15]",
                "numbers": {},
            },
            {
                "key": "b",
                "statement": "the best mix recovered Pass@k",
                "held": False,
                "evidence": "pass@16 +0.01 [-0.02, +0.04]",
                "numbers": {},
            },
        ],  # fmt: skip
    }


def make_store(path, *, ungraded: bool = False, n_problems: int = 12, n: int = 8) -> None:
    """A small sample store as a δ sweep writes it (mixes with wise-ft recipes at δ 0, 0.5, 1 and the
    final model at another temperature), plus an imported variant named in the record convention, with
    simulated samples and grades. `ungraded` adds one variant whose samples are not graded yet."""
    from wiseft.store import SampleStore

    def samples_of(acc, conc, seed):
        problems = make_problems(acc, conc, seed=seed, n_problems=n_problems, n=n, scores=False, tokens=50.0)
        samples, grades = [], []
        for p in problems:
            for i in range(p.n):
                samples.append({"problem_id": p.problem_id, "sample_idx": i, "completion": f"answer {p.classes[i]}",
                                "n_tokens": int(p.n_tokens[i]),
                                "finish_reason": "length" if p.truncated[i] else "stop"})  # fmt: skip
                grades.append({"problem_id": p.problem_id, "sample_idx": i, "verdict":
                               "correct" if p.correct[i] else "incorrect", "correct": bool(p.correct[i]),
                               "answer_class": int(p.classes[i]), "grader": "int"})  # fmt: skip
        return samples, grades

    with SampleStore(path) as store:
        store.add_problems("toy", [(f"p{x}", str(x), f"q{x}") for x in range(n_problems)])
        run = store.begin_run("sweep", {"task": "toy", "n": n, "delta": [0.0, 0.5, 1.0]})
        specs = [
            (
                f"delta={d:.3f},T=1",
                "mix",
                {"method": "wise-ft", "models": ["early", "final"], "delta": d},
                1.0,
                None,
            )
            for d in (0.0, 0.5, 1.0)
        ]
        specs.append(("final,T=1.5", "temperature", None, 1.5, None))
        specs.append(("delta=0.250,T=1", "imported", None, None, None))
        for j, (name, kind, recipe, temp, step) in enumerate(specs):
            v = store.variant(name, kind, "toy", {"m": "hash"}, {"n": n, "j": j}, recipe=recipe,
                              temperature=temp, seed=0, step=step, run_id=run)  # fmt: skip
            samples, grades = samples_of(0.4 + 0.1 * j, 1.0 + j, seed=200 + j)
            store.add_samples(v, samples)
            store.add_grades(v, grades)
        if ungraded:
            v = store.variant("delta=0.750,T=1", "mix", "toy", {"m": "hash"}, {"n": n, "j": 99},
                              recipe={"method": "wise-ft", "models": ["e", "f"], "delta": 0.75}, temperature=1.0)  # fmt: skip
            store.add_samples(v, samples_of(0.5, 1.0, seed=299)[0])
        store.end_run(run)


# --- the five runs the report is checked on in a browser (tests/test_report_browser.py) -----------------
def _splits(acc: float, conc: float, seed: int, metric: str) -> dict:
    """A variant's selection metric on a validation and a test split (simulated, 20 problems each)."""
    out = {}
    for j, part in enumerate(("validation", "test")):
        s = make_summary(acc, conc, seed=seed * 10 + j, n_problems=20)
        out[part] = {"n_problems": 20, metric: s["metrics"][metric]}
    return out


def make_sweep_results(deltas=(0.0, 0.2, 0.4, 0.5, 0.6, 0.8, 1.0)) -> dict:
    """A `wiseft sweep` over δ at T=1 (only mixes, as the sweep names them), chosen on a validation split
    by Pass@1 (the sweep's default metric)."""
    metric = "pass@1"
    variants = []
    for i, d in enumerate(deltas):
        acc = 0.60 - 0.30 * d + 0.8 * d * (1 - d)
        conc = 0.4 + 3.6 * d + 2.0 * d * (1 - d)
        v = variant(
            f"delta={d:.3f},T=1", "mix", make_summary(acc, conc, seed=300 + i, tokens=110 + 50 * d), d
        )
        v["splits"] = _splits(acc, conc, 300 + i, metric)
        variants.append(v)
    best = max(variants, key=lambda v: v["splits"]["validation"][metric]["value"])
    return {
        "config": {"anchors": {"early": "run/checkpoint-50", "final": "run/checkpoint-800"}, "task": "toy",
                   "n": 16, "k": [1, 2, 4, 8, 16], "delta": list(deltas), "temperature": [1.0]},
        "versions": {"wiseft": "0.1.0", "grader": "int"},
        "task": {"name": "toy", "n_problems": 40, "source": "toy/test.jsonl"},
        "variants": variants,
        "best": {"metric": metric, "variant": best["name"], "how": "highest pass@1 on a validation split of "
                 "20 problems (seed 0); reported on the other 20 held-out problems",
                 "validation": best["splits"]["validation"][metric], "test": best["splits"]["test"][metric]},
    }  # fmt: skip


def make_trajectory_results(deltas=(0.25, 0.5, 0.75)) -> dict:
    """A `wiseft trajectory`: each checkpoint raw and mixed with the early one at each δ."""
    variants = []
    for i, step in enumerate(STEPS):
        t = i / (len(STEPS) - 1)
        variants.append(variant(f"step={step},T=1", "checkpoint",
                                make_summary(0.30 + 0.30 * t, 4.0 - 3.6 * t, seed=400 + i), step=step))  # fmt: skip
        for j, d in enumerate(deltas):
            if step == STEPS[0]:
                continue
            acc = 0.33 + 0.32 * t - 0.1 * d * t + 0.05 * j
            summary = make_summary(acc, 4.0 - (2.6 - d) * t, seed=410 + 10 * i + j)
            variants.append(variant(f"step={step},delta={d:.3f},T=1", "mix", summary, d, step=step))
    best = max(variants, key=lambda v: v["summary"]["metrics"]["pass@1"]["value"])
    return {
        "config": {"run_dir": "run", "early_step": STEPS[0], "delta": list(deltas), "temperature": [1.0]},
        "versions": {"wiseft": "0.1.0", "grader": "int"},
        "task": {"name": "toy", "n_problems": 40, "source": "toy/test.jsonl"},
        "variants": variants,
        "best": {"metric": "pass@1", "variant": best["name"], "how": "highest pass@1 on all 40 problems "
                 "(no validation split: in-sample)", "value": best["summary"]["metrics"]["pass@1"]},
        "early_step": STEPS[0],
    }  # fmt: skip


def nobody_solves(seed: int, n_problems: int = 12, n: int = 8) -> list:
    """Graded samples of a task no sample solves: every answer wrong (a few wrong classes) or missing."""
    from wiseft.metrics import ProblemSamples

    rng = np.random.default_rng(seed)
    out = []
    for x in range(n_problems):
        classes = rng.integers(1, 4, size=n)
        classes[rng.random(n) < 0.2] = -1
        out.append(ProblemSamples(correct=np.zeros(n, dtype=bool), classes=classes, scores=None,
                                  n_tokens=np.full(n, 16), truncated=np.ones(n, dtype=bool), problem_id=f"p{x}"))  # fmt: skip
    return out


def make_all_zero_results() -> dict:
    """A sweep on a task nobody solves (every metric 0), summarised by `metrics.summarize` itself."""
    from wiseft.metrics import summarize

    variants = [
        variant(f"delta={d:.3f},T=1", "mix", summarize(nobody_solves(500 + i), [1, 2, 4, 8], n_boot=200), d)
        for i, d in enumerate((0.0, 0.25, 0.5, 0.75, 1.0))
    ]
    return {
        "config": {"task": "aime25", "n": 8, "delta": [0.0, 0.25, 0.5, 0.75, 1.0]},
        "versions": {"wiseft": "0.1.0", "grader": "math-verify==0.9.0"},
        "task": {"name": "aime25", "n_problems": 12, "source": "aime25/test.jsonl"},
        "variants": variants,
        "best": {"metric": "pass@1", "variant": variants[0]["name"], "how": "highest pass@1 on all 12 problems "
                 "(no validation split: in-sample)", "value": variants[0]["summary"]["metrics"]["pass@1"]},
    }  # fmt: skip


def make_imported_store(path, names=("vllm-qwen-7b", "vllm-qwen-7b-sft"), n_problems: int = 12, n: int = 8):
    """A store made only by `wiseft store import`: graded JSONL records of two variants from another engine
    (names without δ, T or step). Returns the JSONL path it imported."""
    import json

    from wiseft.store import SampleStore

    jsonl = path.parent / "imported.jsonl"
    lines = []
    for j, name in enumerate(names):
        for p in make_problems(0.35 + 0.2 * j, 1.0 + j, seed=600 + j, n_problems=n_problems, n=n, scores=False,
                               tokens=300.0 - 80 * j):  # fmt: skip
            for i in range(p.n):
                lines.append({"problem_id": p.problem_id, "sample_idx": i, "completion": f"answer {p.classes[i]}",
                              "n_tokens": int(p.n_tokens[i]), "finish_reason": "length" if p.truncated[i] else "stop",
                              "variant": name, "verdict": "correct" if p.correct[i] else "incorrect",
                              "correct": bool(p.correct[i]), "answer_class": int(p.classes[i]), "grader": "int"})  # fmt: skip
    jsonl.write_text("".join(json.dumps(r) + "\n" for r in lines), encoding="utf-8")
    with SampleStore(path) as store:
        store.add_problems("toy", [(f"p{x}", str(x), f"q{x}") for x in range(n_problems)])
        store.import_jsonl(jsonl, "toy")
    return jsonl


def layout_problems(fig) -> list[str]:
    """What a reader would see as broken in a drawn figure: text cut by the figure's edge (titles, labels,
    ticks, legends, point labels), a legend over an axes' data area, titles that run into one another."""
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    edge = fig.bbox.padded(1.0)
    axs = [ax for ax in fig.axes if ax.get_visible()]

    def cut(box) -> bool:
        return box.x0 < edge.x0 or box.x1 > edge.x1 or box.y0 < edge.y0 or box.y1 > edge.y1

    problems = [f"axes {i} ({ax.get_title()!r}): cut by the figure's edge" for i, ax in enumerate(axs)
                if cut(ax.get_tightbbox(renderer))]  # fmt: skip
    texts = [*(t for ax in axs for t in ax.texts), *fig.texts, fig._suptitle]
    texts = list(dict.fromkeys(t for t in texts if t is not None))
    problems += [f"text {t.get_text()!r} cut by the figure's edge" for t in texts
                 if t.get_visible() and t.get_text().strip() and cut(t.get_window_extent(renderer))]  # fmt: skip
    legends = list(fig.legends) + [ax.get_legend() for ax in axs if ax.get_legend() is not None]
    for lg in legends:
        box = lg.get_window_extent(renderer)
        problems += ["a legend cut by the figure's edge"] if cut(box) else []
        problems += [
            f"a legend over the data of axes {i}" for i, ax in enumerate(axs) if box.overlaps(ax.bbox)
        ]
    titles = [ax.title for ax in axs if ax.get_title()] + ([fig._suptitle] if fig._suptitle else [])
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in titles]
    problems += [f"titles {a!r} and {b!r} overlap" for i, (a, ba) in enumerate(boxes) for b, bb in boxes[i + 1 :]
                 if ba.overlaps(bb)]  # fmt: skip
    return problems


class HtmlCollect(HTMLParser):
    """Every start tag (name, attributes) and every text run of an HTML document, in order."""

    def __init__(self):
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def parsed_html(html: str) -> HtmlCollect:
    parser = HtmlCollect()
    parser.feed(html)
    parser.close()
    return parser
