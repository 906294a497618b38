"""The run report: what happened to the data, as report.json and a self-contained report.html.

Built from what the stages committed (stats.json, documents, rejects, the token manifest), read
with pyarrow in batches, so it needs no Spark and its memory does not grow with the data. Charts are
inline SVG: the HTML file opens anywhere, offline, with nothing beside it.
"""

from __future__ import annotations

import hashlib
import html
import json
from collections import Counter
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds

STAGES = ("prepare", "rules", "tag", "select")  # document stages, in pipeline order
SAMPLES_PER_RULE = 3
SNIPPET_CHARS = 200


def build_report(run_dir: str | Path) -> dict[str, Any]:
    """Everything the report shows, as plain JSON-able data."""
    run_dir = Path(run_dir)
    stages = {name: _read_json(run_dir / name / "stats.json") for name in STAGES}
    stages = {name: stats for name, stats in stages.items() if stats is not None}
    run_info = _read_json(run_dir / "run.json") or {}
    manifest = _read_json(run_dir / "export" / "manifest.json")

    funnel = []
    first = stages.get("prepare")
    if first is not None:
        funnel.append({"step": "records read", "documents": first.get("records_in", 0), "bytes": None})
    for name in stages:
        documents = run_dir / name / "documents"
        docs, text_bytes = _count_documents(documents)
        funnel.append({"step": f"after {name}", "documents": docs, "bytes": text_bytes})
    if manifest is not None:
        splits = manifest.get("splits", {})
        funnel.append(
            {
                "step": "exported",
                # Distinct documents; the rebalancer's extra copies show in the token count.
                "documents": sum(s.get("source_documents", s.get("documents", 0)) for s in splits.values()),
                "bytes": None,
                "tokens": sum(s.get("tokens", 0) for s in splits.values()),
            }
        )

    rejects = []
    for name in stages:
        rejects.extend(_reject_samples(run_dir / name / "rejects", name))

    return {
        "run_dir": str(run_dir),
        "funnel": funnel,
        "rejects": rejects,
        "languages": _column_counts(run_dir / "prepare" / "documents", "lang"),
        "labels": stages.get("tag", {}).get("labels", {}),
        "score_histograms": stages.get("tag", {}).get("score_histograms", {}),
        "models": _models(stages.get("tag", {})),
        "select_rules": stages.get("select", {}).get("rules", []),
        "kept_samples": _kept_samples(run_dir / "select" / "documents", stages.get("select", {})),
        "mix": _mix(stages.get("select", {})),
        "dedup_cluster_sizes": stages.get("rules", {}).get("minhash_cluster_sizes", {}),
        "lines_removed": {
            name: {k: v for k, v in stats.items() if k.startswith("lines_removed")} for name, stats in stages.items()
        },
        "tokens": _token_summary(manifest),
        "seconds_per_stage": run_info.get("seconds_per_stage", {}),
        "stats": stages,
    }


def write_report(run_dir: str | Path) -> dict[str, Any]:
    """Build the report and write run_dir/report.json and run_dir/report.html; returns the report."""
    run_dir = Path(run_dir)
    report = build_report(run_dir)
    (run_dir / "report.json").write_text(json.dumps(report, indent=2, sort_keys=True, ensure_ascii=False) + "\n")
    (run_dir / "report.html").write_text(render_html(report), encoding="utf-8")
    return report


def _read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def _dataset(path: Path):
    return ds.dataset(str(path), format="parquet") if path.is_dir() else None


def _count_documents(path: Path) -> tuple[int, int]:
    dataset = _dataset(path)
    if dataset is None:
        return 0, 0
    docs = text_bytes = 0
    for batch in dataset.to_batches(columns=["text"]):
        docs += batch.num_rows
        text_bytes += pc.sum(pc.binary_length(batch.column("text"))).as_py() or 0
    return docs, text_bytes


def _column_counts(path: Path, column: str) -> dict[str, int]:
    dataset = _dataset(path)
    if dataset is None or column not in dataset.schema.names:
        return {}
    counts: Counter = Counter()
    for batch in dataset.to_batches(columns=[column]):
        for value, count in zip(*_value_counts(batch.column(column)), strict=True):
            counts[str(value)] += count
    return dict(counts.most_common())


