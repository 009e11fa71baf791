"""The evaluation engine: plan variants, materialise their weights, sample, store, grade, summarise, select.

- `config`: the frozen configs of `eval`, `sweep` and `trajectory`;
- `plan`: `VariantSpec` and the planners (δ grid, training run, one model);
- `engine`: the `Sampler` + `WeightSource` seam, `AnchorWeights`, `hf_engine`;
- `session`: `EvalSession`, which evaluates a variant given its spec;
- `select`: the best variant on a validation split;
- `runners`: `run_sweep`, `run_trajectory`, `run_eval`;
- `outputs`: the files a run writes.
"""

from wiseft.evaluate.config import EvalConfig, ModelEvalConfig, SelectConfig, SweepConfig, TrajectoryConfig
from wiseft.evaluate.engine import AnchorWeights, Engine, WeightSource, hf_engine
from wiseft.evaluate.plan import VariantSpec, plan_eval, plan_sweep, plan_trajectory, variant_name
from wiseft.evaluate.runners import run_eval, run_sweep, run_trajectory
from wiseft.evaluate.select import choose_best
from wiseft.evaluate.session import EvalSession

__all__ = [
    "AnchorWeights",
    "Engine",
    "EvalConfig",
    "EvalSession",
    "ModelEvalConfig",
    "SelectConfig",
    "SweepConfig",
    "TrajectoryConfig",
    "VariantSpec",
    "WeightSource",
    "choose_best",
    "hf_engine",
    "plan_eval",
    "plan_sweep",
    "plan_trajectory",
    "run_eval",
    "run_sweep",
    "run_trajectory",
    "variant_name",
]
