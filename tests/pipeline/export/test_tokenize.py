"""Tokenizer training, saving and loading on real texts, without Spark."""

from __future__ import annotations

import json

import numpy as np
import pytest

from thresher.pipeline.export.tokenize import (
    _load_generic_fast,
    _load_with_transformers,
    load_tokenizer,
    save_tokenizer,
    tokenizer_sha256,
    train_byte_level_bpe,
)

SPECIAL = ["<|endoftext|>", "<|pad|>"]
AWKWARD = [
    "",
    " leading space",
    "trailing spaces   ",
    "\n\nnewlines\r\n\tand tabs\n",
    "  two  spaces  ",
    "emoji 🧪🚀 and combining e\u0301 and NBSP\u00a0here",
    "literal <|endoftext|> and <|pad|> in the text",
    "中文没有空格，标点：“引号”。",
    "mixed 中文 English 123 ４５６",
    "\u0000 control \u200b zero width",
]


def test_trained_bpe_has_the_vocab_size_and_special_tokens_first(tokenizer_dir):
    loaded = load_tokenizer(tokenizer_dir)
    assert loaded.vocab_size == 800
    assert (loaded.eos_id, loaded.pad_id) == (0, 1)


def test_round_trip_is_exact_on_real_and_awkward_texts(tokenizer_dir, real_texts):
    loaded = load_tokenizer(tokenizer_dir)
    texts = real_texts + AWKWARD
    values, offsets = loaded.encode(texts)
    for i, text in enumerate(texts):
        ids = values[offsets[i] : offsets[i + 1]]
        assert ids[-1] == loaded.eos_id
        assert loaded.eos_id not in ids[:-1] and loaded.pad_id not in ids[:-1]  # special text stays text
        assert loaded.decode(ids[:-1]) == text


def test_bpe_compresses_real_text(tokenizer_dir, real_texts):
    values, _ = load_tokenizer(tokenizer_dir).encode(real_texts)
    assert len(values) < 0.6 * sum(len(t.encode()) for t in real_texts)


def test_directory_loads_with_auto_tokenizer_and_round_trips(tokenizer_dir, real_texts):
    from transformers import AutoTokenizer

    assert {p.name for p in tokenizer_dir.iterdir()} >= {"tokenizer.json", "tokenizer_config.json",
                                                         "special_tokens_map.json"}
    hf = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    assert hf.eos_token == "<|endoftext|>" and hf.pad_token == "<|pad|>" and hf.eos_token_id == 0
    for text in real_texts[:20] + AWKWARD:
        ids = hf(text, add_special_tokens=False)["input_ids"]
        assert hf.decode(ids) == text


def test_training_is_deterministic(real_texts, tmp_path):
    for name in ("a", "b"):
        save_tokenizer(train_byte_level_bpe(real_texts, 600, SPECIAL), tmp_path / name, SPECIAL[0], SPECIAL[1])
    assert (tmp_path / "a/tokenizer.json").read_bytes() == (tmp_path / "b/tokenizer.json").read_bytes()
    assert tokenizer_sha256(tmp_path / "a") == tokenizer_sha256(tmp_path / "b")


def test_sha256_covers_the_tokenizer_files_only(tokenizer_dir, tmp_path):
    copy = tmp_path / "copy"
    copy.mkdir()
    for path in tokenizer_dir.iterdir():
        (copy / path.name).write_bytes(path.read_bytes())
    (copy / "stats.json").write_text("{}")
    assert tokenizer_sha256(copy) == tokenizer_sha256(tokenizer_dir)
    config = json.loads((copy / "tokenizer_config.json").read_text())
    config["model_max_length"] = 7
    (copy / "tokenizer_config.json").write_text(json.dumps(config))
    assert tokenizer_sha256(copy) != tokenizer_sha256(tokenizer_dir)


