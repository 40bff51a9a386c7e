#!/usr/bin/env bash
# The GPU checks of issue 18 (CUDA bundles) in one call on a machine with an NVIDIA GPU, in
# under 8 minutes. Two ways, by what that machine holds:
#
#  A. edgec works there (TVM 0.27, nvcc 13, this checkout's venv):
#       bash bench/gpu_check.sh
#     runs the cuda-marked tests (fp32 and fp16 parity on the GPU, GPU memory in the report,
#     tuning then a build that measures nothing), then bench/gpu.py within a time budget
#     (untuned and tuned edgec, ONNX Runtime's CUDA provider where onnxruntime-gpu can be
#     installed, PyTorch eager).
#
#  B. the device tool's GPU machine: no network, 64 MiB carried, no TVM (its wheel is 100 MB
#     and cannot travel), but Python 3.12 with numpy and a CUDA PyTorch. Build here, measure
#     there:
#       here:   bash bench/gpu_check.sh --prepare
#               (no GPU needed; untuned sm_90 bundles for the H200, ~52 MiB, into .gpu/, which
#               it adds to git's exclude file: an ignored folder travels only when carried)
#       there:  run(command="bash bench/gpu_check.sh --measure", carry=[".gpu"], timeout_s=480)
#     which runs every prepared bundle's edgec-run on the GPU, checks its outputs against
#     ONNX Runtime's (saved here), and times PyTorch eager on the same shapes. Tuned builds and
#     ONNX Runtime's CUDA provider (onnxruntime-gpu is a 256 MB wheel) cannot run there.
#
# With no argument it picks A where tvm imports, else B's --measure where .gpu/ exists.
set -uo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
OUT_DIR=${OUT:-/tmp}
mode=${1:-auto}

if [ "$mode" = "--prepare" ]; then
    mkdir -p .gpu
    if ! git check-ignore -q .gpu; then
        echo /.gpu/ >> "$(git rev-parse --git-path info/exclude)"
    fi
    # transformer fp32 and fp16 at batch 1 and 8, MobileNetV2 fp16 at batch 1: what fits the
    # 64 MiB a device call carries (ResNet-18 fp32 alone is 46 MiB, ResNet-50 fp32 98 MiB)
    "$PYTHON" bench/gpu.py --prepare .gpu --cuda-arch "${CUDA_ARCH:-sm_90}" \
        --models transformer --batches 1,8 --precisions fp32,fp16 || exit
    "$PYTHON" bench/gpu.py --prepare .gpu --cuda-arch "${CUDA_ARCH:-sm_90}" \
        --models mobilenetv2 --batches 1 --precisions fp16
    exit
fi

echo "== the GPU"
nvidia-smi --query-gpu=name,compute_cap,driver_version,memory.total --format=csv,noheader 2>/dev/null \
    || { echo "gpu_check.sh: error: nvidia-smi finds no GPU here" >&2; exit 2; }

if [ "$mode" = "auto" ]; then
    if "$PYTHON" -c "import tvm" 2>/dev/null; then mode=--full
    elif [ -f .gpu/rows.json ]; then mode=--measure
    else
        echo "gpu_check.sh: error: no TVM here and no .gpu/ prepared: see the header" >&2
        exit 2
    fi
fi

if [ "$mode" = "--measure" ]; then
    # edgec's own modules (no TVM) for the GPU check and PyTorch's model loading
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
    echo "== prepared bundles on the GPU (edgec-run --device cuda) vs PyTorch eager"
    timeout 420 "$PYTHON" bench/gpu.py --measure .gpu --repeat 100 --json "$OUT_DIR/gpu_bench.json"
    exit
fi

echo "== the cuda tests"
timeout 240 "$PYTHON" -m pytest -q -rs tests/integration/test_cuda_bundles.py \
    "tests/integration/test_fp16.py::test_fp16_bundle_builds_says_so_and_runs_where_it_can[cuda-runs-on-a-gpu]" \
    2>&1 | tail -25
tests=${PIPESTATUS[0]}
echo "== bench/gpu.py (stops starting rows after 150 s)"
timeout 210 "$PYTHON" bench/gpu.py --models transformer,mobilenetv2,resnet18,resnet50 \
    --batches 1,8 --precisions fp32,fp16 --tune 64 --repeat 50 --budget-s 150 \
    --json "$OUT_DIR/gpu_bench.json"
bench=$?
exit $(( tests != 0 ? tests : bench ))
