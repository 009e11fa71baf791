"""Merging: methods (a registry of pure per-tensor kernels), recipes with schedules, pre-flight, driver."""

from wiseft.merge.compute import Scratch, combine_into
from wiseft.merge.methods import Method, all_methods, get_method
from wiseft.merge.recipe import Gradient, Recipe, Rule, recipe_to_dict
from wiseft.merge.recipe_file import load_recipe

__all__ = [
    "Gradient",
    "Method",
    "Recipe",
    "Rule",
    "Scratch",
    "all_methods",
    "combine_into",
    "get_method",
    "load_recipe",
    "recipe_to_dict",
]
