"""Stage 1 job: WARC files -> extracted, language-identified, exact-deduplicated documents.

One Spark task per WARC file runs `pipeline.prepare.records.process_warc` (records, URL filter,
extraction, language ID, MD5) and writes that file's rows itself, as one Parquet file in
OUTPUT/_work/files/ named by a hash of the file's base name and of its version (size, mtime and
head, or a remote file's ETag), written whole only when the file is finished (one PUT on an object
store). Exact dedup (a window over the MD5) and the outputs are DataFrame operations on those files.
Output: OUTPUT/documents/ (schemas.documents.PREPARED), OUTPUT/rejects/ (schemas.rejects.REJECT),
each written as Parquet parts by the Python workers (pipeline.stagedir.parts) and listed by the
`_COMMITTED` marker, and OUTPUT/stats.json, committed together.

Inputs and OUTPUT may be local paths or any fsspec URL (s3://, gs://, ...), on one code path: the
driver lists the inputs, each task streams its file through fsspec, and every object of OUTPUT, the
work files included, is written from Python with fsspec and pyarrow, never by Spark's own reader or
writer (the JVM needs no connector for the store) and never renamed on an object store. Lists and the
language-ID model given as URLs are fetched once per node (`pipeline.locations.local_copy`).

Resuming: a rerun after a crash (driver or executors) processes only the input files that have no
finished Parquet file for their current version yet; a file replaced since is read again.
Executors write into OUTPUT themselves, so OUTPUT must be one that the driver and every executor
reach: any path in local mode, a shared filesystem (NFS, Lustre) or an object store on a cluster.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from thresher.jobs.stage_job import StageJob, reject_rows
from thresher.pipeline.config import Config, ConfigError, PrepareConfig
from thresher.pipeline.filters import merge_rule_stats, rule_stats_from_json, rule_stats_report
from thresher.pipeline.locations import is_url, local_copy
from thresher.pipeline.prepare.archive_sniff import check_archive_inputs
from thresher.pipeline.prepare.inputs import expand_inputs, input_identity
from thresher.pipeline.prepare.records import (
    EXTRACT_FAILURE_RULES,
    ROW_DOCUMENT,
    ROW_FILE,
    ROW_REJECT,
    ROW_SCHEMA,
    file_output_name,
    write_warc_rows,
)
from thresher.pipeline.stagedir import WORK_DIR, StageOutput, crash_point, storage, write_whole
from thresher.pipeline.stagedir.parts import read_parquet_files, read_written, write_parts
from thresher.schemas import to_spark_schema
from thresher.schemas.documents import PREPARED
from thresher.schemas.rejects import REJECT

STAGE = "prepare"
# Record kinds that become a document or a reject; the others are only counted.
FILE_ROWS_FORMAT = 2  # bump when the per-file stats row changes shape (2: per-rule stats)
INPUT_UNITS = ("response", "resource", "conversion", "read_error", "unreadable")
_IDENTITY_THREADS = 16  # the driver stats (or asks a bucket about) every input in parallel: I/O, not CPU


class EveryPageFailed(ConfigError):
    """Every page that reached one step failed it: a setting or the environment is wrong, not the pages.

    A ConfigError, so the command line prints it as one line (with exit status 2), as it does a
    bad value caught before the job.
    """


def _arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="WARC/ARC/WET files or URLs (https://, s3://, any fsspec URL), globs, directories, or listing "
        "files (.txt, .paths, Common Crawl warc.paths.gz; relative entries join prepare.path_prefix). "
        "None: the bundled sample crawl",
    )
    parser.add_argument("--output", required=True, help="output directory: documents/, rejects/, stats.json")
    parser.add_argument(
        "--sample",
        action="store_true",
        help="read the bundled sample crawl (generated next to OUTPUT in sample-crawl/) instead of INPUT",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        help="input partitions (default: one per WARC file, the unit of parallelism); output does not depend on it",
    )


# The files stage 1's tasks open: mappings of category -> file, and single files (empty: off).
_FILE_MAPPINGS = ("domain_blocklists", "url_blocklists", "url_regex_lists")
_FILES = ("banned_words_file", "banned_subwords_file", "soft_banned_words_file", "lid_model_path")


def resolved_prepare_config(config: Config) -> PrepareConfig:
    """The prepare section with every list and model path made absolute (Config.resolve_path) and checked
    to exist.

    Raises ConfigError naming the key, before any work starts.
    """
    cfg = config.prepare

    def checked(key: str, path: str) -> str:
        resolved = config.resolve_path(path)
        if resolved and not is_url(resolved) and not Path(resolved).is_file():
            raise ConfigError(f"prepare.{key}: file not found: {resolved}")
        return resolved

    return dataclasses.replace(  # the numbers' ranges sit on PrepareConfig's fields, checked as the config was built
        cfg,
        **{key: {k: checked(f"{key}.{k}", v) for k, v in getattr(cfg, key).items()} for key in _FILE_MAPPINGS},
        **{key: checked(key, getattr(cfg, key)) for key in _FILES},
    )


def prepare_files(prepare: PrepareConfig) -> list[tuple[str, str]]:
    """(config key, path) of every file stage 1's tasks open."""
    files = [(f"prepare.{key}.{category}", path) for key in _FILE_MAPPINGS for category, path in getattr(prepare, key).items()]
    files += [(f"prepare.{key}", getattr(prepare, key)) for key in _FILES]
    return [(key, path) for key, path in files if path]


