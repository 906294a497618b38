"""Export a trainer checkpoint to the Hugging Face Dots1 format: config.json + model.safetensors, the
run's tokenizer and generation_config.json, so `transformers.pipeline("text-generation", model=HF_DIR)`
works on the directory as it is.

The weights are written in the layout of the released dots.llm1 checkpoints (one tensor per
expert: `mlp.experts.{e}.gate_proj.weight`, ...), which vLLM and transformers 4.x read
directly and transformers 5.x fuses on load. Router biases go to
`mlp.gate.e_score_correction_bias`; the router uses one expert group (`n_group = topk_group = 1`),
normalizes the chosen weights (`norm_topk_prob`) and scales them by `routed_scaling_factor`.

The tokenizer is the one the training data was exported with: the run records the data
directory, whose manifest names the tokenizer directory and its sha256 (`--tokenizer DIR` names
another). Its files are copied only when their sha256 matches the manifest's, so a tokenizer
retrained since the export is never shipped with the model. generation_config.json and
config.json carry the EOS id (generation stops there) and the pad id.

Command line (`thresher train-export CHECKPOINT_DIR --output HF_DIR`): see add_arguments.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from safetensors.torch import save_file

from thresher.pipeline.config import ConfigError
from thresher.pipeline.export.tokenize import TOKENIZER_FILES, tokenizer_sha256
from thresher.trainer.checkpoint import is_checkpoint, latest_checkpoint, load_checkpoint
from thresher.trainer.model import ModelConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def hf_config(config: ModelConfig, dtype: str, special_ids: dict | None = None) -> dict:
    """config.json for transformers' Dots1Config (and vLLM's dots1); special_ids: eos/pad token ids."""
    return {**(special_ids or {}),
        "architectures": ["Dots1ForCausalLM"],
        "model_type": "dots1",
        "vocab_size": config.vocab_size,
        "hidden_size": config.hidden_size,
        "intermediate_size": config.intermediate_size,
        "moe_intermediate_size": config.moe_intermediate_size,
        "num_hidden_layers": config.num_hidden_layers,
        "num_attention_heads": config.num_attention_heads,
        "num_key_value_heads": config.num_attention_heads,
        "head_dim": config.head_dim,
        "n_routed_experts": config.n_routed_experts,
        "n_shared_experts": config.n_shared_experts,
        "num_experts_per_tok": config.num_experts_per_tok,
        "first_k_dense_replace": config.first_k_dense_replace,
        "moe_layer_freq": 1,
        "n_group": 1,
        "topk_group": 1,
        "norm_topk_prob": True,
        "scoring_func": "noaux_tc",
        "routed_scaling_factor": config.routed_scaling_factor,
        "hidden_act": "silu",
        "rms_norm_eps": config.rms_norm_eps,
        # transformers 5 reads rope_parameters; vLLM and transformers 4 read rope_theta.
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "rope_scaling": None,
        "max_position_embeddings": config.max_position_embeddings,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "use_sliding_window": False,
        "sliding_window": None,
        "max_window_layers": config.num_hidden_layers,
        "tie_word_embeddings": False,
        "initializer_range": config.initializer_range,
        "use_cache": True,
        "torch_dtype": dtype,
    }


def hf_state_dict(model_state: dict[str, torch.Tensor], config: ModelConfig, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """Rename to Dots1ForCausalLM's keys and split the stacked experts; router biases stay fp32."""
    F_ = config.moe_intermediate_size
    exported = {}
    for name, tensor in model_state.items():
        if name.endswith("e_score_correction_bias"):
            exported[f"model.{name}"] = tensor.float().contiguous()
        elif name.endswith("mlp.experts.gate_up_proj"):
            prefix = f"model.{name.removesuffix('gate_up_proj')}"
            for expert, gate_up_2FD in enumerate(tensor):
                exported[f"{prefix}{expert}.gate_proj.weight"] = gate_up_2FD[:F_].to(dtype).contiguous()
                exported[f"{prefix}{expert}.up_proj.weight"] = gate_up_2FD[F_:].to(dtype).contiguous()
        elif name.endswith("mlp.experts.down_proj"):
            prefix = f"model.{name.removesuffix('down_proj')}"
            for expert, down_DF in enumerate(tensor):
                exported[f"{prefix}{expert}.down_proj.weight"] = down_DF.to(dtype).contiguous()
        elif name == "lm_head.weight":
            exported[name] = tensor.to(dtype).contiguous()
        else:
            exported[f"model.{name}"] = tensor.to(dtype).contiguous()
    return exported


def special_token_ids(data: dict) -> dict:
    """eos_token_id / pad_token_id of a run's data record (trainer.train.data_record), those it has."""
    return {key: int(data[key]) for key in ("eos_token_id", "pad_token_id") if data.get(key) is not None}


