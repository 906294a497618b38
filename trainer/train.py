"""The training loop: AdamW, Warmup-Stable-Decay in tokens, growing batch, balancing, checkpoints.

Everything that sets how long or how fast is counted in tokens (global, all ranks together):
the schedule, the batch size, checkpoint and evaluation intervals. One optimizer step consumes
`batch_tokens_at(tokens_seen)` tokens as gradient accumulation over micro-batches of
`micro_batch_size` sequences per rank.

Several processes (torchrun) always shard the model with FSDP2 over a (dp, ep) DeviceMesh
(trainer/parallel.py); one process trains the plain model unless `fsdp` asks for the sharded
path there too. The data order, and with it every step's batch, is the same at any world size.
"""

from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import os
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist

from thresher.pipeline.config import ConfigError
from thresher.pipeline.stagedir.lock import DirectoryLock
from thresher.trainer import checkpoint
from thresher.trainer.data import TokenShardReader, read_manifest
from thresher.trainer.model import IGNORED, ModelConfig, Transformer, load_imbalance, preset, update_router_biases
from thresher.trainer.parallel import GiB, build_mesh, clip_grad_norm_, format_memory, memory_per_rank, parallelize


@dataclass
class TrainConfig:
    data_dir: str  # token shards directory (holds manifest.json)
    output_dir: str  # run directory: log.jsonl, checkpoints/
    preset: str = "tiny"  # model preset (trainer.model.PRESETS)
    model_overrides: dict = field(default_factory=dict)  # ModelConfig fields replacing the preset's
    seed: int = 0  # model initialisation and data order
    max_tokens: int = 10_000_000  # schedule length: training ends here
    stop_at_tokens: int | None = None  # stop (and checkpoint) earlier without changing the schedule
    lr: float = 3e-4  # peak learning rate
    warmup_tokens: int | None = None  # linear warmup length; None: 1% of max_tokens
    decay_tokens: int | None = None  # final decay length; None: 20% of max_tokens
    decay_lrs: tuple[float, ...] | None = None  # decay targets, linear, equal spans; None: (lr/10, lr/30)
    weight_decay: float = 0.1  # on matrices (incl. embeddings, head, router); norms are exempt
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0  # max global gradient norm
    micro_batch_size: int = 8  # sequences per rank per forward pass
    batch_schedule: list[tuple[int, int]] = field(default_factory=lambda: [(0, 65536)])  # (from tokens seen, batch tokens)
    gamma: float = 1e-3  # router bias update speed
    bias_update: bool = True  # auxiliary-loss-free balancing on/off
    checkpoint_every_tokens: int | None = None  # None: only at the end
    keep_last: int = 2  # ordinary checkpoints kept
    permanent_every_tokens: int | None = None  # also keep the first checkpoint after each multiple of this
    eval_every_tokens: int | None = None  # validation loss interval (needs a validation split)
    eval_sequences: int = 64  # validation sequences per evaluation, all ranks together
    log_every: int = 1  # optimizer steps between log lines
    device: str = "auto"  # auto: cuda:LOCAL_RANK when available, else cpu
    bf16: bool = False  # bf16 autocast (GPU)
    compile: bool = False  # torch.compile the model (sharded: each decoder layer)
    fsdp: bool = False  # shard with FSDP2 even in one process (several processes always do)
    expert_parallel: int = 1  # ranks the routed experts of each MoE layer are split over (mesh dim "ep")
    activation_checkpointing: bool = False  # recompute each decoder layer in the backward pass
    loss_chunk_tokens: int | None = None  # output head and loss in chunks of this many tokens (no full logits)
    deterministic: bool = False  # torch.use_deterministic_algorithms (bitwise-reproducible on CPU)
    resume: str | None = None  # checkpoint directory, or "latest" for the run's newest
    progress: bool = True  # one-line progress display on stderr


