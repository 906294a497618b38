import pytest
import torch
import torch.nn.functional as F

from thresher.trainer.model import (
    PRESETS,
    RoutedExperts,
    Transformer,
    chunked_cross_entropy,
    count_parameters,
    counts_of_sorted,
    load_imbalance,
    preset,
    update_router_biases,
)

CUDA = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
DEVICES = ["cpu", pytest.param("cuda", marks=CUDA)]


def micro_config(**overrides):
    fields = dict(vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48,
                  moe_intermediate_size=16, n_routed_experts=8, num_experts_per_tok=3, initializer_range=0.2)
    fields.update(overrides)
    return preset("tiny", **fields)


def naive_moe(moe, x_ND):
    """Reference: every token through its chosen experts one by one, plus the shared experts."""
    chosen_NA, weights_NA, _ = moe.gate(x_ND)
    rows = []
    for token in range(x_ND.shape[0]):
        total = moe.shared_experts(x_ND[token])
        for slot in range(chosen_NA.shape[1]):
            expert = chosen_NA[token, slot]
            gate, up = F.linear(x_ND[token], moe.experts.gate_up_proj[expert]).chunk(2)
            total = total + weights_NA[token, slot] * F.linear(F.silu(gate) * up, moe.experts.down_proj[expert])
        rows.append(total)
    return torch.stack(rows)


def test_published_preset_has_dots_llm1_size():
    counts = count_parameters(PRESETS["dots.llm1"])
    assert 141e9 < counts["total"] < 144e9  # "142B total"
    assert 13.5e9 < counts["active"] < 14.5e9  # "14B active"
    assert 90e6 < count_parameters(PRESETS["small"])["active_non_embedding"] < 115e6
    assert "medium" in PRESETS  # its size: test_trainer_parallel.py


def test_parameter_count_matches_module():
    config = micro_config()
    model = Transformer(config)
    assert sum(p.numel() for p in model.parameters()) == count_parameters(config)["total"]


def test_grouped_experts_match_per_token_reference():
    torch.manual_seed(0)
    model = Transformer(micro_config())
    moe = model.layers[1].mlp
    for router in model.routers():
        router.e_score_correction_bias.normal_(0, 0.3)
    x_BTD = torch.randn(2, 7, 32)
    out_BTD, _, tokens_per_expert_E = moe(x_BTD)
    torch.testing.assert_close(out_BTD.reshape(14, 32), naive_moe(moe, x_BTD.reshape(14, 32)), atol=1e-5, rtol=1e-5)
    assert tokens_per_expert_E.sum() == 14 * 3  # no token dropped
    assert (tokens_per_expert_E > 0).sum() >= 4


def per_expert_reference(gate_up_EGD, down_EDF, x_SD, counts):
    """The plain loop that the grouped GEMMs replace: expert e's two F.linear on its slice of the sorted rows."""
    outputs, start = [], 0
    for expert, count in enumerate(counts):
        gate, up = F.linear(x_SD[start:start + count], gate_up_EGD[expert]).chunk(2, dim=-1)
        outputs.append(F.linear(F.silu(gate) * up, down_EDF[expert]))
        start += count
    return torch.cat(outputs)


def relative_error(actual, expected):
    return ((actual.float() - expected.float()).abs().max() / expected.float().abs().max()).item()


