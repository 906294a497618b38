"""Export: documents of any stage -> tokenized, packed, shuffled Parquet shards and a manifest.

    thresher export INPUT --output DIR --tokenizer TOKENIZER_DIR [--seq-len N] [--text-field NAME ...]

INPUT is any stage's committed output or a user's Parquet, JSONL or datasets directory (see
jobs.documents_input).

Plan (every step is defined by content and config, never by how the input is partitioned):

1. Executors tokenize documents in batches with the fast tokenizer (loaded once per process) and
   close each with EOS. The tokens go to the task's spill file (pipeline/spill.py) and never
   through Spark: Spark moves one small row per sampling copy, pointing at them, with its split
   (seeded hash of doc_id, so all copies of a document share it), a seeded key per copy and a
   packing range (key mod `pack_ranges`). Each task also reports its input counts (documents
   per split, copies, documents without text or sampled out) in a small file of its own, so the
   input text is read once, by this pass.
2. Each (split, range) is sorted by key (a seeded shuffle of documents) and packed on its own, in
   parallel, into rows of seq_len + 1 tokens; each range's last partial row is padded or dropped.
   Packed rows' tokens go to the packing task's spill file and their pointers to its own small
   Parquet file; what reaches the driver is one summary row per range (its counts and that file),
   so tokenizing, packing and counting are one Spark action.
3. From the per-range row counts, every row's index in its split is known; a seeded Feistel
   permutation turns it into a position (the global shuffle, with no global sort), and the
   position gives the shard (`shard_tokens`) and the row in it.
4. Row pointers are grouped by shard and sorted by position; one task writes each shard with a
   pyarrow ParquetWriter, reading rows from the spill files one row group at a time, so memory
   stays at a row group or two, whatever the total.
5. The document index (DIR/index/, schemas.tokens.DOCUMENT_INDEX, then the input's columns but the
   text): each packing task also wrote where each document copy starts in its range's rows
   (PACKED_DOCUMENTS); those starts are cut at row ends and placed as step 3 places rows
   (pipeline.export.index), joined to doc_id and copy by the copy's key, and to the input's columns.
6. Megatron shards (`export.format` megatron or both; pipeline.export.megatron): the same starts, placed as
   step 3 places rows, put each document copy in the Megatron shard numbered as the Parquet shard holding
   its first token; grouped by shard and sorted by that token's place, one task writes each shard's
   .bin/.idx pair, reading each copy's tokens whole from the packed rows' spill file. With format megatron
   alone, step 4's Parquet shards and step 5's index (which points into them) are not written.

Shard and spill files are written from the executors' Python workers with pyarrow and fsspec, never
by Spark's own reader or writer, so DIR (and INPUT, and TOKENIZER_DIR) may be a local path every node
sees or any fsspec URL (s3://, gs://...) with no connector in the JVM, and nothing is ever renamed
there: spill files and the tasks' counts go below DIR's work directory (`StageOutput.work_location`,
removed by the commit); each shard is written once, whole, at its fixed name (train/shard-00000.parquet),
every shard name listed in `_PARTS` before any is written, so a rerun after a crash clears them;
manifest.json is written by the driver (`put_file`) and the `_COMMITTED` marker, written last, lists
every shard, so no reader sees a half-committed export. A tokenizer given as a URL is fetched once
into the local cache (pipeline.locations.local_copy); the manifest records the URL as given.
Packing on the driver over a sorted stream (toLocalIterator) would be simpler, but it is a single
core after the tokenization barrier; ranges keep packing and writing as parallel as tokenizing.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from functools import partial
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
from thresher.jobs.documents_input import parts_frame as source_parts_frame
from thresher.jobs.stage_job import StageJob
from thresher.pipeline.config import Config, ConfigError, ExportConfig
from thresher.pipeline.export.encode import (
    DOCUMENT_SPILL_PREFIX,
    EncoderSpec,
    InputTally,
    document_parts,
    read_document_parts,
    read_input_tally,
    tokenize_parts,
)
from thresher.pipeline.export.index import DOCUMENT_COPIES, INDEX_PIECES, document_copies, index_pieces
from thresher.pipeline.export.megatron import (
    megatron_documents,
    megatron_dtype,
    megatron_files,
    megatron_manifest,
    write_megatron_batches,
)
from thresher.pipeline.export.packing import PACK_MODES, TAIL_MODES, pack_and_summarize, packed_documents_file
from thresher.pipeline.export.plan import SPLITS, Placement, ShardPlan, place_batches, shard_path
from thresher.pipeline.export.shards import write_shard_batches
from thresher.pipeline.export.tokenize import load_tokenizer, tokenizer_sha256
from thresher.pipeline.locations import is_url, local_copy
from thresher.pipeline.stagedir import StageOutput, crash_point, read_commit, storage
from thresher.pipeline.stagedir.documents import (
    DEFAULT_FIELDS,
    INPUT_PARSE_ERROR,
    DocumentSource,
    FieldMapping,
    document_batches,
    kept_fields,
    refuse_clashes,
    resolve_source,
)
from thresher.pipeline.stagedir.parts import read_parquet_urls, write_parts
from thresher.schemas import extend, to_spark_schema
from thresher.schemas.export_wire import (
    MEGATRON_DOCUMENTS,
    MEGATRON_WRITTEN,
    PACKED,
    PACKED_DOCUMENTS,
    PARTS,
    PLACED,
    RANGE_SUMMARY,
    TOKENIZED,
    WRITTEN,
)
from thresher.schemas.stats import STATS_FILE, read_stats
from thresher.schemas.tokens import (
    DOCUMENT_INDEX,
    DOCUMENT_INDEX_COLUMNS,
    DOCUMENT_INDEX_DIR,
    MANIFEST_FORMAT,
    TOKEN_COLUMNS,
    TOKEN_DTYPE,
)

STAGE = "export"
EXPORT_FORMATS = ("parquet", "megatron", "both")
SPILL_WORK = "spill"  # below the work directory: token spill files, packed rows' pointers, the tasks' counts


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input_dir", metavar="INPUT", help=INPUT_HELP)
    parser.add_argument("--output", required=True, help="directory for the shards and manifest.json")
    parser.add_argument("--tokenizer", required=True, help="Hugging Face tokenizer directory (e.g. from `thresher tokenizer train`)")
    parser.add_argument("--seq-len", type=int, help="tokens per training example (default: export.seq_len)")
    parser.add_argument("--format", help="shards to write: parquet (the bundled trainer's), megatron (Megatron-LM's "
                        "indexed dataset, megatron/SPLIT/shard-NNNNN.bin and .idx, for --data-path) or both "
                        "(default: export.format, parquet)")
    add_field_arguments(parser)


def check_export_config(config: ExportConfig) -> None:
    """ConfigError for settings the export cannot run with, before any work starts."""
    if config.pack_mode not in PACK_MODES:
        raise ConfigError(f"export.pack_mode: {config.pack_mode!r} is not one of {PACK_MODES}")
    if config.tail not in TAIL_MODES:
        raise ConfigError(f"export.tail: {config.tail!r} is not one of {TAIL_MODES}")
    if config.format not in EXPORT_FORMATS:
        raise ConfigError(f"export.format (--format): {config.format!r} is not one of {', '.join(EXPORT_FORMATS)}")
    # The numbers' ranges sit on ExportConfig's fields, checked as the config was built.


def _input_parts(source: DocumentSource) -> list[tuple[str, int, int]]:
    """A committed stage's documents (the Parquet parts its marker lists, on any store; resolve_source
    refused a stage with none) as `document_parts` (runs of Parquet row groups)."""
    return document_parts(source.files)


def parts_frame(spark, parts: list[tuple[str, int, int]]):
    """`parts` as a DataFrame (PARTS) with one partition each: executors read the documents
    themselves (pipeline.export.encode.read_document_parts)."""
    return spark.createDataFrame(spark.sparkContext.parallelize(parts, len(parts)), to_spark_schema(PARTS))


def _input_counts(tally: InputTally) -> dict:
    """Per split: source documents and copies to export; documents without text; documents sampled out.

    The tokenizing pass counted them (`tally`, summed over its tasks).
    """
    return {"empty_text": tally.empty_text, "sampled_out": tally.sampled_out, "documents_in": tally.documents_in,
            "splits": {name: {"source_documents": tally.source_documents[code], "copies": tally.copies[code]}
                       for code, name in enumerate(SPLITS)}}


def run_export(spark, input_dir: str, output_dir: str, tokenizer_dir: str, config: Config,
               fields: FieldMapping = DEFAULT_FIELDS) -> dict:
    """Tokenize, pack, shuffle and shard the documents of `input_dir` into `output_dir` (Parquet shards, Megatron
    shards or both: `export.format`); returns the stats."""
    cfg = config.export
    check_export_config(cfg)
    parquet, megatron = cfg.format in ("parquet", "both"), cfg.format in ("megatron", "both")
    documents = resolve_source(input_dir, with_limits(fields, config))
    own = index_columns(documents)
    tokenizer_files = local_copy(tokenizer_dir)  # a URL's directory fetched once into the local cache
    tokenizer = load_tokenizer(tokenizer_files, cfg.eos_token)
    if not is_url(tokenizer_dir):
        tokenizer_dir = tokenizer_files = str(Path(tokenizer_dir).resolve())
    capacity = cfg.seq_len + 1
    output = StageOutput(output_dir)
    output.begin()
    output_url = output.fs.unstrip_protocol(output.root)  # absolute: a relative local path means the driver's
    rejects_dir = fresh_rejects_dir(output)
    if documents.committed_stage and documents.has_columns(["doc_id", "text"]):
        parts, read = parts_frame(spark, _input_parts(documents)), read_document_parts
    else:  # conformed in the workers: ids derived where missing, sample_copies null (one copy) where absent
        parts = source_parts_frame(spark, documents)
        read = partial(document_batches, fields=documents.fields, rejects_dir=rejects_dir, stage=STAGE)
    started = output.started
    batch_setting = "spark.sql.execution.arrow.maxRecordsPerBatch"
    previous_batch = spark.conf.get(batch_setting, None)
    # Rows cross between the JVM and Python in bounded batches (Spark reads this at each action),
    # and a batch of pointers is a batch of tokens read back: encode_batch_documents documents
    # while packing, a row group's sequences while writing.
    spark.conf.set(batch_setting, str(cfg.encode_batch_documents))
    try:
        # The prepared tokenizer travels as a broadcast JSON string: executors skip transformers entirely.
        encoder = EncoderSpec.of(tokenizer, share=spark.sparkContext.broadcast)
        spill_dir = output.work_location(SPILL_WORK)
        tokenized = parts.mapInArrow(
            partial(tokenize_parts, encoder=encoder, seed=cfg.seed,
                    validation_fraction=cfg.validation_fraction, pack_ranges=cfg.pack_ranges,
                    batch_documents=cfg.encode_batch_documents, spill_dir=spill_dir, read_documents=read),
            to_spark_schema(TOKENIZED),
        )
        range_rows = (
            # No partition count: the rows are small pointers, and adaptive execution merges the
            # shuffle's partitions to its advisory size (whole ranges stay together), so a small
            # export packs in a few tasks, where a task per range cost more than the packing.
            tokenized.repartition("split", "range_id")
            # content_key last: equal doc_keys (a repeated doc_id) still sort the same way every run
            .sortWithinPartitions("split", "range_id", "doc_key", "content_key")
            .mapInArrow(partial(pack_and_summarize, capacity=capacity, mode=cfg.pack_mode,
                                pad_id=tokenizer.pad_id, tail=cfg.tail, spill_dir=spill_dir),
                        to_spark_schema(RANGE_SUMMARY))
            .collect()
        )
        tokenized_at = time.time()
        # The shard writers read only the packed rows (a fresh read below, no lineage back to the
        # documents): the documents' tokens can go, halving the scratch space from here on.
        spill_fs, spill_root = storage(spill_dir)
        spill_fs.invalidate_cache(spill_root)
        spent = spill_fs.glob(f"{spill_root}/{DOCUMENT_SPILL_PREFIX}-*")
        if spent:
            spill_fs.rm(spent)
        packed_files = sorted({row["file"] for row in range_rows if row["file"]})
        counts = _input_counts(read_input_tally(spill_dir, parts.rdd.getNumPartitions()))
        splits = _split_summaries(range_rows, counts, capacity, cfg.shard_tokens)
        placement = Placement(
            range_starts={code: splits[name]["range_starts"] for code, name in enumerate(SPLITS)},
            plans={code: splits[name]["plan"] for code, name in enumerate(SPLITS)},
            seed=cfg.seed,
        )
        total_shards = sum(plan.shards for plan in placement.plans.values())
        spark.conf.set(batch_setting, str(cfg.row_group_sequences))
        written, megatron_written = [], []
        if total_shards:
            # Every shard's fixed name goes to _PARTS before any task writes one (a rerun clears them).
            planned = [(SPLITS[code], shard) for code, plan in sorted(placement.plans.items())
                       for shard in range(plan.shards)]
            output.expect_files([shard_path(*key) for key in planned if parquet]
                                + [name for key in planned if megatron for name in megatron_files(*key)])
        if total_shards and megatron:
            megatron_written = _write_megatron_shards(spark, output_url, spill_dir, packed_files, placement,
                                                      capacity, range_rows, megatron_dtype(tokenizer.vocab_size),
                                                      batch_tokens=cfg.row_group_sequences * capacity)  # a row group
        megatron_at = time.time()
        if total_shards and parquet:
            packed = read_parquet_urls(spark, [f"{spill_dir}/{name}" for name in packed_files],
                                       to_spark_schema(PACKED))
            written = (
                packed.mapInArrow(partial(place_batches, placement=placement), to_spark_schema(PLACED))
                .repartition(total_shards, "split", "shard")
                .sortWithinPartitions("split", "shard", "pos")
                .mapInArrow(partial(write_shard_batches, output_dir=output_url, spill_dir=spill_dir,
                                    capacity=capacity, plans=placement.plans,
                                    row_group_sequences=cfg.row_group_sequences), to_spark_schema(WRITTEN))
                .collect()
            )
    finally:
        if previous_batch is None:
            spark.conf.unset(batch_setting)
        else:
            spark.conf.set(batch_setting, previous_batch)
    encoder.tokenizer_json.destroy()
    output.add_files({row["path"]: row["size"] for row in written})
    output.add_files({f"{row['prefix']}{suffix}": row[f"{suffix[1:]}_size"] for row in megatron_written
                      for suffix in (".bin", ".idx")})
    written_at = time.time()
    # The index says where documents lie in the Parquet shards: none, none to index.
    index = _write_document_index(spark, documents, own, output, spill_dir, packed_files, placement, capacity,
                                  range_rows, config) if parquet else None
    indexed_at = time.time()
    crash_point("export:shards_written")
    # The spill files go with the work directory at the commit.

    skipped = count_skipped_lines(rejects_dir, STAGE)
    manifest = _manifest(splits, written, cfg, config, tokenizer, tokenizer_dir, tokenizer_files,
                         _upstream_stats(input_dir) if documents.committed_stage else {}, parquet)
    manifest["document_index"] = index
    if megatron:
        manifest["megatron"] = megatron_manifest(megatron_written, megatron_dtype(tokenizer.vocab_size),
                                                 manifest["tokenizer"], tokenizer.eos_id)
    output.put_file("manifest.json", (json.dumps(manifest, indent=2, sort_keys=True) + "\n").encode())
    for note in empty_split_notes(manifest):
        print(note, file=sys.stderr, flush=True)
    finished = time.time()
    totals = {key: sum(manifest["splits"][name][key] for name in SPLITS)
              for key in ("documents", "source_documents", "sequences", "tokens", "padding_tokens", "dropped_tokens")}
    details = {
        "document_copies_out": totals["documents"],
        "documents_sampled_out": counts["sampled_out"],
        "sequences": totals["sequences"],
        "tokens": totals["tokens"],
        "padding_tokens": totals["padding_tokens"],
        "dropped_tokens": totals["dropped_tokens"],
        "shards": len(written),
        **({"megatron_shards": len(megatron_written)} if megatron else {}),
    }
    rejects_by_rule = {"empty_text": counts["empty_text"], **({INPUT_PARSE_ERROR: skipped} if skipped else {})}
    # unparsable lines are input records too
    return output.commit_stats(STAGE, config, [input_dir, tokenizer_dir], counts["documents_in"] + skipped,
                               totals["source_documents"], rejects_by_rule, details,
                               phases={"tokenize_pack": tokenized_at - started,
                                       **({"megatron_write": megatron_at - tokenized_at} if megatron else {}),
                                       "place_write": written_at - megatron_at,
                                       "document_index": indexed_at - written_at, "manifest": finished - indexed_at})


# What the document index reads of the input besides its own columns (the text became the tokens).
_INDEX_INPUT = pa.schema([pa.field("doc_id", pa.string()), pa.field("sample_copies", pa.int32())])


def index_columns(source: DocumentSource) -> list[pa.Field]:
    """The input columns the document index carries: every one but the text and sample_copies (a thresher
    stage's too: url, lang, the tag columns); in a user's input, one named as an index column is an InputError."""
    return refuse_clashes(source, kept_fields(source, _INDEX_INPUT), set(DOCUMENT_INDEX.names), STAGE)


def _write_megatron_shards(spark, output_url: str, spill_dir: str, packed_files: list[str], placement: Placement,
                           capacity: int, range_rows, dtype, batch_tokens: int) -> list:
    """The Megatron shards (pipeline.export.megatron), a .bin/.idx pair per planned shard where a document starts;
    their MEGATRON_WRITTEN rows. A writer holds `batch_tokens` tokens at a time (or one document)."""
    ranges = {(row["split"], row["range_id"]): row["sequences"] for row in range_rows}
    first_rows = {(row["split"], row["range_id"]): (row["rows_file"], row["rows_start"]) for row in range_rows
                  if row["sequences"]}
    documents = read_parquet_urls(spark, [f"{spill_dir}/{packed_documents_file(name)}" for name in packed_files],
                                  to_spark_schema(PACKED_DOCUMENTS))
    total_shards = sum(plan.shards for plan in placement.plans.values())
    return (
        documents.mapInArrow(partial(megatron_documents, placement=placement, capacity=capacity,
                                     range_sequences=ranges, range_rows=first_rows), to_spark_schema(MEGATRON_DOCUMENTS))
        .repartition(total_shards, "split", "shard")
        .sortWithinPartitions("split", "shard", "sequence", "token_start")
        .mapInArrow(partial(write_megatron_batches, output_dir=output_url, spill_dir=spill_dir, dtype=dtype,
                            plans=placement.plans, batch_tokens=batch_tokens), to_spark_schema(MEGATRON_WRITTEN))
        .collect()
    )


def _write_document_index(spark, source: DocumentSource, own: list[pa.Field], output: StageOutput, spill_dir: str,
                          packed_files: list[str], placement: Placement, capacity: int, range_rows, config: Config) -> dict:
    """DIR/index (schemas.tokens.DOCUMENT_INDEX, then the `own` columns of the input, unchanged), one row per
    piece of each exported document copy; what the manifest says of it."""
    from pyspark.sql import functions as F

    own_names = [field.name for field in own]
    ranges = {(row["split"], row["range_id"]): row["sequences"] for row in range_rows}
    pieces = read_parquet_urls(spark, [f"{spill_dir}/{packed_documents_file(name)}" for name in packed_files],
                               to_spark_schema(PACKED_DOCUMENTS))
    placed = pieces.mapInArrow(partial(index_pieces, placement=placement, capacity=capacity, range_sequences=ranges),
                               to_spark_schema(INDEX_PIECES))
    # Read again as the tokenizing pass read it (lines it set aside are set aside again, here uncounted).
    documents = documents_frame(spark, source, extend(_INDEX_INPUT, *own), rejects_dir=output.work_location("index_input"),
                                stage=STAGE)
    copies = documents.select("doc_id", "sample_copies").mapInArrow(
        partial(document_copies, seed=config.export.seed), to_spark_schema(DOCUMENT_COPIES))
    index = placed.join(copies, "doc_key")
    if own_names:
        index = index.join(documents.select("doc_id", *own_names), "doc_id")
    index = index.select(*[F.col(f.name).cast(f.dataType) for f in to_spark_schema(DOCUMENT_INDEX).fields], *own_names)
    parts = write_parts(index.orderBy("doc_id", "copy", "piece"), output, DOCUMENT_INDEX_DIR)
    return {"path": DOCUMENT_INDEX_DIR, "rows": sum(part.rows for part in parts),
            "columns": DOCUMENT_INDEX_COLUMNS | dict.fromkeys(own_names, "the input's own column, unchanged")}


def empty_split_notes(manifest: dict) -> list[str]:
    """A warning line for each split the export left empty (a small input and a small validation_fraction)."""
    notes = []
    for name in SPLITS:
        if manifest["splits"][name]["sequences"] == 0 and (name == "train" or manifest["validation_fraction"] > 0):
            advice = ("raise export.validation_fraction for a validation loss" if name == "validation"
                      else "the trainer needs one")
            notes.append(f"export: warning: the {name} split is empty ({manifest['splits'][name]['documents']} "
                         f"documents of {sum(s['documents'] for s in manifest['splits'].values())}): {advice}")
    return notes


def _split_summaries(range_rows, counts: dict, capacity: int, shard_tokens: int) -> dict:
    """Per split: counts, where each range's rows start in the split, and the shard plan."""
    splits = {}
    for code, name in enumerate(SPLITS):
        rows = sorted((r for r in range_rows if r["split"] == code), key=lambda r: r["range_id"])
        range_starts, total = {}, 0
        for row in rows:
            if row["range_id"] in range_starts:  # a range packed in two tasks would be packed wrongly
                raise RuntimeError(f"{name}: range {row['range_id']} was packed by more than one task")
            range_starts[row["range_id"]] = total
            total += row["sequences"]
        documents = sum(r["documents"] for r in rows)
        dropped_documents = sum(r["dropped_documents"] for r in rows)
        expected = counts["splits"][name]["copies"]
        if documents + dropped_documents != expected:
            raise RuntimeError(f"{name}: {documents + dropped_documents} documents packed, {expected} expected")
        splits[name] = {
            "range_starts": range_starts,
            "plan": ShardPlan.for_split(total, capacity, shard_tokens),
            "documents": documents,
            "source_documents": counts["splits"][name]["source_documents"],
            "padding_tokens": sum(r["padding"] for r in rows),
            "dropped_tokens": sum(r["dropped_tokens"] for r in rows),
            "dropped_documents": dropped_documents,
        }
    return splits


def _upstream_stats(input_dir: str) -> dict:
    """A committed stage's stats, as its marker holds them (a marker from before the list: its stats.json,
    read through the envelope); none when it has none."""
    commit = read_commit(input_dir)
    if commit.stats is not None:
        return commit.stats
    commit.fs.invalidate_cache(commit.path(STATS_FILE))
    return read_stats(input_dir) if commit.fs.isfile(commit.path(STATS_FILE)) else {}


def _manifest(splits: dict, written, cfg: ExportConfig, config: Config, tokenizer, tokenizer_dir: str,
              tokenizer_files: str, upstream_stats: dict, parquet: bool = True) -> dict:
    """The manifest; without `parquet` (format megatron) its splits list no Parquet shard, their counts all the same."""
    by_split = {name: [] for name in SPLITS}
    for row in sorted(written, key=lambda r: (r["split"], r["shard"])):
        by_split[SPLITS[row["split"]]].append(row)
    manifest_splits = {}
    for name in SPLITS:
        plan = splits[name]["plan"]
        shards = by_split[name]
        if [row["shard"] for row in shards] != list(range(plan.shards if parquet else 0)):
            raise RuntimeError(f"{name}: shards written {[r['shard'] for r in shards]}, planned {plan.shards}")
        manifest_splits[name] = {
            "shards": [{"path": shard_path(name, row["shard"]), "sequences": row["sequences"], "tokens": row["tokens"]}
                       for row in shards],
            "sequences": plan.sequences,
            "tokens": plan.sequences * (cfg.seq_len + 1),  # the rows' tokens, padding included
            **{key: splits[name][key] for key in
               ("documents", "source_documents", "padding_tokens", "dropped_tokens", "dropped_documents")},
        }
    return {
        "format": MANIFEST_FORMAT,
        "seq_len": cfg.seq_len,
        "token_dtype": TOKEN_DTYPE,
        "vocab_size": tokenizer.vocab_size,
        "eos_token_id": tokenizer.eos_id,
        "pad_token_id": tokenizer.pad_id,
        "pack_mode": cfg.pack_mode,
        "tail": cfg.tail,
        "shard_format": cfg.format,  # parquet, megatron or both: `megatron` below describes the Megatron shards
        # path: where train-export copies the tokenizer from (checked against sha256 first): a URL as given
        "tokenizer": {"name": tokenizer_dir.rstrip("/").rsplit("/", 1)[-1], "path": tokenizer_dir,
                      "sha256": tokenizer_sha256(tokenizer_files)},
        "columns": TOKEN_COLUMNS,
        "config_hash": config.digest(),
        "seed": cfg.seed,
        "validation_fraction": cfg.validation_fraction,
        "splits": manifest_splits,
        # A stage's stats; a user's corpus (a stats.json there is theirs) has none.
        "upstream_stats": upstream_stats,
    }


def _check(args: argparse.Namespace, config: Config) -> None:
    check_export_config(config.export)
    index_columns(resolve_source(args.input_dir, with_limits(fields_from_args(args), config)))  # before Spark starts


def _work(spark, args: argparse.Namespace, config: Config) -> dict:
    return run_export(spark, args.input_dir, args.output, args.tokenizer, config, fields_from_args(args))


JOB = StageJob(
    STAGE, "thresher export", __doc__, _arguments, "export.validation_fraction=0.01", _work, _check, "input_dir",
    implied_overrides=lambda args: ([] if args.seq_len is None else [f"export.seq_len={args.seq_len}"])
    + ([] if args.format is None else [f"export.format={args.format}"]),  # wins over --set
)


if __name__ == "__main__":
    sys.exit(JOB.main())
