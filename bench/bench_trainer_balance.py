"""Auxiliary-loss-free balancing: per-layer expert load imbalance (max load / mean load) of the
same `tiny` run with the router bias update on and off.

    python bench/bench_trainer_balance.py [--data SHARDS_DIR]

Without --data it trains on byte-level shards of the DCLM sample (see bench_trainer_learning.py).
Both runs share seed, data order and length; only `bias_update` differs. The sequence-wise
balance loss stays at its small default weight in both.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import torch
from bench_trainer_learning import DEFAULT_TEXT, SMOKE_TEXT, build_byte_shards

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, tiny_data  # noqa: E402
from thresher.trainer.data import read_manifest  # noqa: E402
from thresher.trainer.train import TrainConfig, read_log, train  # noqa: E402


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="token shards directory (default: byte-level shards of --text)")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="JSON-lines files with a `text` field, when no --data")
    parser.add_argument("--seq-len", type=int, default=128, help="sequence length of the byte-level shards")
    parser.add_argument("--max-tokens", type=int, default=1_000_000, help="training tokens per run")
    parser.add_argument("--batch-tokens", type=int,
                        help="tokens per optimizer step (default: one micro-batch of 16 sequences)")
    parser.add_argument("--experts", type=int, default=16, help="routed experts (top-2 of them chosen)")
    parser.add_argument("--gamma", type=float, default=1e-3, help="router bias update speed")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (more only helps on idle cores)")
    add_smoke_flag(parser)
    return parser.parse_args(argv)


def imbalance_summary(run_dir: Path) -> tuple[list[float], list[float], float]:
    """Per-layer imbalance averaged over the last quarter of steps, at the last step, and the final loss."""
    steps = [r for r in read_log(run_dir) if "loss" in r]
    tail = steps[-max(1, len(steps) // 4):]
    layers = len(tail[0]["imbalance"])
    mean_tail = [sum(r["imbalance"][layer] for r in tail) / len(tail) for layer in range(layers)]
    return mean_tail, steps[-1]["imbalance"], steps[-1]["loss"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.smoke:
        announce()
        args.text, args.data, args.seq_len, args.max_tokens, args.batch_tokens, args.experts = (
            str(tiny_data() / SMOKE_TEXT), None, 32, 1024, 512, 8)
    torch.set_num_threads(args.threads)
    results = {}
    with tempfile.TemporaryDirectory(prefix="bench_trainer_balance-") as workspace:
        data_dir = Path(args.data) if args.data else build_byte_shards(args.text, Path(workspace) / "shards", args.seq_len)
        batch_tokens = args.batch_tokens or 16 * int(read_manifest(data_dir)["seq_len"])
        for bias_update in (True, False):
            run_dir = Path(workspace) / ("bias-on" if bias_update else "bias-off")
            train(TrainConfig(data_dir=str(data_dir), output_dir=str(run_dir), preset="tiny",
                              model_overrides={"n_routed_experts": args.experts}, max_tokens=args.max_tokens,
                              batch_schedule=[(0, batch_tokens)], micro_batch_size=16, lr=args.lr,
                              warmup_tokens=args.max_tokens // 20, gamma=args.gamma, bias_update=bias_update,
                              device="cpu", progress=False))
            results[bias_update] = imbalance_summary(run_dir)
    print(f"`tiny` with {args.experts} routed experts (top-2), {args.max_tokens:,} tokens, gamma {args.gamma}; "
          f"data: {args.data or 'byte-level shards of ' + args.text}")
    print("| bias update | max/mean load per MoE layer (mean of last 25% of steps) | at the last step | final loss |")
    print("|---|---|---|---:|")
    for bias_update, (mean_tail, last, loss) in results.items():
        print(f"| {'on' if bias_update else 'off'} | {', '.join(f'{v:.2f}' for v in mean_tail)} | "
              f"{', '.join(f'{v:.2f}' for v in last)} | {loss:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
