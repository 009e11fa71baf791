"""The evaluation engine: plan variants, materialise their weights, sample, store, grade, summarise, select.

- `config`: the frozen configs of `eval`, `sweep` and `trajectory`;
- `plan`: `VariantSpec` and the planners (δ grid, training run, one model);
- `engine`: the `Sampler` + `WeightSource` seam, `AnchorWeights`, `hf_engine`;
- `session`: `EvalSession`, which evaluates a variant given its spec;
- `select`: the best variant on a validation split;
- `runners`: `run_sweep`, `run_trajectory`, `run_eval`;
- `greedy`, `soup_config`, `soup`: the greedy model soup (`wiseft soup`), each soup a variant of a session;
- `outputs`: the files a run writes;
- `offline`: grading and scoring samples drawn elsewhere (`wiseft grade`, `wiseft score`).

The package imports nothing itself: `config` and `plan` load without torch (the CLI builds its flags from
them), the rest import the model stack.
"""
