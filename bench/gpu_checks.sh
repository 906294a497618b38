#!/usr/bin/env bash
# The trainer's GPU checks, as one script for a lent GPU machine (its own python3 with torch):
#   bash bench/gpu_checks.sh   (writes logs under $OUT, or bench/work/gpu when OUT is unset)
# About 8-10 minutes on one H200 (each step has its own timeout):
# 1. grouped-GEMM correctness on CUDA, first: the routed experts' grouped_mm against a per-expert
#    loop (fp32, and bf16 autocast on the CUTLASS kernel; experts with no token, all tokens on one
#    expert; outputs and gradients), and a MoE forward that must not sync with the host;
# 2. the rest of the trainer's test suite with CUDA visible (device "auto" then trains on the GPU;
#    the sharding, expert-parallel and resharding tests run as gloo processes on the CPU);
# 3. bench_trainer_gpu.py (MFU over the H200's 989 TFLOP/s dense bf16 peak): eager batch 8 and
#    compiled batch 8 as before, then the chunked loss (no full fp32 logits) compiled at batch 8
#    and 16, then the sharded path at world size 1: FSDP2 (layers compiled one by one), and FSDP2
#    with the experts sent through the expert-parallel all-to-all (a 1-rank group, eager).
#    FSDP and expert parallelism across GPUs need several GPUs: not measured by this script.
set -u
OUT=${OUT:-bench/work/gpu}
mkdir -p "$OUT"
# The package `thresher` is this checkout (setup.cfg maps it here): a link named thresher to it lets
# this machine's python3 import it uninstalled.
PACKAGE_PATH=$(mktemp -d)
trap 'rm -rf "$PACKAGE_PATH"' EXIT
ln -s "$PWD" "$PACKAGE_PATH/thresher"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PACKAGE_PATH:$PWD
nvidia-smi -L
python3 -c "import torch, transformers; import torch.nn.functional as F
print('torch', torch.__version__, 'transformers', transformers.__version__,
      'F.grouped_mm', hasattr(F, 'grouped_mm'), 'torch._grouped_mm', hasattr(torch, '_grouped_mm'))"
GROUPED="per_expert_loop or sync_with_the_host or counts_of_sorted"
timeout 150 python3 -m pytest tests/trainer/test_trainer_model.py -k "$GROUPED" -v -rfE -o timeout=0 2>&1 \
  | tee "$OUT/pytest_grouped.log" | tail -30
timeout 300 python3 -m pytest tests/trainer -q -rfE -o timeout=0 -k "not ($GROUPED)" 2>&1 | tee "$OUT/pytest.log" | tail -25
bench() {  # bench NAME TIMEOUT OPTIONS...
  local name=$1 limit=$2
  shift 2
  timeout "$limit" python3 bench/bench_trainer_gpu.py --steps 20 "$@" 2>&1 | tail -8 | tee "$OUT/bench_$name.txt"
}
bench eager_b8 90 --micro-batch-size 8
bench compile_b8 150 --micro-batch-size 8 --compile
bench compile_b8_chunked 150 --micro-batch-size 8 --compile --loss-chunk-tokens 4096
bench compile_b16_chunked 180 --micro-batch-size 16 --compile --loss-chunk-tokens 4096
bench fsdp_compile_b8_chunked 180 --micro-batch-size 8 --compile --loss-chunk-tokens 4096 --fsdp
bench fsdp_dispatch_b8_chunked 90 --micro-batch-size 8 --loss-chunk-tokens 4096 --fsdp --expert-dispatch
