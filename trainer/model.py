"""The dots.llm1 mixture-of-experts decoder, in one file.

Pre-norm decoder: RMSNorm; multi-head attention (no GQA) with an RMSNorm per head on Q and K
before RoPE; SwiGLU feed-forward; the first `first_k_dense_replace` layers dense, the rest
mixture-of-experts (routed experts chosen by a top-k sigmoid router, plus always-on shared
experts); untied input embedding and output head. Module and weight names follow Hugging Face
`Dots1ForCausalLM` (transformers `models/dots1`) so that export is a renaming plus splitting the
stacked expert weights (see trainer/export_hf.py).

Router (auxiliary-loss-free balancing, DeepSeek-V3 / dots.llm1): in fp32, scores = sigmoid(x W^T);
a per-expert bias `e_score_correction_bias` is added to the scores only to *choose* the top-k;
the chosen experts' unbiased scores are normalized to sum 1 and multiplied by
`routed_scaling_factor`; shared experts are added unscaled. The bias is not a parameter: the
trainer moves it after each optimizer step (trainer/train.py, `update_router_biases`). A small
sequence-wise balance loss (`balance_loss_alpha`) is added to the LM loss. No token is dropped:
experts process every token routed to them. The token-expert assignments are sorted by expert
(stable sort) and all experts run as two grouped matrix products (`grouped_mm`: one GEMM per
expert over its contiguous rows; a single CUTLASS kernel per product in bf16 on sm90/sm100 GPUs,
a loop inside torch elsewhere), with the group boundaries kept on the device: no host sync, and
static shapes for torch.compile.

Expert parallelism (`Transformer.set_expert_parallel(ep_mesh)`): the routed experts of every MoE
layer are split in contiguous blocks over the ranks of a 1-D expert-parallel DeviceMesh (the
stacked weights become DTensors sharded on the expert dimension). Each rank routes its own tokens
over all E experts as above; the sorted assignments are sent to the ranks owning their experts
with `all_to_all_single` (per-expert counts exchanged first, so splits may be uneven), the local
experts run as the same grouped GEMMs, and a second all-to-all brings the results back into the
sorted order, where they are unsorted and combined with the routing weights exactly as without
expert parallelism. The router, its bias and balance loss, and the shared experts stay local.

Shape suffix legend (torchtitan habit):
    B  batch (sequences)            T  sequence length (tokens per sequence)
    N  tokens in the batch (B*T)    D  model (hidden) width
    H  attention heads              K  head width (D // H)
    F  feed-forward width           V  vocabulary size
    E  routed experts               A  experts chosen per token (top-k)
    S  token-expert assignments (N*A)   G  gate and up widths together (2F)
    L  mixture-of-experts layers    P  expert-parallel ranks
    X  experts on this rank (E // P)  R  assignments this rank's experts receive
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch import nn
from torch.distributed.device_mesh import DeviceMesh
from torch.distributed.tensor import DTensor, Shard
from torch.utils.checkpoint import checkpoint


@dataclass
class ModelConfig:
    vocab_size: int = 152064  # token ids are < vocab_size (Qwen2 tokenizer: 152,064)
    hidden_size: int = 4096  # D, model width
    num_hidden_layers: int = 62  # decoder layers
    num_attention_heads: int = 32  # H; every head has its own K and V (no grouped-query attention)
    intermediate_size: int = 10944  # F of the dense SwiGLU layers
    first_k_dense_replace: int = 1  # the first k layers are dense, the rest mixture-of-experts
    n_routed_experts: int = 128  # E
    n_shared_experts: int = 2  # always-on experts, fused into one SwiGLU of width n_shared * moe width
    moe_intermediate_size: int = 1408  # F of each expert
    num_experts_per_tok: int = 6  # A, routed experts chosen per token
    routed_scaling_factor: float = 2.5  # multiplies the normalized routed weights
    balance_loss_alpha: float = 1e-4  # weight of the sequence-wise balance loss (0 turns it off)
    rope_theta: float = 1e7  # RoPE base
    rms_norm_eps: float = 1e-5
    max_position_embeddings: int = 4096  # longest sequence the RoPE tables cover
    initializer_range: float = 0.02  # std of the normal initialisation of every matrix

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


PRESETS: dict[str, ModelConfig] = {
    # For CPU tests and benchmarks: about 0.2M parameters besides the embeddings.
    "tiny": ModelConfig(
        vocab_size=512, hidden_size=64, num_hidden_layers=3, num_attention_heads=4, intermediate_size=128,
        n_routed_experts=8, n_shared_experts=1, moe_intermediate_size=32, num_experts_per_tok=2,
        rope_theta=10000.0, max_position_embeddings=1024,
    ),
    # One GPU: about 105M active non-embedding parameters (count_parameters); 6 of 64 routed experts + 2 shared.
    "small": ModelConfig(
        hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=2048,
        n_routed_experts=64, n_shared_experts=2, moe_intermediate_size=352, num_experts_per_tok=6,
        max_position_embeddings=4096,
    ),
    # Between the two: 2.7B active, 14.2B total parameters (2.1B / 13.6B without the embeddings). Its
    # fp32 weights, gradients and AdamW states alone are 212 GiB: it trains only sharded, e.g. on
    # 8 x H200 (trainer/parallel.py, memory_per_rank).
    "medium": ModelConfig(
        hidden_size=2048, num_hidden_layers=24, num_attention_heads=16, intermediate_size=8192,
        n_routed_experts=64, n_shared_experts=2, moe_intermediate_size=1408, num_experts_per_tok=6,
        max_position_embeddings=4096,
    ),
    # The published dots.llm1 shapes (14B active, 142B total parameters).
    "dots.llm1": ModelConfig(max_position_embeddings=32768),
}


def preset(name: str, **overrides) -> ModelConfig:
    """A copy of the named preset with some fields replaced."""
    if name not in PRESETS:
        raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
    return dataclasses.replace(PRESETS[name], **overrides)


def count_parameters(config: ModelConfig) -> dict[str, int]:
    """Total and per-token active parameter counts, with and without the embedding and head."""
    D, V = config.hidden_size, config.vocab_size
    attention = 4 * D * D + 2 * config.head_dim + 2 * D  # projections, Q/K norms, the two layer norms
    dense_ffn = 3 * D * config.intermediate_size
    expert = 3 * D * config.moe_intermediate_size
    shared = config.n_shared_experts * expert
    n_dense = min(config.first_k_dense_replace, config.num_hidden_layers)
    n_moe = config.num_hidden_layers - n_dense
    router = config.n_routed_experts * D
    body_total = config.num_hidden_layers * attention + n_dense * dense_ffn + n_moe * (
        router + shared + config.n_routed_experts * expert) + D
    body_active = config.num_hidden_layers * attention + n_dense * dense_ffn + n_moe * (
        router + shared + config.num_experts_per_tok * expert) + D
    return {
        "total": body_total + 2 * V * D,
        "active": body_active + 2 * V * D,
        "total_non_embedding": body_total,
        "active_non_embedding": body_active,
    }


class RMSNorm(nn.Module):
    """Root-mean-square norm, computed in fp32 and cast back before the weight (as transformers does)."""

    def __init__(self, width: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(width))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x_fp32 = x.float()
        normed = x_fp32 * torch.rsqrt(x_fp32.pow(2).mean(-1, keepdim=True) + self.eps)
        return self.weight * normed.to(x.dtype)


def rope_tables(config: ModelConfig) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin of shape [max_position_embeddings, K], halves repeated (rotate-half convention)."""
    K = config.head_dim
    inv_freq_K2 = 1.0 / (config.rope_theta ** (torch.arange(0, K, 2, dtype=torch.int64).float() / K))
    positions_T = torch.arange(config.max_position_embeddings, dtype=torch.int64).float()
    freqs_TK2 = torch.outer(positions_T, inv_freq_K2)
    angles_TK = torch.cat([freqs_TK2, freqs_TK2], dim=-1)
    return angles_TK.cos(), angles_TK.sin()


