import pytest
import torch

from thresher.trainer.model import PRESETS, Transformer, count_parameters, preset
from thresher.trainer.parallel import GiB, build_mesh, clip_grad_norm_, format_memory, memory_per_rank, parallelize


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
    # The global gradient norm over shards on two meshes is the one process's, and clipping scales alike.
    norm = clip_grad_norm_(list(model.parameters()), 0.01)
    expected_norm = torch.nn.utils.clip_grad_norm_(reference.parameters(), 0.01)
    assert expected_norm > 0.1
    torch.testing.assert_close(norm, expected_norm, rtol=1e-5, atol=0)
    for name, parameter in model.named_parameters():
        torch.testing.assert_close(parameter.grad.full_tensor(), reference_parameters[name].grad, rtol=1e-5, atol=1e-7)
    # Each rank holds its ep block of experts, FSDP-split over dp: 1/world of the experts.
    assert model.layers[1].mlp.experts.gate_up_proj.to_local().shape[0] == config.n_routed_experts // world_size


@pytest.mark.parametrize("world_size, expert_parallel, activation_checkpointing",
                         [(2, 2, False), (4, 2, True)], ids=["ep2", "dp2-ep2-checkpointed"])
def test_expert_parallel_matches_one_process(spawn, tmp_path, world_size, expert_parallel, activation_checkpointing):
    spawn(sharded_matches_one_process, world_size, tmp_path, expert_parallel, activation_checkpointing)


def test_memory_on_paper_adds_up():
    config = PRESETS["medium"]
    total = count_parameters(config)["total"]
    one = memory_per_rank(config, 1, 1, micro_batch_size=4, seq_len=2048, bf16=True)
    eight = memory_per_rank(config, 8, 1, micro_batch_size=4, seq_len=2048, bf16=True)
    experts = memory_per_rank(config, 2, 4, micro_batch_size=4, seq_len=2048, bf16=True)
    # fp32 master weights and gradients, two fp32 AdamW moments, all split over every rank.
    assert one["parameters"] == one["gradients"] == 4 * total / GiB and one["optimizer"] == 8 * total / GiB
    assert eight["optimizer"] == experts["optimizer"] == one["optimizer"] / 8
    assert experts["gathered"] < eight["gathered"]  # a MoE layer gathers only its ep block of experts
    assert eight["activations"] == one["activations"]  # per rank: its own micro-batch
    assert one["total"] == pytest.approx(sum(v for k, v in one.items() if k != "total"))
    # The head's logits dominate; chunking the loss removes all but one chunk of them.
    chunked = memory_per_rank(config, 8, 1, micro_batch_size=4, seq_len=2048, bf16=True, loss_chunk_tokens=1024)
    assert (eight["activations"] - chunked["activations"]) * GiB == (8192 - 1024) * config.vocab_size * (2 + 12)
    checkpointed = memory_per_rank(config, 8, 1, micro_batch_size=4, seq_len=2048, bf16=True,
                                   activation_checkpointing=True)
    assert checkpointed["activations"] < eight["activations"] / 2
    assert memory_per_rank(config, 8, 1, 4, 2048, True, sharded=False)["gathered"] == 0
    assert format_memory(eight, 8, 1).startswith("memory per rank on paper (mesh dp 8 x ep 1): parameters 6.6 GiB")


def test_medium_preset_needs_sharding_and_fits_eight_gpus():
    h200 = 141e9 / GiB  # an H200's 141 GB
    small = memory_per_rank(PRESETS["small"], 1, 1, 4, 2048, bf16=True, sharded=False)
    medium = memory_per_rank(PRESETS["medium"], 1, 1, 4, 2048, bf16=True, sharded=False)
    assert small["total"] < h200 / 2
    assert medium["parameters"] + medium["gradients"] + medium["optimizer"] > 1.4 * h200
    assert memory_per_rank(PRESETS["medium"], 8, 1, 4, 2048, bf16=True)["total"] < 0.6 * h200
    assert memory_per_rank(PRESETS["medium"], 2, 4, 4, 2048, bf16=True, activation_checkpointing=True,
                           loss_chunk_tokens=4096)["total"] < 0.3 * h200
    counts = count_parameters(PRESETS["medium"])
    assert count_parameters(PRESETS["small"])["total"] < counts["total"] < count_parameters(PRESETS["dots.llm1"])["total"]
    assert 2.5e9 < counts["active"] < 2.9e9 and 14e9 < counts["total"] < 14.5e9


def bf16_mixed_precision(rank, world_size):
    config = micro_config()
    torch.manual_seed(0)
    reference = Transformer(config)
    torch.manual_seed(0)
    model = parallelize(Transformer(config), build_mesh("cpu", world_size, 2), bf16=True)
    seen_dtypes = {}

    def record(name, dtype_of):
        def hook(module, inputs, output):
            seen_dtypes.setdefault(name, dtype_of(module, output))
        return hook

    # Before the forward (after FSDP's own pre-forward all-gather): the weight the router computes with.
    model.layers[1].mlp.gate.register_forward_pre_hook(
        lambda module, inputs: seen_dtypes.setdefault("router", module.weight.dtype) and None)
    model.layers[1].mlp.experts.register_forward_hook(record("experts", lambda m, o: o.dtype))
    model.layers[1].self_attn.register_forward_hook(record("attention", lambda m, o: o.dtype))
    tokens_BT = torch.randint(0, 50, (2, 9), generator=torch.Generator().manual_seed(rank))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        output = model(tokens_BT[:, :-1], tokens_BT[:, 1:])
    output.loss.backward()
    expected = reference(tokens_BT[:, :-1], tokens_BT[:, 1:])
    # Parameters gathered in bf16 except the routers (fp32 scores as without sharding); fp32 shards.
    assert seen_dtypes == {"router": torch.float32, "experts": torch.bfloat16, "attention": torch.bfloat16}
    assert all(p.dtype == p.grad.dtype == torch.float32 for p in model.parameters())
    assert abs(output.lm_loss.item() - expected.lm_loss.item()) < 0.02 * expected.lm_loss.item()


def test_bf16_gathers_keep_the_router_in_fp32(spawn, tmp_path):
    spawn(bf16_mixed_precision, 2, tmp_path)
