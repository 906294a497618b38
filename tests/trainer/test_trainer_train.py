import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from thresher.pipeline.config import ConfigError
from thresher.trainer import checkpoint
from thresher.trainer.export_hf import export_checkpoint
from thresher.trainer.model import Transformer, preset
from thresher.trainer.train import (
    TrainConfig,
    batch_tokens_at,
    loss_targets,
    lr_at,
    parameter_groups,
    read_log,
    step_micro_batches,
    train,
)

MICRO_MODEL = dict(hidden_size=32, num_attention_heads=2, intermediate_size=64, moe_intermediate_size=16)
TOKENS_PER_MICRO_BATCH = 8 * 16  # micro_batch_size x seq_len of the small_shards fixture


def run_config(shards, run_dir, **overrides):
    fields = dict(data_dir=str(shards), output_dir=str(run_dir), model_overrides=MICRO_MODEL, micro_batch_size=8,
                  batch_schedule=[(0, 2 * TOKENS_PER_MICRO_BATCH)], max_tokens=12 * 2 * TOKENS_PER_MICRO_BATCH,
                  lr=3e-3, warmup_tokens=4 * TOKENS_PER_MICRO_BATCH, deterministic=True, progress=False)
    fields.update(overrides)
    return TrainConfig(**fields)


def step_losses(run_dir):
    return [record["loss"] for record in read_log(run_dir) if "loss" in record]


def test_wsd_schedule_follows_the_report():
    config = TrainConfig(data_dir="", output_dir="", lr=3e-4, max_tokens=1000, warmup_tokens=100, decay_tokens=200)
    assert lr_at(50, config) == pytest.approx(1.5e-4)
    assert lr_at(100, config) == lr_at(800, config) == pytest.approx(3e-4)  # stable
    assert lr_at(900, config) == pytest.approx(3e-5)  # end of the first decay piece
    assert lr_at(950, config) == pytest.approx(2e-5)
    assert lr_at(1000, config) == pytest.approx(1e-5)


def test_batch_grows_with_tokens_seen():
    schedule = [(0, 64), (6000, 96), (8300, 128)]
    assert [batch_tokens_at(t, schedule) for t in (0, 5999, 6000, 8299, 9000)] == [64, 64, 96, 96, 128]


def test_padding_is_not_predicted():
    rows = torch.tensor([[5, 6, 7, 1, 1], [8, 9, 10, 11, 12]])
    assert loss_targets(rows, None).tolist() == [[6, 7, 1, 1], [9, 10, 11, 12]]
    targets = loss_targets(rows, pad_token_id=1)
    assert targets.tolist() == [[6, 7, -100, -100], [9, 10, 11, 12]]
    model = Transformer(preset("tiny", vocab_size=13, **MICRO_MODEL))
    output = model(rows[:, :-1], targets)
    logits = output.logits_BTV.reshape(-1, 13)
    kept = targets.reshape(-1) != -100
    torch.testing.assert_close(output.lm_loss, torch.nn.functional.cross_entropy(logits[kept], targets.reshape(-1)[kept]))


def test_norms_are_exempt_from_weight_decay():
    model = Transformer(preset("tiny", **MICRO_MODEL))
    decayed, exempt = parameter_groups(model, 0.1)
    assert decayed["weight_decay"] == 0.1 and exempt["weight_decay"] == 0.0
    assert {id(p) for p in exempt["params"]} == {id(m.weight) for m in model.modules() if type(m).__name__ == "RMSNorm"}
    assert any(p is model.embed_tokens.weight for p in decayed["params"])


def test_learns_patterned_data_and_logs(small_shards, tmp_path):
    config = run_config(small_shards, tmp_path / "run", max_tokens=60 * 256, lr=1e-2, warmup_tokens=1024,
                        eval_every_tokens=2560, batch_schedule=[(0, 256), (2560, 512)])
    result = train(config)
    records = read_log(tmp_path / "run")
    steps = [r for r in records if "loss" in r]
    evals = [r["val_loss"] for r in records if "val_loss" in r]
    assert steps[0]["loss"] == pytest.approx(math.log(64), abs=0.3)  # starts at uniform guessing
    assert len(evals) == 6 and evals[-1] < evals[0] - 1.0 and evals[-1] < 1.5  # uniform guessing: ln 64 = 4.16
    assert {"lr", "tokens_seen", "tokens_per_s", "imbalance", "balance_loss", "grad_norm"} <= set(steps[0])
    assert len(steps[0]["imbalance"]) == 2 and all(v >= 1.0 for v in steps[0]["imbalance"])
    assert steps[-1]["batch_tokens"] == 512 and steps[0]["batch_tokens"] == 256
    assert result["tokens_seen"] == config.max_tokens == steps[-1]["tokens_seen"]


