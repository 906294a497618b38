"""Tokenizer training: a byte-level BPE on a seeded sample of a stage's documents.

    thresher tokenizer train INPUT --output TOKENIZER_DIR [--vocab-size N] [--text-field NAME ...]

INPUT is a stage's committed output or a user's Parquet, JSONL or datasets directory (see
jobs.documents_input).

The sample is the documents whose seeded hash of doc_id falls below a cut chosen to keep about
`export.tokenizer_sample_documents` of them: fixed by content and seed, not by partitioning. Their
texts stream to the driver in hash order (toLocalIterator, one partition at a time) into the
`tokenizers` trainer, which keeps word counts, not texts. The directory written is a standard
Hugging Face tokenizer directory, committed with a `_COMMITTED` marker and stats.json.

INPUT and TOKENIZER_DIR may be local paths or any object store URL (s3://...): the documents are read
from the Python workers, and the tokenizer, saved on the driver to a temporary directory, is committed
file by file (StageOutput.put_file), with no rename. A process that loads a tokenizer from a URL reads
its local copy (pipeline.locations.local_copy).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import pyarrow as pa

from thresher.jobs.documents_input import (
    INPUT_HELP,
    add_field_arguments,
    count_skipped_lines,
    documents_frame,
    fields_from_args,
    fresh_rejects_dir,
    with_limits,
)
from thresher.jobs.stage_job import StageJob
from thresher.pipeline.config import Config, ConfigError
from thresher.pipeline.export.tokenize import (
    PIECE_CHARS,
    line_pieces,
    save_tokenizer,
    tokenizer_sha256,
    train_byte_level_bpe,
)
from thresher.pipeline.stagedir import StageOutput
from thresher.pipeline.stagedir.documents import DEFAULT_FIELDS, INPUT_PARSE_ERROR, FieldMapping, resolve_source
from thresher.schemas.errors import InputError

STAGE = "tokenizer"
# What the sample needs of each document: doc_id (for the seeded hash) and the text.
_SAMPLED_COLUMNS = pa.schema([pa.field("doc_id", pa.string()), pa.field("text", pa.string())])


def _arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    sub = parser.add_subparsers(dest="tokenizer_command", metavar="ACTION", required=True)
    train = sub.add_parser("train", help="train a byte-level BPE on a sample of a stage's documents",
                           description="train a byte-level BPE on a sample of a stage's documents")
    train.add_argument("input_dir", metavar="INPUT", help=INPUT_HELP)
    train.add_argument("--output", required=True, help="tokenizer directory to write (AutoTokenizer loads it)")
    train.add_argument("--vocab-size", type=int, help="vocabulary size, special tokens included (default: export.vocab_size)")
    add_field_arguments(train)
    return train


def vocabulary_note(trained: int, configured: int) -> str | None:
    """The line printed when BPE stopped short of the configured vocabulary (the sample ran out of merges)."""
    if trained >= configured:
        return None
    return (f"tokenizer: the vocabulary has {trained:,} tokens, fewer than export.vocab_size {configured:,}: the "
            f"sample ran out of pairs to merge (train on more documents for the full size); the model uses {trained:,}")


def run_tokenizer_train(spark, input_dir: str, output_dir: str, config: Config,
                        fields: FieldMapping = DEFAULT_FIELDS) -> dict:
    """Train the BPE on the sampled documents of `input_dir` and commit it to `output_dir`; returns the stats."""
    from pyspark.sql import functions as F

    cfg = config.export
    special_tokens = [cfg.eos_token, cfg.pad_token, *cfg.extra_special_tokens]
    if cfg.vocab_size < 256 + len(special_tokens):
        raise ConfigError(f"export.vocab_size: {cfg.vocab_size} cannot hold 256 bytes and {len(special_tokens)} special tokens")
    if len(set(special_tokens)) != len(special_tokens):
        raise ConfigError(f"export: special tokens must differ, got {special_tokens}")
    source = resolve_source(input_dir, with_limits(fields, config))
    output = StageOutput(output_dir)
    output.begin()

    rejects_dir = fresh_rejects_dir(output)
    docs = documents_frame(spark, source, _SAMPLED_COLUMNS, rejects_dir=rejects_dir, stage=STAGE).where(F.length("text") > 0)
    documents_in = docs.count()
    skipped = count_skipped_lines(rejects_dir, STAGE)
    if documents_in == 0:  # a BPE of no text is the 256 bytes alone: useless, and it would look like success
        raise InputError(f"{input_dir} holds no document with text to train the tokenizer on"
                         + (f" ({skipped:,} unreadable, counted as {INPUT_PARSE_ERROR})" if skipped else "")
                         + ": check INPUT and --text-field")
    keep = min(1.0, cfg.tokenizer_sample_documents / max(documents_in, 1))
    # xxhash64 is a signed 64-bit value: keep the lowest `keep` share of its range.
    cut = int(-(2**63) + keep * 2**64)
    key = F.xxhash64(F.lit(cfg.seed), F.col("doc_id"))
    sample = docs.select(key.alias("key"), "doc_id", "text")
    if keep < 1.0:
        sample = sample.where(F.col("key") < F.lit(cut))
    sample = sample.orderBy("key", "doc_id")
    sampled = {"documents": 0, "chars": 0}

    def texts():
        for row in sample.toLocalIterator():
            sampled["documents"] += 1
            sampled["chars"] += len(row["text"])
            # A long document in line pieces: the same words to count, without the trainer holding it whole.
            yield from line_pieces(row["text"], PIECE_CHARS)

    tokenizer = train_byte_level_bpe(texts(), cfg.vocab_size, special_tokens, cfg.tokenizer_min_frequency)
    with tempfile.TemporaryDirectory(prefix="thresher-tokenizer-") as saved:
        save_tokenizer(tokenizer, saved, cfg.eos_token, cfg.pad_token, cfg.extra_special_tokens)
        sha256 = tokenizer_sha256(saved)
        for path in sorted(Path(saved).iterdir()):
            output.put_file(path.name, path.read_bytes())
    details = {
        "sample_chars": sampled["chars"],
        "vocab_size": tokenizer.get_vocab_size(with_added_tokens=True),
        "special_tokens": special_tokens,
        "sha256": sha256,
    }
    rejects_by_rule = {INPUT_PARSE_ERROR: skipped} if skipped else {}
    stats = output.commit_stats(STAGE, config, [input_dir], documents_in + skipped, sampled["documents"], rejects_by_rule, details)
    note = vocabulary_note(details["vocab_size"], cfg.vocab_size)
    if note:
        print(note, file=sys.stderr, flush=True)
    return stats


def _work(spark, args: argparse.Namespace, config: Config) -> dict:
    return run_tokenizer_train(spark, args.input_dir, args.output, config, fields_from_args(args))


JOB = StageJob(
    "tokenizer train", "thresher tokenizer", __doc__, _arguments, "export.vocab_size=16384", _work,
    documents_input="input_dir",
    implied_overrides=lambda args: [] if args.vocab_size is None else [f"export.vocab_size={args.vocab_size}"],
)


if __name__ == "__main__":
    sys.exit(JOB.main())
