#!/usr/bin/env bash
# The main job on sample data, on the embedded default store (no server):
# generate lead records, lint the example notebooks, run them with papermill
# (models, then the champion summary), and show what came out and where.
set -euo pipefail
cd "$(dirname "$0")/.."
ci/setup.sh
venv="${MLSM_VENV:-.venv}"
export PATH="$PWD/$venv/bin:$PATH"

demo="build/demo"
records="${MLSM_DEMO_RECORDS:-5000}"
run_id="demo-$(date -u +%Y%m%dT%H%M%SZ)"
mkdir -p "$demo"

echo "== generating $records synthetic leads"
python -m mlsm_nb.leads "$records" --seed 1 --out "$demo/leads.jsonl"

echo "== linting the notebooks"
mlsm-nb lint notebooks templates

echo "== running notebooks/ over the leads (papermill engine)"
mlsm-nb run notebooks --records "$demo/leads.jsonl" --out "$demo/runs" --run-id "$run_id" --batch-size 1000

echo "== a few scored leads"
python - "$demo/runs/$run_id" <<'PY'
import sys
from itertools import islice
from mlsm_nb import read_results

print(f"{'lead':16} {'rules 1.0.0':>11} {'rules 2.0.0':>11} {'lr 1.0.0':>9}  champion")
for doc in islice(read_results(sys.argv[1]), 8):
    r = doc["results"]
    champ = r["champion"]["1.0.0"]
    print(f"{doc['id']:16} {r['lead_rules']['1.0.0']['score']:11.3f} {r['lead_rules']['2.0.0']['score']:11.3f} "
          f"{r['lead_lr']['1.0.0']['score']:9.3f}  {champ['score']:.3f} from {champ['champion']} -> {champ['route']}")
PY
echo
echo "== the reviewer report"
mlsm-nb report "$demo/runs/$run_id"
echo
echo "run directory: $demo/runs/$run_id"
echo "open the report: $demo/runs/$run_id/report/index.html"
