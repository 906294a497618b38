import argparse
import json

import pytest

from trainer import cli, export_hf
from trainer.checkpoint import list_checkpoints
from trainer.model import preset
from trainer.train import check_mesh, read_log


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
    args = parse(["--data", "d", "--output", "o", "--preset", "small", "--set", "num_hidden_layers=4",
                  "--set", "routed_scaling_factor=1.5", "--max-tokens", "2M", "--batch-tokens", "64K",
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
    with pytest.raises(SystemExit):
        parse(["--data", "d", "--output", "o", "--set", "no_such_field=1"])


def test_every_option_has_help():
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    export_hf.add_arguments(parser.add_subparsers().add_parser("export"))
    assert all(action.help for action in parser._actions if action.dest != "help" and action.option_strings)


def test_unusable_mesh_or_resume_path_is_one_line(small_shards, tmp_path):
    from pipeline.config import ConfigError

    base = ["--data", str(small_shards), "--output", str(tmp_path / "run"), "--no-progress"]
    with pytest.raises(ConfigError, match="--ep 2 must divide the number of processes"):
        cli.run(parse(base + ["--ep", "2"]))
    with pytest.raises(ConfigError, match="--ep 4 must divide the 6 routed experts"):
        check_mesh(4, 8, preset("tiny", n_routed_experts=6))
    with pytest.raises(ConfigError, match="not a checkpoint directory"):
        cli.run(parse(base + ["--resume", str(tmp_path)]))
    assert not (tmp_path / "run" / "log.jsonl").exists()


def test_train_then_export_from_the_command_line(small_shards, tmp_path, capsys):
    run_dir = tmp_path / "run"
    argv = ["--data", str(small_shards), "--output", str(run_dir), "--max-tokens", "768", "--batch-tokens", "256",
            "--set", "hidden_size=32", "--set", "num_attention_heads=2", "--checkpoint-every-tokens", "256",
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
