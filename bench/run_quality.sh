#!/bin/bash
# The published quality benchmark (README "Quality benchmark"): two shards side by side, one
# thread each (the fastest use of 2 cores), then the merge. Run from anywhere:
#   bash bench/run_quality.sh               # every section, default counts -> build/quality-run
#   bash bench/run_quality.sh decoders      # GradOP+ with every guidance decoder -> build/quality-decoders
#   bash bench/run_quality.sh window        # SDEdit against GradOP+ with two earlier pulls -> build/quality-window
#   bash bench/run_quality.sh bf16          # GradOP+ with its decoder in fp32 and under bf16 autocast -> build/quality-bf16
#   bash bench/run_quality.sh tiny          # GradOP+ with the exact VAE and with the shipped tiny decoder -> build/quality-tiny
#   bash bench/run_quality.sh steps         # GradOP+'s Adam schedules on 216 paintings: the release's, the default, others -> build/quality-steps
#   bash bench/run_quality.sh parity        # vae-half against the exact VAE on 216 paintings -> build/quality-parity
#   bash bench/run_quality.sh denoised      # SDEdit against GradOP+ through the denoiser, world + app only -> build/quality-denoised
#   bash bench/run_quality.sh fast          # SDEdit against GradOP+ with denoised-fast, world + app only -> build/quality-fast
#   bash bench/run_quality.sh region        # only region words and edits (and the judge's validation) -> build/quality-region
# Every mode measures the shipped demo model on its world (3) with its judge (judge4); MODEL=folder and
# JUDGE=folder measure another model or judge, OUT=folder writes elsewhere.
set -euo pipefail
cd "$(dirname "$0")/.."
python=${PYTHON:-.venv/bin/python}
if [ "${1:-}" = decoders ]; then
    out=build/quality-decoders
    args=(--ambiguous 0 --edit 0 --settings text2img "gradop+" "gradop+ vae-half" "gradop+ linear" "gradop+ conv" "gradop+ tiny")
elif [ "${1:-}" = window ]; then
    out=build/quality-window
    args=(--ambiguous 0 --edit 0 --settings text2img "sdedit 0.5" "sdedit 0.6" "sdedit 0.7" "sdedit 0.8" "sdedit 0.9"
          "gradop+" "gradop+ s0.85 it2 lr0.15" "gradop+ s0.9 it2" "gradop+ s0.95 it2 gs16")
elif [ "${1:-}" = bf16 ]; then
    out=build/quality-bf16
    args=(--ambiguous 0 --edit 0 --settings text2img "gradop+ fp32" "gradop+ bf16")
elif [ "${1:-}" = tiny ]; then
    out=build/quality-tiny
    args=(--ambiguous 0 --edit 0 --settings text2img "gradop+" "gradop+ tiny")
elif [ "${1:-}" = steps ]; then
    out=build/quality-steps
    args=(--world 108 --app 108 --ambiguous 0 --edit 0 --settings text2img "sdedit 0.8" "gradop+ release" "gradop+"
          "gradop+ gs3 lr0.4" "gradop+ gs1 lr1.3")
elif [ "${1:-}" = parity ]; then
    out=build/quality-parity
    args=(--world 108 --app 108 --ambiguous 0 --edit 0 --settings text2img "gradop+" "gradop+ vae-half")
elif [ "${1:-}" = denoised ]; then
    out=build/quality-denoised
    args=(--ambiguous 0 --edit 0 --settings text2img "sdedit 0.5" "sdedit 0.6" "sdedit 0.7" "sdedit 0.8" "sdedit 0.9"
          "gradop+" "gradop+ denoised it20 lr0.1" "gradop+ denoised it20 lr0.05" "gradop+ denoised it20 lr0.03"
          "gradop+ denoised it20 lr0.02" "gradop+ denoised it12 lr0.02")
elif [ "${1:-}" = fast ]; then
    out=build/quality-fast
    args=(--ambiguous 0 --edit 0 --settings text2img "sdedit 0.5" "sdedit 0.6" "sdedit 0.7" "sdedit 0.8" "sdedit 0.9"
          "gradop+" "gradop+ denoised it20 lr0.03" "gradop+ fast lr0.07" "gradop+ fast lr0.05" "gradop+ fast lr0.04"
          "gradop+ fast lr0.03" "gradop+ fast lr0.025" "gradop+ fast lr0.015")
elif [ "${1:-}" = region ]; then
    out=build/quality-region
    args=(--world 0 --app 0)
else
    out=build/quality-run
    args=()
fi
out=${OUT:-$out}
extra=()
[ -n "${MODEL:-}" ] && extra+=(--model "$MODEL")
[ -n "${JUDGE:-}" ] && extra+=(--judge "$JUDGE")
rm -rf "$out"
mkdir -p "$out"
start=$(date +%s)
for i in 0 1; do
    "$python" -m gradop.cli bench quality --seeds 2 --steps 25 "${args[@]}" ${extra[@]+"${extra[@]}"} --shard $i/2 --threads 1 --out "$out" \
        2> "$out/shard$i.log" &
done
wait
echo "wall $(( $(date +%s) - start )) s"
"$python" -m gradop.cli bench quality --merge --out "$out"
