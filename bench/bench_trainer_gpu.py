"""Throughput of the `small` preset on one GPU: tokens/s, peak memory and model-FLOPs utilisation.

    python bench/bench_trainer_gpu.py [--compile] [--steps 30] [--micro-batch-size 4] [--seq-len 2048]
        [--loss-chunk-tokens 4096] [--fsdp] [--expert-dispatch] [--activation-checkpointing]

Synthetic uniform-random tokens (throughput does not depend on the data), bf16 autocast, fused
AdamW, one optimizer step per micro-batch. MFU = (training FLOPs per token x tokens/s) / the
GPU's dense bf16 peak (--peak-tflops, or looked up from the device name: H100 and H200 SXM,
989 TFLOP/s dense bf16, NVIDIA's data sheet figure without sparsity). Finishes in well under
5 minutes on an H100.

`--loss-chunk-tokens` runs the 152k-vocabulary head and loss in chunks (no full fp32 logits),
which frees memory for larger compiled micro-batches. `--fsdp` trains through the sharded path of
a multi-GPU run at world size 1 (FSDP2 units, bf16 all-gathers, fp32 reductions; layers compiled
one by one); `--expert-dispatch` also sends the routed experts' rows through the expert-parallel
all-to-all path (a 1-rank expert group: the counts exchange, host sync and regrouping cost,
without the network). Several GPUs are needed for real sharding and expert parallelism.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
import torch.distributed as dist

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, not_run  # noqa: E402
from thresher.trainer.model import (  # noqa: E402
    Transformer,
    count_parameters,
    flops_per_token,
    load_imbalance,
    preset,
    update_router_biases,
)
from thresher.trainer.parallel import build_mesh, clip_grad_norm_, parallelize  # noqa: E402
from thresher.trainer.train import parameter_groups  # noqa: E402

# Dense bf16 tensor-core peak, TFLOP/s (no sparsity).
PEAK_BF16_TFLOPS = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 125.0, "L4": 121.0}


def peak_tflops(device_name: str) -> float | None:
    return next((peak for key, peak in PEAK_BF16_TFLOPS.items() if key in device_name), None)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--preset", default="small", help="model preset (default small)")
    parser.add_argument("--micro-batch-size", type=int, default=4, help="sequences per step")
    parser.add_argument("--seq-len", type=int, default=2048, help="tokens per sequence")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps")
    parser.add_argument("--warmup-steps", type=int, default=5, help="untimed steps first (allocator, compile)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (with --fsdp: each layer)")
    parser.add_argument("--loss-chunk-tokens", type=int, help="head and loss over this many tokens at a time")
    parser.add_argument("--fsdp", action="store_true", help="the FSDP2 path at world size 1")
    parser.add_argument("--expert-dispatch", action="store_true",
                        help="with --fsdp: routed experts through the expert-parallel all-to-all (1-rank group)")
    parser.add_argument("--activation-checkpointing", action="store_true", help="recompute each layer in backward")
    parser.add_argument("--peak-tflops", type=float, help="GPU dense bf16 peak (default: from the device name)")
    add_smoke_flag(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cuda = torch.cuda.is_available()
    if args.smoke:  # the tiny preset, a few steps; without a GPU the same steps on CPU
        announce()
        args.preset, args.seq_len, args.micro_batch_size, args.steps, args.warmup_steps = "tiny", 16, 2, 2, 1
        if not cuda:
            not_run("bf16 autocast, peak GPU memory and MFU", "no CUDA device: the steps ran on CPU in fp32")
    elif not cuda:
        print("no CUDA device: this benchmark needs a GPU", file=sys.stderr)
        return 1
    device = torch.device("cuda" if cuda else "cpu")
    config, model, forward, optimizer = build(args, device)
    tokens_BT1 = torch.randint(0, config.vocab_size, (args.micro_batch_size, args.seq_len + 1), device=device)

    def step() -> tuple[float, list[float]]:
        with torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=cuda):
            output = forward(tokens_BT1[:, :-1], tokens_BT1[:, 1:], loss_chunk_tokens=args.loss_chunk_tokens)
        output.loss.backward()
        clip_grad_norm_(list(model.parameters()), 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        update_router_biases(model, output.tokens_per_expert_LE, 1e-3)
        return output.lm_loss.item(), load_imbalance(output.tokens_per_expert_LE)

    for _ in range(args.warmup_steps):
        step()
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    started = time.perf_counter()
    for _ in range(args.steps):
        loss, imbalance = step()
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started

    tokens_per_s = args.steps * args.micro_batch_size * args.seq_len / elapsed
    achieved_tflops = flops_per_token(config, args.seq_len) * tokens_per_s / 1e12
    name = torch.cuda.get_device_name(device) if cuda else "cpu"
    peak = args.peak_tflops or peak_tflops(name)
    counts = count_parameters(config)
    print(f"device: {name}; preset {args.preset}: {counts['active'] / 1e6:.0f}M active "
          f"({counts['active_non_embedding'] / 1e6:.0f}M without embeddings), {counts['total'] / 1e6:.0f}M total; "
          f"batch {args.micro_batch_size} x {args.seq_len}; compile {args.compile}; loss chunk "
          f"{args.loss_chunk_tokens}; fsdp {args.fsdp}; expert dispatch {args.expert_dispatch}; "
          f"activation checkpointing {args.activation_checkpointing}")
    print(f"tokens/s: {tokens_per_s:,.0f}")
    if cuda:
        print(f"peak GPU memory: {torch.cuda.max_memory_allocated(device) / 2**30:.1f} GiB")
    mfu = f"{100 * achieved_tflops / peak:.1f}%" if peak else "unknown (pass --peak-tflops)"
    print(f"model TFLOP/s: {achieved_tflops:.1f}; MFU: {mfu} (peak used: {peak} TFLOP/s dense bf16)")
    print(f"last loss {loss:.3f}; max expert imbalance {max(imbalance):.2f}")
    return 0


def build(args: argparse.Namespace, device: torch.device):
    """(config, model, forward callable, optimizer) as the options ask; --fsdp starts a 1-rank process group."""
    torch.manual_seed(0)
    config = preset(args.preset, max_position_embeddings=max(args.seq_len, preset(args.preset).max_position_embeddings))
    model = Transformer(config).to(device)
    if args.fsdp:
        if not dist.is_initialized():
            backend = "nccl" if device.type == "cuda" else "gloo"
            dist.init_process_group(backend, store=dist.HashStore(), rank=0, world_size=1)
        mesh = build_mesh(device.type, 1, 1)
        if args.expert_dispatch:
            model.set_expert_parallel(mesh["ep"])
        parallelize(model, mesh, bf16=device.type == "cuda", activation_checkpointing=args.activation_checkpointing,
                    compile_blocks=args.compile)
        forward = model
    else:
        for layer in model.layers:
            layer.activation_checkpointing = args.activation_checkpointing
        forward = torch.compile(model) if args.compile else model
    optimizer = torch.optim.AdamW(parameter_groups(model, 0.1), lr=3e-4, betas=(0.9, 0.95), fused=device.type == "cuda")
    return config, model, forward, optimizer


if __name__ == "__main__":
    sys.exit(main())
