"""Checkpoints: one directory per save, RUN_DIR/checkpoints/tokens-<tokens seen, 15 digits>/.

Each is a torch.distributed.checkpoint (DCP) directory: every rank writes its own shards of the
model (router biases included) and of the AdamW state (`__<rank>_0.distcp`, plus `.metadata`
naming each tensor's global shape and where its pieces are), with `train.*` the step, tokens
seen, the global data position (sequences read, trainer/data.py) and the RNG state; plus
`config.json` (model and training configuration) and `meta.json` (step, tokens, permanence).
Loading reshards: any world size and mesh reads the tensors it needs from whichever files hold
them, and `load_checkpoint` reads full tensors in one process (export, inspection). DCP stores
tensors and plain values only, never pickled objects of ours; its `.metadata` is a pickle, which
thresher reads with an unpickler that admits only the classes DCP's metadata is made of, so a
checkpoint from someone else can never run code when it is loaded (`MetadataReader`). A save is written to a temporary
directory and renamed, so a crash never leaves half a checkpoint. Retention: the last
`keep_last` ordinary checkpoints, plus every permanent one (the first save at or after each
multiple of `permanent_every_tokens`).
"""

from __future__ import annotations

import contextlib
import json
import pickle
import shutil
import warnings
from pathlib import Path

import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
from torch.distributed.checkpoint.metadata import Metadata, StorageMeta, TensorStorageMetadata
from torch.distributed.checkpoint.state_dict import get_state_dict, set_state_dict

from thresher.schemas.errors import UserError

CHECKPOINT_PREFIX = "tokens-"
TRAIN_KEYS = ("step", "tokens_seen", "sequences_read")


class UnsafeCheckpointError(UserError):
    """A checkpoint whose metadata names something a DCP checkpoint never holds (it could run code)."""


# Every global a DCP `.metadata` pickle names (torch 2.4-2.13): DCP's metadata dataclasses, torch.Size,
# the dtype/layout/memory-format values of TensorProperties, and the Path of StorageMeta.
_METADATA_GLOBALS = frozenset({
    *(("torch.distributed.checkpoint.metadata", name) for name in (
        "Metadata", "MetadataIndex", "StorageMeta", "TensorProperties", "TensorStorageMetadata",
        "ChunkStorageMetadata", "BytesStorageMetadata", "_MEM_FORMAT_ENCODING")),
    ("torch.distributed.checkpoint.filesystem", "_StorageInfo"),
    ("torch", "Size"),
    ("torch.serialization", "_get_layout"),
    ("pathlib", "PosixPath"), ("pathlib", "WindowsPath"), ("pathlib", "Path"),
})


class _MetadataUnpickler(pickle.Unpickler):
    def __init__(self, stream, path: str):
        super().__init__(stream)
        self.path = path

    def find_class(self, module: str, name: str):
        if (module, name) in _METADATA_GLOBALS:
            return super().find_class(module, name)
        if module == "torch" and isinstance(getattr(torch, name, None), (torch.dtype, torch.layout, torch.memory_format)):
            return getattr(torch, name)
        raise UnsafeCheckpointError(
            f"{self.path}: names {module}.{name}, which no checkpoint holds: refusing to load it "
            "(loading it could run code); use a checkpoint thresher wrote")


class MetadataReader(dcp.FileSystemReader):
    """DCP's file reader, with `.metadata` read by an unpickler that admits only DCP's metadata classes."""

    def read_metadata(self, *args, **kwargs) -> Metadata:
        path = self._get_metadata_path(kwargs.get("rank"))
        with self.fs.create_stream(path, "rb") as stream:
            try:
                metadata = _MetadataUnpickler(stream, str(path)).load()
            except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError) as exc:
                if isinstance(exc, UserError):
                    raise
                raise UnsafeCheckpointError(f"{path}: not a DCP checkpoint's metadata ({exc}); use a checkpoint "
                                            "thresher wrote") from None
        if not isinstance(metadata, Metadata):
            raise UnsafeCheckpointError(f"{path}: holds a {type(metadata).__name__}, not a DCP checkpoint's metadata")
        if getattr(metadata, "storage_meta", None) is None:
            metadata.storage_meta = StorageMeta()
        metadata.storage_meta.load_id = self.load_id
        return metadata


def checkpoint_dir(run_dir: str | Path, tokens_seen: int) -> Path:
    return Path(run_dir) / "checkpoints" / f"{CHECKPOINT_PREFIX}{tokens_seen:015d}"