def _value_counts(array) -> tuple[list, list]:
    result = pc.value_counts(array)
    return result.field("values").to_pylist(), result.field("counts").to_pylist()


def _models(tag_stats: dict[str, Any]) -> list[dict[str, Any]]:
    """Each tagger's model with its held-out figures; bootstrapped (weak-label) models are flagged."""
    return [
        {"tagger": t["name"], "model_dir": t["model_dir"], "model_hash": t.get("model_hash"),
         "heldout": t.get("heldout") or {}, "weak_labels": bool(t.get("weak_labels"))}
        for t in tag_stats.get("taggers", [])
    ]


def _mix(select_stats: dict[str, Any]) -> dict[str, Any]:
    """Per group: the target share, the share before rebalancing, the solver's and the achieved one."""
    rebalance = select_stats.get("rebalance") or {}
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


def _kept_samples(documents: Path, select_stats: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Per document keep rule (`<tagger>:<rule>`), SAMPLES_PER_RULE kept documents (smallest doc_id
    hash) with the tagger's label and score: what the rule let through, beside its rejects."""
    dataset = _dataset(documents)
    taggers = sorted({step["rule"].split(":")[0] for step in select_stats.get("rules", []) if ":" in step["rule"]})
    if dataset is None or not taggers:
        return {}
    names = dataset.schema.names
    columns = ["doc_id", "url", "text", *[c for t in taggers for c in (f"{t}_label", f"{t}_score") if c in names]]
    best: dict[int, dict[str, Any]] = {}
    for batch in dataset.to_batches(columns=columns):
        for row in batch.to_pylist():
            key = _hash64(row["doc_id"] or "")
            if len(best) < SAMPLES_PER_RULE or key < max(best):
                best[key] = row
                if len(best) > SAMPLES_PER_RULE:
                    del best[max(best)]
    samples = {}
    for step in select_stats.get("rules", []):
        if ":" not in step["rule"]:
            continue
        tagger = step["rule"].split(":")[0]
        samples[step["rule"]] = [
            _sample({"url": row["url"], "content": row["text"],
                     "detail": f"label={row.get(f'{tagger}_label')} score={row.get(f'{tagger}_score') or 0:.4f}"})
            for _, row in sorted(best.items())
        ]
    return samples


def _reject_samples(path: Path, stage: str) -> list[dict[str, Any]]:
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
        doc_hashes = np.fromiter((_hash64(doc_id) for doc_id in doc_ids.dictionary.to_pylist()), dtype=np.uint64)
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


def _hash64(text: str) -> int:
    return int.from_bytes(hashlib.blake2b(text.encode("utf-8", "surrogatepass"), digest_size=8).digest(), "little")


def _sample(row: dict[str, Any]) -> dict[str, str]:
    content = (row.get("content") or "").strip()
    return {
        "url": row.get("url") or "",
        "detail": (row.get("detail") or "")[:SNIPPET_CHARS],
        "snippet": content[:SNIPPET_CHARS] + ("…" if len(content) > SNIPPET_CHARS else ""),
    }


def _token_summary(manifest: dict[str, Any] | None) -> dict[str, Any]:
    if manifest is None:
        return {}
    return {
        "seq_len": manifest.get("seq_len"),
        "tokenizer": manifest.get("tokenizer", {}).get("name"),
        "splits": {
            name: {k: split.get(k) for k in ("tokens", "sequences", "documents")}
            for name, split in manifest.get("splits", {}).items()
        },
    }


# ---------------------------------------------------------------- HTML


def render_html(report: dict[str, Any]) -> str:
    sections = [
        _section("Funnel", _funnel_table(report["funnel"]) + _bar_chart(_funnel_bars(report["funnel"]))),
        _section("Time per stage", _bar_chart(report["seconds_per_stage"], unit="s")),
        _section("Reject reasons", _rejects_table(report["rejects"])),
        _section("Language mix (after stage 1)", _bar_chart(report["languages"])),
    ]
    sections.append(_section("Stage 3 models", _models_table(report["models"])))
    for tagger, histogram in report["score_histograms"].items():
        bins = len(histogram)
        bars = {f"{i / bins:.1f}-{(i + 1) / bins:.1f}": count for i, count in enumerate(histogram)}
        sections.append(_section(f"Tagger {tagger}: score histogram", _bar_chart(bars)))
    for tagger, counts in report["labels"].items():
        sections.append(_section(f"Tagger {tagger}: labels", _bar_chart(dict(Counter(counts).most_common(25)))))
    sections.append(_section("Select: documents and tokens per rule", _select_table(report["select_rules"], report["kept_samples"])))
    sections.append(_section("Mix per group vs target", _mix_table(report["mix"])))
    sections.append(_section("MinHash cluster sizes (documents per cluster)", _bar_chart(report["dedup_cluster_sizes"])))
    sections.append(_section("Lines removed", _key_values(report["lines_removed"])))
    sections.append(_section("Tokens exported", _key_values(report["tokens"])))
    body = "\n".join(sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>thresher run report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 70em; }}