def run_prepare(spark, inputs: list[str], output_dir: str, config: Config, partitions: int | None = None) -> dict:
    """Run stage 1 on `inputs` into `output_dir`; returns the stats written to stats.json."""
    from pyspark.sql import functions as F
    from pyspark.sql.window import Window

    prepare = resolved_prepare_config(config)
    files = expand_inputs(inputs, prepare.path_prefix)
    check_archive_inputs(files)
    if partitions is not None and partitions < 1:
        raise ConfigError(f"--partitions must be at least 1, got {partitions}")
    output = StageOutput(output_dir)
    output.begin()
    started = time.time()

    # One task per file: the file is the unit of work, of failure and of resuming.
    files_dir = _files_dir(output, prepare)
    fs, files_root = storage(files_dir)
    # Finished work is keyed by the version of each file, so a file replaced since is read again.
    with ThreadPoolExecutor(max_workers=_IDENTITY_THREADS) as pool:
        identities = list(pool.map(input_identity, files))
    file_outputs = [file_output_name(path, identity) for path, identity in zip(files, identities, strict=True)]
    present = _work_files(fs, files_root)
    for name in present:
        if name.endswith(".tmp") or (name.endswith(".parquet") and name not in file_outputs):
            fs.rm_file(f"{files_root}/{name}")  # a crashed attempt's half-written file; an earlier version's rows
    todo = [(path, identity) for path, identity, done in zip(files, identities, file_outputs, strict=True)
            if done not in present]
    batch_size = prepare.files_per_batch or len(todo) or 1
    write = functools.partial(_write_file_rows, config=prepare, directory=files_dir)
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        spark.sparkContext.parallelize(batch, numSlices=min(partitions or len(batch), len(batch))).map(write).collect()
        if start + batch_size < len(todo):
            crash_point("prepare:files_partly_done")
    crash_point("prepare:files_done")
    records_done = time.time()
    # Every input's finished rows file (stale versions were removed above), one partition each, in name order.
    records = read_parquet_files(spark, files_dir, to_spark_schema(ROW_SCHEMA))

    # Exact dedup: per MD5, keep the smallest sha1("<seed>:<doc_id>"), ties broken by doc_id.
    docs = records.filter(F.col("row_kind") == ROW_DOCUMENT)
    by_md5 = Window.partitionBy("md5").orderBy(
        F.sha1(F.concat(F.lit(f"{prepare.dedup_seed}:"), F.col("doc_id"))), F.col("doc_id")
    )
    ranked = docs.withColumn("_rank", F.row_number().over(by_md5)).withColumn("_kept", F.first("doc_id").over(by_md5))
    kept = ranked.filter(F.col("_rank") == 1).select(*PREPARED.names)
    duplicates = reject_rows(ranked.filter(F.col("_rank") > 1), STAGE, "exact_duplicate", F.col("_kept"))
    record_rejects = reject_rows(records.filter(F.col("row_kind") == ROW_REJECT), STAGE, F.col("rule"),
                                 F.col("detail"), F.col("content"))
    write_parts(kept.orderBy("doc_id"), output, "documents")
    write_parts(record_rejects.unionByName(duplicates).select(*REJECT.names).orderBy("warc_path", "doc_id", "rule"),
                output, "rejects")
    written = time.time()

    counts, details = _stats(spark, records, output, files)
    details["files_resumed"] = len(files) - len(todo)  # finished by an earlier, interrupted attempt
    details["url_lists"] = url_lists_loaded(prepare)
    details["timings"] = {
        **details["timings"],
        "records_s": round(records_done - started, 3),
        "dedup_and_write_s": round(written - records_done, 3),
    }
    balance = counts["documents_out"] + sum(counts["rejects_by_rule"].values())
    if balance != counts["documents_in"]:
        raise RuntimeError(
            f"stage 1 lost track of records: {counts['documents_in']} in, but {counts['documents_out']} documents + "
            f"{balance - counts['documents_out']} rejects; output left uncommitted in {output_dir}"
        )
    _refuse_if_every_page_failed(spark, counts["documents_out"], details, output, output_dir)
    return output.commit_stats(STAGE, config, inputs, **counts, details=details)


