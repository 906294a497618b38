"""The model over many ranks: a 2-D DeviceMesh, FSDP2 per block, expert parallelism, and memory on paper.

Mesh: the world's ranks as a DeviceMesh of shape (dp, ep), dims named "dp" and "ep", ep the
inner dimension (neighbouring ranks, the same node when ep <= GPUs per node, share the
expert all-to-all). Every rank reads its own sequences (data parallelism over all dp x ep
ranks). As in torchtitan:

- the routed experts of each MoE layer are split over "ep" (`Transformer.set_expert_parallel`:
  DTensors Shard(0) over the expert dimension) and FSDP-sharded over "dp";
- every other parameter is FSDP-sharded over all dp x ep ranks (the flattened mesh);
- FSDP units: each decoder layer, inside it each router (kept in fp32 under bf16 mixed
  precision: the router's math is fp32 by design) and, under expert parallelism, the experts;
  the input embedding; the root (final norm and output head).

With bf16, parameters are all-gathered in bf16 and gradients reduced in fp32
(`MixedPrecisionPolicy`); master weights and AdamW states stay fp32 shards.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.distributed.tensor import DTensor

from thresher.trainer.model import ModelConfig, Transformer, count_parameters, local_tensor


def build_mesh(device_type: str, world_size: int, expert_parallel: int) -> DeviceMesh:
    """The (dp, ep) mesh of all ranks; the process group must already be started."""
    if expert_parallel < 1 or world_size % expert_parallel:
        raise ValueError(f"--ep {expert_parallel} must divide the number of processes ({world_size})")
    return init_device_mesh(device_type, (world_size // expert_parallel, expert_parallel), mesh_dim_names=("dp", "ep"))


def parallelize(model: Transformer, mesh: DeviceMesh, bf16: bool, activation_checkpointing: bool = False,
                compile_blocks: bool = False) -> Transformer:
    """Shard `model` (identically initialised on every rank) over `mesh` in place; returns it."""
    dp, ep = mesh["dp"].size(), mesh["ep"].size()
    world_size = dp * ep
    if ep > 1:
        model.set_expert_parallel(mesh["ep"])
        dense_mesh = mesh["dp", "ep"]._flatten("dp_ep")
    else:
        dense_mesh = mesh["dp"]
    policy = MixedPrecisionPolicy(param_dtype=torch.bfloat16 if bf16 else None, reduce_dtype=torch.float32)
    fp32_policy = MixedPrecisionPolicy(param_dtype=torch.float32, reduce_dtype=torch.float32)
    for layer in model.layers:
        layer.activation_checkpointing = activation_checkpointing
        if layer.is_moe:
            fully_shard(layer.mlp.gate, mesh=dense_mesh, mp_policy=fp32_policy)
            if ep > 1:
                experts = fully_shard(layer.mlp.experts, mesh=mesh["dp"], mp_policy=policy)
                # An expert's gradient already sums the contributions of all ep ranks (through the
                # all-to-all's backward); the mean over all ranks divides by the world, not dp.
                experts.set_gradient_divide_factor(float(world_size))
                if dp > 1:  # sum, then divide: gloo has no pre-multiplied sum (torch 2.13 divides twice at dp 1)
                    experts.set_force_sum_reduction_for_comms(True)
        if compile_blocks:
            layer.compile()
        fully_shard(layer, mesh=dense_mesh, mp_policy=policy)
    fully_shard(model.embed_tokens, mesh=dense_mesh, mp_policy=policy)
    fully_shard(model, mesh=dense_mesh, mp_policy=policy)
    return model


@torch.no_grad()
def clip_grad_norm_(parameters: list[torch.nn.Parameter], max_norm: float) -> torch.Tensor:
    """Clip gradients to a global norm of max_norm; returns the norm before clipping.

    Plain tensors: torch.nn.utils.clip_grad_norm_. Sharded (DTensor) gradients, possibly on
    different meshes (experts vs the rest): every gradient element lives on exactly one rank
    (Shard placements only), so the squared norm is the all-reduced sum of the local shards'.
    """
    grads = [p.grad for p in parameters if p.grad is not None]
    if not any(isinstance(g, DTensor) for g in grads):
        return torch.nn.utils.clip_grad_norm_(parameters, max_norm)
    squared = torch.stack([local_tensor(g).float().pow(2).sum() for g in grads]).sum()
    if dist.is_initialized():
        dist.all_reduce(squared, op=dist.ReduceOp.SUM)
    total_norm = squared.sqrt()
    scale = (max_norm / (total_norm + 1e-6)).clamp(max=1.0)
    for g in grads:
        local_tensor(g).mul_(scale.to(g.dtype))
    return total_norm


GiB = 2**30


def memory_per_rank(config: ModelConfig, dp: int, ep: int, micro_batch_size: int, seq_len: int, bf16: bool,
                    activation_checkpointing: bool = False, loss_chunk_tokens: int | None = None,
                    sharded: bool = True) -> dict[str, float]:
    """Memory per rank on paper, in GiB, for training `config` on a (dp, ep) mesh (sharded=False: the
    plain model in one process).

    - parameters, gradients: fp32 shards, every parameter split over all dp x ep ranks
      (experts over ep, then dp; the rest over both), 4 bytes each;
    - optimizer: AdamW's two fp32 moments, 8 bytes per parameter shard;
    - gathered: the largest FSDP unit unsharded (in the compute dtype), twice (the next one is
      prefetched); none for the plain model;
    - activations: what autograd keeps for one micro-batch (see activation_bytes);
    - total: their sum. The allocator's fragmentation, communication buffers and the CUDA
      context (about 1-3 GiB) come on top.
    """
    world = dp * ep
    counts = count_parameters(config)
    compute_bytes = 2 if bf16 else 4
    D, V = config.hidden_size, config.vocab_size
    expert = 3 * D * config.moe_intermediate_size
    attention = 4 * D * D + 2 * config.head_dim + 2 * D
    moe_layer = attention + config.n_routed_experts * D + (config.n_shared_experts + config.n_routed_experts // ep) * expert
    dense_layer = attention + 3 * D * config.intermediate_size
    largest_unit = max(moe_layer, dense_layer, V * D)
    memory = {
        "parameters": 4 * counts["total"] / world / GiB,
        "gradients": 4 * counts["total"] / world / GiB,
        "optimizer": 8 * counts["total"] / world / GiB,
        "gathered": 2 * compute_bytes * largest_unit / GiB if sharded else 0.0,
        "activations": activation_bytes(config, micro_batch_size, seq_len, compute_bytes, activation_checkpointing,
                                        loss_chunk_tokens) / GiB,
    }
    return memory | {"total": sum(memory.values())}


def activation_bytes(config: ModelConfig, micro_batch_size: int, seq_len: int, compute_bytes: int,
                     activation_checkpointing: bool, loss_chunk_tokens: int | None) -> float:
    """Tensors autograd keeps for one micro-batch, counted per token from the model's forward.

    Per layer and token: attention keeps its input and norm (2D fp32 norm input), q, k, v after
    norm and RoPE and the attention output (4D), the o_proj input (D): about 8D values; a MoE
    layer keeps the router's fp32 scores (E, 4 bytes), the top_k gathered inputs and their
    gate/up (2F), silu product (F) and output (D) rows, and the shared experts' inputs and
    hidden (D + 3 F_shared); a dense layer D + 3F. With activation checkpointing only each
    layer's input (D) stays, plus one layer's full set during its recomputation. The head:
    logits in the compute dtype, their fp32 copy, its log-softmax and their gradient
    (V x (compute + 12) bytes per token), or one chunk of them with a chunked loss, plus the final norm input (D fp32).
    Checked against the one measured case: `small`, 4 x 2048 tokens, eager bf16 on an H200 peaked at
    35.3 GiB (bench/RESULTS.md) against 33.9 GiB on paper, 8 x 2048 tokens 59.4 against 55.1 (the
    CUDA context and allocator slack are not on paper).
    """
    N = micro_batch_size * seq_len
    D, V, A = config.hidden_size, config.vocab_size, config.num_experts_per_tok
    F_, shared_F = config.moe_intermediate_size, config.moe_intermediate_size * config.n_shared_experts
    attention = 8 * D * compute_bytes + 2 * D * 4
    moe = config.n_routed_experts * 4 + A * (D + 3 * F_ + D) * compute_bytes + (D + 3 * shared_F) * compute_bytes
    dense = (D + 3 * config.intermediate_size) * compute_bytes
    n_dense = min(config.first_k_dense_replace, config.num_hidden_layers)
    n_moe = config.num_hidden_layers - n_dense
    layers = n_dense * (attention + dense) + n_moe * (attention + moe)
    if activation_checkpointing:
        layers = config.num_hidden_layers * D * compute_bytes + attention + max(moe if n_moe else 0, dense)
    head_tokens = min(N, loss_chunk_tokens) if loss_chunk_tokens else N
    head = head_tokens * V * (compute_bytes + 12) + N * D * 4
    return N * layers + head


def format_memory(memory: dict[str, float], dp: int, ep: int) -> str:
    """One line: 'memory per rank on paper (mesh dp 4 x ep 2): parameters 1.2 GiB, ... total 9.9 GiB'."""
    parts = ", ".join(f"{name} {value:.1f} GiB" for name, value in memory.items())
    return f"memory per rank on paper (mesh dp {dp} x ep {ep}): {parts}"
