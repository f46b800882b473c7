#!/usr/bin/env bash
# Every GPU measurement of the speed and precision issues in one go, for a lent CUDA machine
# (logs go to $OUT when set, else build/gpu). Needs torch with CUDA plus requirements.txt; a
# folder .whl of wheels (diffusers, transformers) is installed to /tmp/site first when present.
#
#     bash bench/run_gpu.sh            # each step has its own timeout (920 s in all)
#     STEPS=123 bash bench/run_gpu.sh  # some steps only (steps 1-3 fit one 10-minute device call, 4-5 another)
set -uo pipefail
source environment/gpu_env.sh build/gpu  # out, py, the carried wheels, PYTHONPATH
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$out/gpu.txt"
$py -c "import torch, diffusers, transformers; print('torch', torch.__version__, 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" | tee -a "$out/gpu.txt"
cd bench
steps=${STEPS:-12345}
sd="--device cuda --dtype float16 --size 512 --steps 50"
# 1. seconds per image and peak memory of every method and guidance decoder (issue 12)
[[ $steps == *1* ]] && timeout 180 $py bench_guidance.py $sd 2>&1 | grep -v "should be kept in float32" | tee "$out/guidance.log"
# 2. fp16/bf16 gradient cosine to fp32 at SD size, per precision mode (issue 11)
[[ $steps == *2* ]] && timeout 50 $py bench_guidance_precision.py --device cuda --sizes 512 768 2>&1 | tee "$out/precision.log"
# 3. peak memory of the optimisation step, chunked and checkpointed (issue 11)
[[ $steps == *3* ]] && timeout 180 $py bench_memory.py --device cuda --dtype float16 2>&1 | tee "$out/memory.log"
# 4. the standard speed-ups: UNet under CUDA graphs and the compiled decoder (both compile on the first
#    call, ~110 s together on an H100); channels_last made the decoder slower there (session 8: 62 ms
#    against 44 ms per decode + backward) and is left to bench_guidance.py --channels-last
#    (the UNet alone first, then with the decoder: its gradient check's verdict shows in the log)
[[ $steps == *4* ]] && timeout 170 $py bench_guidance.py $sd --guidance-only --options vae --compile-unet 2>&1 | tee "$out/compile_unet.log"
[[ $steps == *4* ]] && timeout 170 $py bench_guidance.py $sd --guidance-only --options vae --compile-unet --compile-decoder 2>&1 | tee "$out/compile.log"
# 5. GradOP+ through the denoiser (guidance_latent "denoised", its tuned schedule: 40 pulls, each a UNet
#    forward + backward and a decode + backward; "denoised-fast": the decode + backward alone):
#    seconds per image and peak memory, eager
[[ $steps == *5* ]] && timeout 170 $py bench_guidance.py $sd --guidance-only --options vae --denoised 2>&1 | grep -v "should be kept in float32" | tee "$out/denoised.log"
exit 0  # a skipped step is not a failure
