#!/bin/sh
# The mnist-ap quick comparisons behind docs/fidelity.md's measured cells (issue 28).
# One run at a time, one thread; records under results/fidelity (paired: seeds 0,1,2 each side).
# A finished run is never rerun: rerunning this script only trains what is missing.
set -u
cd "$(dirname "$0")/.."
R="python -m surrogate_bench run --task mnist-ap --profile quick --seeds 0,1,2 --threads 1 --jobs 1 \
   --results-dir results/fidelity --data-root ../shared/data --no-progress"
$R --method uniloss
$R --method uniloss --method-param uniloss.release_sign=true
$R --method uniloss --method-param uniloss.release_ap=true
$R --method uniloss --method-param uniloss.release_sigmoid=true
$R --method uniloss --method-param uniloss.release_sigmoid=true --method-param uniloss.release_sign=true
$R --method reloss
$R --method reloss --method-param reloss.cls_input=prob
$R --method reloss-release
# The ReLoss cells, one knob each (each paired with the `reloss` / `reloss-release` lines above):
$R --method reloss-release --method-param reloss-release.train_labels=shuffle
$R --method reloss-release --method-param reloss-release.val_labels=shuffle
$R --method reloss --method-param reloss.gp_norm=sample --method-param reloss.gp_batches=0
$R --method reloss --method-param reloss.steepness=5
$R --method reloss --method-param reloss.group=256
$R --method reloss --method-param reloss.match_scale=false
