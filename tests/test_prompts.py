"""Prompt styles: the exact text of each, the harnesses' few-shot formats, template files, and bad flags."""

from __future__ import annotations

import pytest

from wiseft.errors import ConfigError, TaskError
from wiseft.prompts import FEWSHOT, GSM8K_SHOTS, MINERVA_SHOTS, PAPER_INSTRUCTION, make_prompter

Q = "What is 2+3?"
TEMPLATE = "Problem: {question}\nSolve it.\n\nSolution:"


class ChatTokenizer:
    chat_template = "a template"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return "".join(f"<|{m['role']}|>{m['content']}" for m in messages) + "<|assistant|>"


def render(prompter, tokenizer=None):
    return prompter.render(Q, TEMPLATE, PAPER_INSTRUCTION, tokenizer)


@pytest.mark.parametrize(
    "style, want",
    [
        ("plain", "Problem: What is 2+3?\nSolve it.\n\nSolution:"),
        ("paper", "What is 2+3?\nPlease reason step by step, and put your final answer within \\boxed{}."),
    ],
)
def test_zero_shot_styles_exact_text(style, want):
    assert render(make_prompter(style)) == want


def test_gsm8k_cot_is_lm_eval_harness_format():
    """`Q: … \\nA: … The answer is N.` shots joined by a blank line, then the question: lm-eval's gsm8k_cot."""
    text = render(make_prompter("gsm8k-cot"))
    blocks = text.split("\n\n")
    assert len(blocks) == 9 and blocks[-1] == f"Q: {Q}\nA:"
    assert blocks[0] == f"Q: {GSM8K_SHOTS[0].question}\nA: {GSM8K_SHOTS[0].answer}"
    assert all(b.startswith("Q: ") and " The answer is " in b for b in blocks[:-1])
    assert make_prompter("gsm8k-cot").stop(("\nProblem:",)) == ("Q:", "</s>", "<|im_end|>")


def test_minerva_is_lm_eval_harness_format():
    text = render(make_prompter("minerva"))
    assert text.startswith(
        f"Problem:\n{MINERVA_SHOTS[0].question}\n\nSolution: {MINERVA_SHOTS[0].answer}\n\n"
    )
    assert text.endswith(f"Problem:\n{Q}\n\nSolution:")
    assert text.count("I hope it is correct.") == 4
    assert make_prompter("minerva").stop(()) == ("Problem:",)


@pytest.mark.parametrize("style, n", [("gsm8k-cot", 0), ("gsm8k-cot", 3), ("minerva", 1), ("minerva", 4)])
def test_fewshot_takes_the_first_n_worked_examples(style, n):
    text = render(make_prompter(style, fewshot=n))
    shots = FEWSHOT[style].shots
    assert [s.question in text for s in shots] == [i < n for i in range(len(shots))]
    assert text.endswith(FEWSHOT[style].query.replace("{question}", Q))


def test_chat_with_and_without_a_system_prompt():
    assert render(make_prompter("chat"), ChatTokenizer()) == f"<|user|>{Q}\n{PAPER_INSTRUCTION}<|assistant|>"
    with_system = render(make_prompter("chat", system="Be brief."), ChatTokenizer())
    assert with_system == f"<|system|>Be brief.<|user|>{Q}\n{PAPER_INSTRUCTION}<|assistant|>"
    with pytest.raises(TaskError, match="needs a tokenizer with a chat template"):
        render(make_prompter("chat"), object())


def test_the_plain_style_keeps_the_tasks_own_stop_strings():
    assert make_prompter("plain").stop(("\nProblem:",)) == ("\nProblem:",)
    assert make_prompter("paper").stop(("$",)) == ("$",)


@pytest.mark.parametrize(
    "text, want",
    [
        ("Question: {question}\nAnswer:", f"Question: {Q}\nAnswer:"),
        ("{{ question | upper }} =", f"{Q.upper()} ="),
        ("{% if question %}Q: {{ question }}{% endif %}", f"Q: {Q}"),
    ],
)
def test_template_files_plain_or_jinja(tmp_path, text, want):
    path = tmp_path / "t.txt"
    path.write_text(text)
    assert render(make_prompter(template_file=str(path))) == want


def test_a_jinja_template_cannot_reach_python(tmp_path):
    path = tmp_path / "t.j2"
    path.write_text("{{ question.__class__.__mro__[1].__subclasses__() }}")
    with pytest.raises(TaskError, match="--prompt-template: rendering failed"):
        render(make_prompter(template_file=str(path)))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"style": "fancy"}, "--prompt must be one of plain, paper, gsm8k-cot, minerva, chat"),
        ({"style": "plain", "fewshot": 2}, "--fewshot applies to the few-shot styles"),
        ({"style": "gsm8k-cot", "fewshot": 9}, "--fewshot must lie in 0..8 for --prompt gsm8k-cot"),
        ({"style": "minerva", "fewshot": -1}, "--fewshot must lie in 0..4 for --prompt minerva"),
        ({"style": "paper", "system": "hi"}, "--system-prompt needs --prompt chat"),
        (
            {"style": "plain", "template_file": "/no/such/file"},
            "--prompt-template /no/such/file does not exist",
        ),
    ],
)
def test_bad_prompt_flags_are_named(kwargs, message):
    with pytest.raises(ConfigError) as err:
        make_prompter(**kwargs)
    assert message in str(err.value)


@pytest.mark.parametrize(
    "text, message",
    [
        ("no placeholder here", "never uses the question"),
        ("{{ question ", "not a valid Jinja template"),
        ("x" * (65 << 10) + "{question}", "is larger than 64 KiB"),
    ],
)
def test_bad_template_files_are_named(tmp_path, text, message):
    path = tmp_path / "t.txt"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        make_prompter(template_file=str(path))
    assert message in str(err.value) and str(path) in str(err.value)


def test_a_template_replaces_the_style(tmp_path):
    path = tmp_path / "t.txt"
    path.write_text("{question}")
    with pytest.raises(ConfigError, match="--prompt-template replaces the prompt style; drop --prompt paper"):
        make_prompter("paper", template_file=str(path))
