import argparse
import json

import pytest

from thresher.pipeline.config import ConfigError
from thresher.trainer import cli, export_hf
from thresher.trainer.checkpoint import list_checkpoints
from thresher.trainer.model import preset
from thresher.trainer.train import TrainConfig, check_mesh, read_log


def parse(argv, add=cli.add_arguments):
    parser = argparse.ArgumentParser()
    add(parser)
    return parser.parse_args(argv)


def test_counts_and_schedules():
    assert cli.parse_count("64M") == 64_000_000
    assert cli.parse_count("8.3T") == 8_300_000_000_000
    assert cli.parse_count("1e6") == 1_000_000 and cli.parse_count("4096") == 4096
    assert cli.parse_batch_schedule("6T:96M,0:64M") == [(0, 64_000_000), (6_000_000_000_000, 96_000_000)]
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_batch_schedule("6T:96M")
    with pytest.raises(argparse.ArgumentTypeError):
        cli.parse_count("lots")


def test_options_reach_the_train_config():
    args = parse(["--data", "d", "--output", "o", "--preset", "small", "--set", "model.num_hidden_layers=4",
                  "--set", "model.routed_scaling_factor=1.5", "--max-tokens", "2M", "--batch-tokens", "64K",
                  "--no-bias-update", "--gamma", "0.01", "--decay-lrs", "1e-4,1e-5", "--bf16", "--compile"])
    config = cli.train_config(args)
    assert config.model_overrides == {"num_hidden_layers": 4, "routed_scaling_factor": 1.5}
    assert config.max_tokens == 2_000_000 and config.batch_schedule == [(0, 64_000)]
    assert config.bias_update is False and config.gamma == 0.01 and config.decay_lrs == (1e-4, 1e-5)
    assert config.bf16 and config.compile and config.preset == "small"
    assert not config.fsdp and config.expert_parallel == 1 and config.loss_chunk_tokens is None
    sharded = cli.train_config(parse(["--data", "d", "--output", "o", "--preset", "medium", "--fsdp", "--ep", "4",
                                      "--activation-checkpointing", "--loss-chunk-tokens", "4K"]))
    assert sharded.fsdp and sharded.expert_parallel == 4 and sharded.activation_checkpointing
    assert sharded.loss_chunk_tokens == 4000 and sharded.preset == "medium"
    with pytest.raises(ConfigError, match="model.FIELD=VALUE with FIELD one of"):
        cli.train_config(parse(["--data", "d", "--output", "o", "--set", "model.no_such_field=1"]))


def test_set_takes_dotted_model_keys_and_the_old_form_is_one_line(capsys, tmp_path):
    from thresher.jobs.cli import main

    base = ["train", "--data", str(tmp_path), "--output", str(tmp_path / "run")]
    assert main(base + ["--set", "hidden_size=32"]) == 2
    assert capsys.readouterr().err == ("thresher train: error: --set hidden_size=32: model fields are dotted keys now, "
                                       "write --set model.hidden_size=32\n")
    assert main(base + ["--set", "export.seq_len=64"]) == 2
    assert "takes model.FIELD=VALUE" in capsys.readouterr().err
    assert main(base + ["--set", "model.hidden_size=wide"]) == 2
    assert capsys.readouterr().err == "thresher train: error: --set model.hidden_size=wide: model.hidden_size wants a number\n"
    assert not (tmp_path / "run").exists()


def test_cli_defaults_are_the_train_config_defaults():
    assert cli.train_config(parse(["--data", "d", "--output", "o"])) == TrainConfig(data_dir="d", output_dir="o")


def test_every_option_has_help():
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    export_hf.add_arguments(parser.add_subparsers().add_parser("export"))
    assert all(action.help for action in parser._actions if action.dest != "help" and action.option_strings)


def test_unusable_mesh_or_resume_path_is_one_line(small_shards, tmp_path):
    base = ["--data", str(small_shards), "--output", str(tmp_path / "run"), "--no-progress"]
    with pytest.raises(ConfigError, match="--ep 2 must divide the number of processes"):
        cli.run(parse(base + ["--ep", "2"]))
    with pytest.raises(ConfigError, match="--ep 4 must divide the 6 routed experts"):
        check_mesh(4, 8, preset("tiny", n_routed_experts=6))
    with pytest.raises(ConfigError, match="not a checkpoint directory"):
        cli.run(parse(base + ["--resume", str(tmp_path)]))
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_a_checkpoint_config_that_builds_a_model_too_big_for_the_machine_is_one_line(small_shards, tmp_path):
    """{"model": {}} is the full dots.llm1 (hundreds of GiB): refused on paper before a weight is allocated."""
    checkpoint = tmp_path / "run" / "checkpoints" / "tokens-000000000000256"
    checkpoint.mkdir(parents=True)
    (checkpoint / ".metadata").write_bytes(b"")
    (checkpoint / "meta.json").write_text('{"step": 1, "tokens_seen": 256, "sequences_read": 16, "permanent": false}')
    (checkpoint / "config.json").write_text('{"model": {}}')
    base = ["--data", str(small_shards), "--output", str(tmp_path / "run"), "--no-progress", "--resume", "latest"]
    with pytest.raises(ConfigError, match=r"the model needs about \d+\.\d GiB per process on paper .* and this machine has"):
        cli.run(parse(base))
    (checkpoint / "config.json").write_text('{"model": {"hidden_sise": 8}}')
    with pytest.raises(ConfigError, match="its config.json holds no model configuration thresher wrote"):
        cli.run(parse(base))


