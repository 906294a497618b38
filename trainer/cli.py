"""`thresher train --data SHARDS_DIR --preset NAME --output RUN_DIR [overrides]`.

Token counts accept K/M/B/T suffixes (powers of 1000): `--max-tokens 20M`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from decimal import Decimal, InvalidOperation

from thresher.pipeline.config import ConfigError
from thresher.trainer.model import PRESETS, ModelConfig
from thresher.trainer.train import TrainConfig, train

SUFFIXES = {"K": 10**3, "M": 10**6, "B": 10**9, "G": 10**9, "T": 10**12}


def parse_count(text: str) -> int:
    """'64M' -> 64000000, '1.5K' -> 1500, '4096' -> 4096."""
    text = text.strip().upper()
    try:
        if text and text[-1] in SUFFIXES:
            return int(Decimal(text[:-1]) * SUFFIXES[text[-1]])
        return int(Decimal(text))
    except InvalidOperation:
        raise argparse.ArgumentTypeError(f"{text!r} is not a count like 4096, 64M or 1e9") from None


def parse_batch_schedule(text: str) -> list[tuple[int, int]]:
    """'0:64M,6T:96M,8.3T:128M' -> [(0, 64000000), (6000000000000, 96000000), ...]."""
    schedule = []
    for item in text.split(","):
        threshold, _, batch = item.partition(":")
        if not batch:
            raise argparse.ArgumentTypeError(f"batch schedule entry {item!r} is not TOKENS_SEEN:BATCH_TOKENS")
        schedule.append((parse_count(threshold), parse_count(batch)))
    if sorted(schedule)[0][0] != 0:
        raise argparse.ArgumentTypeError("the batch schedule must start at 0 tokens seen")
    return sorted(schedule)


MODEL_KEY_PREFIX = "model."


def parse_model_override(text: str) -> tuple[str, object]:
    """'model.hidden_size=256' -> ('hidden_size', 256), typed like the ModelConfig field: a dotted key,
    as `--set` takes in every other command. A bad one is a ConfigError (one line, before any work)."""
    key, _, value = text.partition("=")
    fields = {f.name: f for f in dataclasses.fields(ModelConfig)}
    if not key.startswith(MODEL_KEY_PREFIX) and key in fields:
        raise ConfigError(f"--set {text}: model fields are dotted keys now, write --set model.{text}")
    field_name = key.removeprefix(MODEL_KEY_PREFIX)
    if not key.startswith(MODEL_KEY_PREFIX) or field_name not in fields or not value:
        raise ConfigError(f"--set {text}: thresher train takes model.FIELD=VALUE with FIELD one of {sorted(fields)}")
    number = float if fields[field_name].type == "float" else int
    try:
        return field_name, number(value)
    except ValueError:
        raise ConfigError(f"--set {text}: model.{field_name} wants a{'' if number is int else ' decimal'} number") from None


_DEFAULTS = TrainConfig(data_dir="", output_dir="")  # the CLI's defaults are the dataclass's


def _count_text(count: int) -> str:
    """4096 -> '4096', 65536 -> '65536', 10_000_000 -> '10M': the shortest exact spelling parse_count reads."""
    for suffix in ("T", "B", "M", "K"):
        if count and count % SUFFIXES[suffix] == 0:
            return f"{count // SUFFIXES[suffix]}{suffix}"
    return str(count)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="token shards directory (with manifest.json, from `thresher export`)")
    parser.add_argument("--output", required=True, help="run directory: log.jsonl and checkpoints/")
    parser.add_argument("--preset", choices=sorted(PRESETS), default=_DEFAULTS.preset,
                        help=f"model preset (default {_DEFAULTS.preset})")
    parser.add_argument("--set", dest="model_overrides", action="append", default=[],
                        metavar="model.FIELD=VALUE", help="replace a model config field of the preset (repeatable), "
                                                          "e.g. --set model.num_hidden_layers=4")
    parser.add_argument("--max-tokens", type=parse_count, default=_DEFAULTS.max_tokens,
                        help="training length in tokens; the schedule ends here and the last step is shrunk so as "
                             f"not to pass it (default {_count_text(_DEFAULTS.max_tokens)})")
    parser.add_argument("--stop-at-tokens", type=parse_count,
                        help="stop and checkpoint at this many tokens without changing the schedule (for time-limited jobs)")
    parser.add_argument("--lr", type=float, default=_DEFAULTS.lr, help=f"peak learning rate (default {_DEFAULTS.lr:g})")
    parser.add_argument("--warmup-tokens", type=parse_count, help="linear warmup length (default 1%% of --max-tokens)")
    parser.add_argument("--decay-tokens", type=parse_count, help="final decay length (default 20%% of --max-tokens)")
    parser.add_argument("--decay-lrs", type=lambda s: tuple(float(x) for x in s.split(",")),
                        help="comma-separated learning rates the decay goes through (default lr/10,lr/30)")
    parser.add_argument("--weight-decay", type=float, default=_DEFAULTS.weight_decay,
                        help=f"AdamW weight decay on matrices (default {_DEFAULTS.weight_decay:g})")
    parser.add_argument("--grad-clip", type=float, default=_DEFAULTS.grad_clip,
                        help=f"max gradient norm (default {_DEFAULTS.grad_clip:g})")
    batch = parser.add_mutually_exclusive_group()
    batch.add_argument("--batch-tokens", type=parse_count,
                       help="constant global batch size in tokens "
                            f"(default {_count_text(_DEFAULTS.batch_schedule[0][1])})")
    batch.add_argument("--batch-schedule", type=parse_batch_schedule,
                       help="growing batch: TOKENS_SEEN:BATCH_TOKENS,... e.g. 0:64M,6T:96M,8.3T:128M")
    parser.add_argument("--micro-batch-size", type=int, default=_DEFAULTS.micro_batch_size,
                        help="sequences per GPU/process per forward pass; gradient accumulation fills the batch "
                             f"(default {_DEFAULTS.micro_batch_size})")
    parser.add_argument("--gamma", type=float, default=_DEFAULTS.gamma,
                        help=f"router bias update speed (default {_DEFAULTS.gamma:g})")
    parser.add_argument("--no-bias-update", action="store_true", help="turn auxiliary-loss-free balancing off")
    parser.add_argument("--checkpoint-every-tokens", type=parse_count, help="checkpoint interval (default: only at the end)")
    parser.add_argument("--keep-last", type=int, default=_DEFAULTS.keep_last,
                        help=f"ordinary checkpoints to keep (default {_DEFAULTS.keep_last})")
    parser.add_argument("--permanent-every-tokens", type=parse_count,
                        help="also keep for good the first checkpoint after each multiple of this")
    parser.add_argument("--eval-every-tokens", type=parse_count, help="validation loss interval (needs a validation split)")
    parser.add_argument("--eval-sequences", type=int, default=_DEFAULTS.eval_sequences,
                        help=f"validation sequences per evaluation, all processes together (default {_DEFAULTS.eval_sequences})")
    parser.add_argument("--resume", help="checkpoint directory to resume from, or 'latest' for the run's newest "
                                         "(starts fresh when there is none)")
    parser.add_argument("--device", default=_DEFAULTS.device,
                        help=f"auto (cuda:LOCAL_RANK if available, else cpu), cpu, cuda, cuda:N (default {_DEFAULTS.device})")
    parser.add_argument("--bf16", action="store_true", help="bf16 autocast (GPU)")
    parser.add_argument("--compile", action="store_true",
                        help="torch.compile the model (when sharded: each decoder layer on its own)")
    parser.add_argument("--fsdp", action="store_true",
                        help="shard with FSDP2 even in one process (several processes always shard)")
    parser.add_argument("--ep", type=int, default=_DEFAULTS.expert_parallel, metavar="N",
                        help="expert parallelism: split each MoE layer's routed experts over N ranks; the mesh is "
                             f"(processes / N) x N, FSDP over the rest (default {_DEFAULTS.expert_parallel})")
    parser.add_argument("--activation-checkpointing", action="store_true",
                        help="keep only each decoder layer's input and recompute the layer in the backward pass")
    parser.add_argument("--loss-chunk-tokens", type=parse_count, metavar="N",
                        help="run the output head and loss over N tokens at a time, never holding the full logits "
                             "(e.g. 4096; default: all at once)")
    parser.add_argument("--deterministic", action="store_true", help="deterministic algorithms (bitwise-repeatable on CPU)")
    parser.add_argument("--seed", type=int, default=_DEFAULTS.seed,
                        help=f"model initialisation and data order seed (default {_DEFAULTS.seed})")
    parser.add_argument("--log-every", type=int, default=_DEFAULTS.log_every,
                        help=f"optimizer steps between log lines (default {_DEFAULTS.log_every})")
    parser.add_argument("--no-progress", action="store_true", help="no progress line on stderr")


def train_config(args: argparse.Namespace) -> TrainConfig:
    config = TrainConfig(
        data_dir=args.data, output_dir=args.output, preset=args.preset, model_overrides=dict(map(parse_model_override, args.model_overrides)),
        seed=args.seed, max_tokens=args.max_tokens, stop_at_tokens=args.stop_at_tokens, lr=args.lr,
        warmup_tokens=args.warmup_tokens, decay_tokens=args.decay_tokens, decay_lrs=args.decay_lrs,
        weight_decay=args.weight_decay, grad_clip=args.grad_clip, micro_batch_size=args.micro_batch_size,
        gamma=args.gamma, bias_update=not args.no_bias_update, checkpoint_every_tokens=args.checkpoint_every_tokens,
        keep_last=args.keep_last, permanent_every_tokens=args.permanent_every_tokens,
        eval_every_tokens=args.eval_every_tokens, eval_sequences=args.eval_sequences, log_every=args.log_every,
        device=args.device, bf16=args.bf16, compile=args.compile, deterministic=args.deterministic,
        fsdp=args.fsdp, expert_parallel=args.ep, activation_checkpointing=args.activation_checkpointing,
        loss_chunk_tokens=args.loss_chunk_tokens,
        resume=args.resume, progress=not args.no_progress,
    )
    if args.batch_schedule:
        config.batch_schedule = args.batch_schedule
    elif args.batch_tokens:
        config.batch_schedule = [(0, args.batch_tokens)]
    return config


def run(args: argparse.Namespace) -> int:
    print(json.dumps(train(train_config(args))))
    return 0
