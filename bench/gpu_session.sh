#!/usr/bin/env bash
# One GPU session for chapter 12: bench/gpu_cifar10_run.py under a hard time limit, then the small
# result files (JSON, JSONL, PNG; not the checkpoint) copied into RESULTS.
#
#   bash bench/gpu_session.sh RESULTS [MINUTES] [extra arguments for gpu_cifar10_run.py]
#
# MINUTES (default 7) is the script's own budget; the process is killed 90 s after it, and the
# files are copied even then. diffusers (the peer of the benchmark) is installed from wheels in
# .whl/ when it is not importable; a machine without network gets them carried along, fetched
# where PyPI is reachable with
#   python3 -m pip download --no-deps --only-binary=:all: -d .whl diffusers==0.42.1
# (its other needs, huggingface_hub >= 1.32, safetensors, regex, filelock, requests and Pillow,
# are common; carry their wheels too where they are missing). Without diffusers the benchmark
# runs without the peer and says so. Without CIFAR-10 (MINIDIFF_DATA, or --data-root DIR) the
# training part runs at full size on scikit-learn's photo patches and says so.
set -u
results=${1:?usage: bash bench/gpu_session.sh RESULTS [MINUTES] [args...]}
minutes=${2:-7}
shift $(($# >= 2 ? 2 : 1))
python=${PYTHON:-python3}
work=${WORK:-/tmp/minidiff_gpu_session}
here=$(cd "$(dirname "$0")/.." && pwd)
rm -rf "$work/out"  # a fresh run (train_images would resume one left in the same folder)
mkdir -p "$results" "$work"

if ! "$python" -c "import diffusers" 2>/dev/null && compgen -G "$here/.whl/*.whl" >/dev/null; then
    "$python" -m pip install -q --no-index --no-deps --no-compile --target "$work/site" \
        "$here"/.whl/*.whl && export PYTHONPATH="$work/site${PYTHONPATH:+:$PYTHONPATH}"
fi
if msg=$("$python" -c "import diffusers; print('diffusers', diffusers.__version__)" 2>&1); then
    echo "$msg"
else
    echo "diffusers is not importable (${msg##*$'\n'}): the benchmark runs without its peer"
fi
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader 2>/dev/null

limit=$(awk "BEGIN { print int($minutes * 60 + 90) }")
PYTHONUNBUFFERED=1 timeout "$limit" "$python" "$here/bench/gpu_cifar10_run.py" \
    --out "$work/out" --minutes "$minutes" "$@" 2>&1 | tee "$results/log.txt"
status=${PIPESTATUS[0]}
cd "$work/out" 2>/dev/null || exit "$status"
cp -f throughput.json summary.json fid.json "$results"/ 2>/dev/null
cp -f run/loss.png run/run.jsonl run/samples.png "$results"/ 2>/dev/null
if [ ! -f run/samples.png ]; then  # killed before the end: the latest periodic grid
    last=$(ls run/samples_*.png 2>/dev/null | sort | tail -n 1)
    [ -n "$last" ] && cp -f "$last" "$results/"
fi
echo "exit status $status; in $results: $(ls "$results" | tr '\n' ' ')"
exit "$status"
