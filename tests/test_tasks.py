"""Tasks: loading the real data files, gold answers, prompts, the registry and the validation split."""

import json

import pytest
from support.grading import DATA

from wiseft.errors import ConfigError, TaskError
from wiseft.tasks import INSTRUCTION, Problem, Task, get_task, register_task, task_names
from wiseft.tasks.builtin import gsm8k_gold
from wiseft.tasks.split import split_problems


@pytest.mark.parametrize(
    "name,count,first_id,first_gold",
    [
        ("gsm8k", 1319, "0", "18"),
        ("math", 5000, "0", "2"),
        ("math500", 500, "test/precalculus/807.json", "\\left( 3, \\frac{\\pi}{2} \\right)"),
        ("aime24", 30, "60", "204"),
        ("aime25", 30, "0", "70"),
    ],
)
def test_builtin_tasks_load_from_shared_data(name, count, first_id, first_gold):
    for data in (DATA, DATA / name, DATA / name / "test.jsonl"):  # directory of tasks, task directory, file
        task = get_task(name, data=data)
        assert len(task) == count
        assert len({p.id for p in task.problems}) == count
        assert (task.problems[0].id, task.problems[0].gold) == (first_id, first_gold)
        assert task.grader_kind == "math" and task.source.endswith("test.jsonl")


def test_gsm8k_golds_drop_thousands_separators():
    task = get_task("gsm8k", data=DATA)
    raw = [
        json.loads(line)["answer"].rsplit("####", 1)[1].strip()
        for line in open(DATA / "gsm8k" / "test.jsonl")
    ]
    with_commas = [i for i, r in enumerate(raw) if "," in r]
    assert len(with_commas) == 14  # as the data's SOURCE.md says
    for i in with_commas:
        assert task.problems[i].gold == raw[i].replace(",", "")
    assert all(p.gold.lstrip("-").replace(".", "", 1).isdigit() for p in task.problems)
    with pytest.raises(TaskError, match="no '####' line"):
        gsm8k_gold("just text")


def test_math_gold_is_last_box_with_nested_braces():
    task = get_task("math", data=DATA)
    golds = {p.gold for p in task.problems}
    assert "\\frac{\\sqrt{3}}{2}" in golds or any("\\frac{" in g and "}{" in g for g in golds)
    for p in task.problems:
        assert p.gold.count("{") - p.gold.count("\\{") == p.gold.count("}") - p.gold.count("\\}")
        assert p.meta["solution"].rstrip().count("\\boxed") >= 1


def test_math500_uses_the_answer_field():
    rows = [json.loads(line) for line in open(DATA / "math500" / "test.jsonl")]
    task = get_task("math500", data=DATA)
    assert [p.gold for p in task.problems] == [r["answer"] for r in rows]
    assert task.problems[0].meta["subject"] == "Precalculus"


def test_jsonl_task_with_custom_fields(tmp_path):
    path = tmp_path / "mine.jsonl"
    rows = [
        {"uid": "x1", "prompt": "What is 2+2?", "target": "4"},
        {"uid": "x2", "prompt": "Half?", "target": "so it is \\boxed{\\frac{1}{2}}"},
    ]
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    task = get_task("jsonl", data=path, question_field="prompt", answer_field="target", id_field="uid")
    assert [(p.id, p.question, p.gold) for p in task.problems] == [
        ("x1", "What is 2+2?", "4"),
        ("x2", "Half?", "\\frac{1}{2}"),
    ]
    with pytest.raises(TaskError, match="record 1: no field 'question' \\(question field\\)"):
        get_task("jsonl", data=path)
    with pytest.raises(TaskError, match="needs --data PATH"):
        get_task("jsonl")


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"name": "nope"}, "unknown task 'nope' \\(--task\\); known tasks: aime24"),
        ({"name": "gsm8k", "data": "/nonexistent/dir"}, "--data /nonexistent/dir does not exist"),
        (
            {"name": "gsm8k", "data": DATA / "math" / "test.jsonl"},
            "record 1: none of the fields answer is present",
        ),
        ({"name": "gsm8k", "data": DATA / "gsm8k" / "LICENSE"}, "LICENSE:1: not valid JSON"),
        ({"name": "math", "data": DATA, "colour": "red"}, "unknown option\\(s\\) colour"),
    ],
)
def test_get_task_errors_name_the_flag(kwargs, match):
    kwargs = dict(kwargs)
    name = kwargs.pop("name")
    with pytest.raises(TaskError, match=match):
        get_task(name, **kwargs)


def test_malformed_data_file(tmp_path):
    bad = tmp_path / "test.jsonl"
    bad.write_text('{"problem": "p", "solution": "\\\\boxed{1}"}\n{oops\n')
    with pytest.raises(TaskError, match="test.jsonl:2: not valid JSON"):
        get_task("math", data=bad)
    bad.write_text('{"problem": "p", "solution": "no box here"}\n')
    with pytest.raises(TaskError, match="record 1: no answer field and no \\\\boxed"):
        get_task("math", data=bad)


