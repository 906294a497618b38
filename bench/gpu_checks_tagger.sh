#!/usr/bin/env bash
# Issue 15's GPU checks, as one script for a lent GPU machine (its own python3 with torch, transformers,
# pyspark and the shared data at ../shared/data), about 6 minutes on one H200 (8 with vLLM):
#   bash bench/gpu_checks_tagger.sh   (writes logs under $OUT, or bench/work/gpu_tagger when OUT is unset)
# 1. the transformers backend's tests with CUDA visible: bf16 on the GPU, scores across token budgets
#    within bf16 tolerance, a local-mode Spark task on the first visible GPU;
# 2. the discovery script Spark would run on a GPU executor;
# 3. bench_tagger.py --gpu: a Qwen2-1.5B-shaped tagger (random weights), 512 tokens per document,
#    plain loop and Spark job (targets: >= 130k tokens/s, Spark >= 0.9x the loop), at two token budgets;
# 4. where `import vllm` works: annotate's vLLM backend against the transformers scorer on one tiny
#    causal LM (bench/check_vllm_scorer.py, about a minute); skipped, and said so, where it does not.
set -u
OUT=${OUT:-bench/work/gpu_tagger}
mkdir -p "$OUT"
# The package `thresher` is this checkout (setup.cfg maps it here): a link named thresher to it lets
# this machine's python3 import it uninstalled.
PACKAGE_PATH=$(mktemp -d)
trap 'rm -rf "$PACKAGE_PATH"' EXIT
ln -s "$PWD" "$PACKAGE_PATH/thresher"
export PYTHONUNBUFFERED=1 PYTHONPATH=$PACKAGE_PATH:$PWD
nvidia-smi -L
python3 -c "import torch, transformers, pyspark; print('torch', torch.__version__, 'transformers', transformers.__version__, 'pyspark', pyspark.__version__, 'cuda', torch.cuda.is_available())"
bash jobs/gpu_discovery.sh | tee "$OUT/discovery.json"
timeout 200 python3 -m pytest tests/classifiers/test_transformers_backend.py -q -rfEs -o timeout=0 2>&1 | tee "$OUT/pytest_backend.log" | tail -15
for budget in 32768 65536; do
  timeout 240 python3 bench/bench_tagger.py --gpu --documents 4096 --token-budget "$budget" --repeats 2 --threads 4 2>&1 \
    | grep -v "Loading weights\|Writing model" | tee "$OUT/bench_tagger_gpu_b$budget.txt" | tail -12
done
# Issue 25: annotate throughput on the GPU, a Qwen2-0.5B-shaped causal LM, batched against one at a time.
timeout 240 python3 bench/bench_annotate.py --gpu --documents 256 --batch-size 16 2>&1 \
  | grep -v "Loading weights\|Writing model" | tee "$OUT/bench_annotate_gpu.txt" | tail -10
if python3 -c "import vllm" 2>/dev/null; then
  timeout 300 python3 bench/check_vllm_scorer.py 2>&1 | grep -v "Loading weights\|Writing model" | tee "$OUT/check_vllm_scorer.txt" | tail -8
else
  echo "vLLM check: skipped (python3 -c 'import vllm' fails on this machine)" | tee "$OUT/check_vllm_scorer.txt"
fi
