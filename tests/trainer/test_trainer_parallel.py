import pytest
import torch

from trainer.model import Transformer, preset
from trainer.parallel import build_mesh, parallelize


def micro_config(**overrides):
    fields = dict(vocab_size=50, hidden_size=32, num_hidden_layers=3, num_attention_heads=2, intermediate_size=48,
                  moe_intermediate_size=16, n_routed_experts=8, num_experts_per_tok=3, initializer_range=0.2,
                  balance_loss_alpha=1e-2)
    fields.update(overrides)
    return preset("tiny", **fields)


def sharded_matches_one_process(rank, world_size, expert_parallel, activation_checkpointing):
    """Each rank's outputs and the gathered gradients equal one unsharded model's over all ranks' batches."""
    config = micro_config()
    torch.manual_seed(0)
    reference = Transformer(config)
    torch.manual_seed(0)
    model = parallelize(Transformer(config), build_mesh("cpu", world_size, expert_parallel), bf16=False,
                        activation_checkpointing=activation_checkpointing)
    tokens_WBT = torch.randint(0, 50, (world_size, 2, 9), generator=torch.Generator().manual_seed(1))
    experts_per_rank = config.n_routed_experts // expert_parallel
    scenarios = {"idle expert": {5: -10.0}, "every token to the first ep rank": dict.fromkeys(range(experts_per_rank), 10.0)}
    for scenario, biases in scenarios.items():
        for router in reference.routers() + model.routers():
            router.e_score_correction_bias.zero_()
            for expert, bias in biases.items():
                router.e_score_correction_bias[expert] = bias
        reference.zero_grad(set_to_none=True)
        model.zero_grad(set_to_none=True)
        expected = [reference(tokens_WBT[r, :, :-1], tokens_WBT[r, :, 1:]) for r in range(world_size)]
        (sum(output.loss for output in expected) / world_size).backward()
        output = model(tokens_WBT[rank, :, :-1], tokens_WBT[rank, :, 1:])
        output.loss.backward()

        all_loads_LE = sum(out.tokens_per_expert_LE for out in expected)
        if scenario == "idle expert":
            assert (all_loads_LE[:, 5] == 0).all() and (all_loads_LE > 0).sum() >= 12
        else:
            assert (all_loads_LE[:, experts_per_rank:] == 0).all()
        assert torch.equal(output.tokens_per_expert_LE, expected[rank].tokens_per_expert_LE), scenario
        torch.testing.assert_close(output.logits_BTV, expected[rank].logits_BTV, rtol=1e-5, atol=1e-5)
        torch.testing.assert_close(output.loss, expected[rank].loss, rtol=1e-5, atol=1e-6)
        reference_parameters = dict(reference.named_parameters())
        for name, parameter in model.named_parameters():
            gradient = parameter.grad.full_tensor()
            assert gradient.shape == reference_parameters[name].shape, name
            torch.testing.assert_close(gradient, reference_parameters[name].grad, rtol=1e-5, atol=1e-6,
                                       msg=lambda m, name=name, scenario=scenario: f"{scenario}: {name}: {m}")
    # Each rank holds its ep block of experts, FSDP-split over dp: 1/world of the experts.
    assert model.layers[1].mlp.experts.gate_up_proj.to_local().shape[0] == config.n_routed_experts // world_size


@pytest.mark.parametrize("world_size, expert_parallel, activation_checkpointing",
                         [(2, 2, False), (4, 2, True)], ids=["ep2", "dp2-ep2-checkpointed"])
def test_expert_parallel_matches_one_process(spawn, tmp_path, world_size, expert_parallel, activation_checkpointing):
    spawn(sharded_matches_one_process, world_size, tmp_path, expert_parallel, activation_checkpointing)
