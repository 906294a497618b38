"""Token shards written here, following schemas/tokens.py, so the trainer tests need no export job."""

from __future__ import annotations

import json
import os
import random
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from thresher.schemas.tokens import MANIFEST_FORMAT, SHARD


def write_token_shards(directory: Path, splits: dict[str, list[list[int]]], seq_len: int, vocab_size: int,
                       rows_per_shard: int, rows_per_group: int) -> Path:
    """Write each split's rows (seq_len + 1 tokens each) as Parquet shards plus manifest.json."""
    manifest_splits = {}
    for split, rows in splits.items():
        shards = []
        for index, start in enumerate(range(0, len(rows), rows_per_shard)):
            chunk = rows[start:start + rows_per_shard]
            relative = f"{split}/shard-{index:05d}.parquet"
            (directory / split).mkdir(parents=True, exist_ok=True)
            table = pa.Table.from_pydict({"tokens": chunk, "doc_offsets": [[0]] * len(chunk)}, schema=SHARD)
            pq.write_table(table, directory / relative, row_group_size=rows_per_group)
            shards.append({"path": relative, "sequences": len(chunk), "tokens": len(chunk) * (seq_len + 1)})
        manifest_splits[split] = {"shards": shards, "sequences": len(rows), "tokens": len(rows) * (seq_len + 1),
                                  "documents": len(rows)}
    manifest = {"format": MANIFEST_FORMAT, "seq_len": seq_len, "token_dtype": "int32", "vocab_size": vocab_size,
                "eos_token_id": 0, "pack_mode": "concat", "tokenizer": {"name": "test", "sha256": ""},
                "config_hash": "", "seed": 0, "splits": manifest_splits, "upstream_stats": {}}
    (directory / "manifest.json").write_text(json.dumps(manifest))
    return directory


def patterned_rows(count: int, seq_len: int, vocab_size: int, seed: int) -> list[list[int]]:
    """Learnable rows: each counts upward by a per-row stride (mod vocab) from a random start."""
    rng = random.Random(seed)
    rows = []
    for _ in range(count):
        start, stride = rng.randrange(vocab_size), rng.choice([1, 2, 3])
        rows.append([(start + stride * i) % vocab_size for i in range(seq_len + 1)])
    return rows


@pytest.fixture
def make_shards():
    return write_token_shards


@pytest.fixture
def patterned():
    return patterned_rows


@pytest.fixture
def small_shards(tmp_path) -> Path:
    """Train 96 rows (3 shards x 4 row groups of 8), validation 16 rows; seq_len 16, vocab 64."""
    return write_token_shards(tmp_path / "shards",
                              {"train": patterned_rows(96, 16, 64, seed=1), "validation": patterned_rows(16, 16, 64, seed=2)},
                              seq_len=16, vocab_size=64, rows_per_shard=32, rows_per_group=8)


@pytest.fixture(autouse=True)
def one_thread():
    """Single-threaded math: faster on the shared 2-core machine and bitwise repeatable."""
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture
def spawn():
    return spawn_ranks


def spawn_ranks(function, world_size: int, tmp_path: Path, *args) -> None:
    """Run function(rank, world_size, *args) in world_size fresh processes joined by a gloo process group.

    The function must be importable (defined at a test module's top level); an exception in any
    rank fails the caller with that rank's traceback.
    """
    init_file = tmp_path / f"gloo-init-{random.randrange(1 << 30)}"
    torch.multiprocessing.spawn(_join_and_run, args=(world_size, str(init_file), function, args), nprocs=world_size)


def _join_and_run(rank: int, world_size: int, init_file: str, function, args) -> None:
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world_size)
    try:
        function(rank, world_size, *args)
    finally:
        dist.destroy_process_group()


def run_thresher(*argv: str, launcher: tuple[str, ...] = (), timeout: int = 600) -> subprocess.CompletedProcess:
    """`thresher ARGV...` as a user runs it, in a fresh Python with this checkout's code and one math
    thread per process; `launcher` goes before it (e.g. torchrun's module and options)."""
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]), "OMP_NUM_THREADS": "1"}
    # torchrun starts a script file (the installed `thresher`) in each process; alone, `-c` does the same.
    entry = [str(Path(sys.executable).parent / "thresher")] if launcher else \
        ["-c", "import sys; from thresher.jobs.cli import main; sys.exit(main())"]
    command = [sys.executable, *launcher, *entry, *argv]
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.fixture
def thresher():
    return run_thresher


@pytest.fixture(scope="session")
def sample_run(tmp_path_factory) -> Path:
    """`thresher run --sample` with the default config: the run directory (its export/ is the trainer's data;
    what the run printed on stderr is beside it, in stderr.txt)."""
    out = tmp_path_factory.mktemp("sample-run") / "run"
    done = run_thresher("run", "--sample", "--output", str(out), timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    (out.parent / "stderr.txt").write_text(done.stderr)
    return out
