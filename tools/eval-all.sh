#!/usr/bin/env bash
# Every dataset through `reco eval`, with the engine's current defaults and the reference
# baselines in the same run: the figures of docs/evaluation.md.
#   RECO_DATASETS=DIR bash tools/eval-all.sh [OUT_DIR]   (default: eval-results/; ~5 min on 2 cores)
# DIR holds the datasets, one folder each (docs/datasets.md says how to get them); without
# RECO_DATASETS, ../shared/data beside the checkout is used if it exists.
set -euo pipefail
cd "$(dirname "$0")/.."
DATA=${RECO_DATASETS:-../shared/data}
if [[ ! -d $DATA ]]; then
  echo "no datasets in $DATA: set RECO_DATASETS (docs/datasets.md says how to get them)" >&2
  exit 2
fi
OUT=${1:-eval-results}
RECO=.venv/bin/reco
mkdir -p "$OUT"

run() {  # name, then reco eval arguments
  local name=$1
  shift
  echo "== $name" >&2
  "$RECO" eval "$@" --json --plot "$OUT/$name.png" >"$OUT/$name.json"
}

for mode in static online; do
  run "diginetica-$mode" --train "$DATA/diginetica-sample/sample_train-item-views.csv" \
    --format diginetica --split-days 7 --mode "$mode"
  run "taobao-$mode" --train "$DATA/taobao-userbehavior-sample/UserBehavior.csv" \
    --format taobao --split-days 2 --mode "$mode"
  run "rees46-$mode" --train "$DATA/rees46-ecommerce-oct2019-sample/2019-Oct-sample.csv" \
    --format rees46 --split-days 0.004 --mode "$mode"
done
run movielens-user --train "$DATA/movielens-100k/u.data" --format movielens --protocol user
.venv/bin/python - "$OUT" <<'PY'
import json, pathlib, sys
out = pathlib.Path(sys.argv[1])
names = [f"{d}-{m}" for d in ("diginetica", "taobao", "rees46") for m in ("static", "online")]
for name in names + ["movielens-user"]:
    path = out / f"{name}.json"
    result = json.loads(path.read_text())
    k = "10" if result["protocol"] == "user" else "20"
    second = "NDCG" if result["protocol"] == "user" else "MRR"
    row = "  ".join(
        f"{name} {s[f'HR@{k}']:.3f}/{s[f'{second}@{k}']:.3f}"
        for name, s in result["systems"].items()
    )
    print(f"{path.stem:18} HR@{k}/{second}@{k}: {row}")
PY
