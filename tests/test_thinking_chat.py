"""A Thinking model's chat template opens the thinking block itself (Qwen3 Thinking, DeepSeek-R1 end the
generation prompt with `<think>`), so its completions hold only the closing tag: `--prompt chat` puts the
model's own generation prompt in front, the answer is read after the tag, all the text before it counts as
thinking, and samples that never close the block are all thinking and warned about (issue 16)."""

from __future__ import annotations

import pytest
from support.sampling import tiny_model_dir
from transformers import AutoTokenizer

from wiseft.evaluate.config import ModelEvalConfig
from wiseft.evaluate.runners import run_eval
from wiseft.records import read_records
from wiseft.sampling.fake import ScriptedSampler

THINKING_TEMPLATE = (
    "{% for m in messages %}user: {{ m['content'] }}\n{% endfor %}"
    "{% if add_generation_prompt %}assistant:\n<think>\n{% endif %}"
)


@pytest.fixture
def thinking_model(tmp_path):
    path = tiny_model_dir(tmp_path, "thinking")
    tok = AutoTokenizer.from_pretrained(path)
    tok.chat_template = THINKING_TEMPLATE
    tok.save_pretrained(path)
    return path


def _run(model, out, script):
    cfg = ModelEvalConfig(model=str(model), task="toy", limit=3, n=2, k=(1, 2), max_new_tokens=40, n_boot=20,
                          device="cpu", prompt="chat")  # fmt: skip
    sampler = ScriptedSampler(script)
    results = run_eval(cfg, out, sampler_factory=lambda m, t: sampler)
    return results, sampler, read_records(out / "samples.jsonl", graded=True)


def test_the_templates_open_tag_makes_the_text_before_the_close_tag_thinking(thinking_model, tmp_path):
    # sample 0 thinks and closes the block; sample 1 never closes it (cut by the budget in a real model)
    results, sampler, records = _run(
        thinking_model, tmp_path / "out", lambda prompt, i, params: "81,172</think>0$" if i == 0 else "81,17"
    )
    assert sampler.calls and all(
        p.startswith("user: ") and p.endswith("assistant:\n<think>\n") for p in sampler.calls
    )
    closed = [r for r in records if r["sample_idx"] == 0]
    open_ = [r for r in records if r["sample_idx"] == 1]
    assert all(r["think_closed"] and r["answer"] == "0" for r in closed)
    # "81,172</think>": 6 characters and the tag (char tokenizer: one token per character)
    assert all(r["thinking_tokens"] == len("81,172</think>") for r in closed)
    assert all(not r["think_closed"] and r["thinking_tokens"] == len("81,17") for r in open_)  # all thinking
    thinking = results.variants[0].summary["thinking"]
    assert thinking["think_frac"]["value"] == 0.5
    assert not results.warnings  # some samples closed the block


def test_samples_that_never_close_the_templates_block_are_warned_about(thinking_model, tmp_path):
    results, _, records = _run(thinking_model, tmp_path / "out", lambda prompt, i, params: "81,17")
    (warning,) = results.warnings
    assert warning.startswith(f"variant {results.variants[0].name}: 6 of 6 samples open a thinking block")
    assert "none closes it with '</think>'" in warning
    assert results.variants[0].summary["thinking"]["think_frac"]["value"] == 0.0
