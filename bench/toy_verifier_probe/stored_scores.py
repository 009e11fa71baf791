"""stored_scores.py RUN/seed-s: the metrics of the toy verifier scores a demo run stored (round 7)."""

import json
import sqlite3
import sys

import numpy as np
import probe as exp

run = sys.argv[1]
db = f"{run}/samples.db"
r = json.load(open(f"{run}/results.json"))
c = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
for role in ("final", "mix"):
    name = r["roles"][role]
    vid = c.execute("select id from variants where name=?", (name,)).fetchone()[0]
    rows = c.execute(
        "select s.problem_id, g.correct, sc.score from samples s join grades g using(variant_id,problem_id,sample_idx) "
        "join scores sc using(variant_id,problem_id,sample_idx) where s.variant_id=? and s.problem_id like '%test%' order by s.problem_id, s.sample_idx",
        (vid,),
    ).fetchall()
    per, sc = {}, {}
    for pid, y, s in rows:
        per.setdefault(pid, []).append(("", "", bool(y)))
        sc.setdefault(pid, []).append(s)
    claim = sorted(per)[:300]
    per = {p: per[p] for p in claim}
    sc = {p: np.array(sc[p]) for p in claim}
    m = exp.metrics(per, sc)
    print(f"stored-default {role}: " + " ".join(f"{a}={b:.3f}" for a, b in m.items()))
