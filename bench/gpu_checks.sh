#!/usr/bin/env bash
# The trainer's GPU checks, as one script for a lent GPU machine (its own python3 with torch):
#   bash bench/gpu_checks.sh   (writes logs under $OUT, or bench/work/gpu when OUT is unset)
# 1. grouped-GEMM correctness on CUDA, first: the routed experts' grouped_mm against a per-expert
#    loop (fp32, and bf16 autocast on the CUTLASS kernel; experts with no token, all tokens on one
#    expert; outputs and gradients), and a MoE forward that must not sync with the host;
# 2. the rest of the trainer's test suite with CUDA visible (device "auto" then trains on the GPU);
# 3. bench_trainer_gpu.py eager at micro-batch 4 and 8, then with torch.compile at 8.
set -u
OUT=${OUT:-bench/work/gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PWD
nvidia-smi -L
python3 -c "import torch, transformers; import torch.nn.functional as F
print('torch', torch.__version__, 'transformers', transformers.__version__,
      'F.grouped_mm', hasattr(F, 'grouped_mm'), 'torch._grouped_mm', hasattr(torch, '_grouped_mm'))"
GROUPED="per_expert_loop or sync_with_the_host or counts_of_sorted"
timeout 150 python3 -m pytest tests/trainer/test_trainer_model.py -k "$GROUPED" -v -rfE -o timeout=0 2>&1 \
  | tee "$OUT/pytest_grouped.log" | tail -30
timeout 200 python3 -m pytest tests/trainer -q -rfE -o timeout=0 -k "not ($GROUPED)" 2>&1 | tee "$OUT/pytest.log" | tail -25
for batch in 4 8; do
  timeout 120 python3 bench/bench_trainer_gpu.py --steps 30 --micro-batch-size "$batch" 2>&1 | tee "$OUT/bench_eager_b$batch.txt"
done
timeout 180 python3 bench/bench_trainer_gpu.py --steps 30 --micro-batch-size 8 --compile 2>&1 | tail -8 | tee "$OUT/bench_compile_b8.txt"