def _write_file_rows(item: tuple[str, str], config: PrepareConfig, directory: str) -> int:
    path, identity = item
    return write_warc_rows(path, config, directory, identity)


def _refuse_if_every_page_failed(spark, documents_out: int, details: dict, output: StageOutput, output_dir: str) -> None:
    """Raise EveryPageFailed when no page made it and every page that entered some step failed there."""
    from pyspark.sql import functions as F

    if documents_out:
        return
    for step, tried in sorted(details["pages_by_step"].items()):
        if tried and details["failures_by_step"].get(step, 0) == tried:
            rules = [f"{step}_error", *(EXTRACT_FAILURE_RULES if step == "extract" else ())]
            top = (read_written(spark, output, "rejects").filter(F.col("rule").isin(rules)).groupBy("rule", "detail")
                   .count().orderBy(F.desc("count"), "rule", "detail").first())
            reason = f"{top.rule}: {top.detail}" if top else "no reject recorded"
            raise EveryPageFailed(
                f"every one of the {tried} pages that reached step {step!r} failed it ({reason}); "
                f"fix the setting or environment it names and rerun (output left uncommitted in {output_dir})"
            )


def url_lists_loaded(prepare: PrepareConfig) -> dict:
    """The URL filter lists this run loaded (resolved paths) with their entry counts, for stats.json:
    a config's blocklist mapping replaces the shipped one, so this says which lists were in force."""
    from thresher.pipeline.lexicon import read_list

    def entry(path: str) -> dict:
        return {"path": path, "entries": len(read_list(local_copy(path)))}  # a list at a URL: its cached copy

    lists: dict = {key: {category: entry(path) for category, path in sorted(getattr(prepare, key).items())}
                   for key in ("domain_blocklists", "url_blocklists", "url_regex_lists")}
    for key in ("banned_words_file", "banned_subwords_file", "soft_banned_words_file"):
        path = getattr(prepare, key)
        lists[key] = entry(path) if path else None
    return lists


def _files_dir(output: StageOutput, prepare: PrepareConfig) -> str:
    """The URL of the per-file work directory (`_work/files` on the output's store), emptied when an earlier
    attempt ran with another prepare config or wrote another shape of per-file rows (an older thresher).

    Its marker, `_work/files_config.json`, is written whole (one PUT on an object store)."""
    fs, root = output.fs, output.root
    files_dir, marker = f"{root}/{WORK_DIR}/files", f"{root}/{WORK_DIR}/files_config.json"
    wanted = json.dumps({"prepare": dataclasses.asdict(prepare), "file_rows": FILE_ROWS_FORMAT}, sort_keys=True)
    fs.invalidate_cache(f"{root}/{WORK_DIR}")
    try:
        recorded = fs.cat_file(marker).decode("utf-8", "replace")
    except FileNotFoundError:
        recorded = None
    if recorded != wanted and _work_files(fs, files_dir):
        fs.rm(files_dir, recursive=True)
    fs.makedirs(files_dir, exist_ok=True)  # a local directory; nothing on an object store
    write_whole(fs, marker, wanted.encode())
    return fs.unstrip_protocol(files_dir)


def _work_files(fs, files_dir: str) -> set[str]:
    """The names of the files in the work directory `files_dir` (a path on `fs`); none when it is not there."""
    fs.invalidate_cache(files_dir)
    try:
        return {name.rstrip("/").rsplit("/", 1)[-1] for name in fs.ls(files_dir, detail=False)}
    except FileNotFoundError:
        return set()


