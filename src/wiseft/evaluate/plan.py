"""Planning: the variants of a run, in evaluation order, before anything is loaded or sampled.

A `VariantSpec` says what one variant is (its name, kind, δ, temperature, training step), which weights it
needs (`anchors`, `base` and the `mix` a weight source materialises) and which models identify it in the
sample store (`models`). The planners below turn a config into specs; they read nothing but recipes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

from wiseft.evaluate.config import ModelEvalConfig, SweepConfig, TrajectoryConfig
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


def plan_sweep(cfg: SweepConfig, recipe: Recipe | None = None) -> list[VariantSpec]:
    """δ grid × temperatures over two anchors, or over a recipe (whose δ the grid replaces when the
    recipe is wise-ft and the grid was asked for; otherwise the recipe as written, per temperature)."""
    anchors = tuple(recipe.models) if recipe is not None else cfg.anchors
    base = recipe.base if recipe is not None else None
    specs = []
    for t in cfg.temperature:
        if recipe is None or (recipe.method == "wise-ft" and cfg.delta != (recipe.delta,)):
            template = recipe or Recipe(
                method="wise-ft", models=anchors, delta=0.0, extrapolate=cfg.extrapolate
            )
            for d in cfg.delta:
                mix = dataclasses.replace(template, delta=d)
                specs.append(
                    VariantSpec(variant_name(d, t), "mix", t, delta=d, mix=mix, anchors=anchors, base=base)
                )
        else:
            d = recipe.delta if isinstance(recipe.delta, (int, float)) else None
            specs.append(VariantSpec(variant_name(d, t, label=recipe.method), "mix", t, delta=d, mix=recipe,
                                     anchors=anchors, base=base))  # fmt: skip
    return specs


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
