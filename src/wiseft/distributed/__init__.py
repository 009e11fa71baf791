"""Scale-out on Ray: one run's work units sampled by long-lived actors on one machine or many.

- `engine`: `RayEngine`, a `WeightSource` and `StreamingSampler` of the evaluation seam
  (`evaluate.engine`), and `ray_engine`, what `make_engine` builds for a config with a `ray:` section;
- `dispatch`: the driver's work queue: units (variant, chunk of problems) handed to whichever actor is
  free, lost units re-queued, lost actors replaced, the next variant started while the last units run;
- `actor`: `EngineWorker`, the actor (one engine replica: a sampler and its anchors) and the actor-side
  engines by name (`ACTOR_ENGINES`);
- `early`: the actors asked for at the start of a command, before its own imports, and adopted by
  `RayEngine.start`, so that the actors' start overlaps the driver's;
- `cluster`: connecting to a cluster (or starting one), its resources, the placement group;
- `monitor`: per-actor throughput, the queue, and the run's record of which actor drew each unit;
- `fake`: a scripted engine with a cost per token, for tests and the scheduling benchmark.

Ray is optional (the `ray` extra) and imported only inside the functions that use it. The package sits
above `evaluate`, which finds `ray_engine` by name (`evaluate.engine.ENGINE_PLUGINS`) and imports
nothing from here.
"""
