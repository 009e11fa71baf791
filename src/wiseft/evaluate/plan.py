"""Planning: the variants of a run, in evaluation order, before anything is loaded or sampled.

A `VariantSpec` says what one variant is (its name, kind, δ, temperature, training step), which weights it
needs (`anchors`, `base` and the `mix` a weight source materialises) and which models identify it in the
sample store (`models`). The planners below turn a config into specs; they read nothing but recipes.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from wiseft.errors import ConfigError
from wiseft.evaluate.config import ModelEvalConfig, SweepConfig, TrajectoryConfig
from wiseft.merge.ablation import Choice, ablation_rules, choices
from wiseft.merge.recipe import Recipe, recipe_to_dict

# What a weight source materialises: a Recipe, a δ (two anchors) or linear weights (N anchors).
Mix = Recipe | float | tuple[float, ...]


@dataclass(frozen=True)
class VariantSpec:
    """One point of a run.

    `mix` None means "the first anchor as it is" (a model evaluated without mixing); `models` are the
    models whose fingerprints identify the variant's samples (default: the anchors).
    """

    name: str
    kind: str  # "checkpoint" | "mix" | "temperature" | "base"
    temperature: float
    delta: float | None = None
    step: int | None = None
    mix: Mix | None = None
    anchors: tuple[str, ...] = ()
    base: str | None = None
    models: tuple[str, ...] = ()
    choice: Choice | None = None  # a layer/module ablation: which part of the model the mix moves

    @property
    def ablation(self) -> dict | None:
        """What an ablation interpolates ({"layers", "modules"}), None for a whole-model variant."""
        return None if self.choice is None else self.choice.as_dict()

    @property
    def identity(self) -> tuple[str, ...]:
        """The models whose content identifies this variant's samples."""
        return self.models or self.anchors

    @property
    def recipe(self) -> dict | None:
        """The recipe recorded with a mix (None for a model evaluated as it is)."""
        if self.kind == "mix" and isinstance(self.mix, Recipe):
            return recipe_to_dict(self.mix)
        return None


def variant_name(delta: float | None, temperature: float, step: int | None = None, label: str = "") -> str:
    """`step=400,delta=0.250,T=1`: the display name of a variant (its fields are in the spec)."""
    parts = []
    if step is not None:
        parts.append(f"step={step}")
    if label:
        parts.append(label)
    if delta is not None:
        parts.append(f"delta={delta:.3f}")
    parts.append(f"T={temperature:g}")
    return ",".join(parts)


def plan_sweep(
    cfg: SweepConfig, recipe: Recipe | None = None, names: Sequence[str] = ()
) -> list[VariantSpec]:
    """δ grid × temperatures over two anchors, or over a recipe (whose δ the grid replaces when the
    recipe is wise-ft and the grid was asked for; otherwise the recipe as written, per temperature).

    With --layers/--modules each point is repeated per ablation choice (temperature, then choice, then
    δ): the mix's recipe gains rules that move only the chosen tensors and give every other tensor the
    --rest-from anchor's coefficient (`merge.ablation`); `names` are the anchors' tensor names."""
    anchors = tuple(recipe.models) if recipe is not None else cfg.anchors
    base = recipe.base if recipe is not None else None
    grid: list[Choice | None] = [None]
    if cfg.layers is not None or cfg.modules is not None:
        grid = list(choices(cfg.layers, cfg.modules))
    specs = []
    for t in cfg.temperature:
        for choice in grid:
            label = choice.label if choice is not None else ""
            if recipe is None or (recipe.method == "wise-ft" and cfg.delta != (recipe.delta,)):
                template = recipe or Recipe(
                    method="wise-ft", models=anchors, delta=0.0, extrapolate=cfg.extrapolate
                )
                for d in cfg.delta:
                    mix = ablate(dataclasses.replace(template, delta=d), choice, names, cfg.rest_from)
                    specs.append(VariantSpec(variant_name(d, t, label=label), "mix", t, delta=d, mix=mix,
                                             anchors=anchors, base=base, choice=choice))  # fmt: skip
            else:
                d = recipe.delta if isinstance(recipe.delta, (int, float)) else None
                mix = ablate(recipe, choice, names, cfg.rest_from)
                name = variant_name(d, t, label=",".join(x for x in (recipe.method, label) if x))
                specs.append(VariantSpec(name, "mix", t, delta=d, mix=mix, anchors=anchors, base=base,
                                         choice=choice))  # fmt: skip
    return specs


