"""The run report's figures: what happened to the data, as plain JSON-able data (report.json).

Built from what the stages committed (their stats, documents, rejects, the token manifest), read
with pyarrow in batches, so it needs no Spark and its memory does not grow with the data. The run
directory may be a local path or any fsspec URL (s3://...): a committed stage's stats are read from its
`_COMMITTED` marker (stats.json where the marker holds none) and its tables as the marker lists them,
all through fsspec. Rendering is pipeline.report.html.
"""

from __future__ import annotations

import datetime
import json
import os
import re
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

from thresher.pipeline.locations import is_url
from thresher.pipeline.seeded_hash import hash64
from thresher.pipeline.stagedir import COMMITTED_MARKER, PARTS_LIST, STAGES, read_commit, storage
from thresher.schemas.rejects import is_line_rule
from thresher.schemas.stats import STATS_FILE, read_stats, thresher_version
from thresher.schemas.tags import MODEL_FREE_KINDS, label_column, score_column

# The stages that pass documents on, in pipeline order (not those that train the models and the tokenizer).
DOCUMENT_STAGES = tuple(stage for stage in STAGES if stage not in ("classifiers", "tokenizer"))
SAMPLES_PER_RULE = 3
SNIPPET_CHARS = 200
CONFIG_FILE = "config.yaml"  # the effective config, written beside the report by `thresher run`
LARGEST_CLUSTERS = 5  # duplicate clusters listed by size
SAMPLE_CLUSTERS = 3  # duplicate clusters shown with their members' diffs (smallest cluster_id hash)
MEMBERS_SHOWN = 5  # of each cluster shown
LENGTH_BINS = (100, 300, 1_000, 3_000, 10_000, 30_000, 100_000)  # characters; bin edges of the length table