def lr_at(tokens: int, config: TrainConfig) -> float:
    """Warmup-Stable-Decay: linear warmup to `lr`, flat, then linear pieces through the decay targets
    (default: the dots.llm1 report's 3e-4 -> 3e-5 -> 1e-5, scaled to `lr`)."""
    warmup = config.warmup_tokens if config.warmup_tokens is not None else config.max_tokens // 100
    decay = config.decay_tokens if config.decay_tokens is not None else config.max_tokens // 5
    if warmup > 0 and tokens < warmup:
        return config.lr * tokens / warmup
    targets = config.decay_lrs if config.decay_lrs is not None else (config.lr / 10, config.lr / 30)
    decay_start = config.max_tokens - decay
    if tokens <= decay_start or not targets:
        return config.lr
    span = decay / len(targets)
    stage = min(int((tokens - decay_start) // span), len(targets) - 1)
    start_lr = config.lr if stage == 0 else targets[stage - 1]
    fraction = min(1.0, (tokens - decay_start - stage * span) / span)
    return start_lr + (targets[stage] - start_lr) * fraction


def batch_tokens_at(tokens: int, schedule: list[tuple[int, int]]) -> int:
    """The batch size (tokens) of the last schedule entry whose threshold `tokens` has reached."""
    batch = schedule[0][1]
    for threshold, batch_tokens in sorted(schedule):
        if tokens >= threshold:
            batch = batch_tokens
    return batch


def parameter_groups(model: Transformer, weight_decay: float) -> list[dict]:
    """Decay every matrix (attention, experts, router, embedding, head); exempt the 1-D norm weights.

    Router biases are buffers, outside the optimizer altogether.
    """
    decayed = [p for p in model.parameters() if p.dim() >= 2]
    exempt = [p for p in model.parameters() if p.dim() < 2]
    return [{"params": decayed, "weight_decay": weight_decay}, {"params": exempt, "weight_decay": 0.0}]


@dataclass
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup_distributed(device_choice: str) -> tuple[Distributed, torch.device]:
    """Reads torchrun's RANK/WORLD_SIZE/LOCAL_RANK; gloo on CPU, nccl on GPU (a process group the
    caller already started is used as it is)."""
    if dist.is_initialized():
        env = Distributed(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", dist.get_rank())))
    else:
        env = Distributed(int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
                          int(os.environ.get("LOCAL_RANK", 0)))
    if device_choice == "auto":
        device = torch.device(f"cuda:{env.local_rank}" if torch.cuda.is_available() else "cpu")
    else:
        device = torch.device(device_choice)
        if device.type == "cuda" and device.index is None:
            device = torch.device(f"cuda:{env.local_rank}")
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if env.enabled and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return env, device


def all_reduce_sum(tensor: torch.Tensor, env: Distributed) -> torch.Tensor:
    if env.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


class RunLog:
    """JSON lines to RUN_DIR/log.jsonl and a one-line progress display on stderr (rank 0 only)."""

    def __init__(self, run_dir: Path, enabled: bool, progress: bool):
        self.enabled, self.progress = enabled, progress
        self.path = run_dir / "log.jsonl"

    def write(self, record: dict) -> None:
        if not self.enabled:
            return
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")
        if self.progress and "loss" in record:
            imbalance = max(record["imbalance"], default=1.0)
            line = (f"step {record['step']} | tokens {record['tokens_seen']:,} | loss {record['loss']:.4f} | "
                    f"lr {record['lr']:.2e} | {record['tokens_per_s']:,.0f} tok/s | max imbalance {imbalance:.2f}")
            print("\r" + line.ljust(100), end="", file=sys.stderr, flush=True)
        if "val_loss" in record:  # a line of its own, kept above the progress display
            value = "none (no validation sequences)" if record["val_loss"] is None else f"{record['val_loss']:.4f}"
            line = f"step {record['step']} | tokens {record['tokens_seen']:,} | val_loss {value}"
            print(("\r" if self.progress else "") + line.ljust(100), file=sys.stderr, flush=True)

    def close(self) -> None:
        if self.enabled and self.progress:
            print(file=sys.stderr, flush=True)


def build_model_config(config: TrainConfig, manifest: dict, announce: bool = True) -> ModelConfig:
    """The preset with the data's vocabulary size (unless overridden) and the overrides applied.

    A preset whose max_position_embeddings is shorter than the data's sequences takes the data's
    seq_len (RoPE tables have no learned length; a line says so); an explicit
    `--set model.max_position_embeddings=N` shorter than the data is a ConfigError.
    """
    overrides = dict(config.model_overrides)
    overrides.setdefault("vocab_size", int(manifest["vocab_size"]))
    seq_len = int(manifest["seq_len"])
    model_config = preset(config.preset, **overrides)
    if seq_len > model_config.max_position_embeddings:
        if "max_position_embeddings" in overrides:
            raise ConfigError(f"--set model.max_position_embeddings={model_config.max_position_embeddings} is shorter than "
                              f"the data's seq_len {seq_len}: raise it, or export with a smaller --seq-len")
        if announce:
            print(f"train: preset {config.preset!r} has max_position_embeddings "
                  f"{model_config.max_position_embeddings}; using the data's seq_len {seq_len}", file=sys.stderr,
                  flush=True)
        model_config = dataclasses.replace(model_config, max_position_embeddings=seq_len)
    return model_config


def check_splits(config: TrainConfig, manifest: dict, world_size: int, announce: bool = True) -> bool:
    """One-line errors for splits the run cannot use, before any work; returns whether to evaluate.

    Reading is by sequence, not by row group, so any split feeds any number of ranks (a rank past
    the end of the validation split evaluates an empty share). Training needs a non-empty train
    split; `eval_every_tokens` needs a non-empty validation split. Without `eval_every_tokens`, an
    empty validation split is only a warning.
    """
    splits = manifest["splits"]
    sequences = {name: int(splits[name]["sequences"]) if name in splits else 0 for name in ("train", "validation")}
    if sequences["train"] == 0:
        raise ConfigError(f"{config.data_dir}: the train split holds no sequences: export more documents "
                          f"(or a smaller --seq-len)")
    if sequences["validation"] == 0:
        if config.eval_every_tokens:
            raise ConfigError(f"--eval-every-tokens: {config.data_dir} has an empty validation split: export "
                              f"with a larger export.validation_fraction, or drop --eval-every-tokens")
        if announce:
            print(f"train: warning: {config.data_dir} has an empty validation split (raise "
                  f"export.validation_fraction for a validation loss)", file=sys.stderr, flush=True)
        return False
    if announce and config.eval_every_tokens and sequences["validation"] < world_size:
        print(f"train: warning: the validation split's {sequences['validation']} sequences are fewer than the "
              f"{world_size} ranks; some ranks evaluate nothing", file=sys.stderr, flush=True)
    return bool(config.eval_every_tokens)


@torch.no_grad()
def evaluate(model: torch.nn.Module, config: TrainConfig, env: Distributed, device: torch.device,
             pad_token_id: int | None, eos_token_id: int | None = None) -> float | None:
    """Mean validation loss over the first `eval_sequences` sequences of the validation stream (all
    ranks together, so the same sequences and the same loss at any world size).

    Every rank runs the same number of forward passes (sharded and expert-parallel models take
    part in each other's collectives): a rank whose share of a micro-batch is short or empty fills
    it with rows whose targets are all ignored.
    """
    reader = TokenShardReader(config.data_dir, "validation", seed=config.seed, rank=env.rank,
                              world_size=env.world_size, loop=False)
    totals = torch.zeros(2, dtype=torch.float64, device=device)  # summed loss, tokens
    total = min(config.eval_sequences, reader.epoch_rows)
    per_step = config.micro_batch_size * env.world_size
    model.eval()
    for step in range(math.ceil(total / per_step)):
        first = step * per_step + env.rank * config.micro_batch_size
        mine = max(0, min(config.micro_batch_size, total - first))
        rows = reader.next_rows(config.micro_batch_size)
        rows = rows[:mine] if rows is not None else torch.zeros((0, reader.seq_len + 1), dtype=torch.long)
        targets = loss_targets(rows, pad_token_id, eos_token_id)
        filler = max(1, len(rows)) - len(rows)
        if filler:
            rows = torch.zeros((filler, reader.seq_len + 1), dtype=torch.long)
            targets = torch.full((filler, reader.seq_len), IGNORED, dtype=torch.long)
        rows, targets = rows.to(device), targets.to(device)
        counted = (targets != IGNORED).sum()
        with autocast(device, config.bf16):
            output = model(rows[:, :-1], targets, loss_chunk_tokens=config.loss_chunk_tokens)
        if counted > 0:
            totals += torch.stack([output.lm_loss.double() * counted, counted.double()])
    model.train()
    all_reduce_sum(totals, env)
    return (totals[0] / totals[1]).item() if totals[1] > 0 else None


def loss_targets(rows: torch.Tensor, pad_token_id: int | None, eos_token_id: int | None = None) -> torch.Tensor:
    """Next-token targets of rows [B, T + 1]; padding (rows that end a packing range) is not predicted.

    When the pad id is the EOS id (a tokenizer without a pad token), the EOS that ends a document
    stays a target (the model must learn to stop): only an EOS that follows another EOS, i.e. the
    padding after a document's own EOS, is masked.
    """
    targets = rows[:, 1:]
    if pad_token_id is None:
        return targets
    padding = targets == pad_token_id
    if pad_token_id == eos_token_id:
        padding &= rows[:, :-1] == pad_token_id
    return targets.masked_fill(padding, IGNORED)


def autocast(device: torch.device, bf16: bool):
    return torch.autocast(device_type=device.type, dtype=torch.bfloat16, enabled=bf16)


def train(config: TrainConfig) -> dict:
    """Train (or resume) a run; returns its final step, tokens seen, last loss and last checkpoint."""
    started_process_group = not dist.is_initialized()
    env, device = setup_distributed(config.device)
    deterministic_before = torch.are_deterministic_algorithms_enabled()
    torch.use_deterministic_algorithms(config.deterministic or deterministic_before)
    try:
        return run_training(config, env, device)
    finally:
        torch.use_deterministic_algorithms(deterministic_before)
        if env.enabled and started_process_group:
            # The sharded model and optimizer are reference cycles (DTensors, meshes): free them while
            # their process groups exist, not during interpreter teardown after destroy_process_group.
            gc.collect()
            dist.destroy_process_group()


def run_training(config: TrainConfig, env: Distributed, device: torch.device) -> dict:
    # Rank 0 holds the run directory's lock: a second `thresher train` on it is refused at once (its other
    # ranks end with it, as torchrun ends a job whose rank failed), so `--resume latest` reads one run's checkpoints.
    with DirectoryLock(config.output_dir) if env.rank == 0 else contextlib.nullcontext():
        return _run_training(config, env, device)


def _run_training(config: TrainConfig, env: Distributed, device: torch.device) -> dict:
    run_dir = Path(config.output_dir)
    manifest = read_manifest(config.data_dir)
    seq_len = int(manifest["seq_len"])
    pad_token_id = manifest.get("pad_token_id")
    eos_token_id = manifest.get("eos_token_id")

    resume_path = None
    if config.resume == "latest":
        resume_path = checkpoint.latest_checkpoint(run_dir)
    elif config.resume:
        resume_path = Path(config.resume)
    if resume_path is not None:
        if not checkpoint.is_checkpoint(resume_path):
            raise ConfigError(f"--resume {resume_path}: not a checkpoint directory (RUN_DIR/checkpoints/tokens-...)")
        try:
            model_config = ModelConfig(**json.loads((resume_path / "config.json").read_text())["model"])
        except (OSError, ValueError, TypeError, KeyError) as exc:
            raise ConfigError(f"--resume {resume_path}: its config.json holds no model configuration thresher wrote "
                              f"({type(exc).__name__}: {exc})") from None
    else:
        model_config = build_model_config(config, manifest, announce=env.is_main)

    check_mesh(config.expert_parallel, env.world_size, model_config)
    evaluating = check_splits(config, manifest, env.world_size, announce=env.is_main)
    for _, batch_tokens in config.batch_schedule:  # every batch size splits into micro-batches
        step_micro_batches(batch_tokens, batch_tokens, config.micro_batch_size, seq_len, env.world_size)
    sharded = env.enabled or config.fsdp or config.expert_parallel > 1
    mesh_shape = (env.world_size // config.expert_parallel, config.expert_parallel)
    memory = memory_per_rank(model_config, *mesh_shape, config.micro_batch_size, seq_len, config.bf16,
                             config.activation_checkpointing, config.loss_chunk_tokens, sharded)
    check_memory(memory, device, env)  # before the model is built: a model too big for the machine is one line
    run_dir.mkdir(parents=True, exist_ok=True)  # only once the run can start
    torch.manual_seed(config.seed)
    model = Transformer(model_config).to(device)
    if sharded:
        mesh = build_mesh(device.type, env.world_size, config.expert_parallel)
        parallelize(model, mesh, config.bf16, config.activation_checkpointing, compile_blocks=config.compile)
        forward_model: torch.nn.Module = model
    else:
        for layer in model.layers:
            layer.activation_checkpointing = config.activation_checkpointing
        forward_model = torch.compile(model) if config.compile else model
    optimizer = torch.optim.AdamW(parameter_groups(model, config.weight_decay), lr=config.lr, betas=config.betas,
                                  fused=device.type == "cuda")
    reader = TokenShardReader(config.data_dir, "train", seed=config.seed, rank=env.rank, world_size=env.world_size)
    step, tokens_seen, last_checkpoint_tokens = 0, 0, 0
    if resume_path is not None:
        restored = checkpoint.restore_checkpoint(resume_path, model, optimizer)
        step, tokens_seen = restored["step"], restored["tokens_seen"]
        last_checkpoint_tokens = tokens_seen
        reader.load_state_dict({"sequences_read": restored["sequences_read"]})

    log = RunLog(run_dir, env.is_main, config.progress)
    full_config = {"train": dataclasses.asdict(config), "model": dataclasses.asdict(model_config), "seq_len": seq_len,
                   "data": data_record(manifest)}
    if env.is_main:
        print(format_memory(memory, *mesh_shape), file=sys.stderr, flush=True)
        log.write({"event": "start" if resume_path is None else "resume", "config": full_config,
                   "world_size": env.world_size, "mesh": {"dp": mesh_shape[0], "ep": mesh_shape[1]},
                   "sharded": sharded, "memory_per_rank_gib": memory, "tokens_seen": tokens_seen})

    def save(permanent: bool) -> Path:
        train_state = {"step": step, "tokens_seen": tokens_seen, "sequences_read": reader.sequences_read}
        path = checkpoint.save_checkpoint(run_dir, model, optimizer, train_state, full_config, permanent)
        if env.is_main:
            checkpoint.prune_checkpoints(run_dir, config.keep_last)
        checkpoint.barrier()
        return path

    stop_tokens = min(config.max_tokens, config.stop_at_tokens or config.max_tokens)
    per_sequence = seq_len * env.world_size  # one sequence on every rank
    last_loss, last_path = None, resume_path
    # The last step is shrunk so as not to pass stop_tokens: the run ends at most one sequence per rank short of it.
    while stop_tokens - tokens_seen >= per_sequence:
        micro_batches = step_micro_batches(batch_tokens_at(tokens_seen, config.batch_schedule),
                                           stop_tokens - tokens_seen, config.micro_batch_size, seq_len, env.world_size)
        accumulation = len(micro_batches)
        step_rows = sum(micro_batches)
        batch_tokens = step_rows * per_sequence
        lr = lr_at(tokens_seen + batch_tokens, config)
        for group in optimizer.param_groups:
            group["lr"] = lr

        started = time.perf_counter()
        sums = torch.zeros(2, device=device)  # lm loss, balance loss (summed over micro-batches)
        tokens_per_expert_LE = None
        for micro, micro_rows in enumerate(micro_batches):
            rows = reader.next_rows(micro_rows).to(device)
            if sharded:  # gradients are reduced (and resharded) after the step's last micro-batch only
                model.set_requires_gradient_sync(micro == accumulation - 1)
            with autocast(device, config.bf16):
                output = forward_model(rows[:, :-1], loss_targets(rows, pad_token_id, eos_token_id),
                                       loss_chunk_tokens=config.loss_chunk_tokens)
            weight = micro_rows / step_rows  # a shrunk last micro-batch counts for its rows
            (output.loss * weight).backward()
            sums += torch.stack([output.lm_loss.detach(), output.balance_loss.detach()]) * weight
            load = output.tokens_per_expert_LE.detach()
            tokens_per_expert_LE = load if tokens_per_expert_LE is None else tokens_per_expert_LE + load
        grad_norm = clip_grad_norm_(list(model.parameters()), config.grad_clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)

        all_reduce_sum(tokens_per_expert_LE, env)
        if config.bias_update:
            update_router_biases(model, tokens_per_expert_LE, config.gamma)
        all_reduce_sum(sums, env)
        step += 1
        tokens_seen += batch_tokens
        elapsed = time.perf_counter() - started
        last_loss = assert_finite((sums[0] / env.world_size).item())

        finished = stop_tokens - tokens_seen < per_sequence
        if step % config.log_every == 0 or finished:
            log.write({"step": step, "tokens_seen": tokens_seen, "loss": last_loss,
                       "balance_loss": (sums[1] / env.world_size).item(), "lr": lr,
                       "grad_norm": grad_norm.item(), "batch_tokens": batch_tokens,
                       "tokens_per_s": batch_tokens / elapsed, "imbalance": load_imbalance(tokens_per_expert_LE)})
        if evaluating and crossed(tokens_seen, batch_tokens, config.eval_every_tokens):
            val_loss = evaluate(forward_model, config, env, device, pad_token_id, eos_token_id)
            log.write({"step": step, "tokens_seen": tokens_seen, "val_loss": val_loss})
        if config.checkpoint_every_tokens and crossed(tokens_seen, batch_tokens, config.checkpoint_every_tokens) \
                and not finished:
            permanent = bool(config.permanent_every_tokens) and \
                tokens_seen // config.permanent_every_tokens > last_checkpoint_tokens // config.permanent_every_tokens
            last_path = save(permanent)
            last_checkpoint_tokens = tokens_seen
    if tokens_seen > last_checkpoint_tokens:
        last_path = save(permanent=config.max_tokens - tokens_seen < per_sequence)  # the final model is kept for good
    log.close()
    return {"step": step, "tokens_seen": tokens_seen, "loss": last_loss,
            "checkpoint": str(last_path) if last_path else None}


def step_micro_batches(batch_tokens: int, remaining_tokens: int, micro_batch_size: int, seq_len: int,
                       world_size: int) -> list[int]:
    """Sequences per rank of each micro-batch of the next step: full micro-batches filling `batch_tokens`,
    cut (the last one shrunk) to the whole sequences per rank that fit in `remaining_tokens`."""
    per_micro = micro_batch_size * seq_len * world_size
    if batch_tokens % per_micro:
        raise ConfigError(f"a batch of {batch_tokens} tokens is not a multiple of micro_batch_size x seq_len x "
                          f"processes = {micro_batch_size} x {seq_len} x {world_size} = {per_micro}: change "
                          f"--batch-tokens or --micro-batch-size")
    rows = min(batch_tokens, remaining_tokens) // (seq_len * world_size)
    full, last = divmod(rows, micro_batch_size)
    return [micro_batch_size] * full + ([last] if last else [])


def data_record(manifest: dict) -> dict:
    """What a run keeps of its data: where it is, and the tokenizer and special ids export needs."""
    return {"dir": str(Path(manifest["_dir"]).resolve()), "tokenizer": manifest.get("tokenizer", {}),
            "vocab_size": manifest.get("vocab_size"), "eos_token_id": manifest.get("eos_token_id"),
            "pad_token_id": manifest.get("pad_token_id")}


def check_memory(memory: dict[str, float], device: torch.device, env: Distributed) -> None:
    """Refuse, before the model is built, a run whose memory per rank on paper exceeds what this process
    can have: the GPU's memory, or on CPU the machine's available memory shared by its local ranks."""
    if device.type == "cuda":
        have = torch.cuda.get_device_properties(device).total_memory / GiB
        where = f"GPU {device} has {have:.1f} GiB"
    else:
        import psutil

        local_ranks = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
        have = psutil.virtual_memory().available / GiB / local_ranks
        where = f"this machine has {have:.1f} GiB available" + (f" per process ({local_ranks} here)" if local_ranks > 1 else "")
    if memory["total"] > have:
        raise ConfigError(
            f"the model needs about {memory['total']:.1f} GiB per process on paper (weights, gradients, AdamW "
            f"state, activations) and {where}: choose a smaller preset or --set model.*, a smaller "
            "--micro-batch-size, or shard it over more processes (--fsdp, torchrun)")


def check_mesh(expert_parallel: int, world_size: int, model_config: ModelConfig) -> None:
    """One-line errors for an expert-parallel degree the run cannot use, before any work."""
    if expert_parallel < 1 or world_size % expert_parallel:
        raise ConfigError(f"--ep {expert_parallel} must divide the number of processes ({world_size})")
    if model_config.n_routed_experts % expert_parallel:
        raise ConfigError(f"--ep {expert_parallel} must divide the {model_config.n_routed_experts} routed experts")


def crossed(tokens_seen: int, batch_tokens: int, interval: int) -> bool:
    """Whether the last step (batch_tokens ending at tokens_seen) passed a multiple of `interval`."""
    return tokens_seen // interval > (tokens_seen - batch_tokens) // interval


def read_log(run_dir: str | Path) -> list[dict]:
    """The records of RUN_DIR/log.jsonl."""
    return [json.loads(line) for line in (Path(run_dir) / "log.jsonl").read_text().splitlines() if line]


def assert_finite(value: float) -> float:
    if not math.isfinite(value):
        raise FloatingPointError(f"loss became {value}")
    return value
