"""The run report rendered: report.json's data as one self-contained report.html.

Charts are inline SVG: the file opens anywhere, offline, with nothing beside it. Every value is
escaped; nothing here reads the stage directories (pipeline.report.data does).
"""

from __future__ import annotations

import html
import re
from collections import Counter
from collections.abc import Iterable
from typing import Any

from thresher.pipeline.report.data import percent
from thresher.schemas.rejects import is_line_rule

# Select counts tokens before any tokenizer exists (pipeline.select.batches.estimated_tokens): its figures are
# labelled apart from the tokenizer's, which export counts.
ESTIMATED_WORDS_NOTE = ("Estimated words are select's tokenizer-free count (one per whitespace-separated word, one "
                        "per CJK character); tokens are the tokenizer's, counted by export.")
STATS_UNITS = {"select": " (its tokens_in and tokens_out are estimated words: words + CJK characters, no tokenizer)"}


def render_html(report: dict[str, Any]) -> str:
    header = report.get("header", {})
    sections = [
        _section("Run", _header_html(header, report.get("models", []), report.get("tokens", {}))),
        _section("Funnel", _funnel_table(report["funnel"])
                 + _bar_chart({f"after {r['stage']}": r["documents_out"] for r in report["funnel"]})),
        _section("Reject reasons per stage", _rejects_table(report["rejects"], report.get("stage_subtotals", {}))),
        *(_section(f"{stage}: cost per rule", _rule_costs_table(rows)) for stage, rows in report.get("rule_costs", {}).items()),
        _section("Document length (characters)", _distribution_table(report.get("lengths", {}), "length")),
        _section("Languages", _distribution_table(report.get("languages", {}), "language")),
        _section("MinHash near-duplicates", _dedup_html(report.get("dedup", {"ran": False}))),
        _section("Duplicate clusters", _clusters_html(report.get("duplicate_clusters", {}), report.get("rehydrate", {}))),
        _section("Stage 3 models", _models_table(report["models"])),
        _section("Model steps: acted or not", _gate_table(report.get("model_gate", {}))),
        _section("Benchmark contamination", _decontam_table(report.get("decontam", {}))),
        _section("Personal information (select)", _pii_table(report.get("pii", {}))),
    ]
    for tagger, histogram in report["score_histograms"].items():
        bins = len(histogram)
        total = sum(histogram)
        bars = {f"{i / bins:.1f}-{(i + 1) / bins:.1f}": count for i, count in enumerate(histogram)}
        what = "lines" if tagger in _line_taggers(report) else "documents"
        sections.append(_section(f"Tagger {tagger}: score histogram",
                                 f"<p>{total:,} {what} scored; bars count {what} per score bin.</p>"
                                 + _bar_chart(bars, total=total)))
    for tagger, counts in report["labels"].items():
        sections.append(_section(f"Tagger {tagger}: labels", _bar_chart(dict(Counter(counts).most_common(25)),
                                                                     total=sum(counts.values()))))
    sections.append(_section("Select: kept and removed per rule",
                             _select_table(report["select_rules"], report["kept_samples"], report["rejects"])))
    sections.append(_section("Mix per group vs target", _mix_table(report["mix"])))
    sections.append(_section("Tokens exported", _tokens_html(report["tokens"], report["funnel"])))
    sections.append(_section("Time per stage", _bar_chart(report["seconds_per_stage"], unit="s")))
    sections.append(_section("Stage statistics (stats.json)", "".join(
        f"<details><summary>{_e(name)}{_e(STATS_UNITS.get(name, ''))}</summary>{_value_html(stats)}</details>"
        for name, stats in report["stats"].items()
    )))
    body = "\n".join(sections)
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>thresher run report</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2em; color: #222; max-width: 75em; }}
h1 {{ color: #234; margin-bottom: .2em; }} h2 {{ border-bottom: 1px solid #ccc; padding-bottom: .2em; margin-top: 1.6em; }}
table {{ border-collapse: collapse; margin: .5em 0; }}
td, th {{ border: 1px solid #ddd; padding: .25em .6em; text-align: left; vertical-align: top; font-size: 90%; }}
th {{ background: #eef; }} .num {{ text-align: right; font-variant-numeric: tabular-nums; white-space: nowrap; }}
tr.subtotal td {{ background: #f6f6f6; font-weight: 600; }} tr.stage td {{ background: #eef3fa; font-weight: 600; }}
td table {{ margin: 0; }} td table td {{ font-size: 100%; }}
.sample {{ color: #555; font-size: 85%; overflow-wrap: anywhere; max-width: 40em; margin-bottom: .4em; }}
.note {{ color: #555; font-size: 90%; }} .kept {{ border-left: 3px solid #3a3; padding-left: .4em; }}
.removed {{ border-left: 3px solid #c33; padding-left: .4em; }} summary {{ cursor: pointer; margin: .3em 0; }}
pre.diff {{ white-space: pre-wrap; overflow-wrap: anywhere; background: #f8f8f8; padding: .3em; max-width: 70em; }}
</style></head><body>
<h1>thresher run report</h1>
<p class=note>{_e(report["run_dir"])}</p>
{body}
</body></html>
"""


def _e(value: Any) -> str:
    return html.escape(str(value))


def _section(title: str, content: str) -> str:
    """A titled section; its id is the title in lower case, words joined by '-' (report.html#duplicate-clusters)."""
    anchor = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")
    return f"<section id={anchor}><h2>{_e(title)}</h2>\n{content or '<p>(this stage did not run)</p>'}</section>"


def _line_taggers(report: dict[str, Any]) -> set[str]:
    taggers = report.get("stats", {}).get("tag", {}).get("details", {}).get("taggers", [])
    return {t["name"] for t in taggers if t.get("kind") == "lines"}


def _table(headers: list[str], rows: list[str], row_classes: list[str] | None = None) -> str:
    """A table from header texts (none: no header row) and rows of ready cells (`<td>...</td>` strings)."""
    head = f"<tr>{''.join(f'<th>{_e(h)}</th>' for h in headers)}</tr>" if headers else ""
    classes = row_classes or [""] * len(rows)
    body = "".join(f"<tr{f' class={c}' if c else ''}>{row}</tr>" for row, c in zip(rows, classes, strict=True))
    return f"<table>{head}{body}</table>"


def _num(value: Any) -> str:
    return f"<td class=num>{_format(value)}</td>"


def _format(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, int):
        return f"{value:,}"
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:,.4g}" if abs(value) < 1000 else f"{value:,.1f}"
    return _e(value)


def _pct(value: float | None) -> str:
    return "" if value is None else f"{value:.1f}%"


def _value_html(value: Any, depth: int = 0) -> str:
    """Any JSON value as HTML, never as JSON text: a dict becomes a two-column table (nested, a
    "key: value" list when its values are plain), a list of dicts a table with a column per key, a
    list of plain values a comma-separated list."""
    if isinstance(value, dict):
        if not value:
            return "<span class=note>(none)</span>"
        if depth and not any(isinstance(v, dict | list) for v in value.values()):
            return "<br>".join(f"{_e(k)}: {_format(v)}" for k, v in value.items())
        rows = [f"<td>{_e(k)}</td><td{' class=num' if _is_number(v) else ''}>{_value_html(v, depth + 1)}</td>"
                for k, v in value.items()]
        return _table([] if depth else ["key", "value"], rows)
    if isinstance(value, list):
        if not value:
            return "<span class=note>(none)</span>"
        if all(isinstance(v, dict) for v in value):
            keys = list(dict.fromkeys(k for v in value for k in v))
            return _table(keys, ["".join(f"<td{' class=num' if _is_number(v.get(k)) else ''}>{_value_html(v.get(k), depth + 1)}</td>"
                                         for k in keys) for v in value])
        return ", ".join(_value_html(v, depth + 1) for v in value)
    return _format(value)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _header_html(header: dict[str, Any], models: list[dict[str, Any]], tokens: dict[str, Any]) -> str:
    if not header:
        return ""
    inputs = header.get("inputs") or []
    shown = "".join(f"<li>{_e(path)}</li>" for path in inputs[:20])
    if len(inputs) > 20:
        shown += f"<li>… and {len(inputs) - 20:,} more (run.json lists them all)</li>"
    config = _e(header.get("config_digest") or "not recorded")
    if header.get("config_file"):
        config += f' (<a href="{_e(header["config_file"])}">{_e(header["config_file"])}</a>, the effective config)'
    digests = set(header.get("stage_config_digests", {}).values())
    if len(digests) > 1:
        config += "<br>stages ran with different configs: " + ", ".join(
            f"{_e(stage)} {_e(d)}" for stage, d in header["stage_config_digests"].items())
    tokenizer = tokens.get("tokenizer", {})
    model_list = ", ".join(
        f"{_e(m['tagger'])} ({'weak labels' if m['weak_labels'] else 'trained'}, {_e(_heldout_text(m['heldout']))})" for m in models
    )
    rows = [
        f"<td>generated</td><td>{_e(header.get('generated_utc'))}</td>",
        f"<td>thresher</td><td>{_e(header.get('thresher_version'))}</td>",
        f"<td>inputs</td><td>{len(inputs):,} file(s)<ul>{shown}</ul></td>",
        f"<td>config digest</td><td>{config}</td>",
        f"<td>models</td><td>{model_list or '(no stage 3 models used)'}</td>",
    ]
    if tokenizer.get("path"):
        rows.append(f"<td>tokenizer</td><td>{_e(_tokenizer_text(tokenizer))}</td>")
    return _table([], rows)


def _tokenizer_text(tokenizer: dict[str, Any]) -> str:
    facts = [f"vocabulary {tokenizer['vocab_size']:,}" if tokenizer.get("vocab_size") else "",
             f"sha256 {tokenizer['sha256'][:16]}" if tokenizer.get("sha256") else ""]
    facts = ", ".join(f for f in facts if f)
    return f"{tokenizer.get('path') or 'not recorded'}" + (f" ({facts})" if facts else "")


def _heldout_text(heldout: dict[str, Any]) -> str:
    """Each figure with its interval ('accuracy 0.612 [0.435, 0.783], ... on 23 examples (95% intervals)')."""
    from thresher.pipeline.figures import figure_text

    text = figure_text(heldout)
    return text if text == "not measured" else text.replace(" examples", " held-out examples", 1)


def _funnel_table(funnel: list[dict[str, Any]]) -> str:
    if not funnel:
        return ""
    rows = []
    for r in funnel:
        out = _format(r["documents_out"])
        if r.get("copies_out") not in (None, r["documents_out"]):
            out += f"<br><span class=note>as {r['copies_out']:,} copies</span>"
        rows.append(
            f"<td>{_e(r['stage'])}</td>{_num(r['documents_in'])}{_num(r['documents_removed'])}"
            f"<td class=num>{_pct(r['removed_percent'])}</td><td class=num>{_pct(r['removed_percent_of_first'])}</td>"
            f"<td class=num>{out}</td><td class=num>{_pct(r['out_percent_of_first'])}</td>"
            f"{_num(r['lines_removed'])}{_num(r.get('bytes_out'))}{_num(r.get('estimated_words_out'))}{_num(r.get('tokens_out'))}"
        )
    first = funnel[0]
    note = (f"<p class=note>Percentages of the {first['documents_in']:,} "
            f"{'records' if first['stage'] == 'prepare' else 'documents'} {_e(first['stage'])} read: every stage's removed "
            "share plus the last stage's output add up to 100% when each stage reads the one before. Lines removed "
            "from documents that stay are counted apart: they are not documents. " + ESTIMATED_WORDS_NOTE + "</p>")
    return _table(["stage", "documents in", "documents removed", "% of stage input", "% of first input",
                   "documents out", "% of first input", "lines removed", "text bytes out", "estimated words out",
                   "tokens out"], rows) + note


def _rule_costs_table(rows: list[dict[str, Any]]) -> str:
    if not rows:
        return ""
    cells = [f"<td>{_e(r['rule'])}</td>{_num(r['seen'])}{_num(r['dropped'])}<td class=num>{_pct(r['dropped_percent'])}</td>"
             f"<td class=num>{r['seconds']:,.3f}</td><td class=num>{_pct(r['seconds_percent'])}</td>" for r in rows]
    entering, dropped = rows[0]["seen"], sum(r["dropped"] for r in rows)
    seconds = sum(r["seconds"] for r in rows)
    cells.append(f"<td>total</td>{_num(entering)}{_num(dropped)}<td class=num>{_pct(percent(dropped, entering))}</td>"
                 f"<td class=num>{seconds:,.3f}</td><td class=num>{_pct(percent(seconds, seconds))}</td>")
    note = ("<p class=note>Rules in the order they run, each on what the ones before kept. Seconds are the wall-clock "
            "time spent inside each rule, summed over all tasks (tasks run in parallel, so the sum can exceed the "
            "stage's elapsed time). Stage 2's rules share one view of each document: a split that several use (lines, "
            "words, Chinese word segmentation) is timed in the first rule that makes it. Steps that run over the whole job (exact and line dedup, MinHash) are not per-"
            "document rules: their time is in the stage's timings.</p>")
    return _table(["rule", "documents seen", "dropped", "% dropped", "seconds", "share of the stage's filter time"],
                  cells, [""] * len(rows) + ["subtotal"]) + note


def _samples_html(samples: list[dict[str, str]], kind: str = "") -> str:
    return "".join(
        f"<div class='sample {kind}'><b>{_e(s['url'])}</b> {_e(s['detail'])}<br>{_e(s['snippet'])}</div>" for s in samples
    )


def _rejects_table(rejects: list[dict[str, Any]], subtotals: dict[str, dict[str, Any]]) -> str:
    if not subtotals:
        return ""
    rows, classes = [], []
    for stage, total in subtotals.items():
        entries = [r for r in rejects if r["stage"] == stage]
        rows.append(f"<td colspan=5>{_e(stage)}: {total['documents_in']:,} "
                    f"{'records' if stage == 'prepare' else 'documents'} in</td>")
        classes.append("stage")
        for kind in ("document", "line"):
            for entry in (e for e in entries if is_line_rule(e["rule"]) == (kind == "line")):
                share = _pct(percent(entry["count"], total["documents_in"])) if kind == "document" else "(lines)"
                rows.append(f"<td>{_e(entry['rule'])}</td><td>{kind}</td>{_num(entry['count'])}"
                            f"<td class=num>{share}</td><td>{_samples_html(entry['samples'], 'removed')}</td>")
                classes.append("")
        rows.append(f"<td>{_e(stage)} subtotal</td><td>documents</td>{_num(total['document_rejects'])}"
                    f"<td class=num>{_pct(total['document_rejects_percent'])}</td><td></td>")
        classes.append("subtotal")
        if total["line_rejects"]:
            rows.append(f"<td>{_e(stage)} subtotal</td><td>lines</td>{_num(total['line_rejects'])}"
                        "<td class=num>(lines)</td><td></td>")
            classes.append("subtotal")
    return _table(["rule", "removes", "count", "% of stage input", "samples (smallest doc_id hash)"], rows, classes)


def _distribution_table(per_stage: dict[str, dict[str, int]], what: str) -> str:
    per_stage = {stage: counts for stage, counts in per_stage.items() if counts}
    if not per_stage:
        return ""
    keys = list(dict.fromkeys(k for counts in per_stage.values() for k in counts))
    totals = {stage: sum(counts.values()) for stage, counts in per_stage.items()}
    rows = [
        f"<td>{_e(key)}</td>" + "".join(
            f"{_num(counts.get(key, 0))}<td class=num>{_pct(percent(counts.get(key, 0), totals[stage]))}</td>"
            for stage, counts in per_stage.items()
        )
        for key in keys
    ]
    rows.append("<td>total</td>" + "".join(f"{_num(totals[stage])}<td class=num>100.0%</td>" for stage in per_stage))
    headers = [what] + [h for stage in per_stage for h in (f"{stage}: documents", "%")]
    return _table(headers, rows, [""] * (len(rows) - 1) + ["subtotal"])


def _dedup_html(dedup: dict[str, Any]) -> str:
    if not dedup.get("ran"):
        return ""
    hashed = dedup.get("documents_hashed")
    summary = (f"<p>{_format(hashed)} documents hashed; {dedup['clusters']:,} near-duplicate clusters holding "
               f"{dedup['documents_in_clusters']:,} documents; {dedup['duplicates_removed']:,} duplicates removed "
               f"(one document of each cluster is kept).</p>")
    if not dedup["clusters"]:
        summary = f"<p>No near-duplicates found among {_format(hashed)} documents hashed: every document is its own cluster.</p>"
    sizes = dedup.get("cluster_sizes", {})
    table = _table(["documents per cluster", "clusters"], [f"{_num(int(size))}{_num(n)}" for size, n in sizes.items()]) if sizes else ""
    return summary + table


def _clusters_html(clusters: dict[str, Any], rehydrate: dict[str, Any]) -> str:
    """The rules stage's cluster table: clusters per size, the largest ones, a sample with each member's
    line diff against the kept document; select's rehydration copies per cluster-size range."""
    if not clusters:
        return ""
    if not clusters["clusters"]:
        return "<p>No MinHash cluster of more than one document: rules/clusters is empty.</p>" + _rehydrate_html(rehydrate)
    summary = (f"<p>{clusters['clusters']:,} clusters of more than one document, {clusters['documents']:,} documents in all "
               f"(table <code>rules/clusters</code> lists every member). The kept member of each is chosen by: "
               f"<b>{_e(', '.join(clusters['kept_by']))}</b>; the others are <code>minhash_duplicate</code> rejects. "
               "Jaccard is the MinHash estimate of a member's 5-word-shingle overlap with the kept one.</p>")
    sizes = _table(["cluster size (documents)", "clusters in rules/clusters"],
                   [f"{_num(int(size))}{_num(count)}" for size, count in clusters["sizes"].items()])
    largest = _table(["cluster (kept doc_id)", "documents", "members (kept first)"], [
        f"<td>{_e(c['cluster_id'])}</td>{_num(c['size'])}<td>{_members_html(c)}</td>" for c in clusters["largest"]])
    sample = "".join(
        f"<details open><summary>cluster {_e(c['cluster_id'])}: {c['size']:,} documents</summary>"
        + "".join(_member_diff_html(m) for m in c["members"]) + "</details>" for c in clusters["sample"])
    return (summary + sizes + "<h3>Largest clusters</h3>" + largest
            + "<h3>Sample clusters: each member's lines that differ from the kept one's</h3>" + sample
            + _rehydrate_html(rehydrate))


def _members_html(cluster: dict[str, Any]) -> str:
    shown = "<br>".join(f"{'kept: ' if m['kept'] else ''}{_e(m['url'] or m['doc_id'])} "
                        f"<span class=note>(Jaccard {m['jaccard']:.3f})</span>" for m in cluster["members"])
    hidden = cluster["size"] - len(cluster["members"])
    return shown + (f"<br><span class=note>… and {hidden:,} more</span>" if hidden > 0 else "")


def _member_diff_html(member: dict[str, Any]) -> str:
    head = f"<b>{_e(member['url'] or member['doc_id'])}</b> <span class=note>{_e(member['doc_id'])}, {_e(member['run'])}</span>"
    if member["kept"]:
        return f"<div class='sample kept'>kept: {head}</div>"
    diff = member["diff"] or "(the same lines: the texts differ only in spacing)"
    return (f"<div class='sample removed'>{head} <span class=note>Jaccard {member['jaccard']:.3f}</span>"
            f"<pre class=diff>{_e(diff)}</pre></div>")


def _rehydrate_html(rehydrate: dict[str, Any]) -> str:
    """Select's rehydration: per cluster-size range, the copies each kept document gets and how many there were."""
    if not rehydrate:
        return "<p class=note>Rehydration (select.rehydrate) is off: each kept document is written once for its cluster.</p>"
    rows = [f"<td>{_e(name)}</td>{_num(entry['copies'])}{_num(entry['documents'])}{_num(entry['copies_out'])}"
            for name, entry in rehydrate["ranges"].items()]
    return ("<h3>Rehydration (select.rehydrate)</h3><p>Each kept document is repeated by the size of the MinHash "
            "cluster it stood for (FineWeb-2's rehydration), on top of rebalancing's copies.</p>"
            + _table(["cluster size", "copies each", "documents", "copies written"], rows))


def _models_table(models: list[dict[str, Any]]) -> str:
    if not models:
        return ""
    rows = []
    for model in models:
        weak = "<b>bootstrapped from weak labels</b>" if model["weak_labels"] else "trained"
        rows.append(
            f"<td>{_e(model['tagger'])}</td><td>{weak}</td><td>{_e(_heldout_text(model['heldout']))}</td>"
            f"<td class=sample>{_e(model['model_dir'])} {_e(model.get('model_hash') or '')}</td>"
        )
    return _table(["tagger", "labels", "held-out", "model"], rows)


def _gate_table(gate: dict[str, dict[str, Any]]) -> str:
    """Per tagger select's steps on it read, whether they acted and why: the figure, its interval, the floor."""
    if not gate:
        return "<p>(no select step read a model, or select did not run)</p>"
    rows = []
    for tagger, decision in gate.items():
        interval = decision.get("interval")
        value = decision.get("value")
        figure = (f"{decision['figure']} {value:.3f}" if isinstance(value, float) else f"{decision['figure']} not measured")
        if interval:
            figure += f" [{interval[0]:.3f}, {interval[1]:.3f}] ({decision.get('level') or 0:.0%})"
        rows.append(
            f"<td>{_e(tagger)}</td><td>{_e(', '.join(decision.get('steps', [])))}</td>"
            f"<td>{_outcome(decision)}</td>"
            f"<td>{_e(figure)} on {_e(decision.get('examples', 0))} examples</td>"
            f"<td>{_e(decision.get('bound'))} bound &ge; {_e(decision.get('floor'))}</td><td>{_e(decision.get('reason'))}</td>")
    return _table(["tagger", "steps", "outcome", "held-out figure", "floor", "why"], rows,
                  ["warn" if decision.get("steps") and not decision["acts"] else "" for decision in gate.values()])


def _outcome(decision: dict[str, Any]) -> str:
    if not decision.get("steps"):
        return "no step: tags only"
    return "acted" if decision["acts"] else "did not act: documents kept"


def _pii_table(pii: dict[str, Any]) -> str:
    """Per PII kind, the documents and spans the pii tagger found and whether select replaced them."""
    if not pii:
        return "<p>(no pii tagger named in select.pii, or select did not run)</p>"
    rows = [f"<td>{_e(kind)}</td>{_num(counts['documents'])}{_num(counts['spans'])}"
            f"<td>{_e(counts['placeholder']) if counts['replaced'] else 'kept (not in select.pii.replace)'}</td>"
            for kind, counts in pii["kinds"].items()]
    return (f"<p>{_format(pii['documents'])} documents with personal information found by tagger {_e(pii['tagger'])}; "
            "replaced in every document, kept or rejected.</p>" + _table(["kind", "documents", "spans", "replaced by"], rows))


def _decontam_table(decontam: dict[str, Any]) -> str:
    """Per benchmark: the documents it was found in, the test items found (ids), the documents dropped
    and the characters removed (select's details.decontam)."""
    if not decontam:
        return "<p>(no benchmark configured: config decontam.benchmarks)</p>"
    rows = []
    for name, entry in decontam["benchmarks"].items():
        items = entry["items_hit"]
        shown = ", ".join(items[:20]) + (f" ... ({len(items) - 20} more)" if len(items) > 20 else "")
        rows.append(f"<td>{_e(name)}</td><td class=num>{entry['documents_hit']:,}</td><td class=num>{len(items):,}</td>"
                    f"<td class=sample>{_e(shown)}</td><td class=num>{entry['documents_dropped']:,}</td>"
                    f"<td class=num>{entry['chars_removed']:,}</td>")
    return (f"<p>select.decontam.action: <b>{_e(decontam['action'])}</b> (rejects <code>decontam:&lt;benchmark&gt;</code>).</p>"
            + _table(["benchmark", "documents hit", "test items hit", "item ids", "documents dropped", "characters removed"], rows))


def _select_table(steps: list[dict[str, Any]], kept_samples: dict[str, list[dict[str, str]]],
                  rejects: list[dict[str, Any]]) -> str:
    if not steps:
        return ""
    removed = {r["rule"]: r["samples"] for r in rejects if r["stage"] == "select"}
    rows = []
    for step in steps:
        rule = step["rule"]
        removed_docs = step["documents_in"] - step["documents_out"]
        tokens_change = step["tokens_out"] - step["tokens_in"]
        if rule == "rebalance" and step.get("copies_out") is not None:
            change = f"{step['documents_out']:,} documents written as {step['copies_out']:,} copies"
        else:
            change = f"{removed_docs:,} removed ({_pct(percent(removed_docs, step['documents_in']))})"
        line_samples = [s for name, samples in removed.items() if is_line_rule(name) for s in samples] if rule == "line_removal" else []
        rows.append(
            f"<td>{_e(rule)}</td>{_num(step['documents_in'])}<td>{_e(change)}</td>{_num(step['tokens_in'])}"
            f"<td class=num>{tokens_change:+,}</td><td>{_samples_html(kept_samples.get(rule, []), 'kept')}</td>"
            f"<td>{_samples_html(removed.get(rule, []) or line_samples, 'removed') or '<span class=note>(none removed)</span>'}</td>"
        )
    return (_table(["rule", "documents in", "documents", "estimated words in", "estimated words change", "kept samples",
                    "removed samples"], rows)
            + "<p class=note>Rules run in this order, each on what the one before kept. The rebalancing step repeats "
              "documents of under-represented groups (and samples down over-represented ones), so the estimated words "
              f"can grow there. {ESTIMATED_WORDS_NOTE}</p>")


def _mix_table(mix: dict[str, Any]) -> str:
    if mix.get("skipped"):
        return f"<p><b>Rebalancing skipped:</b> {_e(mix['skipped'])}</p>"
    if not mix.get("groups"):
        return ""

    def share(value):
        return "" if value is None else f"{value:.1%}"

    rows = [
        f"<td>{_e(group)}</td><td class=num>{share(v['target'])}</td><td class=num>{share(v['before'])}</td>"
        f"<td class=num>{share(v['expected'])}</td><td class=num>{share(v['after'])}</td><td class=num>{share(v['short_by'])}</td>"
        for group, v in mix["groups"].items()
    ]
    domains = [
        f"<td>{_e(domain)}</td><td class=num>{share(v.get('before'))}</td><td class=num>{share(v.get('after'))}</td>"
        for domain, v in mix.get("domains", {}).items()
    ]
    unit = "estimated words (select's tokens_* counts)" if mix.get("unit") == "tokens" else mix.get("unit")
    return (f"<p>Shares of {_e(unit)}.</p>"
            + _table(["group", "target", "before", "solved", "after (written)", "short by"], rows)
            + (_table(["domain", "before", "after"], domains) if domains else ""))


def _tokens_html(tokens: dict[str, Any], funnel: list[dict[str, Any]]) -> str:
    if not tokens:
        return ""
    splits = tokens.get("splits", {})
    rows = [
        f"<td>{_e(name)}</td>{_num(s.get('source_documents'))}{_num(s.get('documents'))}{_num(s.get('sequences'))}"
        f"{_num(s.get('tokens'))}{_num(s.get('padding_tokens'))}{_num(s.get('dropped_tokens'))}"
        for name, s in splits.items()
    ]
    distinct = sum(s.get("source_documents") or 0 for s in splits.values())
    copies = sum(s.get("documents") or 0 for s in splits.values())
    if copies != distinct:
        copies_note = (f"{distinct:,} distinct documents were exported as {copies:,} copies: select's rebalancing "
                       "repeats documents of groups below their target share, and each copy is tokenized and packed.")
    else:
        copies_note = f"{distinct:,} documents exported, each once (no rebalancing copies)."
    tokenizer = tokens.get("tokenizer", {})
    packing = f" ({tokens['pack_mode']} packing)" if tokens.get("pack_mode") else ""
    return (f"<p>Tokenizer {_e(_tokenizer_text(tokenizer))}; sequences of {_format(tokens.get('seq_len'))} tokens{_e(packing)}.</p>"
            f"<p>{_e(copies_note)}</p>"
            + _table(["split", "distinct documents", "document copies", "sequences", "tokens", "padding tokens", "dropped tokens"], rows))


def _bar_chart(values: dict[str, float], unit: str = "", total: float | None = None) -> str:
    """A horizontal bar chart as inline SVG, one bar per key, scaled to the largest value; with
    `total`, each bar's label gives its share of it."""
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
        if total:
            shown += f" ({100 * value / total:.1f}%)"
        parts.append(
            f'<text x="{label_width - 6}" y="{y + 13}" text-anchor="end" font-size="12">{html.escape(label[:40])}</text>'
            f'<rect x="{label_width}" y="{y}" width="{width:.1f}" height="{bar_height}" fill="#4a7ab5"/>'
            f'<text x="{label_width + width + 4:.1f}" y="{y + 13}" font-size="12">{shown}</text>'
        )
    height = len(items) * (bar_height + 4)
    total_width = label_width + bar_width + 130
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{total_width}" height="{height}" '
        f'role="img">{"".join(parts)}</svg>'
    )
