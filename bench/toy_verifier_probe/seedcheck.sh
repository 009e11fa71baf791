#!/bin/bash
# seedcheck.sh RUN_DIR BASE_DIR: the round-7 rows for one finished demo run (seed directory) and its base.
HERE=$(dirname "$0"); OUT=${OUT:-/tmp}; run=$1; base=$2; s=$(basename "$run")
P="nice -n 15 env PYTHONPATH=$PWD/src:$HERE .venv/bin/python"
$P $HERE/stored_scores.py $run
$P $HERE/probe.py $run --likelihood 2>&1 | grep ^likel | sed 's/^/final-LM /'
$P $HERE/probe.py $run --likelihood --lm $base 2>&1 | grep ^likel | sed 's/^/base-LM /'
$P $HERE/hard_negatives.py $run/sft/checkpoint-640 $OUT/hard-$s.json 1000 3 1 2>&1 | tail -1
$P $HERE/probe.py $run --steps 150 --w-cum 1 --w-loc 1 --target steps --data none --fresh $OUT/hard-$s.json --lr 1e-3 2>&1 | grep -E "^(final|mix|train_)" | cut -c1-140 | sed 's/^/hard-neg /'
$P $HERE/probe.py $run --steps 150 --w-cum 1 --w-loc 1 --target steps 2>&1 | grep -E "^(final|mix|train_)" | cut -c1-140 | sed 's/^/base-samples-dense /'
