"""The bundled trainer: a dots.llm1-style mixture-of-experts decoder trained on thresher's token shards.

Quick start
-----------
    thresher export ... --output SHARDS                      # token shards + manifest.json
    thresher train --data SHARDS --preset tiny --output RUN --max-tokens 2M
    thresher train --data SHARDS --preset tiny --output RUN --max-tokens 2M --resume latest
    thresher train-export RUN --output HF_DIR                # newest checkpoint -> Hugging Face Dots1

    from transformers import Dots1ForCausalLM
    model = Dots1ForCausalLM.from_pretrained("HF_DIR")

Modules
-------
- `trainer.model`: the model (one file, nanoGPT style) and presets: `tiny` (CPU tests), `small`
  (about 105M active non-embedding parameters, 8 of 64 experts per token; one GPU) and
  `dots.llm1` (the published shapes: 62 layers, width 4096, 128 + 2 experts, 14B active / 142B
  total parameters).
- `trainer.data`: streaming, seeded, rank-split, resumable reader of the shards of
  schemas/tokens.py.
- `trainer.train`: the loop (`TrainConfig`, `train`).
- `trainer.checkpoint`, `trainer.export_hf`, `trainer.cli`.

Training recipe (defaults)
--------------------------
- AdamW, betas (0.9, 0.95), weight decay 0.1 on every matrix, embeddings, output head and
  router weight included; exempt: the 1-D RMSNorm weights. There are no linear biases; the
  router biases are buffers moved by the balancing rule, never by the optimizer.
- Gradient clipping at norm 1.0.
- Warmup-Stable-Decay in tokens: linear warmup (`--warmup-tokens`, default 1% of
  `--max-tokens`) to `--lr` (3e-4), flat, then a final decay (`--decay-tokens`, default 20%)
  linearly through `--decay-lrs` in equal spans (default lr/10, lr/30: the report's
  3e-4 -> 3e-5 -> 1e-5).
- Batch size in tokens, growing with tokens seen: `--batch-schedule 0:64M,6T:96M,8.3T:128M`
  (the report's). Each step is filled by gradient accumulation over micro-batches of
  `--micro-batch-size` sequences per process.
- Balancing: after every optimizer step, each router's bias moves by
  `b_i += gamma * sign(mean_load - load_i)` (`--gamma`, default 1e-3; `--no-bias-update` turns
  it off), with the loads summed over the step's micro-batches and all ranks. A sequence-wise
  balance loss with weight `balance_loss_alpha` (1e-4) is added to the LM loss.
- Data in the shard reader's seeded order: `--seed` sets both that order and the initialisation.

Runs, logs and checkpoints
--------------------------
RUN_DIR/log.jsonl holds one JSON line per step (step, tokens_seen, loss, balance_loss, lr,
grad_norm, batch_tokens, tokens_per_s, imbalance = per-MoE-layer max/mean expert load), one per
evaluation (val_loss) and a start record with the full configuration; stderr shows a one-line
progress display. `--checkpoint-every-tokens N` saves RUN_DIR/checkpoints/tokens-<N>/ (model with
router biases, optimizer, step, tokens seen, each rank's data position, RNG state; loaded with
`torch.load(weights_only=True)`), keeping the last `--keep-last` plus one per
`--permanent-every-tokens`; the final checkpoint is always kept. `--resume latest` (or a
checkpoint directory) continues with exactly the losses of an uninterrupted run (bitwise on CPU
with `--deterministic`); the learning-rate schedule depends only on tokens seen, so `--stop-at-tokens`
ends a time-limited job early without changing it. Resuming needs the same number of ranks.

Hardware
--------
- CPU: one process, or several under torchrun with the gloo backend (tested with two).
- GPUs: `torchrun --nproc_per_node=G "$(which thresher)" train ... --bf16` runs DDP (nccl), one
  process per GPU, with bf16 autocast (the router stays fp32) and optional `--compile` (the
  whole model compiles: the routed experts run as two grouped GEMMs over the tokens sorted by
  expert, with the group boundaries kept on the GPU, so there is no host sync and no recompiling).
  On one H200, `small` trains at 89k tokens/s eager and 185k compiled (27% MFU; bench/RESULTS.md).
- Models that do not fit one GPU (the `dots.llm1` preset) are NOT supported: DDP replicates the
  whole model and optimizer on every GPU; FSDP, expert parallelism and pipeline parallelism are
  not implemented. `small` fits one GPU comfortably.
"""
