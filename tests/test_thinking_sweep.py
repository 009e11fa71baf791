"""Instruct ↔ Thinking sweeps (issue 16): sampling defaults from generation_config.json, lengths relative to
a reference variant, and the warning for thinking blocks that never close."""

from __future__ import annotations

import json

import numpy as np
import pytest
from support.sampling import tiny_model_dir

from wiseft.config import from_dict
from wiseft.errors import ConfigError
from wiseft.evaluate.config import ModelEvalConfig, SweepConfig
from wiseft.evaluate.model_sampling import with_model_sampling
from wiseft.evaluate.thinking import unclosed_thinking
from wiseft.metrics import length_ratio, resample_weights
from wiseft.records import ProblemSamples
from wiseft.sampling.fake import ScriptedSampler

PAPER_THINKING = {"temperature": 0.6, "top_p": 0.95, "top_k": 20}  # Qwen3 Thinking-2507's file


def _model_with(tmp_path, name: str, generation: dict | str | None):
    model = tiny_model_dir(tmp_path, name)
    path = model / "generation_config.json"
    if generation is None:
        path.unlink(missing_ok=True)
    else:
        path.write_text(
            generation if isinstance(generation, str) else json.dumps({"bos_token_id": 1, **generation})
        )
    return model


@pytest.mark.parametrize(
    "given, mode, want",
    [
        ({}, "auto", ((0.6,), 0.95, 20)),  # nothing given: the model's values, as vLLM does
        ({"temperature": "1.0"}, "auto", ((1.0,), 0.95, 20)),  # a flag always wins
        ({"top_k": 5, "top_p": 0.5}, "auto", ((0.6,), 0.5, 5)),
        ({}, "ignore", ((1.0,), 1.0, 0)),  # --generation-config ignore: the fallbacks
    ],
)
def test_unset_sampling_settings_come_from_generation_config(tmp_path, given, mode, want):
    model = _model_with(tmp_path, "thinking", PAPER_THINKING)
    cfg = from_dict(ModelEvalConfig, {"model": str(model), "generation_config": mode, **given})
    resolved = with_model_sampling(cfg, model)
    assert (resolved.temperature, resolved.top_p, resolved.top_k) == want
    used = {k: v for k, v in PAPER_THINKING.items() if k not in given} if mode == "auto" else {}
    if used:
        assert resolved.sampling_defaults == {"source": str(model / "generation_config.json"), **used}
    else:
        assert resolved.sampling_defaults is None


def test_without_the_file_or_its_keys_the_fallbacks_stay(tmp_path):
    for name, generation in (("none", None), ("ids-only", {})):
        model = _model_with(tmp_path, name, generation)
        cfg = with_model_sampling(ModelEvalConfig(model=str(model)), model)
        assert (cfg.temperature, cfg.top_p, cfg.top_k, cfg.sampling_defaults) == ((1.0,), 1.0, 0, None)
        assert cfg.sampling_unset == ("temperature", "top_p", "top_k")


@pytest.mark.parametrize(
    "content, message",
    [
        ("[1, 2]", "must hold a JSON object"),
        ('{"temperature": "hot"}', "temperature is 'hot', not a float"),
        ('{"top_k": 2.5}', "top_k is 2.5, not a int"),
        ('{"top_p": 1.5}', "top_p"),  # out of range for the sampler: refused naming the file
    ],
)
def test_a_bad_generation_config_is_an_error_naming_the_file(tmp_path, content, message):
    model = _model_with(tmp_path, "bad", content)
    with pytest.raises(ConfigError) as err:
        with_model_sampling(ModelEvalConfig(model=str(model)), model)
    assert str(model / "generation_config.json") in str(err.value) and message in str(err.value)


def test_the_run_records_the_values_and_the_variant_samples_with_them(tmp_path):
    from wiseft.evaluate.runners import run_eval
    from wiseft.store import SampleStore

    model = _model_with(tmp_path, "thinking", PAPER_THINKING)
    seen = []

    def script(prompt, i, params):
        seen.append((params.temperature, params.top_p, params.top_k))
        return "<think>1</think>2$"

    cfg = ModelEvalConfig(model=str(model), task="toy", limit=2, n=2, k=(1, 2), max_new_tokens=20, n_boot=20,
                          device="cpu")  # fmt: skip
    results = run_eval(cfg, tmp_path / "out", sampler_factory=lambda m, t: ScriptedSampler(script))
    assert set(seen) == {(0.6, 0.95, 20)}
    assert results.config["temperature"] == [0.6] and results.config["top_k"] == 20
    assert results.config["sampling_defaults"]["top_p"] == 0.95
    assert results.variants[0].temperature == 0.6
    with SampleStore(tmp_path / "out" / "samples.db", writer=False) as store:
        (sampling,) = store.db.execute("SELECT sampling FROM variants").fetchone()
    assert json.loads(sampling)["top_p"] == 0.95 and json.loads(sampling)["top_k"] == 20
    assert "sampling_defaults" in (tmp_path / "out" / "config.yaml").read_text()


# --- length relative to a reference variant ---------------------------------------------------------------
def _ps(tokens):
    return [ProblemSamples(correct=[True] * len(t), classes=[0] * len(t), n_tokens=t) for t in tokens]