def build_report(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able data; `run_dir` a local path or any fsspec URL."""
    run_dir = str(run_dir) if is_url(str(run_dir)) else str(Path(run_dir))
    stages = _read_stage_stats(run_dir, DOCUMENT_STAGES)
    details = {name: stats["details"] for name, stats in stages.items()}
    run_info = _read_json(_join(run_dir, "run.json")) or {}
    manifest = _read_json(_join(run_dir, "export", "manifest.json")) if "export" in stages else None

    rejects = []
    for name in stages:
        rejects.extend(_reject_samples(_join(run_dir, name, "rejects"), name))
    output_stages = [name for name in ("prepare", "rules", "select") if _dataset(_join(run_dir, name, "documents"))]

    return {
        "run_dir": run_dir,
        "header": _header(run_dir, run_info, stages),
        "funnel": _funnel(run_dir, stages, manifest),
        "rejects": rejects,
        "stage_subtotals": _stage_subtotals(stages, rejects),
        "rule_costs": {name: _rule_costs(stats["rules"]) for name, stats in stages.items()
                       if isinstance(stats.get("rules"), dict)},
        "languages": {f"after {name}": _column_counts(_join(run_dir, name, "documents"), "lang")
                      for name in output_stages},
        "lengths": {f"after {name}": _length_counts(_join(run_dir, name, "documents")) for name in output_stages},
        "labels": details.get("tag", {}).get("labels", {}),
        "score_histograms": details.get("tag", {}).get("score_histograms", {}),
        "models": _models(details.get("tag", {})),
        "select_rules": details.get("select", {}).get("rules", []),
        "kept_samples": _kept_samples(_join(run_dir, "select", "documents"), details.get("select", {})),
        "mix": _mix(details.get("select", {})),
        "model_gate": details.get("select", {}).get("model_gate", {}),
        "decontam": details.get("select", {}).get("decontam", {}),
        "pii": details.get("select", {}).get("pii", {}),
        "dedup": _dedup(stages.get("rules")),
        "dedup_cluster_sizes": details.get("rules", {}).get("minhash_cluster_sizes", {}),
        "duplicate_clusters": _duplicate_clusters(_join(run_dir, "rules", "clusters")),
        "rehydrate": details.get("select", {}).get("rehydrate", {}),
        "lines_removed": {
            name: {k: v for k, v in entries.items() if k.startswith("lines_removed")} for name, entries in details.items()
        },
        "tokens": _token_summary(manifest, _read_stage_stats(run_dir, ("tokenizer",)).get("tokenizer"), stages.get("select")),
        "seconds_per_stage": {
            stage: run_info["seconds_per_stage"][stage]
            for stage in (*STAGES, *sorted(run_info.get("seconds_per_stage", {})))
            if stage in run_info.get("seconds_per_stage", {})
        },
        "stats": stages,
    }




def _header(run_dir: str, run_info: dict[str, Any], stages: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """What the run read and with what: inputs, the config (digest and file), thresher's version, the date."""
    config_text = _read_text(_join(run_dir, CONFIG_FILE))
    digest = None
    if config_text is not None:
        match = re.match(r"# effective thresher config, digest (\w+)", config_text)
        digest = match.group(1) if match else None
    stage_digests = {name: s["config_digest"] for name, s in stages.items()}
    return {
        "generated_utc": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "thresher_version": thresher_version(),
        "inputs": list(run_info.get("inputs", [])),
        "config_digest": digest or next((d for d in stage_digests.values() if d), None),
        "config_file": CONFIG_FILE if config_text is not None else None,
        "stage_config_digests": {name: d for name, d in stage_digests.items() if d},
    }


def _funnel(run_dir: str, stages: dict[str, dict[str, Any]], manifest: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per stage in pipeline order: documents in, removed and out, each also as a share of
    what the first stage read; lines removed from kept documents are counted apart, never as documents."""
    rows = []
    for name, stats in stages.items():
        documents_in, documents_out, by_rule = stats["documents_in"], stats["documents_out"], stats["rejects_by_rule"]
        row = {
            "stage": name,
            "documents_in": documents_in,
            "documents_removed": documents_in - documents_out,
            "documents_out": documents_out,
            "lines_removed": sum(n for rule, n in by_rule.items() if is_line_rule(rule)),
            "bytes_out": _count_documents(_join(run_dir, name, "documents"))[1] if name != "export" else None,
            "estimated_words_out": None,  # select's tokenizer-free count (words + CJK characters)
            "tokens_out": None,  # the tokenizer's, counted by export
        }
        if name == "export" and manifest is not None:
            splits = manifest.get("splits", {}).values()
            row["copies_out"] = sum(s.get("documents", 0) for s in splits)
            row["tokens_out"] = sum(s.get("tokens", 0) for s in splits)
        elif name == "select":
            row["copies_out"] = stats["details"].get("sample_copies_total")
            row["estimated_words_out"] = stats["details"].get("tokens_out")
        rows.append(row)
    first = rows[0]["documents_in"] if rows else 0
    for row in rows:
        row["removed_percent"] = percent(row["documents_removed"], row["documents_in"])
        row["removed_percent_of_first"] = percent(row["documents_removed"], first)
        row["out_percent_of_first"] = percent(row["documents_out"], first)
    return rows


def percent(part: float, whole: float) -> float | None:
    return 100.0 * part / whole if whole else None


def _stage_subtotals(stages: dict[str, dict[str, Any]], rejects: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Per stage: document rejects and line rejects, each summed over the stage's rules."""
    subtotals = {}
    for name, stats in stages.items():
        entries = [r for r in rejects if r["stage"] == name]
        documents_in = stats["documents_in"]
        document_rejects = sum(r["count"] for r in entries if not is_line_rule(r["rule"]))
        subtotals[name] = {
            "documents_in": documents_in,
            "document_rejects": document_rejects,
            "document_rejects_percent": percent(document_rejects, documents_in),
            "line_rejects": sum(r["count"] for r in entries if is_line_rule(r["rule"])),
            "rules": len(entries),
        }
    return subtotals


def _dedup(rules_stats: dict[str, Any] | None) -> dict[str, Any]:
    """MinHash near-duplicate clustering: documents hashed, clusters found (maybe none), duplicates removed."""
    if rules_stats is None:
        return {"ran": False}
    details = rules_stats["details"]
    sizes = {int(size): count for size, count in details.get("minhash_cluster_sizes", {}).items()}
    return {
        "ran": True,
        "documents_hashed": details.get("minhash_documents_hashed"),
        "clusters": sum(count for size, count in sizes.items() if size > 1),
        "documents_in_clusters": sum(size * count for size, count in sizes.items() if size > 1),
        "duplicates_removed": rules_stats["rejects_by_rule"].get("minhash_duplicate", 0),
        "giant_buckets": details.get("minhash_giant_buckets", 0),
        "cluster_sizes": {str(size): sizes[size] for size in sorted(sizes)},
    }


def _duplicate_clusters(path: str) -> dict[str, Any]:
    """The rules stage's cluster table (schemas.clusters) summed up: clusters per size, the LARGEST_CLUSTERS
    largest (ties: smallest cluster_id) and a sample of SAMPLE_CLUSTERS (smallest cluster_id hash), each with
    up to MEMBERS_SHOWN members (the kept one first, then by doc_id), their Jaccard with the kept one and
    their line diffs. Two passes in batches: memory holds only the clusters shown."""
    dataset = _dataset(path)
    if dataset is None:
        return {}
    sizes: Counter = Counter()
    largest: list[tuple[int, str]] = []  # (-size, cluster_id), the LARGEST_CLUSTERS smallest
    sample: dict[int, str] = {}  # cluster_id hash -> cluster_id, the SAMPLE_CLUSTERS smallest
    kept_by = set()
    for batch in dataset.to_batches(columns=["cluster_id", "cluster_size", "kept", "kept_by"]):
        heads = batch.filter(batch.column("kept"))
        kept_by.update(heads.column("kept_by").unique().to_pylist())
        for cluster_id, size in zip(heads.column("cluster_id").to_pylist(), heads.column("cluster_size").to_pylist(),
                                    strict=True):
            sizes[size] += 1
            largest = sorted([*largest, (-size, cluster_id)])[:LARGEST_CLUSTERS]
            sample[hash64(cluster_id)] = cluster_id
            if len(sample) > SAMPLE_CLUSTERS:
                del sample[max(sample)]
    shown_largest = [cluster_id for _, cluster_id in largest]
    shown_sample = [sample[key] for key in sorted(sample)]
    members: dict[str, list[dict[str, Any]]] = {cluster_id: [] for cluster_id in {*shown_largest, *shown_sample}}
    columns = ["cluster_id", "cluster_size", "doc_id", "kept", "url", "run", "jaccard", "diff"]
    wanted = pa.array(list(members), pa.string())
    for batch in dataset.to_batches(columns=columns, filter=pc.field("cluster_id").isin(wanted)):
        for row in batch.to_pylist():
            members[row["cluster_id"]].append(row)

    def cluster(cluster_id: str) -> dict[str, Any]:
        rows = sorted(members[cluster_id], key=lambda row: (not row["kept"], row["doc_id"]))
        return {"cluster_id": cluster_id, "size": rows[0]["cluster_size"] if rows else 0, "members": [
            {key: row[key] for key in ("doc_id", "url", "run", "kept", "jaccard", "diff")} for row in rows[:MEMBERS_SHOWN]]}

    return {
        "clusters": sum(sizes.values()),
        "documents": sum(size * count for size, count in sizes.items()),
        "kept_by": sorted(kept_by),
        "sizes": {str(size): sizes[size] for size in sorted(sizes)},
        "largest": [cluster(cluster_id) for cluster_id in shown_largest],
        "sample": [cluster(cluster_id) for cluster_id in shown_sample],
    }


def _length_counts(path: str | os.PathLike) -> dict[str, int]:
    """Documents per text length bin (characters), the bins in increasing order."""
    dataset = _dataset(path)
    labels = [f"< {LENGTH_BINS[0]:,}"] + [f"{a:,} to {b:,}" for a, b in zip(LENGTH_BINS[:-1], LENGTH_BINS[1:], strict=True)]
    labels.append(f">= {LENGTH_BINS[-1]:,}")
    counts = np.zeros(len(labels), dtype=np.int64)
    if dataset is None:
        return {}
    for batch in dataset.to_batches(columns=["text"]):
        lengths = pc.fill_null(pc.utf8_length(batch.column("text")), 0).to_numpy(zero_copy_only=False)
        counts += np.bincount(np.digitize(lengths, LENGTH_BINS), minlength=len(labels))
    return dict(zip(labels, counts.tolist(), strict=True))


def _join(base: str | os.PathLike, *names: str) -> str:
    """`names` below `base` (a local path or any URL)."""
    return "/".join([str(base).rstrip("/"), *names])


def _read_stage_stats(run_dir: str, stages: Iterable[str]) -> dict[str, dict[str, Any]]:
    """The stats of each of `stages` that committed or wrote stats.json: the committed marker's, else
    stats.json read through the envelope (schemas.stats)."""
    found = {}
    for name in stages:
        directory = _join(run_dir, name)
        if _is_file(_join(directory, COMMITTED_MARKER)):
            stats = read_commit(directory).stats
            if stats is not None:
                found[name] = stats
                continue
        # A stage cut short before its marker (its _PARTS list still there) committed nothing to report.
        if _is_file(_join(directory, STATS_FILE)) and not _is_file(_join(directory, PARTS_LIST)):
            found[name] = read_stats(directory)
    return found


def _is_file(location: str) -> bool:
    fs, path = storage(location)
    fs.invalidate_cache(path)
    return fs.isfile(path)


def _read_text(location: str) -> str | None:
    """The file at `location` (any URL) as text; None when there is none."""
    fs, path = storage(location)
    fs.invalidate_cache(path)
    try:
        return fs.cat_file(path).decode("utf-8")
    except (FileNotFoundError, IsADirectoryError):
        return None


def _read_json(location: str) -> dict[str, Any] | None:
    text = _read_text(location)
    return None if text is None else json.loads(text)


def _dataset(path: str | os.PathLike):
    """The table at `path` (STAGE/TABLE, any URL) as a pyarrow dataset: the parts a committed stage's marker
    lists, else every Parquet file below (a stage without a marker: the report's own tests); None if none."""
    table = str(path).rstrip("/")
    stage, name = table.rsplit("/", 1)
    if _is_file(_join(stage, COMMITTED_MARKER)):
        commit = read_commit(stage)
        has_table = _lists(commit, name) if "format" in commit.marker else commit.fs.isdir(commit.path(name))
        parts = commit.parts(name) if has_table else []
        return ds.dataset([commit.path(part.name) for part in parts], filesystem=commit.fs,
                          format="parquet") if parts else None
    fs, located = storage(table)
    fs.invalidate_cache(located)
    return ds.dataset(located, filesystem=fs, format="parquet") if fs.isdir(located) else None


def _lists(commit, table: str) -> bool:
    """Whether a marker that lists its objects lists any of `table`."""
    return table in commit.marker.get("tables", {}) or any(
        entry["name"].startswith(table + "/") for entry in commit.marker.get("files", []))


def _count_documents(path: str | os.PathLike) -> tuple[int, int]:
    dataset = _dataset(path)
    if dataset is None:
        return 0, 0
    docs = text_bytes = 0
    for batch in dataset.to_batches(columns=["text"]):
        docs += batch.num_rows
        text_bytes += pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0
    return docs, text_bytes


def _column_counts(path: str | os.PathLike, column: str) -> dict[str, int]:
    dataset = _dataset(path)
    if dataset is None or column not in dataset.schema.names:
        return {}
    counts: Counter = Counter()
    for batch in dataset.to_batches(columns=[column]):
        for value, count in zip(*_value_counts(batch.column(column)), strict=True):
            counts["(not set)" if value is None else str(value)] += count
    return dict(counts.most_common())


def _value_counts(array) -> tuple[list, list]:
    result = pc.value_counts(array)
    return result.field("values").to_pylist(), result.field("counts").to_pylist()


def _models(tag_details: dict[str, Any]) -> list[dict[str, Any]]:
    """Each tagger's model with its held-out figures; bootstrapped (weak-label) models are flagged."""
    return [
        {"tagger": t["name"], "model_dir": t["model_dir"], "model_hash": t.get("model_hash"),
         "heldout": t.get("heldout") or {}, "weak_labels": bool(t.get("weak_labels"))}
        for t in tag_details.get("taggers", []) if t.get("kind") not in MODEL_FREE_KINDS
    ]


def _mix(select_details: dict[str, Any]) -> dict[str, Any]:
    """Per group: the target share, the share before rebalancing, the solver's and the achieved one."""
    rebalance = select_details.get("rebalance") or {}
    groups = {}
    for group in rebalance.get("shares_before", {}):
        groups[group] = {
            "target": rebalance.get("targets", {}).get(group),
            "before": rebalance["shares_before"].get(group),
            "expected": rebalance.get("shares_expected", {}).get(group),
            "after": rebalance.get("achieved", {}).get(group),
            "short_by": rebalance.get("shortfalls", {}).get(group),
        }
    return {"mode": rebalance.get("mode"), "unit": rebalance.get("unit"), "skipped": rebalance.get("skipped"),
            "groups": groups, "domains": rebalance.get("domains", {})}


def _kept_samples(documents: str | os.PathLike, select_details: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per document keep rule (`<tagger>:<rule>`), SAMPLES_PER_RULE kept documents (smallest doc_id
    hash) with the tagger's label and score: what the rule let through, beside its rejects."""
    dataset = _dataset(documents)
    taggers = sorted({step["rule"].split(":")[0] for step in select_details.get("rules", []) if ":" in step["rule"]})
    if dataset is None or not taggers:
        return {}
    names = dataset.schema.names
    columns = ["doc_id", "url", "text", *[c for t in taggers for c in (label_column(t), score_column(t)) if c in names]]
    best: dict[int, dict[str, Any]] = {}
    for batch in dataset.to_batches(columns=columns):
        for row in batch.to_pylist():
            key = hash64(row["doc_id"] or "")
            if len(best) < SAMPLES_PER_RULE or key < max(best):
                best[key] = row
                if len(best) > SAMPLES_PER_RULE:
                    del best[max(best)]
    samples = {}
    for step in select_details.get("rules", []):
        if ":" not in step["rule"]:
            continue
        tagger = step["rule"].split(":")[0]
        samples[step["rule"]] = [
            _sample({"url": row["url"], "content": row["text"],
                     "detail": f"label={row.get(label_column(tagger))} score={row.get(score_column(tagger)) or 0:.4f}"})
            for _, row in sorted(best.items())
        ]
    return samples


def _reject_samples(path: str | os.PathLike, stage: str) -> list[dict[str, Any]]:
    """Per rule: the count, and samples from the SAMPLES_PER_RULE documents with the smallest hash
    of doc_id (stable, and spread over documents), each document's first reject of the rule.

    Counting is vectorised and each batch hashes only its distinct doc_ids (a document's line
    rejects are adjacent), so hundreds of millions of line rejects take minutes, not hours.
    """
    dataset = _dataset(path)
    if dataset is None:
        return []
    columns = [c for c in ("doc_id", "url", "rule", "detail", "content") if c in dataset.schema.names]
    counts: Counter = Counter()
    samples: dict[str, dict[int, dict[str, str]]] = {}  # rule -> doc_id hash -> sample
    for batch in dataset.to_batches(columns=columns):
        if not batch.num_rows:
            continue
        doc_ids = batch.column("doc_id") if "doc_id" in columns else pa.nulls(batch.num_rows, pa.string())
        doc_ids = pc.dictionary_encode(pc.fill_null(doc_ids.cast(pa.string()), ""))
        doc_hashes = np.fromiter((hash64(doc_id) for doc_id in doc_ids.dictionary.to_pylist()), dtype=np.uint64)
        row_hashes = doc_hashes[doc_ids.indices.to_numpy(zero_copy_only=False)]
        rules = pc.dictionary_encode(batch.column("rule"))
        rule_of_row = rules.indices.to_numpy(zero_copy_only=False)
        for code, rule in enumerate(rules.dictionary.to_pylist()):
            rows = np.flatnonzero(rule_of_row == code)
            counts[rule] += len(rows)
            kept = samples.setdefault(rule, {})
            hashes, first = np.unique(row_hashes[rows], return_index=True)  # ascending; first row of each
            for doc_hash, row in zip(hashes[:SAMPLES_PER_RULE].tolist(), rows[first[:SAMPLES_PER_RULE]].tolist(),
                                     strict=True):
                if doc_hash in kept:  # an earlier reject of this document stays its sample
                    continue
                if len(kept) == SAMPLES_PER_RULE and doc_hash > max(kept):
                    break
                kept[doc_hash] = _sample(batch.slice(row, 1).to_pylist()[0])
                if len(kept) > SAMPLES_PER_RULE:
                    del kept[max(kept)]
    return [
        {"stage": stage, "rule": rule, "count": count,
         "samples": [samples[rule][doc_hash] for doc_hash in sorted(samples[rule])]}
        for rule, count in sorted(counts.items(), key=lambda item: (-item[1], item[0]))
    ]




def _rule_costs(rules: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    """A stage's per-rule stats in pipeline order, with each rule's share of what it saw dropped and
    its share of the time all the stage's rules took."""
    total_seconds = sum(r["seconds"] for r in rules.values())
    return [
        {"rule": rule, "seen": r["seen"], "dropped": r["dropped"], "dropped_percent": percent(r["dropped"], r["seen"]),
         "seconds": r["seconds"], "seconds_percent": percent(r["seconds"], total_seconds)}
        for rule, r in rules.items()
    ]


def _sample(row: dict[str, Any]) -> dict[str, str]:
    content = (row.get("content") or "").strip()
    return {
        "url": row.get("url") or "",
        "detail": (row.get("detail") or "")[:SNIPPET_CHARS],
        "snippet": content[:SNIPPET_CHARS] + ("…" if len(content) > SNIPPET_CHARS else ""),
    }


def _token_summary(manifest: dict[str, Any] | None, tokenizer_stats: dict[str, Any] | None,
                   select_stats: dict[str, Any] | None) -> dict[str, Any]:
    """The export: tokenizer (path, vocabulary, hash), sequence length, and per split the distinct
    documents, the copies written (select's rebalancing repeats documents), tokens and sequences."""
    if manifest is None:
        return {}
    tokenizer = manifest.get("tokenizer", {})
    splits = {
        name: {k: split.get(k) for k in ("source_documents", "documents", "sequences", "tokens", "padding_tokens", "dropped_tokens")}
        for name, split in manifest.get("splits", {}).items()
    }
    return {
        "seq_len": manifest.get("seq_len"),
        "pack_mode": manifest.get("pack_mode"),
        "tokenizer": {
            "path": tokenizer.get("path") or tokenizer.get("name"),
            "sha256": tokenizer.get("sha256"),
            "vocab_size": tokenizer_stats["details"].get("vocab_size") if tokenizer_stats else None,
        },
        "rebalanced": select_stats is not None and select_stats["details"].get("sample_copies_total", 0) != select_stats["documents_out"],
        "splits": splits,
    }


# ---------------------------------------------------------------- HTML