# On a GPU the shapes are large enough for several kernel tiles per group.
EXPERT_SHAPES = {"cpu": dict(S=61, D=32, F=16, E=8), "cuda": dict(S=1531, D=256, F=128, E=16)}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("precision", ["fp32", "bf16"])
@pytest.mark.parametrize("routing", ["random", "one_expert"])
def test_grouped_experts_match_per_expert_loop(device, precision, routing):
    S, D, F_, E = EXPERT_SHAPES[device].values()
    generator = torch.Generator().manual_seed(0)
    if routing == "random":  # the first, a middle and the last expert get no token
        used = torch.tensor([e for e in range(E) if e not in (0, E // 2, E - 1)])
        expert_S = used[torch.randint(0, len(used), (S,), generator=generator)]
    else:
        expert_S = torch.full((S,), E // 2 + 1)
    counts = torch.bincount(expert_S, minlength=E).tolist()
    assert sum(counts) == S and counts.count(0) >= 3

    experts = RoutedExperts(micro_config(hidden_size=D, moe_intermediate_size=F_, n_routed_experts=E)).to(device)
    with torch.no_grad():
        experts.gate_up_proj.copy_(torch.randn(E, 2 * F_, D, generator=generator) / D**0.5)
        experts.down_proj.copy_(torch.randn(E, D, F_, generator=generator) / F_**0.5)
    x_SD = torch.randn(S, D, generator=generator).to(device).requires_grad_()
    upstream_SD = torch.randn(S, D, generator=generator).to(device)
    gate_up_EGD = experts.gate_up_proj.detach().clone().requires_grad_()
    down_EDF = experts.down_proj.detach().clone().requires_grad_()
    x_reference_SD = x_SD.detach().clone().requires_grad_()

    with torch.autocast(device_type=device, dtype=torch.bfloat16, enabled=precision == "bf16"):
        out_SD = experts(x_SD, torch.tensor(counts, device=device))
        expected_SD = per_expert_reference(gate_up_EGD, down_EDF, x_reference_SD, counts)
    assert out_SD.dtype == expected_SD.dtype == (torch.bfloat16 if precision == "bf16" else torch.float32)
    (out_SD.float() * upstream_SD).sum().backward()
    (expected_SD.float() * upstream_SD).sum().backward()

    # fp32 must agree to rounding. In bf16 either side is about 0.7% (of the largest value) off fp32,
    # with other kernels on a GPU; swapped gate/up halves or misplaced groups are off by about 100%.
    tolerance = 1e-5 if precision == "fp32" else 3e-2
    pairs = {"output": (out_SD, expected_SD), "input grad": (x_SD.grad, x_reference_SD.grad),
             "gate_up grad": (experts.gate_up_proj.grad, gate_up_EGD.grad),
             "down grad": (experts.down_proj.grad, down_EDF.grad)}
    for name, (actual, expected) in pairs.items():
        assert torch.isfinite(actual).all(), name
        assert relative_error(actual, expected) < tolerance, (name, relative_error(actual, expected))
    idle = torch.tensor(counts, device=device) == 0
    assert (experts.gate_up_proj.grad[idle] == 0).all() and (experts.down_proj.grad[idle] == 0).all()


def test_counts_of_sorted_match_bincount():
    values = torch.randint(0, 13, (200,), generator=torch.Generator().manual_seed(0))
    values[values == 4] = 5  # a value that never occurs
    expected = torch.bincount(values, minlength=16)
    assert torch.equal(counts_of_sorted(torch.sort(values).values, 16), expected)


@CUDA
def test_moe_forward_does_not_sync_with_the_host():
    torch.manual_seed(0)
    moe = Transformer(micro_config()).layers[1].mlp.cuda()
    x_BTD = torch.randn(2, 64, 32, device="cuda")
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        moe(x_BTD)  # warm-up: lazy initialisation may sync
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            out_BTD, balance_loss, _ = moe(x_BTD)
        finally:
            torch.cuda.set_sync_debug_mode("default")
    assert torch.isfinite(out_BTD).all() and torch.isfinite(balance_loss)


def test_router_bias_steers_choice_but_not_weights():
    torch.manual_seed(0)
    router = Transformer(micro_config()).layers[1].mlp.gate
    x_ND = torch.randn(5, 32)
    router.e_score_correction_bias[3] = 10.0  # expert 3 always chosen
    chosen_NA, weights_NA, scores_NE = router(x_ND)
    assert (chosen_NA == 3).any(dim=1).all()
    expected = scores_NE.gather(1, chosen_NA)
    expected = expected / expected.sum(dim=1, keepdim=True) * router.routed_scaling_factor
    torch.testing.assert_close(weights_NA, expected)
    torch.testing.assert_close(weights_NA.sum(dim=1), torch.full((5,), router.routed_scaling_factor))


def test_router_gets_gradient_and_bias_does_not():
    torch.manual_seed(0)
    model = Transformer(micro_config())
    tokens = torch.randint(0, 50, (2, 9))
    model(tokens, tokens).loss.backward()
    assert model.routers()[0].weight.grad.abs().sum() > 0
    assert "e_score_correction_bias" not in dict(model.named_parameters())
    assert "layers.1.mlp.gate.e_score_correction_bias" in model.state_dict()  # so checkpoints and export carry it


def test_causal():
    torch.manual_seed(0)
    model = Transformer(micro_config()).eval()
    tokens = torch.randint(0, 50, (1, 10))
    changed = tokens.clone()
    changed[0, -1] = (changed[0, -1] + 1) % 50
    with torch.no_grad():
        torch.testing.assert_close(model(tokens).logits_BTV[:, :-1], model(changed).logits_BTV[:, :-1])


def test_loss_is_cross_entropy_plus_small_balance_loss():
    torch.manual_seed(0)
    model = Transformer(micro_config(balance_loss_alpha=1e-3))
    tokens = torch.randint(0, 50, (3, 12))
    output = model(tokens[:, :-1], tokens[:, 1:])
    expected = F.cross_entropy(output.logits_BTV.reshape(-1, 50), tokens[:, 1:].reshape(-1))
    torch.testing.assert_close(output.lm_loss, expected)
    # Sequence-wise loss is alpha * (about 1) per MoE layer when roughly balanced.
    assert 0 < output.balance_loss < 2 * 1e-3 * 2 * 4
    torch.testing.assert_close(output.loss, output.lm_loss + output.balance_loss)
    assert output.tokens_per_expert_LE.shape == (2, 8)


def test_bias_update_moves_toward_balance():
    model = Transformer(micro_config())
    loads_LE = torch.tensor([[10.0, 0, 2, 4, 4, 4, 4, 4], [4.0] * 8])
    update_router_biases(model, loads_LE, gamma=0.01)
    first, second = (r.e_score_correction_bias for r in model.routers())
    assert first[0] == pytest.approx(-0.01) and first[1] == pytest.approx(0.01) and first[3] == 0
    assert (second == 0).all()


def test_load_imbalance_is_max_over_mean():
    assert load_imbalance(torch.tensor([[1.0, 1, 1, 1], [4.0, 0, 0, 0]])) == [1.0, 4.0]


def test_rejects_too_long_sequences():
    model = Transformer(micro_config(max_position_embeddings=8))
    with pytest.raises(ValueError, match="max_position_embeddings"):
        model(torch.zeros(1, 9, dtype=torch.long))


def test_unknown_preset():
    with pytest.raises(ValueError, match="unknown preset"):
        preset("huge")


def test_sequence_balance_loss_values():
    moe = Transformer(micro_config(n_routed_experts=4, num_experts_per_tok=1, balance_loss_alpha=0.1)).layers[1].mlp
    scores_BTE = torch.tensor([[[0.9, 0.1, 0.1, 0.1], [0.9, 0.1, 0.1, 0.1]]])
    collapsed = moe.sequence_balance_loss(torch.tensor([[[0], [0]]]), scores_BTE)
    # f = (4, 0, 0, 0) (all tokens on expert 0), P = (0.75, 1/12, 1/12, 1/12): sum f*P = 3.
    assert collapsed.item() == pytest.approx(0.1 * 3.0)
    spread = moe.sequence_balance_loss(torch.tensor([[[0], [1]]]), scores_BTE)
    assert spread.item() == pytest.approx(0.1 * (2 * 0.75 + 2 / 12))


def test_chunked_loss_matches_the_plain_loss_without_keeping_logits():
    torch.manual_seed(0)
    model = Transformer(micro_config())
    tokens = torch.randint(0, 50, (3, 12))
    targets = tokens[:, 1:].clone()
    targets[0, :4] = -100  # padding is not predicted either way
    def logit_rows_kept(forward):
        """Rows of the [*, V] tensors autograd keeps for backward during forward()."""
        shapes = []
        with torch.autograd.graph.saved_tensors_hooks(lambda t: shapes.append(t.shape) or t, lambda t: t):
            output = forward()
        return output, [shape.numel() // 50 for shape in shapes if shape and shape[-1] == 50]

    plain, plain_rows = logit_rows_kept(lambda: model(tokens[:, :-1], targets))
    plain.loss.backward()
    plain_grads = {name: p.grad.clone() for name, p in model.named_parameters()}
    model.zero_grad()
    # 33 tokens: chunks of 7, the last of 5; each chunk's logits are recomputed in backward, not kept.
    chunked, chunked_rows = logit_rows_kept(lambda: model(tokens[:, :-1], targets, loss_chunk_tokens=7))
    chunked.loss.backward()
    assert chunked.logits_BTV is None
    assert max(plain_rows) == 33 and chunked_rows == []
    torch.testing.assert_close(chunked.lm_loss, plain.lm_loss, rtol=1e-6, atol=0)
    torch.testing.assert_close(chunked.loss, plain.loss, rtol=1e-6, atol=0)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad, plain_grads[name], rtol=1e-5, atol=1e-7, msg=name)
    hidden_ND, weight_VD = torch.randn(10, 32), torch.randn(50, 32)
    targets_N = torch.randint(0, 50, (10,))
    torch.testing.assert_close(chunked_cross_entropy(hidden_ND, weight_VD, targets_N, 3),
                               F.cross_entropy(hidden_ND @ weight_VD.T, targets_N), rtol=1e-6, atol=0)