def list_checkpoints(run_dir: str | Path) -> list[Path]:
    """Complete checkpoints of a run, oldest first."""
    root = Path(run_dir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.name.startswith(CHECKPOINT_PREFIX) and (p / "meta.json").is_file())


def latest_checkpoint(run_dir: str | Path) -> Path | None:
    checkpoints = list_checkpoints(run_dir)
    return checkpoints[-1] if checkpoints else None


def is_checkpoint(path: str | Path) -> bool:
    return (Path(path) / ".metadata").is_file() and (Path(path) / "meta.json").is_file()


@contextlib.contextmanager
def quiet_single_process():
    """DCP warns on every save and load in a process without a process group; that is the intended use here."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled, unavailable or uninitialized")
        yield


def barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def save_checkpoint(run_dir: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer, train_state: dict,
                    config: dict, permanent: bool) -> Path:
    """Write one checkpoint (every rank calls this); train_state holds step, tokens_seen, sequences_read (ints)."""
    final = checkpoint_dir(run_dir, train_state["tokens_seen"])
    staging = final.with_name(final.name + ".tmp")
    is_main = not dist.is_initialized() or dist.get_rank() == 0
    if is_main:
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
    barrier()
    model_state, optimizer_state = get_state_dict(model, optimizer)
    train = {key: torch.tensor(int(train_state[key])) for key in TRAIN_KEYS} | {"rng_cpu": torch.get_rng_state()}
    with quiet_single_process():
        dcp.save({"model": model_state, "optimizer": optimizer_state, "train": train}, checkpoint_id=staging,
                 no_dist=not dist.is_initialized())
    if is_main:
        (staging / "config.json").write_text(json.dumps(config, indent=2, sort_keys=True))
        meta = {key: int(train_state[key]) for key in TRAIN_KEYS} | {"permanent": permanent}
        (staging / "meta.json").write_text(json.dumps(meta, indent=2))
        shutil.rmtree(final, ignore_errors=True)
        staging.rename(final)
    barrier()
    return final


def restore_checkpoint(path: str | Path, model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    """Load a checkpoint into this rank's (possibly sharded) model and optimizer, whatever mesh wrote it;
    returns the train state (step, tokens_seen, sequences_read as ints) and sets the CPU RNG state."""
    reader = MetadataReader(Path(path))
    reader.read_metadata()  # refused here, as itself: inside dcp.load it would come back wrapped per rank
    model_state, optimizer_state = get_state_dict(model, optimizer)
    train = {key: torch.tensor(0) for key in TRAIN_KEYS} | {"rng_cpu": torch.get_rng_state()}
    state = {"model": model_state, "optimizer": optimizer_state, "train": train}
    with quiet_single_process():
        dcp.load(state, storage_reader=reader, no_dist=not dist.is_initialized())
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optimizer"])
    torch.set_rng_state(train["rng_cpu"])
    return {key: int(train[key]) for key in TRAIN_KEYS}


def load_checkpoint(path: str | Path) -> tuple[dict, dict]:
    """(state, config) of a checkpoint directory, read in this process alone: state["model"] holds the
    full (unsharded) weights by name, plus step, tokens_seen and sequences_read; no optimizer."""
    path = Path(path)
    reader = MetadataReader(path)
    metadata = reader.read_metadata()
    wanted = {key: torch.empty(item.size, dtype=item.properties.dtype)
              for key, item in metadata.state_dict_metadata.items()
              if key.startswith(("model.", "train.")) and isinstance(item, TensorStorageMetadata)}
    with quiet_single_process():
        dcp.load(wanted, storage_reader=reader, no_dist=True)
    state = {"model": {key.removeprefix("model."): tensor for key, tensor in wanted.items() if key.startswith("model.")}}
    state |= {key: int(wanted[f"train.{key}"]) for key in TRAIN_KEYS}
    config = json.loads((path / "config.json").read_text())
    return state, config


def prune_checkpoints(run_dir: str | Path, keep_last: int) -> list[Path]:
    """Delete all but the last `keep_last` non-permanent checkpoints; returns what was deleted."""
    deletable = [p for p in list_checkpoints(run_dir) if not json.loads((p / "meta.json").read_text())["permanent"]]
    doomed = deletable[:-keep_last] if keep_last > 0 else deletable
    for path in doomed:
        shutil.rmtree(path)
    return doomed
