"""Tokenizer training, saving, loading and batch encoding on real texts, without Spark."""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from pipeline.inputs import InputError
from pipeline.packing import TALLY_FIELDS, TALLY_RANGE, TOKENIZED, TOKENIZED_TALLIED, document_key, is_validation
from pipeline.spill import SpillReader
from pipeline.tokenize import (
    DOCUMENTS,
    PARTS,
    EncoderSpec,
    _load_generic_fast,
    _load_with_transformers,
    content_key,
    document_parts,
    load_tokenizer,
    read_document_parts,
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


def test_tokenize_batches_emits_one_row_per_copy_with_split_key_and_range(tokenizer_dir, tmp_path):
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
                                batch_documents=2, spill_dir=str(tmp_path)))
    rows = pa.Table.from_batches(out, schema=TOKENIZED).to_pylist()
    reader = SpillReader(tmp_path)
    expected = [(d, c, t) for d, t, n in (("a", "first document", 1), ("b", "second", 3), ("f", "last one", 2))
                for c in range(n)]
    assert len(rows) == len(expected)
    for row, (doc_id, copy_index, text) in zip(rows, expected, strict=True):
        assert row["doc_key"] == document_key(doc_id, copy_index, 3)
        assert row["range_id"] == row["doc_key"] % 4
        assert row["split"] == int(is_validation(doc_id, 3, 0.5))
        tokens = reader.gather([row["file"]], np.array([row["start"]]), np.array([row["length"]]))[0].tolist()
        assert tokens[-1] == loaded.eos_id and loaded.decode(tokens[:-1]) == text
        assert row["content_key"] == content_key(np.asarray(tokens, dtype=np.int32))
    # One spill file, holding each document's tokens once however many copies point at them.
    (spill_file,) = tmp_path.iterdir()
    assert {row["file"] for row in rows} == {spill_file.name}
    unique = {(row["start"], row["length"]) for row in rows}
    assert len(unique) == 3 and spill_file.stat().st_size == 4 * sum(length for _, length in unique)


def parts_batch(parts):
    return pa.RecordBatch.from_pylist([dict(zip(PARTS.names, part, strict=True)) for part in parts], schema=PARTS)


def test_document_parts_take_row_groups_together_up_to_the_part_size_and_check_the_columns(tmp_path):
    table = pa.table({"doc_id": [f"d{i}" for i in range(10)], "text": ["x" * 1000] * 10})
    pq.write_table(table, tmp_path / "groups.parquet", row_group_size=2)  # 5 row groups of about 3 kB
    pq.write_table(table.slice(0, 1), tmp_path / "one.parquet")
    pq.write_table(table.drop_columns(["text"]), tmp_path / "bad.parquet")
    files = [tmp_path / "groups.parquet", tmp_path / "one.parquet"]
    groups, one = str(files[0]), str(files[1])
    assert document_parts(files, part_bytes=1) == [*((groups, g, 1) for g in range(5)), (one, 0, 1)]
    assert document_parts(files, part_bytes=6000) == [(groups, 0, 2), (groups, 2, 2), (groups, 4, 1), (one, 0, 1)]
    assert document_parts(files) == [(groups, 0, 5), (one, 0, 1)]  # never across files
    with pytest.raises(InputError, match=r"bad.parquet lacks column\(s\) \['text'\]"):
        document_parts([*files, tmp_path / "bad.parquet"])


def test_read_document_parts_reads_row_groups_in_batches_with_their_copies(tmp_path):
    rebalanced = pa.table({"doc_id": ["a", "b", "c", "d"], "text": ["1", "2", None, "4"],
                           "sample_copies": pa.array([2, None, 0, 3], pa.int64()), "other": [1, 2, 3, 4]})
    pq.write_table(rebalanced, tmp_path / "rebalanced.parquet", row_group_size=3)
    pq.write_table(pa.table({"text": ["5"], "doc_id": ["e"]}), tmp_path / "plain.parquet")
    parts = document_parts([tmp_path / "rebalanced.parquet", tmp_path / "plain.parquet"], part_bytes=1)
    batches = list(read_document_parts(iter([parts_batch(parts[:2]), parts_batch(parts[2:])]), batch_documents=2))
    assert [b.num_rows for b in batches] == [2, 1, 1, 1]  # row groups of 3, 1 and 1, in batches of at most 2
    rows = pa.Table.from_batches(batches, schema=DOCUMENTS).to_pylist()
    assert [(r["doc_id"], r["text"], r["copies"]) for r in rows] == [
        ("a", "1", 2), ("b", "2", 1), ("c", None, 0), ("d", "4", 3), ("e", "5", 1)]


def test_tokenize_tallied_batches_adds_the_input_counts_after_the_same_rows(tokenizer_dir, tmp_path):
    docs = pa.RecordBatch.from_pylist(
        [{"doc_id": f"doc-{i}", "text": "" if i % 5 == 0 else f"text {i}", "copies": i % 3} for i in range(40)],
        schema=DOCUMENTS,
    )
    stage = tmp_path / "stage.parquet"
    pq.write_table(pa.Table.from_batches([docs]).rename_columns(["doc_id", "text", "sample_copies"]), stage,
                   row_group_size=25)
    spec = EncoderSpec.of(load_tokenizer(tokenizer_dir))
    options = {"seed": 3, "validation_fraction": 0.3, "pack_ranges": 4, "batch_documents": 7,
               "spill_dir": str(tmp_path / "spill")}
    plain = pa.Table.from_batches(list(tokenize_batches(iter([docs]), spec, **options)), schema=TOKENIZED)
    parts = document_parts([stage], part_bytes=1)
    assert len(parts) == 2
    tallied = pa.Table.from_batches(list(tokenize_tallied_batches(iter([parts_batch(parts)]), spec, **options)),
                                    schema=TOKENIZED_TALLIED)
    is_tally = [r == TALLY_RANGE for r in tallied.column("range_id").to_pylist()]
    data = tallied.filter(pa.array([not t for t in is_tally]))
    same = [name for name in TOKENIZED.names if name != "file"]  # each call spills to a file of its own
    assert data.select(same).equals(plain.select(same))
    assert all(data.column(name).to_pylist() == [0] * len(data) for name in TALLY_FIELDS)
    counts = {}
    for row in tallied.filter(pa.array(is_tally)).to_pylist():
        assert row["file"] == "" and row["length"] == 0
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
