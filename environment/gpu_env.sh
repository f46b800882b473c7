# Sourced (from the repository root) by bench/run_gpu.sh and train/run_gpu_train.sh on a lent CUDA
# machine: sets `out` (the folder $OUT, else the first argument, made absolute) and `py` (the Python
# that has torch), installs a carried folder .whl of wheels (diffusers, transformers) to /tmp/site,
# and puts the repository on PYTHONPATH, offline.
out=${OUT:-$1}
mkdir -p "$out"
out=$(cd "$out" && pwd)
py=${PYTHON:-python3}
if [ -d .whl ]; then
    $py -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
    export PYTHONPATH=/tmp/site
fi
export PYTHONPATH=$PWD:${PYTHONPATH:-} PYTHONUNBUFFERED=1 HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
