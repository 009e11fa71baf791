"""Where RL starts: a Hugging Face checkpoint, or a mix of checkpoints made in memory.

`Start(model=DIR)` loads a checkpoint; `Start(init=(EARLY, FINAL), delta=δ)` or `Start(recipe=YAML)`
materialises θ through `WeightSpace` (the anchors are read once, the mix is computed into the model's
parameters with the kernels `wiseft merge` uses), so the start is bit-identical to the checkpoint
`wiseft merge EARLY FINAL --delta δ --dtype float32` would write, without writing it. The tokenizer is
taken from the model whose config `wiseft merge` copies: FINAL for wise-ft, the base for task
arithmetic, the first model for linear.
"""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from wiseft.checkpoints import load_causal_lm, load_tokenizer
from wiseft.errors import ConfigError, TrainError
from wiseft.merge import Recipe, load_recipe
from wiseft.weightspace import WeightSpace


@dataclasses.dataclass(frozen=True)
class Start:
    """Exactly one of: `model`; `init` (EARLY, FINAL) with `delta`; `recipe` (a merge recipe YAML)."""

    model: str | None = None
    init: tuple[str, ...] = ()
    delta: float | None = None
    recipe: str | None = None

    def __post_init__(self):
        given = [
            name
            for name, v in (("--model", self.model), ("--init", self.init), ("--init-recipe", self.recipe))
            if v
        ]
        if len(given) != 1:
            raise ConfigError(
                f"give exactly one start: --model DIR, --init EARLY FINAL --delta D or --init-recipe YAML "
                f"(got {', '.join(given) or 'none'})"
            )
        if self.init and len(self.init) != 2:
            raise ConfigError(f"--init takes two checkpoints, EARLY and FINAL; got {len(self.init)}")
        if self.init and self.delta is None:
            raise ConfigError("--init EARLY FINAL needs --delta (the weight of EARLY, e.g. 0.25)")
        if self.delta is not None and not self.init:
            raise ConfigError("--delta applies to --init EARLY FINAL only")

    def describe(self) -> dict:
        """A JSON-able description (stored with every checkpoint; a resumed run must start the same way)."""
        if self.model:
            return {"model": str(self.model)}
        if self.init:
            return {"init": [str(p) for p in self.init], "delta": self.delta}
        digest = (
            hashlib.sha256(Path(self.recipe).read_bytes()).hexdigest()[:16]
            if Path(self.recipe).is_file()
            else None
        )
        return {"recipe": str(self.recipe), "sha256": digest}


def load_start(start: Start, device: str = "cpu"):
    """(model in float32 on `device`, eval mode; its tokenizer) for `start`."""
    if start.model:
        path = Path(start.model)
        if not (path / "config.json").is_file():
            raise TrainError(f"--model {path} is not a Hugging Face model directory (no config.json)")
        return load_causal_lm(path).to(device), load_tokenizer(path)
    recipe = _recipe(start)
    model = mix_model(recipe, device)
    return model, load_tokenizer(tokenizer_source(recipe))


def _recipe(start: Start):
    if start.init:
        return Recipe(method="wise-ft", models=tuple(str(p) for p in start.init), delta=float(start.delta))
    return load_recipe(str(start.recipe))


def mix_model(recipe, device: str = "cpu"):
    """The model holding `recipe`'s mix in float32, made through `WeightSpace`; the anchors are freed."""
    import torch

    ws = WeightSpace.load(list(recipe.models), device=device, dtype=torch.float32, base=recipe.base)
    ws.apply(recipe)
    return ws.model


def tokenizer_source(recipe) -> str:
    """The model whose tokenizer `wiseft merge` copies for `recipe` (its config source)."""
    if recipe.method == "wise-ft":
        return str(recipe.models[1])
    if recipe.base:
        return str(recipe.base)
    return str(recipe.models[0])
