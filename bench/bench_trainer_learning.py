"""Does the trainer learn? Train `tiny` on CPU for a few minutes; print the validation loss curve
beside the unigram entropy of the training tokens (what a model without context would reach).

    python bench/bench_trainer_learning.py --data SHARDS_DIR      # shards from `thresher export`
    python bench/bench_trainer_learning.py                        # byte-level shards of the DCLM sample

Without --data, it writes shards itself: the `text` of ../shared/data/quality/dclm/*.jsonl as
UTF-8 bytes (token = byte value, 256 = end of document), documents concatenated and cut into
rows of seq_len + 1, one document in 20 held out for validation.
"""

from __future__ import annotations

import argparse
import glob
import json
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, tiny_data  # noqa: E402
from thresher.schemas.tokens import MANIFEST_FORMAT, SHARD  # noqa: E402
from thresher.trainer.data import TokenShardReader, read_manifest  # noqa: E402
from thresher.trainer.train import TrainConfig, read_log, train  # noqa: E402

DEFAULT_TEXT = str(REPO.parent / "shared/data/quality/dclm/*.jsonl")  # ../shared beside the repo
SMOKE_TEXT = "quality/dclm/*.jsonl"  # the same files in the smoke run's tiny data
BYTE_EOS = 256


def build_byte_shards(text_glob: str, output: Path, seq_len: int, rows_per_group: int = 64) -> Path:
    """Byte-level token shards (vocab 257) of the `text` field of JSON-lines files, per schemas/tokens.py."""
    streams: dict[str, list[int]] = {"train": [], "validation": []}
    documents = Counter()
    for path in sorted(glob.glob(text_glob)):
        for line_number, line in enumerate(Path(path).read_text().splitlines()):
            split = "validation" if line_number % 20 == 19 else "train"
            streams[split].extend(json.loads(line)["text"].encode("utf-8"))
            streams[split].append(BYTE_EOS)
            documents[split] += 1
    splits = {}
    for split, stream in streams.items():
        rows = [stream[i:i + seq_len + 1] for i in range(0, len(stream) - seq_len, seq_len + 1)]
        relative = f"{split}/shard-00000.parquet"
        (output / split).mkdir(parents=True, exist_ok=True)
        table = pa.Table.from_pydict({"tokens": rows, "doc_offsets": [[0]] * len(rows)}, schema=SHARD)
        pq.write_table(table, output / relative, row_group_size=rows_per_group)
        tokens = len(rows) * (seq_len + 1)
        splits[split] = {"shards": [{"path": relative, "sequences": len(rows), "tokens": tokens}],
                         "sequences": len(rows), "tokens": tokens, "documents": documents[split]}
    manifest = {"format": MANIFEST_FORMAT, "seq_len": seq_len, "token_dtype": "int32", "vocab_size": 257,
                "eos_token_id": BYTE_EOS, "pack_mode": "concat", "tokenizer": {"name": "bytes", "sha256": ""},
                "config_hash": "", "seed": 0, "splits": splits, "upstream_stats": {}}
    (output / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return output


def unigram_entropy(data_dir: Path) -> float:
    """Entropy (nats per token) of the training split's token frequencies; one epoch, streamed."""
    reader = TokenShardReader(data_dir, "train", loop=False)
    counts = torch.zeros(0, dtype=torch.float64)
    while (rows := reader.next_rows(1024)) is not None:
        batch_counts = torch.bincount(rows[:, 1:].reshape(-1)).double()
        if len(batch_counts) > len(counts):
            counts = torch.cat([counts, counts.new_zeros(len(batch_counts) - len(counts))])
        counts[:len(batch_counts)] += batch_counts
    probabilities = counts[counts > 0] / counts.sum()
    return float(-(probabilities * probabilities.log()).sum())


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="token shards directory (default: byte-level shards of --text)")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="JSON-lines files with a `text` field, when no --data")
    parser.add_argument("--seq-len", type=int, default=128, help="sequence length of the byte-level shards")
    parser.add_argument("--output", help="run directory (default: a temporary one)")
    parser.add_argument("--max-tokens", type=int, default=2_000_000, help="training tokens")
    parser.add_argument("--batch-tokens", type=int,
                        help="tokens per optimizer step (default: one micro-batch, micro-batch size x seq_len)")
    parser.add_argument("--micro-batch-size", type=int, default=16, help="sequences per forward pass")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--evals", type=int, default=10, help="validation points on the curve")
    parser.add_argument("--eval-sequences", type=int, default=128, help="validation sequences per point")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (more only helps on idle cores)")
    add_smoke_flag(parser)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        announce()
        args.text, args.data, args.seq_len = str(tiny_data() / SMOKE_TEXT), None, 32
        args.max_tokens, args.batch_tokens, args.micro_batch_size, args.evals, args.eval_sequences = 4096, 1024, 8, 2, 8
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory(prefix="bench_trainer_learning-") as workspace:
        data_dir = Path(args.data) if args.data else build_byte_shards(args.text, Path(workspace) / "shards", args.seq_len)
        run_dir = Path(args.output) if args.output else Path(workspace) / "run"
        entropy = unigram_entropy(data_dir)
        batch_tokens = args.batch_tokens or args.micro_batch_size * int(read_manifest(data_dir)["seq_len"])
        config = TrainConfig(data_dir=str(data_dir), output_dir=str(run_dir), preset="tiny", max_tokens=args.max_tokens,
                             lr=args.lr, batch_schedule=[(0, batch_tokens)], micro_batch_size=args.micro_batch_size,
                             warmup_tokens=args.max_tokens // 20, eval_every_tokens=args.max_tokens // args.evals,
                             eval_sequences=args.eval_sequences, device="cpu", progress=False)
        started = time.perf_counter()
        train(config)
        minutes = (time.perf_counter() - started) / 60
        records = read_log(run_dir)
    curve = [(r["tokens_seen"], r["val_loss"]) for r in records if "val_loss" in r]
    train_losses = [r["loss"] for r in records if "loss" in r]
    source = f"--data {args.data}" if args.data else f"byte-level shards of {args.text}"
    print(f"data: {source}; unigram entropy of training tokens: {entropy:.3f} nats/token "
          f"({entropy / math.log(2):.3f} bits)")
    print(f"trained `tiny` on {args.max_tokens:,} tokens (batch {batch_tokens:,}) in {minutes:.1f} CPU minutes "
          f"(first/last train loss {train_losses[0]:.3f}/{train_losses[-1]:.3f})")
    print("| tokens seen | validation loss (nats) | vs unigram entropy |")
    print("|---:|---:|---:|")
    for tokens, loss in curve:
        print(f"| {tokens:,} | {loss:.3f} | {loss - entropy:+.3f} |")
    return 0

if __name__ == "__main__":
    sys.exit(main())
