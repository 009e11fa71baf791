"""`greedy_soup` (Wortsman et al. 2022, "Model soups"): listed beside the merge methods, run by `wiseft soup`.

It needs an evaluation of every soup it tries (a task, a validation split, n samples and a metric), which
`wiseft merge` does not run: `wiseft.evaluate.soup` evaluates each soup in memory and writes the kept
candidates' uniform average with the `linear` method.
"""

from __future__ import annotations

from wiseft.merge.methods import CommandMethod, register_command

GREEDY_SOUP = register_command(
    CommandMethod(
        name="greedy_soup",
        summary="uniform average of the candidates kept greedily (best first, each kept when the soup's "
        "validation metric does not drop); needs an evaluation",
        inputs="≥2 models + a validation split",
        params="task, split, n, metric (pass@k | maj@k)",
        command="wiseft soup CKPT... --task TASK --split SPLIT --n N --metric pass@1 -o OUT",
    )
)
