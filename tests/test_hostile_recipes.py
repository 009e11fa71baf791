"""Hostile recipe regexes: rule patterns run on RE2 in linear time; what RE2 cannot run is one ConfigError
naming the rule, and `wiseft merge` writes nothing."""

import signal

import pytest

from wiseft.cli import main
from wiseft.errors import ConfigError
from wiseft.merge import Recipe, regex

pytest.importorskip("re2", reason="google-re2 is not installed (pip install google-re2==1.1.20251105)")

CATASTROPHIC = [
    r"(a|aa)*(.|..)*(x+x+)+y",
    r"(x+x+)+y",
    r"(.*a){20}z",
    r"((a+)+)+b",
    r"(\w|\d)*!",
]
NAMES = ["a" * 40 + "x" * 60, "x" * 5000, "model.layers.0." + "a" * 3000, "1" * 4000]


@pytest.fixture
def no_hang():
    def alarm(*_):
        raise TimeoutError("a rule regex backtracked")

    old = signal.signal(signal.SIGALRM, alarm)
    signal.setitimer(signal.ITIMER_REAL, 60)  # a hang is for ever; a linear match takes microseconds
    yield
    signal.setitimer(signal.ITIMER_REAL, 0)
    signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("pattern", CATASTROPHIC)
def test_catastrophic_patterns_run_in_linear_time(pattern, no_hang):
    recipe = Recipe(models=("a", "b"), delta=0.5, rules=({"match": pattern, "delta": 0.1},))
    for name in NAMES:
        assert recipe.coefficients(name, 2)[1] == "default"


REFUSED = [
    # (id, pattern, fragment)
    ("backreference", r"(a)\1", "backreferences and lookaround are not supported"),
    ("named-backreference", r"(?P<x>a)(?P=x)", "backreferences and lookaround are not supported"),
    ("lookahead", r"(?=model).*", "backreferences and lookaround are not supported"),
    ("negative-lookbehind", r".*(?<!bias)", "backreferences and lookaround are not supported"),
    ("unbalanced", r"model.(", "not a valid regular expression"),
    ("huge-program", r"((a{100}){100}){100}", "not a valid regular expression"),
    ("too-long", "a" * 1001, "rule patterns are limited to 1000"),
    ("not-a-string", 5, "must be a string"),
    ("list", ["a"], "must be a string"),
]


@pytest.mark.parametrize("pattern,fragment", [c[1:] for c in REFUSED], ids=[c[0] for c in REFUSED])
def test_patterns_re2_cannot_run_are_refused(pattern, fragment):
    with pytest.raises(ConfigError) as info:
        Recipe(models=("a", "b"), delta=0.5, rules=({"match": pattern, "delta": 0.1},))
    msg = str(info.value)
    assert "\n" not in msg and msg.startswith(f"rule match {str(pattern)[:100]!r}"), msg
    assert fragment in msg, msg


@pytest.mark.parametrize(
    "pattern,name,hit",
    [
        (r"model\.layers\.[0-9]+\.mlp\..*", "model.layers.12.mlp.up_proj.weight", True),
        (r"model\.layers\.[0-9]+\.mlp\..*", "xmodel.layers.12.mlp.up_proj.weight", False),  # full match
        (r".*embed.*", "model.embed_tokens.weight", True),
        (r"(?i)LM_HEAD\.weight", "lm_head.weight", True),
        (r"lm_head", "lm_head.weight", False),
        (r"model\.layers\.(?P<i>\d+)\..*", "model.layers.3.self_attn.q_proj.weight", True),
        (r"a|b", "b", True),
    ],
)
def test_python_syntax_keeps_its_meaning(pattern, name, hit):
    assert regex.fullmatch(pattern, name) is hit


def test_merge_with_a_lookaround_rule_writes_nothing(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(
        "method: wise-ft\nmodels: [a, b]\ndelta: 0.5\nrules:\n  - {match: '(?=x).*', delta: 0.2}\n"
    )
    out = tmp_path / "out"
    capsys.readouterr()
    assert main(["merge", "--config", str(recipe), "-o", str(out)]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "'(?=x).*'" in err and "lookaround" in err, err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.yaml"]