def test_resume_gives_identical_losses(small_shards, tmp_path):
    straight = run_config(small_shards, tmp_path / "straight")
    train(straight)
    interrupted = run_config(small_shards, tmp_path / "resumed", stop_at_tokens=straight.max_tokens // 2)
    first = train(interrupted)
    assert first["step"] == 6
    resumed = run_config(small_shards, tmp_path / "resumed", resume="latest")
    train(resumed)
    expected = step_losses(tmp_path / "straight")
    assert len(expected) == 12
    assert step_losses(tmp_path / "resumed") == expected  # bitwise: float equality
    assert not torch.are_deterministic_algorithms_enabled()  # the global switch is put back
    final_straight, _ = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "straight"))
    final_resumed, _ = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "resumed"))
    for name, tensor in final_straight["model"].items():
        assert torch.equal(tensor, final_resumed["model"][name]), name


def test_router_biases_move_only_with_bias_update(small_shards, tmp_path):
    gamma = 0.01
    train(run_config(small_shards, tmp_path / "on", max_tokens=3 * 256, gamma=gamma))
    train(run_config(small_shards, tmp_path / "off", max_tokens=3 * 256, bias_update=False))
    on, _ = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "on"))
    off, _ = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "off"))
    for layer in (1, 2):
        steps_E = on["model"][f"layers.{layer}.mlp.gate.e_score_correction_bias"] / gamma
        assert torch.allclose(steps_E, steps_E.round(), atol=1e-4)  # whole multiples of gamma
        assert steps_E.abs().max() <= 3 + 1e-4 and (steps_E != 0).any()
        assert (off["model"][f"layers.{layer}.mlp.gate.e_score_correction_bias"] == 0).all()


def test_checkpoint_retention(small_shards, tmp_path):
    config = run_config(small_shards, tmp_path / "run", checkpoint_every_tokens=256, keep_last=2,
                        permanent_every_tokens=1024, max_tokens=10 * 256)
    train(config)
    kept = [int(p.name.split("-")[1]) for p in checkpoint.list_checkpoints(tmp_path / "run")]
    # Permanent: 1024, 2048 and the final 2560; the last two ordinary ones: 1792 (2048 is permanent), 2304.
    assert kept == [1024, 1792, 2048, 2304, 2560]
    state, config_dict = checkpoint.load_checkpoint(checkpoint.latest_checkpoint(tmp_path / "run"))
    assert state["step"] == 10 and state["tokens_seen"] == 2560 and state["sequences_read"] == 2560 // 16
    assert config_dict["model"]["hidden_size"] == 32 and config_dict["model"]["vocab_size"] == 64


def test_rejects_batch_not_divisible_into_micro_batches(small_shards, tmp_path):
    with pytest.raises(ConfigError, match="a batch of 300 tokens is not a multiple of micro_batch_size x seq_len x "
                                          "processes = 8 x 16 x 1 = 128: change --batch-tokens or --micro-batch-size"):
        train(run_config(small_shards, tmp_path / "run", batch_schedule=[(0, 256), (512, 300)]))
    assert not (tmp_path / "run").exists()  # before any work: the second batch size is checked at start-up


def train_runs(rank, world_size, runs):
    for fields in runs:
        train(TrainConfig(**fields))


def final_state(run_dir):
    return checkpoint.load_checkpoint(checkpoint.latest_checkpoint(run_dir))[0]


