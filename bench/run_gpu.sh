#!/usr/bin/env bash
# Every GPU measurement of the speed and precision issues in one go, for a lent CUDA machine
# (logs go to $OUT when set, else build/gpu). Needs torch with CUDA plus requirements.txt; a
# folder .whl of wheels (diffusers, transformers) is installed to /tmp/site first when present.
#
#     bash bench/run_gpu.sh      # each step has its own timeout (580 s in all): fits one 10-min device call
set -uo pipefail
out=${OUT:-build/gpu}
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=${PYTHON:-python3}
if [ -d .whl ]; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
$py -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"
cd bench
sd="--device cuda --dtype float16 --size 512 --steps 50"
# 1. seconds per image and peak memory of every method and guidance decoder (issue 12)
timeout 180 $py bench_guidance.py $sd 2>&1 | grep -v "should be kept in float32" | tee "$out/guidance.log"
# 2. fp16/bf16 gradient cosine to fp32 at SD size, per precision mode (issue 11)
timeout 50 $py bench_guidance_precision.py --device cuda --sizes 512 768 2>&1 | tee "$out/precision.log"
# 3. peak memory of the optimisation step, chunked and checkpointed (issue 11)
timeout 180 $py bench_memory.py --device cuda --dtype float16 2>&1 | tee "$out/memory.log"
# 4. the standard speed-ups, on the default and the exact guidance path
timeout 70 $py bench_guidance.py $sd --guidance-only --options vae-half,vae --channels-last 2>&1 | tee "$out/channels_last.log"
timeout 100 $py bench_guidance.py $sd --guidance-only --options vae-half,vae --compile-decoder 2>&1 | tee "$out/compile.log"
