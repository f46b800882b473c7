#!/bin/bash
# The published quality benchmark (README "Quality benchmark"): two shards side by side, one
# thread each (the fastest use of 2 cores), then the merge. Run from anywhere:
#   bash bench/run_quality.sh               # every section, default counts -> build/quality-run
#   bash bench/run_quality.sh decoders      # GradOP+ with every guidance decoder -> build/quality-decoders
#   bash bench/run_quality.sh parity        # the default decoder against the exact VAE on 216 paintings
#                                           # (what made vae-half the default) -> build/quality-parity
#   bash bench/run_quality.sh world3        # world 3 with model v3 and judge v3 (MODEL, JUDGE to override;
#                                           # the model card builds them) -> build/quality-world3
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
if [ "${1:-}" = decoders ]; then
    out=build/quality-decoders
    args=(--ambiguous 0 --edit 0 --settings text2img "gradop+ vae" "gradop+" "gradop+ linear" "gradop+ conv" "gradop+ tiny")
elif [ "${1:-}" = parity ]; then
    out=build/quality-parity
    args=(--world 108 --app 108 --ambiguous 0 --edit 0 --settings text2img "gradop+ vae" "gradop+")
elif [ "${1:-}" = world3 ]; then
    out=build/quality-world3
    args=(--model "${MODEL:-build/demo3_final}" --judge "${JUDGE:-pretrained_models/gradop-demo/judge3}" --world-version 3)
else
    out=build/quality-run
    args=()
fi
rm -rf "$out"
mkdir -p "$out"
start=$(date +%s)
for i in 0 1; do
    "$python" -m gradop.cli bench quality --seeds 2 --steps 25 "${args[@]}" --shard $i/2 --threads 1 --out "$out" \
        2> "$out/shard$i.log" &
done
wait
echo "wall $(( $(date +%s) - start )) s"
"$python" -m gradop.cli bench quality --merge --out "$out"
