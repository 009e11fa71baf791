"""The sample store: every sample and grade of a sweep, in one SQLite file, safe to kill at any moment.

Why SQLite: samples arrive in batches over minutes or hours, and a sweep must survive being killed. Each
batch is one transaction, so after a SIGKILL the store holds every batch committed before and nothing of
the one in flight; primary keys on (variant, problem, sample) make a duplicate impossible, and
`missing()` tells a restarted sweep exactly what is left. WAL mode lets readers (export, report) look
while a sweep writes.

Tables (schema version `SCHEMA_VERSION`, kept in `meta`):
- `runs`: one row per invocation (its resolved config, start and end time);
- `variants`: what was sampled — name, kind, recipe (JSON), temperature, seed, model fingerprints,
  sampling parameters, task. A variant is identified by `key`, a hash of everything that changes the
  samples, so a rerun with the same settings reuses its samples and a changed setting never does;
- `problems`: (task, problem id) → gold answer, prompt and `meta` (the task's other fields of the problem,
  JSON: MATH's subject and level, IFEval's instructions). `meta` came after schema version 1 was
  released: opening an older store for writing adds the column (older wiseft versions still read it),
  opening it read-only reads it without;
- `samples`: (variant, problem, sample_idx) → completion, n_tokens, finish_reason, score;
- `grades`: (variant, problem, sample_idx) → answer, extraction, verdict, correct, answer_class, grader;
- `verifiers`: one row per verifier that scored samples (`wiseft verify`): its 16-hex id, kind, vote
  transform and full identity (JSON: weights/config/tokenizer hashes, options, path);
- `scores`: (variant, problem, sample_idx, verifier) → score, and the run that wrote it. Several verifiers'
  scores live side by side; `samples.score` holds only scores of unknown origin (JSONL imported without a
  `verifier`). `verifiers` and `scores` came after schema version 1 too: a writer creates them in an older
  store, a reader of a store without them sees no verifier scores.

One writer at a time: opening for writing takes an exclusive `fcntl` lock on `PATH.lock` (released by
the OS when the process dies, so a killed sweep never leaves a stale lock); a second writer gets a
StoreError naming the store and the holder's PID. Opening with `writer=False` reads without the lock.
"""

from wiseft.store.core import SampleStore
from wiseft.store.rows import ProblemRow, VariantRow, VerifierRow, variant_key
from wiseft.store.schema import SCHEMA_VERSION, is_store
from wiseft.store.transfer import imported_verifiers, problem_fields

__all__ = [
    "SCHEMA_VERSION",
    "ProblemRow",
    "SampleStore",
    "VariantRow",
    "VerifierRow",
    "imported_verifiers",
    "is_store",
    "problem_fields",
    "variant_key",
]