def test_generic_fast_tokenizers_load_without_transformers_and_encode_the_same(tokenizer_dir, real_texts):
    fast = _load_generic_fast(tokenizer_dir, "<|endoftext|>")
    reference = _load_with_transformers(tokenizer_dir, "<|endoftext|>")
    assert fast is not None
    assert (fast.eos_id, fast.pad_id, fast.vocab_size) == (reference.eos_id, reference.pad_id, reference.vocab_size)
    for ours, theirs in zip(fast.encode(real_texts + AWKWARD), reference.encode(real_texts + AWKWARD), strict=True):
        np.testing.assert_array_equal(ours, theirs)


def test_tokenizers_transformers_would_change_are_loaded_by_transformers(tokenizer_dir, tmp_path):
    def copy_with(name, **settings):
        target = tmp_path / name
        target.mkdir()
        for path in tokenizer_dir.iterdir():
            (target / path.name).write_bytes(path.read_bytes())
        config = json.loads((target / "tokenizer_config.json").read_text())
        (target / "tokenizer_config.json").write_text(json.dumps({**config, **settings}))
        return target

    # A special token the vocabulary lacks: transformers adds it, so the vocabulary grows by one.
    new_token = copy_with("new_token", additional_special_tokens=["<|new|>"])
    assert _load_generic_fast(new_token, "<|endoftext|>") is None
    assert load_tokenizer(new_token).vocab_size == load_tokenizer(tokenizer_dir).vocab_size + 1
    assert _load_generic_fast(copy_with("other_class", tokenizer_class="GPT2TokenizerFast"), "<|endoftext|>") is None


def test_a_tokenizer_without_eos_is_refused(real_texts, tmp_path):
    tokenizer = train_byte_level_bpe(real_texts[:20], 300, ["<|pad|>"])
    save_tokenizer(tokenizer, tmp_path, eos_token="<|pad|>", pad_token="<|pad|>")
    for name in ("tokenizer_config.json", "special_tokens_map.json"):
        settings = json.loads((tmp_path / name).read_text())
        del settings["eos_token"]
        (tmp_path / name).write_text(json.dumps(settings))
    with pytest.raises(ValueError, match="eos"):
        load_tokenizer(tmp_path, eos_token="<|missing|>")
    assert load_tokenizer(tmp_path, eos_token="<|pad|>").eos_id == 0  # the fallback token when present


def test_encode_returns_flat_int32_with_offsets(tokenizer_dir):
    values, offsets = load_tokenizer(tokenizer_dir).encode(["a b", "c"])
    assert values.dtype == np.int32 and offsets[0] == 0 and offsets[-1] == len(values) and len(offsets) == 3


def test_a_long_text_is_encoded_in_line_pieces_to_the_tokens_of_the_whole(tokenizer_dir, real_texts, monkeypatch):
    """One huge document held ~100 bytes per token of encoding state: export passed 12.5 GB on 100 MB."""
    import thresher.pipeline.export.tokenize as tokenize

    long_text = "\n".join([*real_texts, *AWKWARD, "\n\n  indented after blank lines", "last line"] * 3)
    pieces = tokenize.line_pieces(long_text, 500)
    assert "".join(pieces) == long_text and len(pieces) > 10
    assert all(piece.endswith("\n") and not next_piece[0].isspace() for piece, next_piece in zip(pieces[:-1], pieces[1:], strict=True))
    assert tokenize.line_pieces("no newline " * 100, 50) == ["no newline " * 100]
    tokenizer = load_tokenizer(tokenizer_dir)
    whole = tokenizer.backend.encode(long_text, add_special_tokens=False).ids
    monkeypatch.setattr(tokenize, "PIECE_CHARS", 500)
    monkeypatch.setattr(tokenize, "ENCODE_BATCH_CHARS", 2000)
    values, offsets = tokenizer.encode([long_text, "short", long_text])
    assert list(values[offsets[0]:offsets[1] - 1]) == whole and values[offsets[1] - 1] == tokenizer.eos_id
    assert list(values[offsets[2]:offsets[3] - 1]) == whole