def test_a_hub_that_fails_is_a_clear_error(monkeypatch):
    import datasets

    from wiseft.tasks import builtin

    def offline(*args, **kwargs):
        raise ConnectionError("Couldn't reach the Hub (OfflineModeIsEnabled)")

    monkeypatch.delenv("WISEFT_DATA", raising=False)
    monkeypatch.setattr(builtin, "hub_reachable", lambda: True)
    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(
        TaskError, match="could not load openai/gsm8k from the Hugging Face Hub.*pass --data PATH"
    ):
        get_task("gsm8k")


def test_an_unreachable_hub_fails_fast_without_asking_it(monkeypatch):
    import datasets

    from wiseft.tasks import builtin

    def never(*args, **kwargs):
        raise AssertionError("datasets was asked although the Hub is known to be unreachable")

    monkeypatch.delenv("WISEFT_DATA", raising=False)
    monkeypatch.setattr(builtin, "hub_reachable", lambda: False)
    monkeypatch.setattr(datasets, "load_dataset", never)
    with pytest.raises(TaskError, match="no --data given and .*pass --data PATH"):
        get_task("gsm8k")


@pytest.mark.parametrize("env, want", [("1", False), ("true", False)])
def test_hf_hub_offline_means_unreachable_without_a_connection(monkeypatch, env, want):
    import socket

    from wiseft import network

    def no_socket(*args, **kwargs):
        raise AssertionError("a connection was attempted although HF_HUB_OFFLINE is set")

    network.hub_reachable.cache_clear()
    monkeypatch.setenv("HF_HUB_OFFLINE", env)
    monkeypatch.setattr(socket, "create_connection", no_socket)
    try:
        assert network.hub_reachable() is want
    finally:
        network.hub_reachable.cache_clear()


def test_directory_without_the_task(tmp_path):
    with pytest.raises(TaskError, match="holds no gsm8k/test.jsonl, test.jsonl or gsm8k.jsonl"):
        get_task("gsm8k", data=tmp_path)


def test_data_from_environment(monkeypatch):
    monkeypatch.setenv("WISEFT_DATA", str(DATA))
    assert len(get_task("aime25")) == 30


# --------------------------------------------------------------------------------------------- prompts


class ChatTokenizer:
    chat_template = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert tokenize is False and add_generation_prompt is True
        return "".join(f"<|{m['role']}|>{m['content']}" for m in messages) + "<|assistant|>"


def test_prompts_plain_and_chat():
    task = get_task("aime25", data=DATA)
    p = task.problems[0]
    plain = task.prompt(p)
    assert p.question in plain and "\\boxed{}" in plain and plain.endswith("Solution:")
    chat = task.prompt(p, style="chat", tokenizer=ChatTokenizer())
    assert chat == f"<|user|>{p.question}\n{INSTRUCTION}<|assistant|>"
    with pytest.raises(TaskError, match="needs a tokenizer with a chat template.*--prompt plain"):
        task.prompt(p, style="chat", tokenizer=object())
    with pytest.raises(ConfigError, match="--prompt must be one of plain, paper, gsm8k-cot, minerva, chat"):
        task.prompt(p, style="fancy")
    assert "\nProblem:" in task.stop


# ----------------------------------------------------------------------------------- registry and split


def test_register_task_adds_a_factory():
    @register_task("unit-test-task")
    def make(data=None, n=3):
        return Task("unit-test-task", [Problem(str(i), f"q{i}", str(i)) for i in range(n)], grader_kind="int")

    assert "unit-test-task" in task_names()
    assert len(get_task("unit-test-task", n=5)) == 5


def test_task_rejects_duplicate_ids_and_bad_grader():
    with pytest.raises(TaskError, match="problem id '1' appears twice"):
        Task("t", [Problem("1", "a", "1"), Problem("1", "b", "2")])
    with pytest.raises(TaskError, match="grader_kind must be one of math, int, ifeval"):
        Task("t", [Problem("1", "a", "1")], grader_kind="regex")
    with pytest.raises(TaskError, match="no problems"):
        Task("t", [])


def test_split_is_seeded_disjoint_and_complete():
    problems = get_task("math500", data=DATA).problems
    val, test = split_problems(problems, 0.2, seed=3)
    assert len(val) == 100 and len(test) == 400
    assert {p.id for p in val}.isdisjoint({p.id for p in test})
    assert {p.id for p in val} | {p.id for p in test} == {p.id for p in problems}
    order = {p.id: i for i, p in enumerate(problems)}
    assert [order[p.id] for p in val] == sorted(order[p.id] for p in val)  # original order kept
    assert split_problems(problems, 0.2, seed=3) == (val, test)
    assert split_problems(problems, 0.2, seed=4)[0] != val
    for bad in (0.0, 1.0, -0.1):
        with pytest.raises(TaskError, match="--val-fraction must lie strictly between 0 and 1"):
            split_problems(problems, bad, seed=0)
    with pytest.raises(TaskError, match="leaves an empty validation or test split"):
        split_problems(problems[:2], 0.1, seed=0)
