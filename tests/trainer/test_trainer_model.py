import pytest
import torch
import torch.nn.functional as F

from trainer.model import (
    PRESETS,
    Transformer,
    count_parameters,
    load_imbalance,
    preset,
    update_router_biases,
)


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
