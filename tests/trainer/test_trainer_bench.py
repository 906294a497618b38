"""Smoke tests of the trainer benchmark scripts at toy sizes (their real runs take minutes)."""

import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch

BENCH_DIR = Path(__file__).resolve().parents[2] / "bench"


def load_script(name, monkeypatch):
    monkeypatch.syspath_prepend(str(BENCH_DIR))  # the balance script imports the learning one
    spec = importlib.util.spec_from_file_location(name, BENCH_DIR / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def text_files(tmp_path):
    lines = [json.dumps({"text": f"document {i}: the cat sat on the mat. " * 5}) for i in range(40)]
    (tmp_path / "docs.jsonl").write_text("\n".join(lines) + "\n")
    return str(tmp_path / "*.jsonl")


def test_byte_shards_and_learning_curve(text_files, tmp_path, monkeypatch, capsys):
    learning = load_script("bench_trainer_learning", monkeypatch)
    shards = learning.build_byte_shards(text_files, tmp_path / "shards", seq_len=32)
    manifest = json.loads((shards / "manifest.json").read_text())
    assert manifest["vocab_size"] == 257 and manifest["splits"]["validation"]["documents"] == 2
    entropy = learning.unigram_entropy(shards)
    assert 1.0 < entropy < math.log(257)
    assert learning.main(["--data", str(shards), "--max-tokens", "4096", "--batch-tokens", "1024",
                          "--micro-batch-size", "8", "--evals", "2", "--eval-sequences", "8"]) == 0
    out = capsys.readouterr().out
    assert f"{entropy:.3f} nats/token" in out and out.count("\n| ") == 3  # header + 2 validation points


def test_balance_on_and_off(text_files, monkeypatch, capsys):
    balance = load_script("bench_trainer_balance", monkeypatch)
    assert balance.main(["--text", text_files, "--seq-len", "32", "--max-tokens", "1024",
                         "--batch-tokens", "512", "--experts", "8"]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| o")]
    assert [row.split("|")[1].strip() for row in rows] == ["on", "off"]


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the no-GPU message")
def test_gpu_bench_needs_a_gpu(monkeypatch, capsys):
    gpu = load_script("bench_trainer_gpu", monkeypatch)
    assert gpu.peak_tflops("NVIDIA H100 80GB HBM3") == 989.0 and gpu.peak_tflops("mystery") is None
    assert gpu.main([]) == 1
    assert "needs a GPU" in capsys.readouterr().err


@pytest.mark.parametrize("options", [["--loss-chunk-tokens", "24"], ["--fsdp", "--expert-dispatch", "--loss-chunk-tokens", "24"]],
                         ids=["plain-chunked", "fsdp-expert-dispatch"])
def test_gpu_bench_model_paths_train_on_cpu(monkeypatch, options):
    """The benchmark's model set-ups (run only on a GPU) give one process's losses on CPU, in fp32."""
    import torch.distributed as dist

    gpu = load_script("bench_trainer_gpu", monkeypatch)
    cpu = torch.device("cpu")
    _, reference, _, _ = gpu.build(gpu.parse_args(["--preset", "tiny", "--seq-len", "16"]), cpu)
    args = gpu.parse_args(["--preset", "tiny", "--seq-len", "16", *options])
    try:
        config, model, forward, _ = gpu.build(args, cpu)  # the same initialisation (seed 0)
        tokens_BT1 = torch.randint(0, config.vocab_size, (4, 17), generator=torch.Generator().manual_seed(0))
        output = forward(tokens_BT1[:, :-1], tokens_BT1[:, 1:], loss_chunk_tokens=args.loss_chunk_tokens)
        output.loss.backward()
        expected = reference(tokens_BT1[:, :-1], tokens_BT1[:, 1:])
        expected.loss.backward()
        torch.testing.assert_close(output.loss, expected.loss, rtol=1e-5, atol=0)
        reference_grads = {name: p.grad for name, p in reference.named_parameters()}
        for name, parameter in model.named_parameters():
            gradient = parameter.grad.full_tensor() if hasattr(parameter.grad, "full_tensor") else parameter.grad
            torch.testing.assert_close(gradient, reference_grads[name], rtol=1e-4, atol=1e-6, msg=name)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
