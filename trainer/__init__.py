"""The bundled trainer: a dots.llm1-style mixture-of-experts decoder trained on thresher's token shards.

Quick start
-----------
    thresher export ... --output SHARDS                      # token shards + manifest.json
    thresher train --data SHARDS --preset tiny --output RUN --max-tokens 2M
    thresher train --data SHARDS --preset tiny --output RUN --max-tokens 2M --resume latest
    thresher train-export RUN --output HF_DIR                # newest checkpoint -> Hugging Face Dots1,
                                                             # with the run's tokenizer and generation config
    from transformers import pipeline
    generate = pipeline("text-generation", model="HF_DIR")

A preset shorter than the data's seq_len takes it (a line says so); the last step is shrunk so
as not to pass --max-tokens; the splits are checked against the run at start-up (README.md,
"From a run to transformers").

Modules
-------
- `trainer.model`: the model (one file, nanoGPT style) with its expert-parallel dispatch, and
  presets: `tiny` (CPU tests), `small` (about 105M active non-embedding parameters, 6 of 64
  routed experts per token plus 2 shared; one GPU), `medium` (2.7B active / 14.2B total; needs
  sharding, e.g. 8 GPUs) and `dots.llm1` (the published shapes: 62 layers, width 4096, 128 + 2
  experts, 14B active / 142B total parameters).
- `trainer.parallel`: the (dp, ep) DeviceMesh, FSDP2 per block, gradient clipping over shards,
  memory per rank on paper.
- `trainer.data`: streaming, seeded, resumable reader of the shards of schemas/tokens.py; one
  global order whatever the number of ranks.
- `trainer.train`: the loop (`TrainConfig`, `train`).
- `trainer.checkpoint` (torch.distributed.checkpoint), `trainer.export_hf`, `trainer.cli`.

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
evaluation (val_loss over the first --eval-sequences of the validation split, all ranks together,
also printed on stderr) and a start (or resume) record with the full configuration, the mesh and
the memory per rank on paper (also printed on stderr at start-up); stderr shows a one-line
progress display. `--checkpoint-every-tokens N` saves RUN_DIR/checkpoints/tokens-<N>/, a sharded
torch.distributed.checkpoint (every rank writes its shards of the model with router biases and
of the optimizer; step, tokens seen, the global data position and the RNG state beside them),
keeping the last `--keep-last` plus one per `--permanent-every-tokens`; the final checkpoint is
always kept. `--resume latest` (or a checkpoint directory) continues with exactly the losses of
an uninterrupted run at the same size (bitwise on CPU with `--deterministic`), and at another
number of processes or mesh shape with the losses of an uninterrupted run at that size (the
checkpoint reshards on load; the data position is a global count of sequences, so no sequence is
seen twice or skipped). The learning-rate schedule depends only on tokens seen, so
`--stop-at-tokens` ends a time-limited job early without changing it.

Hardware
--------
- One process (CPU or GPU): the plain model; `--fsdp` runs the sharded path at world size 1.
- Several processes (`torchrun`, gloo on CPU, nccl on GPUs): always FSDP2 on a (dp, ep) mesh of
  all ranks (trainer/parallel.py): every parameter sharded over all ranks (ZeRO-3), each decoder
  layer, the embedding and the head its own unit; `--ep N` splits each MoE layer's routed experts
  over N ranks (tokens sent to their experts' ranks with all_to_all_single; N divides the
  processes and the experts), FSDP over the dp = processes / N others. With `--bf16`,
  parameters are gathered in bf16 and gradients reduced in fp32 (the routers stay fp32); with
  `--compile` each layer compiles on its own; `--activation-checkpointing` recomputes each layer
  in the backward pass; `--loss-chunk-tokens N` computes the 152k-vocabulary head and loss N
  tokens at a time without the full fp32 logits. The data order is the same at any size: the
  losses at 2 and at 4 (2 x 2 experts) processes equal one process's to fp32 rounding (tested).
- `torchrun --nproc_per_node=G "$(which thresher)" train ... --bf16` on one node;
  `torchrun --nnodes=M --node_rank=I --nproc_per_node=G --rdzv_backend=c10d
  --rdzv_endpoint=HOST:PORT "$(which thresher)" train ... --bf16 --ep G` on M nodes (the README
  has the memory each preset needs per GPU).
- On one H200, `small` trains at 89k tokens/s eager and 185k compiled (27% MFU; bench/RESULTS.md).
  The sharded paths, expert parallelism across GPUs and the chunked loss have not run on a GPU
  yet (tested on CPU with gloo); pipeline parallelism is not implemented.
"""
