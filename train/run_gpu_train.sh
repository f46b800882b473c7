#!/usr/bin/env bash
# Fine-tune the demo model under region control on a lent CUDA machine, in one device call: render
# the world-3 training scenes (all CPU cores), encode their latents on the GPU, then train every
# variant of VARIANTS side by side (one process each, same seed and data) from the shipped model.
# Each variant's UNet and text encoder come back as $OUT/<name>.tar (model card, "Session 17").
#
#     bash train/run_gpu_train.sh                                   # on the GPU machine
#     DEVICE=cpu SCENES=40 MINUTES=0.2 bash train/run_gpu_train.sh  # a smoke run here
#
# Needs torch plus requirements.txt; a folder .whl of wheels (diffusers, transformers) is installed
# to /tmp/site first when present. Training scenes use seeds 0..SCENES-1 (held-out sets start at
# 1,000,000).
set -euo pipefail
source environment/gpu_env.sh build/gpu_train  # out, py, the carried wheels, PYTHONPATH
device=${DEVICE:-cuda}
scenes=${SCENES:-16000}
minutes=${MINUTES:-5}
workers=${WORKERS:-$(nproc)}
# name:flags, separated by ';' (model v3c was --train-bias 0.5 --paste 0.3 at batch 16 on 2 CPU cores)
variants=${VARIANTS:-"a:--train-bias 0.5 --paste 0.3;b:--train-bias 0.8 --paste 0.5;c:--train-bias 0.5 --paste 0.5"}
data=build/world3g
mkdir -p $data logs
[ "$device" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/gpu.txt"

t0=$(date +%s)
$py train/render_dataset.py --world 3 --start 0 --count "$scenes" --workers "$workers" --out $data/train.npz
for key in photos paintings crayons; do
    $py train/encode_latents.py --data $data/train.npz --key $key --device "$device" --threads 4 \
        --out $data/latents_$key.pt
done
echo "data ready in $(( $(date +%s) - t0 )) s"

model=pretrained_models/gradop-demo
common="--data $data/train.npz --vae $model/vae --minutes $minutes --batch ${BATCH:-64} --lr ${LR:-5e-4} --warmup 50
    --ema 0.998 --channels 32,64,96 --seed 7 --threads 2 --save-every 1000 --device $device
    --domains photos:0.4,paintings:0.3,crayons:0.3 --photo-caption-noise 0.3 --latents-dir $data
    --init-unet $model/unet --init-text $model/text_encoder --text-width 128 --text-layers 4 --cross-everywhere"
IFS=';' read -ra specs <<< "$variants"
pids=()
for spec in "${specs[@]}"; do
    name=${spec%%:*}
    # shellcheck disable=SC2086
    $py train/train_unet.py $common --out build/gpu_$name ${spec#*:} > "$out/$name.log" 2>&1 &
    pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for spec in "${specs[@]}"; do
    name=${spec%%:*}
    tar -cf "$out/$name.tar" -C build/gpu_$name unet text_encoder || status=1
    tail -n 2 "logs/gpu_${name}_unet_log.jsonl" >> "$out/$name.log" || true
done
echo "all done in $(( $(date +%s) - t0 )) s, status $status"
exit $status