h1 {{ color: #234; }} h2 {{ border-bottom: 1px solid #ccc; padding-bottom: .2em; }}
table {{ border-collapse: collapse; margin: .5em 0; }}
td, th {{ border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; font-size: 90%; }}
th {{ background: #eef; }} .num {{ text-align: right; font-variant-numeric: tabular-nums; }}
.sample {{ color: #555; font-size: 85%; overflow-wrap: anywhere; max-width: 50em; }}
</style></head><body>
<h1>thresher run report</h1>
<p>{html.escape(report["run_dir"])}</p>
{body}
</body></html>
"""


def _section(title: str, content: str) -> str:
    return f"<h2>{html.escape(title)}</h2>\n{content or '<p>(nothing recorded)</p>'}"


def _funnel_bars(funnel: list[dict[str, Any]]) -> dict[str, int]:
    return {row["step"]: row["documents"] for row in funnel}


def _funnel_table(funnel: list[dict[str, Any]]) -> str:
    if not funnel:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(r['step'])}</td><td class=num>{r['documents']:,}</td>"
        f"<td class=num>{_number(r.get('bytes'))}</td><td class=num>{_number(r.get('tokens'))}</td></tr>"
        for r in funnel
    )
    return f"<table><tr><th>step</th><th>documents</th><th>text bytes</th><th>tokens</th></tr>{rows}</table>"


def _number(value: int | None) -> str:
    return "" if value is None else f"{value:,}"


def _rejects_table(rejects: list[dict[str, Any]]) -> str:
    if not rejects:
        return ""
    rows = []
    for entry in rejects:
        samples = "".join(
            f"<div class=sample><b>{html.escape(s['url'])}</b> {html.escape(s['detail'])}<br>{html.escape(s['snippet'])}</div>"
            for s in entry["samples"]
        )
        rows.append(
            f"<tr><td>{html.escape(entry['stage'])}</td><td>{html.escape(entry['rule'])}</td>"
            f"<td class=num>{entry['count']:,}</td><td>{samples}</td></tr>"
        )
    return "<table><tr><th>stage</th><th>rule</th><th>count</th><th>samples</th></tr>" + "".join(rows) + "</table>"


def _models_table(models: list[dict[str, Any]]) -> str:
    if not models:
        return ""
    rows = []
    for model in models:
        heldout = model["heldout"]
        figures = ", ".join(f"{k} {heldout[k]:.3f}" for k in ("accuracy", "macro_f1", "auc") if isinstance(heldout.get(k), float))
        weak = "<b>bootstrapped from weak labels</b>" if model["weak_labels"] else "trained"
        rows.append(
            f"<tr><td>{html.escape(model['tagger'])}</td><td>{weak}</td>"
            f"<td>{html.escape(figures or 'not measured')} ({heldout.get('examples', 0)} held-out examples)</td>"
            f"<td class=sample>{html.escape(model['model_dir'])} {html.escape(str(model.get('model_hash') or ''))}</td></tr>"
        )
    return "<table><tr><th>tagger</th><th>labels</th><th>held-out</th><th>model</th></tr>" + "".join(rows) + "</table>"


def _select_table(steps: list[dict[str, Any]], kept_samples: dict[str, list[dict[str, str]]]) -> str:
    if not steps:
        return ""
    rows = []
    for step in steps:
        samples = "".join(
            f"<div class=sample><b>{html.escape(s['url'])}</b> {html.escape(s['detail'])}<br>{html.escape(s['snippet'])}</div>"
            for s in kept_samples.get(step["rule"], [])
        )
        removed_docs = step["documents_in"] - step["documents_out"]
        rows.append(
            f"<tr><td>{html.escape(step['rule'])}</td><td class=num>{step['documents_in']:,}</td>"
            f"<td class=num>{removed_docs:,}</td><td class=num>{step['tokens_in']:,}</td>"
            f"<td class=num>{step['tokens_in'] - step['tokens_out']:,}</td><td>{samples}</td></tr>"
        )
    return ("<table><tr><th>rule</th><th>documents in</th><th>documents removed</th><th>tokens in</th>"
            "<th>tokens removed (rebalance: negative = added copies)</th><th>kept samples</th></tr>" + "".join(rows) + "</table>"
            "<p>Removed samples per rule are under Reject reasons (stage select).</p>")


def _mix_table(mix: dict[str, Any]) -> str:
    if mix.get("skipped"):
        return f"<p><b>Rebalancing skipped:</b> {html.escape(mix['skipped'])}</p>"
    if not mix.get("groups"):
        return ""

    def share(value):
        return "" if value is None else f"{value:.1%}"

    rows = "".join(
        f"<tr><td>{html.escape(group)}</td><td class=num>{share(v['target'])}</td><td class=num>{share(v['before'])}</td>"
        f"<td class=num>{share(v['expected'])}</td><td class=num>{share(v['after'])}</td><td class=num>{share(v['short_by'])}</td></tr>"
        for group, v in mix["groups"].items()
    )
    domains = "".join(
        f"<tr><td>{html.escape(domain)}</td><td class=num>{share(v.get('before'))}</td><td class=num>{share(v.get('after'))}</td></tr>"
        for domain, v in mix.get("domains", {}).items()
    )
    return (f"<p>Shares of {html.escape(str(mix.get('unit')))}.</p><table><tr><th>group</th><th>target</th><th>before</th>"
            f"<th>solved</th><th>after (written)</th><th>short by</th></tr>{rows}</table>"
            + (f"<table><tr><th>domain</th><th>before</th><th>after</th></tr>{domains}</table>" if domains else ""))


def _key_values(mapping: dict[str, Any]) -> str:
    if not mapping:
        return ""
    rows = "".join(
        f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(json.dumps(v, ensure_ascii=False))}</td></tr>"
        for k, v in mapping.items()
    )
    return f"<table>{rows}</table>"


def _bar_chart(values: dict[str, float], unit: str = "") -> str:
    """A horizontal bar chart as inline SVG, one bar per key, scaled to the largest value."""
    items: Iterable[tuple[str, float]] = [(str(k), float(v)) for k, v in values.items() if v is not None]
    items = list(items)
    if not items:
        return ""
    bar_height, label_width, bar_width = 18, 260, 420
    top = max(v for _, v in items) or 1.0
    parts = []
    for i, (label, value) in enumerate(items):
        y = i * (bar_height + 4)
        width = max(1.0, bar_width * value / top) if value > 0 else 0.0
        shown = f"{value:,.1f}{unit}" if unit else f"{value:,.0f}"
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end" font-size="12">{html.escape(label[:40])}</text>'
            f'<rect x="{label_width}" y="{y}" width="{width:.1f}" height="{bar_height}" fill="#4a7ab5"/>'
            f'<text x="{label_width + width + 4:.1f}" y="{y + 13}" font-size="12">{shown}</text>'
        )
    height = len(items) * (bar_height + 4)
    total_width = label_width + bar_width + 90
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_width}" height="{height}" '
        f'role="img">{"".join(parts)}</svg>'
    )
