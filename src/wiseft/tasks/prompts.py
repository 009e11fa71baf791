"""The prompt styles live in the leaf `wiseft.prompts` (the configs that generate the CLI's flags import
it, and the `wiseft.tasks` package loads numpy). This name stays for `train/grpo.py` and
`train/grpo_config.py` until they import `wiseft.prompts`; then it goes."""

from wiseft.prompts import STYLES, make_prompter

__all__ = ["STYLES", "make_prompter"]