def ablate(recipe: Recipe, choice: Choice | None, names: Sequence[str], rest_from: str) -> Recipe:
    """`recipe` moving only what `choice` names; every other tensor from the `rest_from` anchor (first,
    last or its path): δ = 1 / 0 for wise-ft, one-hot weights for linear."""
    if choice is None:
        return recipe
    if recipe.method not in ("wise-ft", "linear"):
        raise ConfigError(
            f"--layers/--modules need a wise-ft or linear mix (each tensor from the --rest-from anchor "
            f"or mixed); the recipe's method is {recipe.method}"
        )
    if recipe.rules:
        raise ConfigError(
            "--layers/--modules write the recipe's rules themselves; the --recipe already has rules "
            "(drop them or the flags)"
        )
    models = list(recipe.models)
    index = {"first": 0, "last": len(models) - 1}.get(rest_from)
    if index is None:
        if rest_from not in models:
            raise ConfigError(f"--rest-from {rest_from!r} must be first, last or one of the models {models}")
        index = models.index(rest_from)
    if recipe.method == "wise-ft":  # δ is the weight of the first model
        rules, default = ablation_rules(choice, names, recipe.delta, 1.0 if index == 0 else 0.0)
        return dataclasses.replace(recipe, delta=default, rules=rules)
    one_hot = tuple(1.0 if i == index else 0.0 for i in range(len(models)))
    rules, default = ablation_rules(choice, names, tuple(recipe.weights), one_hot)
    return dataclasses.replace(recipe, weights=default, rules=rules)


def plan_trajectory(
    cfg: TrajectoryConfig, checkpoints: dict[int, Path], early_step: int
) -> list[VariantSpec]:
    """Each checkpoint raw and mixed with the early one at each δ, ordered by step, then temperature, then δ.

    Both are materialised from the pair (early, checkpoint), so a checkpoint is loaded once: the raw
    checkpoint is δ = 0 of that pair, bit for bit. Mixing the early checkpoint with itself, or δ = 0, is
    the raw checkpoint and is not planned again."""
    early = str(checkpoints[early_step])
    specs = []
    for step, path in checkpoints.items():
        pair = (early, str(path))
        for t in cfg.temperature:
            raw = Recipe(method="wise-ft", models=pair, delta=0.0)
            specs.append(VariantSpec(variant_name(None, t, step), "checkpoint", t, step=step, mix=raw,
                                     anchors=pair, models=(str(path),)))  # fmt: skip
            for d in cfg.delta:
                if step == early_step or d == 0:
                    continue
                mix = Recipe(method="wise-ft", models=pair, delta=d)
                specs.append(VariantSpec(variant_name(d, t, step), "mix", t, delta=d, step=step, mix=mix,
                                         anchors=pair))  # fmt: skip
    return specs


def plan_eval(cfg: ModelEvalConfig) -> list[VariantSpec]:
    """One model at each temperature, evaluated as it is."""
    label = Path(cfg.model).name
    return [
        VariantSpec(variant_name(None, t, label=label), "base", t, anchors=(str(cfg.model),))
        for t in cfg.temperature
    ]


def default_length_reference(specs: Sequence[VariantSpec], command: str) -> str | None:
    """The variant lengths are relative to when --length-reference is not given: the last anchor as it
    is (a sweep's whole-model δ = 0, i.e. λ = 1 of an Instruct→Thinking sweep; a trajectory's last
    checkpoint), at the first temperature; None when the run has no such variant (`wiseft eval`, a sweep
    without δ = 0)."""
    if command == "sweep":
        found = [s for s in specs if s.kind == "mix" and s.delta == 0 and s.choice is None]
    elif command == "trajectory":
        raw = [s for s in specs if s.kind == "checkpoint" and s.step is not None]
        last = max((s.step for s in raw), default=None)
        found = [s for s in raw if s.step == last]
    else:
        found = []
    return found[0].name if found else None