def test_length_ratio_is_the_ratio_of_sample_means_with_a_paired_bootstrap():
    a = _ps([[10, 20], [30, 50, 10], [5, 5]])
    ref = _ps([[40, 40], [20, 20, 20], [10, 30]])
    got = length_ratio(a, ref, seed=3, n_boot=400)
    assert got["value"] == pytest.approx((130 / 7) / (180 / 7))
    # A plain reference: the same resamples of problems for both, the ratio of the resampled sample means.
    counts = resample_weights(3, 3, 400)
    sa, na = np.array([30, 90, 10.0]), np.array([2, 3, 2.0])
    sr, nr = np.array([80, 60, 40.0]), np.array([2, 3, 2.0])
    ratios = [(c @ sa / (c @ na)) / (c @ sr / (c @ nr)) for c in counts]
    lo, hi = np.quantile(ratios, [0.025, 0.975])
    assert (got["lo"], got["hi"]) == (pytest.approx(lo), pytest.approx(hi))
    assert length_ratio(_ps([[1]]), [ProblemSamples(correct=[True], classes=[0])]) is None


def _record(completion, prompt="1+2=", finish="stop"):
    return {"completion": completion, "prompt": prompt, "finish_reason": finish}


@pytest.mark.parametrize(
    "records, warned",
    [
        ([_record("<think>1,2,3"), _record("<think>1,2", finish="length")], "2 of 2 samples open"),
        ([_record("1,2,3", prompt="q<think>"), _record("4$", prompt="q<think>")], "2 of 2 samples open"),
        ([_record("<think>1</think>3$"), _record("<think>1,2")], None),  # one closed: the tag occurs
        ([_record("3$"), _record("4$")], None),  # nothing meant to think (an Instruct-like variant)
    ],
)
def test_the_unclosed_thinking_warning(records, warned):
    text = unclosed_thinking("v", records, ("</think>", "<think>"))
    if warned is None:
        assert text is None
    else:
        assert text.startswith(f"variant v: {warned} a thinking block") and "'</think>'" in text
    assert unclosed_thinking("v", records, None) is None


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    root = tmp_path_factory.mktemp("think-pair")
    return str(tiny_model_dir(root, "instruct", seed=1)), str(tiny_model_dir(root, "thinking", seed=2))


def _sweep(pair, out, sampler, **kw):
    from wiseft.evaluate.runners import run_sweep

    cfg = SweepConfig(anchors=pair, task="toy", limit=4, n=2, k=(1, 2), delta=(0.0, 0.5, 1.0), max_new_tokens=30,
                      n_boot=50, device="cpu", **kw)  # fmt: skip
    return run_sweep(cfg, out, sampler_factory=lambda m, t: sampler, report=False)


def test_sweep_lengths_are_relative_to_the_last_anchor_and_warnings_are_recorded(pair, tmp_path):
    from wiseft.results import RunResults

    def script(prompt, i, params):  # the sampler cannot tell variants apart: give each call its own length
        script.calls += 1
        return ["<think>11,22,33</think>1$", "<think>11,22,33,44,55,66", "1$"][(script.calls - 1) // 8]

    script.calls = 0
    res = _sweep(pair, tmp_path / "out", ScriptedSampler(script))
    by = {v.name: v.summary["tokens"] for v in res.variants}
    ref = "delta=0.000,T=1"  # λ = 1: all weight on the last anchor (the Thinking model)
    assert all(t["length_ratio"]["reference"] == ref for t in by.values())
    assert by[ref]["length_ratio"]["value"] == 1.0
    # "1" + the stop token = 2 tokens against "<think>11,22,33</think>1" + the stop token = 25
    assert by["delta=1.000,T=1"]["length_ratio"]["value"] == pytest.approx(2 / 25)
    assert res.warnings == [
        "variant delta=0.500,T=1: 8 of 8 samples open a thinking block ('<think>' in the prompt or the text) but "
        "none closes it with '</think>' (0 hit --max-new-tokens); their answers were graded on the whole text — "
        "check --thinking-tag or raise --max-new-tokens"
    ]
    assert RunResults.from_json(res.to_json()).warnings == res.warnings
    named = _sweep(
        pair, tmp_path / "named", ScriptedSampler(lambda p, i, s: "1$"), length_reference="delta=1.000,T=1"
    )
    assert named.variants[0].summary["tokens"]["length_ratio"]["reference"] == "delta=1.000,T=1"


def test_the_cli_prints_the_warning_and_the_think_column(cli, pair, tmp_path, monkeypatch):
    import wiseft.evaluate.runners as runners

    real = runners.run_sweep

    def scripted(cfg, out, **kw):
        return real(
            cfg, out, **kw, sampler_factory=lambda m, t: ScriptedSampler(lambda p, i, s: "<think>1,2")
        )

    monkeypatch.setattr(runners, "run_sweep", scripted)
    code, err = cli(["sweep", *pair, "--task", "toy", "--limit", "2", "--n", "2", "--k", "1", "--delta", "0,1",
                     "--max-new-tokens", "20", "--n-boot", "20", "--no-report", "-o", tmp_path / "o"])  # fmt: skip
    assert code == 0, err
    assert "warning: variant delta=0.000,T=1: 4 of 4 samples open a thinking block" in err
    assert "think %" in cli.out and "length ×ref" in cli.out
