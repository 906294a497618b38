"""Tokenizer training, saving, loading and batch encoding on real texts, without Spark."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pytest

from pipeline.packing import TALLY_FIELDS, TALLY_RANGE, TOKENIZED, TOKENIZED_TALLIED, document_key, is_validation
from pipeline.tokenize import (
    EncoderSpec,
    load_tokenizer,
    save_tokenizer,
    tokenize_batches,
    tokenize_tallied_batches,
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


@pytest.fixture(scope="module")
def real_texts(shared_data):
    texts = [json.loads(line)["text"] for line in (shared_data / "quality/dclm/agreement_data.jsonl").open()][:150]
    chinese = shared_data / "quality/chinesewebtext/cleared1.jsonl"
    texts += [json.loads(line)["raw_content"] for line in chinese.open()][:50]
    return texts


@pytest.fixture(scope="module")
def tokenizer_dir(real_texts, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer")
    tokenizer = train_byte_level_bpe(real_texts, vocab_size=800, special_tokens=SPECIAL)
    save_tokenizer(tokenizer, directory, eos_token=SPECIAL[0], pad_token=SPECIAL[1])
    return directory


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


def test_tokenize_batches_emits_one_row_per_copy_with_split_key_and_range(tokenizer_dir):
    docs = pa.RecordBatch.from_pylist(
        [
            {"doc_id": "a", "text": "first document", "copies": 1},
            {"doc_id": "b", "text": "second", "copies": 3},
            {"doc_id": "c", "text": "sampled out", "copies": 0},
            {"doc_id": "d", "text": "", "copies": 2},
            {"doc_id": "e", "text": None, "copies": 1},
            {"doc_id": "f", "text": "last one", "copies": 2},
        ]
    )
    loaded = load_tokenizer(tokenizer_dir)
    out = list(tokenize_batches(iter([docs]), EncoderSpec.of(loaded), seed=3, validation_fraction=0.5, pack_ranges=4,
                                batch_documents=2))
    rows = pa.Table.from_batches(out, schema=TOKENIZED).to_pylist()
    expected = [(d, c, t) for d, t, n in (("a", "first document", 1), ("b", "second", 3), ("f", "last one", 2))
                for c in range(n)]
    assert len(rows) == len(expected)
    for row, (doc_id, copy_index, text) in zip(rows, expected, strict=True):
        assert row["doc_key"] == document_key(doc_id, copy_index, 3)
        assert row["range_id"] == row["doc_key"] % 4
        assert row["split"] == int(is_validation(doc_id, 3, 0.5))
        tokens = np.frombuffer(row["tokens"], dtype="<i4").tolist()
        assert tokens[-1] == loaded.eos_id and loaded.decode(tokens[:-1]) == text


def test_tokenize_tallied_batches_adds_the_input_counts_after_the_same_rows(tokenizer_dir):
    docs = pa.RecordBatch.from_pylist(
        [{"doc_id": f"doc-{i}", "text": "" if i % 5 == 0 else f"text {i}", "copies": i % 3} for i in range(40)]
    )
    spec = EncoderSpec.of(load_tokenizer(tokenizer_dir))
    options = {"seed": 3, "validation_fraction": 0.3, "pack_ranges": 4, "batch_documents": 7}
    plain = pa.Table.from_batches(list(tokenize_batches(iter([docs]), spec, **options)), schema=TOKENIZED)
    tallied = pa.Table.from_batches(list(tokenize_tallied_batches(iter([docs.slice(0, 25), docs.slice(25)]), spec,
                                                                  **options)), schema=TOKENIZED_TALLIED)
    is_tally = [r == TALLY_RANGE for r in tallied.column("range_id").to_pylist()]
    data = tallied.filter(pa.array([not t for t in is_tally]))
    assert data.select(TOKENIZED.names).equals(plain)
    assert all(data.column(name).to_pylist() == [0] * len(data) for name in TALLY_FIELDS)
    counts = {}
    for row in tallied.filter(pa.array(is_tally)).to_pylist():
        assert row["tokens"] == b""
        for name in TALLY_FIELDS:
            counts[row["split"], name] = counts.get((row["split"], name), 0) + row[name]
    kept = [i for i in range(40) if i % 5 and i % 3]
    for split in (0, 1):
        in_split = [i for i in kept if int(is_validation(f"doc-{i}", 3, 0.3)) == split]
        assert counts.get((split, "source_documents"), 0) == len(in_split)
        assert counts.get((split, "copies"), 0) == sum(i % 3 for i in in_split)
    assert sum(v for (_, name), v in counts.items() if name == "empty_text") == 8
    assert sum(v for (_, name), v in counts.items() if name == "sampled_out") == 40 - 8 - len(kept)


def test_encode_returns_flat_int32_with_offsets(tokenizer_dir):
    values, offsets = load_tokenizer(tokenizer_dir).encode(["a b", "c"])
    assert values.dtype == np.int32 and offsets[0] == 0 and offsets[-1] == len(values) and len(offsets) == 3