def test_train_then_export_from_the_command_line(small_shards, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["--data", str(small_shards), "--output", str(run_dir), "--max-tokens", "768", "--batch-tokens", "256",
            "--set", "model.hidden_size=32", "--set", "model.num_attention_heads=2", "--checkpoint-every-tokens", "256",
            "--keep-last", "1", "--no-progress"]
    assert cli.run(parse(argv)) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["tokens_seen"] == 768
    assert "memory per rank on paper (mesh dp 1 x ep 1): parameters" in captured.err
    assert len([r for r in read_log(run_dir) if "loss" in r]) == 3
    assert [p.name for p in list_checkpoints(run_dir)] == ["tokens-000000000000512", "tokens-000000000000768"]
    assert cli.run(parse(argv[:5] + ["1024"] + argv[6:] + ["--resume", "latest"])) == 0
    assert len([r for r in read_log(run_dir) if "loss" in r]) == 4

    assert export_hf.run(parse([str(run_dir), "--output", str(tmp_path / "hf")], export_hf.add_arguments)) == 0
    assert (tmp_path / "hf" / "model.safetensors").is_file() and (tmp_path / "hf" / "config.json").is_file()


def test_default_chain_run_train_export_generate(sample_run, thresher, tmp_path):
    """`thresher run --sample` -> `train --preset tiny` -> `train-export` -> transformers' text-generation
    pipeline, with the default config and no flag but the training length (one step of the sample's 16
    sequences of 2048 tokens; tiny's own max_position_embeddings is 1024)."""
    import transformers  # an install requirement (setup.cfg): its absence is a failure, not a skip
    manifest = json.loads((sample_run / "export" / "manifest.json").read_text())
    assert manifest["seq_len"] == 2048 and manifest["splits"]["validation"]["sequences"] == 0
    printed = (sample_run.parent / "stderr.txt").read_text()
    assert "export: warning: the validation split is empty" in printed
    assert f"tokenizer: the vocabulary has {manifest['vocab_size']:,} tokens, fewer than export.vocab_size 32,768" \
        in printed
    assert manifest["columns"]["tokens"].endswith("input_ids = tokens[:-1], labels = tokens[1:]")
    run_dir, hf_dir = tmp_path / "train", tmp_path / "hf"
    trained = thresher("train", "--data", str(sample_run / "export"), "--preset", "tiny", "--output", str(run_dir),
                       "--max-tokens", "32K")
    assert trained.returncode == 0, trained.stderr[-3000:]
    assert "train: preset 'tiny' has max_position_embeddings 1024; using the data's seq_len 2048" in trained.stderr
    assert "has an empty validation split" in trained.stderr
    # 32K is 32,000 tokens: 15 whole sequences of 2048 (30,720), the last step shrunk; never past it.
    assert json.loads(trained.stdout.splitlines()[-1])["tokens_seen"] == 15 * 2048
    exported = thresher("train-export", str(run_dir), "--output", str(hf_dir))
    assert exported.returncode == 0, exported.stderr[-3000:]
    assert (hf_dir / "tokenizer.json").read_bytes() == (sample_run / "tokenizer" / "tokenizer.json").read_bytes()
    generation = json.loads((hf_dir / "generation_config.json").read_text())
    assert generation["eos_token_id"] == manifest["eos_token_id"] and generation["pad_token_id"] == manifest["pad_token_id"]

    generate = transformers.pipeline("text-generation", model=str(hf_dir), device="cpu")
    assert generate.tokenizer.eos_token_id == manifest["eos_token_id"]
    text = generate("The weather today", max_new_tokens=8, do_sample=False)[0]["generated_text"]
    assert text.startswith("The weather today") and len(text) > len("The weather today")


def test_torchrun_two_ranks_through_an_evaluation(make_shards, patterned, thresher, tmp_path):
    """torchrun, 2 CPU ranks (gloo), a validation split of one sequence in one row group: evaluates, prints
    val_loss, checkpoints."""
    shards = make_shards(tmp_path / "shards", {"train": patterned(32, 16, 64, seed=1),
                                               "validation": patterned(1, 16, 64, seed=2)},
                         seq_len=16, vocab_size=64, rows_per_shard=32, rows_per_group=8)
    run_dir = tmp_path / "run"
    done = thresher("train", "--data", str(shards), "--output", str(run_dir), "--max-tokens", "256",
                    "--batch-tokens", "128", "--micro-batch-size", "4", "--eval-every-tokens", "128",
                    "--set", "model.hidden_size=32", "--set", "model.num_attention_heads=2",
                    launcher=("-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2"))
    assert done.returncode == 0, done.stderr[-3000:]
    evaluations = [r for r in read_log(run_dir) if "val_loss" in r]
    assert [r["tokens_seen"] for r in evaluations] == [128, 256] and all(r["val_loss"] > 0 for r in evaluations)
    for record in evaluations:
        assert f"step {record['step']} | tokens {record['tokens_seen']:,} | val_loss {record['val_loss']:.4f}" in done.stderr
    assert [r for r in read_log(run_dir) if r.get("event") == "start"][0]["world_size"] == 2
    assert [p.name for p in list_checkpoints(run_dir)] == ["tokens-000000000000256"]