def export_model(model_state: dict[str, torch.Tensor], config: ModelConfig, output_dir: str | Path,
                 dtype: str = "bfloat16", special_ids: dict | None = None) -> Path:
    """Write config.json and model.safetensors (one file: shard it yourself for very large models), and
    generation_config.json when the EOS id is known."""
    output = Path(output_dir)
    output.mkdir(parents=True, exist_ok=True)
    (output / "config.json").write_text(json.dumps(hf_config(config, dtype, special_ids), indent=2))
    if special_ids and "eos_token_id" in special_ids:
        generation = {"eos_token_id": special_ids["eos_token_id"],
                      "pad_token_id": special_ids.get("pad_token_id", special_ids["eos_token_id"]),
                      "max_length": config.max_position_embeddings}
        (output / "generation_config.json").write_text(json.dumps(generation, indent=2))
    save_file(hf_state_dict(model_state, config, DTYPES[dtype]), output / "model.safetensors", metadata={"format": "pt"})
    return output


def run_tokenizer(data: dict, tokenizer_dir: str | Path | None = None) -> Path | None:
    """The tokenizer directory to ship: `tokenizer_dir` if given, else the one the run's data manifest
    names, if it is still there unchanged (same sha256); None when the run records none. Either may be a
    URL (s3://...): what is returned is then this machine's local copy of it (pipeline.locations.local_copy)."""
    if tokenizer_dir is not None:
        path = _local_tokenizer(str(tokenizer_dir))
        if path is None or not (path / "tokenizer.json").is_file():
            raise ConfigError(f"--tokenizer {tokenizer_dir}: no tokenizer.json there (a Hugging Face tokenizer directory)")
        return path
    recorded = data.get("tokenizer", {})
    if not recorded.get("path"):
        return None
    path = _local_tokenizer(recorded["path"])
    if path is None or not (path / "tokenizer.json").is_file():
        raise ConfigError(f"the run's tokenizer {recorded['path']} is gone: pass --tokenizer DIR (the one the data was "
                          "exported with)")
    if recorded.get("sha256") and tokenizer_sha256(path) != recorded["sha256"]:
        raise ConfigError(f"the run's tokenizer {recorded['path']} changed since the export (sha256 differs): pass --tokenizer "
                          f"DIR with the one the data was exported with")
    return path


def _local_tokenizer(location: str) -> Path | None:
    """A local path holding the tokenizer directory at `location` (a path or a URL); None when a URL holds nothing."""
    from thresher.pipeline.locations import local_copy

    try:
        return Path(local_copy(location))
    except FileNotFoundError:
        return None


def copy_tokenizer(tokenizer_dir: Path, output_dir: str | Path) -> list[str]:
    """Copy the tokenizer files of `tokenizer_dir` into the model directory; returns their names."""
    copied = []
    for name in TOKENIZER_FILES:
        if (tokenizer_dir / name).is_file():
            shutil.copyfile(tokenizer_dir / name, Path(output_dir) / name)
            copied.append(name)
    return copied


def export_checkpoint(checkpoint_path: str | Path, output_dir: str | Path, dtype: str = "bfloat16",
                      tokenizer_dir: str | Path | None = None) -> Path:
    """Export a (sharded) checkpoint directory, or the newest checkpoint of a run directory, at any world
    size, with the run's tokenizer and generation config."""
    path = Path(checkpoint_path)
    if not is_checkpoint(path):
        newest = latest_checkpoint(path)
        if newest is None:
            raise ConfigError(f"{path} is neither a checkpoint nor a run directory with checkpoints")
        path = newest
    state, config = load_checkpoint(path)
    data = config.get("data", {})
    tokenizer = run_tokenizer(data, tokenizer_dir)
    output = export_model(state["model"], ModelConfig(**config["model"]), output_dir, dtype, special_token_ids(data))
    if tokenizer is None:
        print("train-export: the run records no tokenizer; pass --tokenizer DIR to ship one with the model",
              file=sys.stderr)
    else:
        copy_tokenizer(tokenizer, output)
    return output


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", help="a checkpoint directory (RUN_DIR/checkpoints/tokens-...) "
                                           "or a run directory, whose newest checkpoint is exported")
    parser.add_argument("--output", required=True, help="directory for config.json and model.safetensors")
    parser.add_argument("--dtype", choices=sorted(DTYPES), default="bfloat16",
                        help="weight dtype (router biases stay float32); default bfloat16")
    parser.add_argument("--tokenizer", help="tokenizer directory to copy into HF_DIR (default: the one named by the "
                                            "manifest of the run's data)")


def run(args: argparse.Namespace) -> int:
    output = export_checkpoint(args.checkpoint, args.output, args.dtype, args.tokenizer)
    print(f"exported to {output}")
    return 0
