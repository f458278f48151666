#!/bin/bash
# The demo classifier with train.precision forced to fp32 and to bf16: train fold 0, predict
# the test patients, evaluate; prints each run's held-out AUROC, ECE, threshold, calibration.
#   bench/demo_precision.sh [WORK]
set -e
cd "$(dirname "$0")/.."
W=${1:-/tmp/medcnn_demo_precision}
PY=${PYTHON:-.venv/bin/python}
mkdir -p $W
[ -d $W/demo ] || $PY -m medcnn demo-data $W/demo > /dev/null
for P in fp32 bf16; do
cat > $W/$P.yaml <<YAML
results: $W/results_$P
logs: $W/logs
inputs: [$W/demo/dicom]
labels: {path: $W/demo/labels.csv, key: AccessionNumber, column: accession_number, columns: [finding]}
deid: {secret: demo-check}
device: cpu
tasks:
  cxr:
    kind: classification
    target: {column: finding, positive: pneumonia}
    network: {name: densenet121}
    preprocess: {size: 128}
    split: {test_fraction: 0.25, val_fraction: 0.2, seed: 0}
    train: {epochs: 20, batch_size: 16, learning_rate: 0.001, seed: 0, precision: $P}
YAML
done
if [ ! -d $W/results_fp32/preprocess ]; then
  $PY -m medcnn ingest --config $W/fp32.yaml
  $PY -m medcnn preprocess --config $W/fp32.yaml --task cxr
  $PY -m medcnn split --config $W/fp32.yaml --task cxr
  mkdir -p $W/results_bf16 && cp -r $W/results_fp32/ingest $W/results_fp32/preprocess $W/results_fp32/splits $W/results_bf16/
fi
one() {
  P=$1
  $PY -m medcnn train --config $W/$P.yaml --task cxr --fold 0 --threads 2
  for S in $($PY -c "import json;print(' '.join(json.load(open('$W/results_$P/splits/cxr.json'))['test']))"); do
    $PY -m medcnn predict --config $W/$P.yaml --task cxr --subject $S --threads 2 2>/dev/null
  done
  $PY -m medcnn evaluate --config $W/$P.yaml --task cxr
  $PY - <<PYEOF
import json
e=json.load(open("$W/results_$P/models/cxr/evaluation.json")); m=json.load(open("$W/results_$P/models/cxr/fold0/metrics.json"))
t=e["test"]; lab=t["labels"]["pneumonia"]
print("$P", "test AUROC", t["mean_auroc"], "CI", t["mean_auroc_ci"], "ECE", lab["ece"], "threshold", m["threshold"], "warnings", m["threshold_warnings"], "calibration", m["calibration"], "best epoch", m["best_epoch"], "/", m["epochs_run"], "precision", m["precision"])
PYEOF
}
one fp32 > $W/fp32.out 2>&1 &
one bf16 > $W/bf16.out 2>&1 &
wait
grep "test AUROC" $W/fp32.out $W/bf16.out