def _stats(spark, records, output: StageOutput, files: list[str]) -> tuple[dict, dict]:
    """The envelope's counts (documents_in: the input records) and the stage's details, from the
    written output and the per-file stat rows (never from accumulators)."""
    from pyspark.sql import functions as F

    kinds: Counter = Counter()
    pages_by_step: Counter = Counter()
    failures_by_step: Counter = Counter()
    task_wall = 0.0
    task_wall_max = 0.0
    max_rss_kb = 0
    extract_rss_kb = 0
    file_rules = []
    # One stats row per input file, from its one finished rows file: a retried task's attempts never add up.
    for row in sorted(records.filter(F.col("row_kind") == ROW_FILE).select("warc_path", "detail").collect()):
        file_stats = json.loads(row.detail)
        kinds.update(file_stats["records_by_kind"])
        file_rules.append(rule_stats_from_json(file_stats["rules"]))
        pages_by_step.update(file_stats.get("pages_by_step", {}))
        failures_by_step.update(file_stats.get("failures_by_step", {}))
        task_wall += file_stats["wall_seconds"]
        task_wall_max = max(task_wall_max, file_stats["wall_seconds"])
        max_rss_kb = max(max_rss_kb, file_stats["worker_max_rss_kb"])
        extract_rss_kb = max(extract_rss_kb, file_stats.get("extract_process_max_rss_kb", 0))
    rejects_by_rule = {
        row.rule: row["count"]
        for row in read_written(spark, output, "rejects").groupBy("rule").count().orderBy("rule").collect()
    }
    documents = read_written(spark, output, "documents")
    by_lang = {row.lang: row["count"] for row in documents.groupBy("lang").count().orderBy("lang").collect()}
    counts = {
        "documents_in": sum(kinds[kind] for kind in INPUT_UNITS),
        "documents_out": sum(part.rows for part in output.written("documents")[0]),
        "rejects_by_rule": rejects_by_rule,
    }
    # Per step, in pipeline order: pages it saw, dropped (its rejects) and its seconds, summed over files.
    counts["rules"] = rule_stats_report(merge_rule_stats(file_rules))
    return counts, {
        "files_in": len(files),
        "records_by_kind": dict(sorted(kinds.items())),
        "documents_by_lang": by_lang,
        # Pages that entered each per-page step, and those whose step raised or timed out there.
        "pages_by_step": dict(sorted(pages_by_step.items())),
        "failures_by_step": dict(sorted(failures_by_step.items())),
        "timings": {"tasks_wall_s": round(task_wall, 3), "tasks_wall_max_s": round(task_wall_max, 3)},  # the slowest file
        "worker_max_rss_mb": round(max_rss_kb / 1024, 1),
        "extract_process_max_rss_mb": round(extract_rss_kb / 1024, 1),  # the worker's extraction child
    }


def sample_inputs(output_dir: str) -> list[str]:
    """Write the bundled sample crawl next to `output_dir` (in sample-crawl/, on its store) and return its files.

    At a URL, the crawl is generated in a local temporary directory and each file put whole (one PUT)
    where no object of its size is yet, so a rerun finds the same versions and resumes."""
    from thresher.pipeline.prepare.sample_crawl import write_sample_crawl

    if not is_url(output_dir):
        return write_sample_crawl(os.path.join(os.path.dirname(os.path.abspath(output_dir)), "sample-crawl"))
    fs, root = storage(output_dir)
    directory = f"{root.rsplit('/', 1)[0]}/sample-crawl"
    urls = []
    with tempfile.TemporaryDirectory() as local:
        for path in write_sample_crawl(local):
            target = f"{directory}/{os.path.basename(path)}"
            data = Path(path).read_bytes()
            fs.invalidate_cache(target)
            if not fs.exists(target) or fs.size(target) != len(data):
                write_whole(fs, target, data)
            urls.append(fs.unstrip_protocol(target))
    return urls


def _check(args: argparse.Namespace, config: Config) -> str:
    """List and model paths, then the inputs (missing or non-WARC ones), checked before Spark starts;
    with --sample (or no INPUT) the bundled sample crawl is written and becomes the inputs."""
    resolved_prepare_config(config)
    if args.sample or not args.inputs:
        if args.inputs:
            raise ConfigError("give INPUT files or --sample, not both")
        args.inputs = sample_inputs(args.output)
        print(f"[thresher] prepare: reading the bundled sample crawl ({len(args.inputs)} files)", file=sys.stderr)
    args.input_files = expand_inputs(args.inputs, config.prepare.path_prefix)
    check_archive_inputs(args.input_files)
    return f"{len(args.inputs)} input(s)"


def executor_paths(input_files: list[str], config: Config) -> list[tuple[str, str]]:
    """What stage 1's tasks open: the WARC files (a listing's entries, not the listing) and the config's lists."""
    return [("INPUT", path) for path in input_files] + prepare_files(resolved_prepare_config(config))


def _work(spark, args: argparse.Namespace, config: Config) -> dict:
    return run_prepare(spark, args.inputs, args.output, config, args.partitions)


JOB = StageJob(STAGE, "thresher prepare", __doc__, _arguments, "prepare.lang_threshold=0.7", _work, _check,
               executor_paths=lambda args, config: executor_paths(args.input_files, config))


if __name__ == "__main__":
    sys.exit(JOB.main())
