"""A small byte-level BPE trained on real English and Chinese texts, for the tokenizer and export tests."""

from __future__ import annotations

import json

import pytest

from thresher.pipeline.export.tokenize import save_tokenizer, train_byte_level_bpe


@pytest.fixture(scope="module")
def real_texts(shared_data):
    texts = [json.loads(line)["text"] for line in (shared_data / "quality/dclm/agreement_data.jsonl").open()][:150]
    chinese = shared_data / "quality/chinesewebtext/cleared1.jsonl"
    texts += [json.loads(line)["raw_content"] for line in chinese.open()][:50]
    return texts


@pytest.fixture(scope="module")
def tokenizer_dir(real_texts, tmp_path_factory):
    directory = tmp_path_factory.mktemp("tokenizer")
    special = ["<|endoftext|>", "<|pad|>"]
    tokenizer = train_byte_level_bpe(real_texts, vocab_size=800, special_tokens=special)
    save_tokenizer(tokenizer, directory, eos_token=special[0], pad_token=special[1])
    return directory