def test_sharded_training_matches_one_process_and_resumes_at_any_world_size(small_shards, tmp_path, spawn):
    """FSDP at 2 ranks, FSDP x experts at 2 x 2: the losses of one process; a checkpoint of the 2-rank run
    resumes at 1, 2 and 4 ranks (another mesh) with the losses of uninterrupted runs at those sizes."""
    half = 5 * 2 * TOKENS_PER_MICRO_BATCH
    common = dict(micro_batch_size=4, checkpoint_every_tokens=half, keep_last=10, max_tokens=2 * half, device="cpu",
                  gamma=0.01, eval_every_tokens=half)

    def fields(name, **overrides):
        return dataclasses.asdict(run_config(small_shards, tmp_path / name, **common, **overrides))

    two_midway = str(checkpoint.checkpoint_dir(tmp_path / "two", half))
    train(TrainConfig(**fields("one")))
    spawn(train_runs, 2, tmp_path, [fields("two"), fields("two-resumed", resume=two_midway)])
    spawn(train_runs, 4, tmp_path, [fields("four", expert_parallel=2),
                                    fields("four-resumed", expert_parallel=2, resume=two_midway)])
    train(TrainConfig(**fields("one-resumed", resume=two_midway)))

    one, two, four = (step_losses(tmp_path / name) for name in ("one", "two", "four"))
    assert len(one) == 10 and one[-1] < one[0] - 0.4  # 160 sequences: more than the 96 of an epoch
    # Same batches, other summation orders (sharded reductions): fp32 rounding apart (measured: relative
    # differences of 1.2e-7 at most), nothing more.
    assert two == pytest.approx(one, rel=2e-6, abs=1e-6)
    assert four == pytest.approx(one, rel=2e-6, abs=1e-6)
    assert step_losses(tmp_path / "two-resumed") == two[5:]  # same size: bitwise
    assert step_losses(tmp_path / "one-resumed") == pytest.approx(one[5:], rel=2e-6, abs=1e-6)
    assert step_losses(tmp_path / "four-resumed") == pytest.approx(four[5:], rel=2e-6, abs=1e-6)

    # Evaluation runs the same 16 validation sequences at every size (16, 8 or 4 per rank).
    val_losses = {name: [r["val_loss"] for r in read_log(tmp_path / name) if "val_loss" in r]
                  for name in ("one", "two", "four", "one-resumed", "four-resumed")}
    assert len(val_losses["one"]) == 2 and val_losses["one"][1] < val_losses["one"][0]
    for name in ("two", "four"):
        assert val_losses[name] == pytest.approx(val_losses["one"], rel=2e-6), name
    assert val_losses["one-resumed"] == pytest.approx(val_losses["one"][1:], rel=2e-6)

    one_state, two_state = final_state(tmp_path / "one"), final_state(tmp_path / "two")
    assert two_state["sequences_read"] == one_state["sequences_read"] == 10 * 16
    for name, tensor in one_state["model"].items():
        if name.endswith("e_score_correction_bias"):
            # The bias update at 2 ranks used the loads of all ranks: one process saw them all.
            assert (tensor != 0).any() and torch.equal(two_state["model"][name], tensor), name
        else:
            torch.testing.assert_close(two_state["model"][name], tensor, rtol=1e-4, atol=1e-5, msg=name)
    start = [r for r in read_log(tmp_path / "four") if r.get("event") == "start"][0]
    assert start["mesh"] == {"dp": 2, "ep": 2} and start["sharded"]

    # train-export reads the 2-rank sharded checkpoint: the Hugging Face model gives the trained model's logits.
    import transformers  # an install requirement (setup.cfg): its absence is a failure, not a skip
    export_checkpoint(tmp_path / "two", tmp_path / "hf", dtype="float32")
    trained = Transformer(preset("tiny", vocab_size=64, **MICRO_MODEL)).eval()
    trained.load_state_dict(two_state["model"])
    hf_model = transformers.Dots1ForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    tokens = torch.randint(0, 64, (2, 16), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        assert (trained(tokens).logits_BTV - hf_model(tokens).logits).abs().max() < 1e-4


def test_a_preset_shorter_than_the_data_takes_its_seq_len(make_shards, patterned, tmp_path, capsys):
    """tiny has max_position_embeddings 1024; the export's default seq_len is 2048."""
    shards = make_shards(tmp_path / "long", {"train": patterned(2, 1100, 64, seed=3)}, seq_len=1100,
                         vocab_size=64, rows_per_shard=2, rows_per_group=2)
    result = train(run_config(shards, tmp_path / "run", micro_batch_size=1, batch_schedule=[(0, 1100)], max_tokens=1100))
    assert result["tokens_seen"] == 1100
    assert "train: preset 'tiny' has max_position_embeddings 1024; using the data's seq_len 1100" in capsys.readouterr().err
    start = read_log(tmp_path / "run")[0]
    assert start["config"]["model"]["max_position_embeddings"] == 1100
    with pytest.raises(ConfigError, match="--set model.max_position_embeddings=1024 is shorter than the data's seq_len 1100"):
        train(run_config(shards, tmp_path / "explicit", micro_batch_size=1, batch_schedule=[(0, 1100)],
                         model_overrides={**MICRO_MODEL, "max_position_embeddings": 1024}))


def test_the_last_step_is_shrunk_to_end_at_max_tokens(small_shards, tmp_path):
    # Steps of 256 tokens; 700 = 2 x 256 + 188, and 188 tokens hold 11 whole sequences of 16.
    result = train(run_config(small_shards, tmp_path / "run", max_tokens=700))
    steps = [r for r in read_log(tmp_path / "run") if "loss" in r]
    assert [r["batch_tokens"] for r in steps] == [256, 256, 176]
    assert result["tokens_seen"] == 688 and checkpoint.load_checkpoint(result["checkpoint"])[0]["sequences_read"] == 43
    assert json.loads((Path(result["checkpoint"]) / "meta.json").read_text())["permanent"]  # the final model
    assert step_micro_batches(256, 188, 8, 16, 1) == [8, 3]
    assert step_micro_batches(256, 188, 4, 16, 2) == [4, 1]  # 2 ranks: 5 sequences each
    assert step_micro_batches(256, 1000, 8, 16, 1) == [8, 8]


def test_a_tokenizer_without_pad_still_learns_to_end_documents():
    """pad == EOS: the EOS closing a document stays a target, the padding after it does not."""
    rows = torch.tensor([[5, 6, 0, 7, 8, 0, 0, 0], [9, 0, 4, 3, 2, 1, 0, 0]])
    assert loss_targets(rows, pad_token_id=0, eos_token_id=0).tolist() == [
        [6, 0, 7, 8, 0, -100, -100], [0, 4, 3, 2, 1, 0, -100]]
    # A pad token of its own: every pad target is masked, every EOS kept.
    rows = torch.tensor([[5, 6, 0, 7, 0, 1, 1]])
    assert loss_targets(rows, pad_token_id=1, eos_token_id=0).tolist() == [[6, 0, 7, 0, -100, -100]]


def test_splits_are_checked_before_any_work(make_shards, patterned, tmp_path, capsys):
    no_validation = make_shards(tmp_path / "no-val", {"train": patterned(16, 16, 64, seed=1), "validation": []},
                                seq_len=16, vocab_size=64, rows_per_shard=16, rows_per_group=8)
    with pytest.raises(ConfigError, match="--eval-every-tokens: .* has an empty validation split: export with a larger "
                                          "export.validation_fraction, or drop --eval-every-tokens"):
        train(run_config(no_validation, tmp_path / "a", eval_every_tokens=256))
    assert not (tmp_path / "a").exists()
    train(run_config(no_validation, tmp_path / "b", max_tokens=256))
    assert "has an empty validation split (raise export.validation_fraction" in capsys.readouterr().err
    no_train = make_shards(tmp_path / "no-train", {"train": [], "validation": patterned(4, 16, 64, seed=1)},
                           seq_len=16, vocab_size=64, rows_per_shard=16, rows_per_group=8)
    with pytest.raises(ConfigError, match="the train split holds no sequences"):
        train(run_config(no_train, tmp_path / "c"))


def test_validation_loss_is_on_the_console(small_shards, tmp_path, capsys):
    train(run_config(small_shards, tmp_path / "run", max_tokens=512, eval_every_tokens=256, progress=True))
    err = capsys.readouterr().err
    logged = [r["val_loss"] for r in read_log(tmp_path / "run") if "val_loss" in r]
    assert len(logged) == 2
    for record in (r for r in read_log(tmp_path / "run") if "val_loss" in r):
        assert f"step {record['step']} | tokens {record['tokens_seen']:,} | val_loss {record['val_loss']:.4f}" in err


def evaluate_at_two_ranks(rank, world_size, fields):
    train(TrainConfig(**fields))


def test_a_validation_split_smaller_than_the_ranks_is_evaluated_at_two(make_shards, patterned, tmp_path, spawn):
    """One validation sequence (one row group) and 2 ranks: rank 1 evaluates nothing, the loss is one process's."""
    shards = make_shards(tmp_path / "shards", {"train": patterned(32, 16, 64, seed=1),
                                               "validation": patterned(1, 16, 64, seed=2)},
                         seq_len=16, vocab_size=64, rows_per_shard=32, rows_per_group=8)
    common = dict(micro_batch_size=4, batch_schedule=[(0, 128)], max_tokens=256, eval_every_tokens=128, device="cpu")
    train(run_config(shards, tmp_path / "one", **common))
    spawn(evaluate_at_two_ranks, 2, tmp_path, dataclasses.asdict(run_config(shards, tmp_path / "two", **common)))
    one, two = ([r["val_loss"] for r in read_log(tmp_path / name) if "val_loss" in r] for name in ("one", "two"))
    assert len(two) == 2 and None not in two
    assert two == pytest.approx(one, rel=2e-6)
    assert checkpoint.latest_checkpoint(tmp_path / "two").name == "tokens-000000000000256"


@pytest.mark.timeout(120)
def test_a_second_training_run_on_one_output_is_refused_before_any_work(small_shards, tmp_path):
    from lock_holder import hold_lock

    holder = hold_lock(tmp_path / "run")  # another `thresher train` writing the run directory
    try:
        with pytest.raises(ConfigError, match=rf"^{tmp_path}/run is in use by another thresher run \(host .*pid {holder.pid}"):
            train(run_config(small_shards, tmp_path / "run"))
        assert sorted(path.name for path in (tmp_path / "run").iterdir()) == ["_LOCK"]  # no log, no checkpoint
    finally:
        holder.stdin.close()
        holder.wait(timeout=60)
