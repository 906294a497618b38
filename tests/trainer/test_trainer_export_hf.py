import json

import pytest
import torch
import transformers
from safetensors.torch import load_file

from thresher.pipeline.config import ConfigError
from thresher.trainer.export_hf import export_checkpoint, export_model, run_tokenizer, special_token_ids
from thresher.trainer.model import Transformer, preset
from thresher.trainer.train import TrainConfig, train


def random_model(seed=0):
    """Tiny model with random norms and router biases, so routing and every weight matter."""
    torch.manual_seed(seed)
    config = preset("tiny", vocab_size=97, hidden_size=32, num_attention_heads=2, intermediate_size=48,
                    moe_intermediate_size=16, num_experts_per_tok=3, initializer_range=0.2)
    model = Transformer(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.dim() == 1:
                parameter.normal_(1.0, 0.2)
        for router in model.routers():
            router.e_score_correction_bias.normal_(0.0, 0.1)
    return model


def load_hf(directory):
    return transformers.Dots1ForCausalLM.from_pretrained(directory, dtype=torch.float32).eval()


def test_exported_model_gives_the_same_logits_in_transformers(tmp_path):
    model = random_model()
    export_model(model.state_dict(), model.config, tmp_path / "hf", dtype="float32")
    hf_model = load_hf(tmp_path / "hf")
    tokens = torch.randint(0, 97, (2, 24), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(tokens)
        theirs = hf_model(tokens).logits
    assert (ours.tokens_per_expert_LE > 0).sum(dim=1).min() >= 6  # routes to most of the 8 experts
    assert (ours.logits_BTV - theirs).abs().max() < 1e-4

    # The router biases are really used: zeroing them changes the logits of both models alike.
    for router in model.routers():
        router.e_score_correction_bias.zero_()
    export_model(model.state_dict(), model.config, tmp_path / "hf-zero-bias", dtype="float32")
    with torch.no_grad():
        unbiased = model(tokens).logits_BTV
        assert (unbiased - theirs).abs().max() > 1e-3
        assert (unbiased - load_hf(tmp_path / "hf-zero-bias")(tokens).logits).abs().max() < 1e-4


def test_export_layout_matches_the_released_checkpoints(tmp_path):
    model = random_model()
    export_model(model.state_dict(), model.config, tmp_path / "hf", dtype="bfloat16")
    weights = load_file(tmp_path / "hf" / "model.safetensors")
    config = json.loads((tmp_path / "hf" / "config.json").read_text())
    assert config["model_type"] == "dots1" and config["n_group"] == config["topk_group"] == 1
    assert config["norm_topk_prob"] is True and config["tie_word_embeddings"] is False
    assert weights["model.layers.1.mlp.experts.7.gate_proj.weight"].shape == (16, 32)
    assert weights["model.layers.1.mlp.experts.7.down_proj.weight"].dtype == torch.bfloat16
    assert weights["model.layers.1.mlp.gate.e_score_correction_bias"].dtype == torch.float32
    assert "model.layers.0.mlp.gate_proj.weight" in weights and "lm_head.weight" in weights
    torch.testing.assert_close(weights["model.layers.2.mlp.experts.3.up_proj.weight"].float(),
                               model.layers[2].mlp.experts.gate_up_proj[3, 16:].detach().bfloat16().float())


def test_exports_a_trained_run(small_shards, tmp_path):
    train(TrainConfig(data_dir=str(small_shards), output_dir=str(tmp_path / "run"), max_tokens=512,
                      batch_schedule=[(0, 256)], progress=False,
                      model_overrides=dict(hidden_size=32, num_attention_heads=2, intermediate_size=64,
                                           moe_intermediate_size=16)))
    export_checkpoint(tmp_path / "run", tmp_path / "hf", dtype="float32")
    hf_model = load_hf(tmp_path / "hf")
    assert hf_model.config.vocab_size == 64 and hf_model.config.num_hidden_layers == 3
    with pytest.raises(ConfigError):
        export_checkpoint(tmp_path / "nothing-here", tmp_path / "hf2")


def test_the_runs_tokenizer_is_shipped_only_unchanged(tmp_path):
    from tokenizers import Tokenizer, models

    from thresher.pipeline.export.tokenize import save_tokenizer, tokenizer_sha256

    tokenizer_dir = tmp_path / "tok"
    save_tokenizer(Tokenizer(models.BPE()), tokenizer_dir, "<|endoftext|>", "<|pad|>")
    data = {"tokenizer": {"name": "tok", "path": str(tokenizer_dir), "sha256": tokenizer_sha256(tokenizer_dir)},
            "eos_token_id": 0, "pad_token_id": 1}
    assert run_tokenizer(data) == tokenizer_dir
    assert run_tokenizer({"tokenizer": {"name": "test", "sha256": ""}}) is None  # a run that records none
    assert run_tokenizer({}, tmp_path / "tok") == tokenizer_dir  # --tokenizer
    with pytest.raises(ConfigError, match="--tokenizer .*nowhere: no tokenizer.json there"):
        run_tokenizer(data, tmp_path / "nowhere")
    (tokenizer_dir / "tokenizer_config.json").write_text("{}")  # retrained or edited since the export
    with pytest.raises(ConfigError, match="changed since the export"):
        run_tokenizer(data)
    with pytest.raises(ConfigError, match="is gone: pass --tokenizer DIR"):
        run_tokenizer({"tokenizer": {"path": str(tmp_path / "moved")}})

    model = random_model()
    export_model(model.state_dict(), model.config, tmp_path / "hf", special_ids=special_token_ids(data))
    assert json.loads((tmp_path / "hf" / "generation_config.json").read_text()) == {
        "eos_token_id": 0, "pad_token_id": 1, "max_length": model.config.max_position_embeddings}
    config = transformers.AutoConfig.from_pretrained(tmp_path / "hf")
    assert (config.eos_token_id, config.pad_token_id) == (0, 1)