def apply_rope(x_BHTK: torch.Tensor, cos_TK: torch.Tensor, sin_TK: torch.Tensor) -> torch.Tensor:
    half = x_BHTK.shape[-1] // 2
    rotated_BHTK = torch.cat([-x_BHTK[..., half:], x_BHTK[..., :half]], dim=-1)
    return x_BHTK * cos_TK + rotated_BHTK * sin_TK


class Attention(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        D, H, K = config.hidden_size, config.num_attention_heads, config.head_dim
        self.n_heads, self.head_dim = H, K
        self.q_proj = nn.Linear(D, H * K, bias=False)
        self.k_proj = nn.Linear(D, H * K, bias=False)
        self.v_proj = nn.Linear(D, H * K, bias=False)
        self.o_proj = nn.Linear(H * K, D, bias=False)
        self.q_norm = RMSNorm(K, config.rms_norm_eps)
        self.k_norm = RMSNorm(K, config.rms_norm_eps)

    def forward(self, x_BTD: torch.Tensor, cos_TK: torch.Tensor, sin_TK: torch.Tensor) -> torch.Tensor:
        B, T, _ = x_BTD.shape
        q_BHTK = self.q_norm(self.q_proj(x_BTD).view(B, T, self.n_heads, self.head_dim)).transpose(1, 2)
        k_BHTK = self.k_norm(self.k_proj(x_BTD).view(B, T, self.n_heads, self.head_dim)).transpose(1, 2)
        v_BHTK = self.v_proj(x_BTD).view(B, T, self.n_heads, self.head_dim).transpose(1, 2)
        cos_TK, sin_TK = cos_TK.to(q_BHTK.dtype), sin_TK.to(q_BHTK.dtype)
        q_BHTK, k_BHTK = apply_rope(q_BHTK, cos_TK, sin_TK), apply_rope(k_BHTK, cos_TK, sin_TK)
        out_BHTK = F.scaled_dot_product_attention(q_BHTK, k_BHTK, v_BHTK, is_causal=True)
        return self.o_proj(out_BHTK.transpose(1, 2).reshape(B, T, -1))


class SwiGLU(nn.Module):
    """Dense feed-forward: down(silu(gate(x)) * up(x))."""

    def __init__(self, hidden_size: int, intermediate_size: int):
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class Router(nn.Module):
    """Top-k sigmoid router in fp32; the bias only steers which experts are chosen."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.top_k = config.num_experts_per_tok
        self.routed_scaling_factor = config.routed_scaling_factor
        self.weight = nn.Parameter(torch.empty(config.n_routed_experts, config.hidden_size))
        # A buffer, not a parameter: moved by the trainer from expert loads, never by gradients.
        self.register_buffer("e_score_correction_bias", torch.zeros(config.n_routed_experts, dtype=torch.float32))

    def forward(self, x_ND: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns chosen expert ids [N, A], their weights [N, A] (fp32), and all scores [N, E] (fp32)."""
        with torch.autocast(device_type=x_ND.device.type, enabled=False):
            scores_NE = F.linear(x_ND.float(), self.weight.float()).sigmoid()
        with torch.no_grad():
            chosen_NA = torch.topk(scores_NE + self.e_score_correction_bias, self.top_k, dim=-1).indices
        weights_NA = scores_NE.gather(1, chosen_NA)
        weights_NA = weights_NA / (weights_NA.sum(dim=-1, keepdim=True) + 1e-20) * self.routed_scaling_factor
        return chosen_NA, weights_NA, scores_NE


def grouped_mm(mat_a: torch.Tensor, mat_b: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """torch.nn.functional.grouped_mm where this torch has it, else torch._grouped_mm (same op, older name).

    With a 2-D mat_a [S, K] and a 3-D mat_b [E, K, M]: rows offs[e-1]:offs[e] of mat_a times mat_b[e],
    concatenated to [S, M]; offs (int32, on mat_a's device) holds each group's end row.
    """
    function = getattr(F, "grouped_mm", None) or torch._grouped_mm
    return function(mat_a, mat_b, offs=offs)


@torch.compiler.disable
def grouped_mm_outside_compile(mat_a: torch.Tensor, mat_b: torch.Tensor, offs: torch.Tensor) -> torch.Tensor:
    """grouped_mm kept out of torch.compile graphs: torch's meta kernel for it accepts only bf16
    (torch/_meta_registrations.py, _meta_grouped_mm_common), so other dtypes run eagerly (on CUDA
    torch then loops over the groups itself; only bf16 on sm90/sm100 has the single-kernel path)."""
    return grouped_mm(mat_a, mat_b, offs)


class RoutedExperts(nn.Module):
    """E SwiGLU experts with stacked weights, laid out as transformers' Dots1Experts.

    gate_up_proj is [E, 2F, D] (per expert, the gate rows then the up rows, nn.Linear layout) and
    down_proj is [E, D, F]; stacking keeps every expert's weights one tensor, so every parameter
    gets a gradient (zero for an expert with no token) and FSDP shards them as one, and expert
    parallelism splits them on the first dimension. Both products are grouped GEMMs over the
    transposed views ([E, D, 2F] and [E, F, D], column-major: no copy).

    Groups need no padding: torch's bf16 kernel wants 16-byte aligned rows (D and F multiples of
    8), not aligned group sizes, with these layouts; padding each group to 8 rows measured no
    faster on an H200 (bench/RESULTS.md).
    """

    def __init__(self, config: ModelConfig):
        super().__init__()
        E, D, F_ = config.n_routed_experts, config.hidden_size, config.moe_intermediate_size
        if D % 8 or F_ % 8:
            raise ValueError(f"grouped GEMMs need hidden_size ({D}) and moe_intermediate_size ({F_}) to be multiples "
                             f"of 8 (16-byte aligned bf16 rows)")
        self.gate_up_proj = nn.Parameter(torch.empty(E, 2 * F_, D))
        self.down_proj = nn.Parameter(torch.empty(E, D, F_))

    def forward(self, x_SD: torch.Tensor, tokens_per_expert_E: torch.Tensor) -> torch.Tensor:
        """x_SD holds the assignments sorted by expert; expert e takes the next tokens_per_expert_E[e] rows
        (under expert parallelism: this rank's E // P experts only).

        tokens_per_expert_E is an integer tensor on x_SD's device; nothing here reads it on the host.
        """
        device_type = x_SD.device.type
        # grouped_mm is not on autocast's list: cast both operands as autocast would cast F.linear's.
        if torch.is_autocast_enabled(device_type):
            dtype = torch.get_autocast_dtype(device_type)
        else:
            dtype = self.gate_up_proj.dtype
        return self.swiglu(x_SD.to(dtype), tokens_per_expert_E.cumsum(0, dtype=torch.int32), dtype)

    def swiglu(self, x_SD: torch.Tensor, group_end_E: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        """down(silu(gate(x)) * up(x)) with each row's expert; group_end_E (int32) ends each expert's rows."""
        mm = grouped_mm if dtype == torch.bfloat16 else grouped_mm_outside_compile
        gate_up_SG = mm(x_SD, local_tensor(self.gate_up_proj).to(dtype).transpose(-2, -1), group_end_E)
        gate_SF, up_SF = gate_up_SG.chunk(2, dim=-1)
        return mm(F.silu(gate_SF) * up_SF, local_tensor(self.down_proj).to(dtype).transpose(-2, -1), group_end_E)


def local_tensor(parameter: torch.Tensor) -> torch.Tensor:
    """This rank's experts of an expert-parallel (DTensor) weight; a plain weight as it is."""
    return parameter.to_local() if isinstance(parameter, DTensor) else parameter


def counts_of_sorted(sorted_values: torch.Tensor, n: int) -> torch.Tensor:
    """How many of the ascending integers `sorted_values` (all in [0, n)) equal 0, 1, ..., n-1: int64 [n].

    torch.bincount gives the same counts, but on CUDA it reads the maximum on the host to size its
    output (a sync per call) and torch.compile cannot know that size; a binary search of the sorted
    values is sync-free, exact and of static shape.
    """
    values = torch.arange(n, device=sorted_values.device, dtype=sorted_values.dtype)
    ends = torch.searchsorted(sorted_values, values, right=True)  # one past the last occurrence of each
    return torch.diff(ends, prepend=ends.new_zeros(1))


class AllToAll(torch.autograd.Function):
    """dist.all_to_all_single of rows (uneven splits) whose backward sends the gradients back the reverse way."""

    @staticmethod
    def forward(ctx, x_SD, receive_splits: list[int], send_splits: list[int], group: dist.ProcessGroup):
        ctx.splits, ctx.group = (receive_splits, send_splits), group
        received_RD = x_SD.new_empty(sum(receive_splits), *x_SD.shape[1:])
        dist.all_to_all_single(received_RD, x_SD.contiguous(), receive_splits, send_splits, group=group)
        return received_RD

    @staticmethod
    def backward(ctx, grad_RD):
        receive_splits, send_splits = ctx.splits
        grad_SD = grad_RD.new_empty(sum(send_splits), *grad_RD.shape[1:])
        dist.all_to_all_single(grad_SD, grad_RD.contiguous(), send_splits, receive_splits, group=ctx.group)
        return grad_SD, None, None, None


class MoE(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.n_experts = config.n_routed_experts
        self.top_k = config.num_experts_per_tok
        self.balance_loss_alpha = config.balance_loss_alpha
        self.gate = Router(config)
        self.experts = RoutedExperts(config)
        self.shared_experts = SwiGLU(config.hidden_size, config.moe_intermediate_size * config.n_shared_experts)
        self.ep_group: dist.ProcessGroup | None = None  # set by set_expert_parallel

    def set_expert_parallel(self, ep_mesh: DeviceMesh) -> None:
        """Keep only this rank's block of experts: the stacked weights become DTensors, Shard(0) over ep_mesh."""
        P = ep_mesh.size()
        if self.n_experts % P:
            raise ValueError(f"{self.n_experts} routed experts cannot be split evenly over {P} expert-parallel ranks")
        X, start = self.n_experts // P, ep_mesh.get_local_rank() * (self.n_experts // P)
        for name in ("gate_up_proj", "down_proj"):
            full = getattr(self.experts, name)
            local = full.detach()[start:start + X].clone()
            setattr(self.experts, name, nn.Parameter(DTensor.from_local(local, ep_mesh, [Shard(0)], run_check=False)))
        self.ep_group = ep_mesh.get_group()

    def forward(self, x_BTD: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns the output [B, T, D], the balance loss (scalar) and tokens per expert [E] (float)."""
        B, T, D = x_BTD.shape
        x_ND = x_BTD.reshape(B * T, D)
        chosen_NA, weights_NA, scores_NE = self.gate(x_ND)

        # Group assignments by expert: a stable sort keeps each expert's tokens in token order.
        expert_of_S = chosen_NA.reshape(-1)
        sorted_expert_S, order_S = torch.sort(expert_of_S, stable=True)
        tokens_per_expert_E = counts_of_sorted(sorted_expert_S, self.n_experts)
        if self.ep_group is None:
            routed_sorted_SD = self.experts(x_ND[order_S // self.top_k], tokens_per_expert_E)
        else:
            routed_sorted_SD = self.experts_across_ranks(x_ND[order_S // self.top_k], tokens_per_expert_E)
        routed_SD = routed_sorted_SD[torch.argsort(order_S)]  # back to (token, slot) order
        routed_ND = (routed_SD.view(B * T, self.top_k, D).float() * weights_NA.unsqueeze(-1)).sum(dim=1)
        out_BTD = routed_ND.to(x_BTD.dtype).view(B, T, D) + self.shared_experts(x_BTD)

        balance_loss = self.sequence_balance_loss(chosen_NA.view(B, T, -1), scores_NE.view(B, T, -1))
        return out_BTD, balance_loss, tokens_per_expert_E.float()

    def experts_across_ranks(self, x_SD: torch.Tensor, tokens_per_expert_E: torch.Tensor) -> torch.Tensor:
        """The routed experts' outputs for the expert-sorted rows x_SD, each computed on the rank owning its expert.

        Rows for rank p are contiguous in x_SD (experts p*X ... p*X + X-1). Each rank receives, from
        every source rank, that rank's rows for its X experts in expert order; they are regrouped by
        expert for the grouped GEMMs and put back in arrival order before the return trip. The two
        row all-to-alls carry gradients (torch.distributed.nn.functional); the counts need a host
        sync to size them.
        """
        P = dist.get_world_size(self.ep_group)
        X = self.n_experts // P
        sent_counts_PX = tokens_per_expert_E.view(P, X)
        received_counts_PX = torch.empty_like(sent_counts_PX)
        dist.all_to_all_single(received_counts_PX, sent_counts_PX, group=self.ep_group)  # [source rank, local expert]
        send_splits = sent_counts_PX.sum(dim=1).tolist()
        receive_splits = received_counts_PX.sum(dim=1).tolist()

        received_RD = AllToAll.apply(x_SD, receive_splits, send_splits, self.ep_group)
        # Arrival order is (source rank, expert); the grouped GEMMs want (expert, source rank).
        block_of_R = torch.repeat_interleave(torch.arange(P * X, device=x_SD.device), received_counts_PX.reshape(-1))
        by_expert_R = torch.sort((block_of_R % X) * P + block_of_R // X, stable=True).indices
        routed_by_expert_RD = self.experts(received_RD[by_expert_R], received_counts_PX.sum(dim=0))
        routed_RD = routed_by_expert_RD[torch.argsort(by_expert_R)]
        return AllToAll.apply(routed_RD, send_splits, receive_splits, self.ep_group)

    def sequence_balance_loss(self, chosen_BTA: torch.Tensor, scores_BTE: torch.Tensor) -> torch.Tensor:
        """DeepSeek-V3's sequence-wise loss: alpha * sum_i f_i * P_i, averaged over sequences.

        f_i = E / (A*T) * (tokens of the sequence routed to i); P_i = mean over the sequence of the
        scores normalized over experts. It is alpha when loads and scores are uniform.
        """
        if self.balance_loss_alpha == 0:
            return scores_BTE.new_zeros(())
        B, T, _ = scores_BTE.shape
        # One sort and count over (sequence, expert) ids: deterministic and sync-free on GPUs too,
        # unlike scatter_add_ (atomic) and bincount (host sync).
        sequence_offset_B11 = torch.arange(B, device=chosen_BTA.device).view(B, 1, 1) * self.n_experts
        sorted_ids = torch.sort((chosen_BTA + sequence_offset_B11).reshape(-1)).values
        counts_BE = counts_of_sorted(sorted_ids, B * self.n_experts)
        counts_BE = counts_BE.view(B, self.n_experts).to(scores_BTE.dtype)
        load_fraction_BE = counts_BE * self.n_experts / (self.top_k * T)
        probability_BE = (scores_BTE / scores_BTE.sum(dim=-1, keepdim=True)).mean(dim=1)
        return self.balance_loss_alpha * (load_fraction_BE * probability_BE).sum(dim=-1).mean()


class DecoderLayer(nn.Module):
    def __init__(self, config: ModelConfig, layer_index: int):
        super().__init__()
        self.input_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.self_attn = Attention(config)
        self.post_attention_layernorm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.is_moe = layer_index >= config.first_k_dense_replace
        self.mlp = MoE(config) if self.is_moe else SwiGLU(config.hidden_size, config.intermediate_size)

        # Keep only the block's input for backward and recompute the rest there (set by the trainer).
        self.activation_checkpointing = False

    def forward(self, x_BTD, cos_TK, sin_TK):
        if self.activation_checkpointing and torch.is_grad_enabled():
            return checkpoint(self.block, x_BTD, cos_TK, sin_TK, use_reentrant=False)
        return self.block(x_BTD, cos_TK, sin_TK)

    def block(self, x_BTD, cos_TK, sin_TK):
        x_BTD = x_BTD + self.self_attn(self.input_layernorm(x_BTD), cos_TK, sin_TK)
        if not self.is_moe:
            return x_BTD + self.mlp(self.post_attention_layernorm(x_BTD)), None, None
        mlp_BTD, balance_loss, tokens_per_expert_E = self.mlp(self.post_attention_layernorm(x_BTD))
        return x_BTD + mlp_BTD, balance_loss, tokens_per_expert_E


class ModelOutput(NamedTuple):
    logits_BTV: torch.Tensor | None  # None when the loss was computed in chunks (loss_chunk_tokens)
    loss: torch.Tensor | None  # LM loss + balance loss (what to backpropagate); None without targets
    lm_loss: torch.Tensor | None  # mean next-token cross-entropy over targets other than -100
    balance_loss: torch.Tensor  # sum over MoE layers of the sequence-wise balance loss
    tokens_per_expert_LE: torch.Tensor  # routed assignments per expert in each MoE layer (detached)


class Transformer(nn.Module):
    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.embed_tokens = nn.Embedding(config.vocab_size, config.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(config, i) for i in range(config.num_hidden_layers))
        self.norm = RMSNorm(config.hidden_size, config.rms_norm_eps)
        self.lm_head = nn.Linear(config.hidden_size, config.vocab_size, bias=False)
        cos_TK, sin_TK = rope_tables(config)
        self.register_buffer("rope_cos", cos_TK, persistent=False)
        self.register_buffer("rope_sin", sin_TK, persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Normal(0, initializer_range) for every matrix, ones for norms, zero router biases."""
        for parameter in self.parameters():
            if parameter.dim() >= 2:
                nn.init.normal_(parameter, mean=0.0, std=self.config.initializer_range)
            else:
                nn.init.ones_(parameter)
        for router in self.routers():
            router.e_score_correction_bias.zero_()

    def routers(self) -> list[Router]:
        return [layer.mlp.gate for layer in self.layers if layer.is_moe]

    def set_expert_parallel(self, ep_mesh: DeviceMesh) -> None:
        """Split every MoE layer's routed experts over the ranks of the 1-D mesh ep_mesh (see the module doc)."""
        for layer in self.layers:
            if layer.is_moe:
                layer.mlp.set_expert_parallel(ep_mesh)

    def forward(self, tokens_BT: torch.Tensor, targets_BT: torch.Tensor | None = None,
                loss_chunk_tokens: int | None = None) -> ModelOutput:
        """With targets and loss_chunk_tokens, the head and loss run in chunks of that many tokens and
        the full logits are never held (see chunked_cross_entropy); logits_BTV is then None."""
        T = tokens_BT.shape[1]
        if T > self.config.max_position_embeddings:
            raise ValueError(f"sequence length {T} exceeds max_position_embeddings {self.config.max_position_embeddings}")
        cos_TK, sin_TK = self.rope_cos[:T], self.rope_sin[:T]
        x_BTD = self.embed_tokens(tokens_BT)
        balance_losses, loads = [], []
        for layer in self.layers:
            x_BTD, balance_loss, tokens_per_expert_E = layer(x_BTD, cos_TK, sin_TK)
            if balance_loss is not None:
                balance_losses.append(balance_loss)
                loads.append(tokens_per_expert_E)
        balance_loss = torch.stack(balance_losses).sum() if balance_losses else x_BTD.new_zeros((), dtype=torch.float32)
        tokens_per_expert_LE = torch.stack(loads) if loads else x_BTD.new_zeros((0, self.config.n_routed_experts))
        hidden_BTD = self.norm(x_BTD)
        if targets_BT is not None and loss_chunk_tokens:
            lm_loss = chunked_cross_entropy(hidden_BTD.flatten(0, 1), self.lm_head.weight, targets_BT.reshape(-1),
                                            loss_chunk_tokens)
            return ModelOutput(None, lm_loss + balance_loss, lm_loss, balance_loss, tokens_per_expert_LE)
        logits_BTV = self.lm_head(hidden_BTD)
        if targets_BT is None:
            return ModelOutput(logits_BTV, None, None, balance_loss, tokens_per_expert_LE)
        lm_loss = F.cross_entropy(logits_BTV.float().view(-1, logits_BTV.shape[-1]), targets_BT.reshape(-1))
        return ModelOutput(logits_BTV, lm_loss + balance_loss, lm_loss, balance_loss, tokens_per_expert_LE)


IGNORED = -100  # cross_entropy's default ignore_index


def chunked_cross_entropy(hidden_ND: torch.Tensor, head_weight_VD: torch.Tensor, targets_N: torch.Tensor,
                          chunk_tokens: int) -> torch.Tensor:
    """Mean next-token cross-entropy of the logits hidden_ND @ head_weight_VD^T, chunk_tokens rows at a time.

    Each chunk's logits (and their fp32 copy) live only inside its own forward and are recomputed
    in the backward pass (torch.utils.checkpoint), so the peak holds one chunk of [chunk, V]
    instead of [N, V]: with V = 152,064 the full fp32 logits of 8 x 2048 tokens are 10 GB. Same
    sum over the same values as F.cross_entropy, to fp32 rounding.
    """
    total = hidden_ND.new_zeros((), dtype=torch.float32)
    for start in range(0, hidden_ND.shape[0], chunk_tokens):
        end = start + chunk_tokens
        total = total + checkpoint(summed_cross_entropy, hidden_ND[start:end], head_weight_VD, targets_N[start:end],
                                   use_reentrant=False)
    return total / (targets_N != IGNORED).sum()


def summed_cross_entropy(hidden_ND: torch.Tensor, head_weight_VD: torch.Tensor, targets_N: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(F.linear(hidden_ND, head_weight_VD).float(), targets_N, reduction="sum")


def load_imbalance(tokens_per_expert_LE: torch.Tensor) -> list[float]:
    """Per MoE layer, the busiest expert's load over the mean load (1.0 is perfect balance)."""
    mean_L = tokens_per_expert_LE.mean(dim=-1).clamp_min(1e-9)
    return (tokens_per_expert_LE.max(dim=-1).values / mean_L).tolist()


@torch.no_grad()
def update_router_biases(model: Transformer, tokens_per_expert_LE: torch.Tensor, gamma: float) -> None:
    """Auxiliary-loss-free balancing: b_i += gamma * sign(mean_load - load_i), per MoE layer."""
    for router, load_E in zip(model.routers(), tokens_per_expert_LE, strict=True):
        load_E = load_E.to(router.e_score_correction_bias.device)
        router.e_score_correction_bias += gamma * torch.sign(load_E.mean() - load_E)


def flops_per_token(config: ModelConfig, seq_len: int) -> float:
    """Training FLOPs per token (forward + backward = 6 x active matmul parameters, plus attention)."""
    active_matmul = count_parameters(config)["active"] - config.vocab_size * config.hidden_size  # embedding lookup is free
    attention = 12 * config.num_hidden_layers * config.hidden_size * seq_len / 2  # causal: half the score matrix
    return 6 * active_matmul + attention

