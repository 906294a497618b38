"""Stage 3 select step on a batch of tagged documents, without Spark: keep rules, line removal,
and rebalancing copies, all from the tag columns (no model runs here).

`filter_table` gives each tagged row its fate: a document the decontam tagger found benchmark items
in is dropped (`decontam:<benchmark>`) or has the matched spans cut (`decontam_action`); then
`status` is "kept" or the first keep rule it fails
(`<tagger>:<rule>`, AND-combined in config order), `reject_detail` the value that failed; lines a
lines tagger scored under its threshold are removed (`text` rewritten, each line kept in
`removed_lines` for a `<tagger>_line` reject; a document left empty is a `<tagger>_emptied`
reject). It also counts estimated tokens and names the document's mix class. `copy_table` then
turns the per-class weights the driver solved for into `sample_copies` (pipeline.select.mix.sample_copies;
0 copies is a `rebalance_downsampled` reject). The tag columns are those the taggers declare (schemas.tags).

Personal information a pii tagger found is replaced first (pipeline.pii.redact, the kinds of
`pii_placeholders`), in every document, kept or rejected, so no reject snippet or removed line
holds it either; a placeholder holds no line break, so line scores stay aligned.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from thresher.pipeline.decontam import cut_spans, merge_spans
from thresher.pipeline.lexicon import HAN_CHAR, ends_sentence, estimated_words
from thresher.pipeline.select.mix import TopFractionCut, sample_copies
from thresher.pipeline.select.rehydrate import SizeRange, range_of
from thresher.schemas import extend
from thresher.schemas.tags import (
    DECONTAM,
    DeclaredTagger,
    hits_column,
    label_column,
    line_scores_column,
    score_column,
    spans_column,
    tagged_schema,
    top_column,
)

STATUS_KEPT = "kept"
DECONTAM_ACTIONS = ("drop", "cut")
RULE_DOWNSAMPLED = "rebalance_downsampled"
REST_CLASS = ""  # documents outside every class: not reweighted by class
TIE_SEED = 0  # top-percent ties at the cut score are broken by unit_hash(TIE_SEED, doc_id), then doc_id

def estimated_tokens(text: str) -> int:
    """A tokenizer-free token count: one per whitespace-separated word, one per CJK character (select
    runs before the tokenizer is trained; BPE vocabularies give about that for both scripts)."""
    text = text or ""
    if text.isascii():
        return len(text.split())
    # Each CJK character is a token and splits the word around it: count them while turning them into spaces.
    spaced, cjk = HAN_CHAR.subn(" ", text)
    return cjk + len(spaced.split())


@dataclass(frozen=True)
class KeepCheck:
    """One keep rule on one document tagger, resolved against its model's labels."""

    tagger: str
    rule: str  # label_in | label_not_in | min_score | top_percent
    labels: tuple[str, ...] = ()
    label_min_score: float = 0.0
    score_label: str = ""
    threshold: float = 0.0  # min_score
    cut: TopFractionCut | None = None  # top_percent, found over the whole input on the driver

    @property
    def name(self) -> str:
        return f"{self.tagger}:{self.rule}"

    def score(self, row: dict) -> float:
        """The score this rule reads: the tagger's top score, or `score_label`'s probability from its top list."""
        if not self.score_label:
            return float(row[score_column(self.tagger)])
        return next(float(e["score"]) for e in row[top_column(self.tagger)] if e["label"] == self.score_label)

    def failure(self, row: dict) -> str | None:
        """None when the row passes, else the reject detail."""
        label, top_score = row[label_column(self.tagger)], float(row[score_column(self.tagger)])
        if self.rule in ("label_in", "label_not_in"):
            hit = label in self.labels
            if hit == (self.rule == "label_in") or top_score < self.label_min_score:
                return None
            return f"label={label} score={top_score:.4f}"
        score = self.score(row)
        if self.rule == "min_score":
            return None if score >= self.threshold else f"score={score:.4f} min={self.threshold:g}"
        assert self.cut is not None, "top_percent cut not computed"
        return None if self.cut.keeps(score, row["doc_id"]) else f"score={score:.4f} cut={self.cut.threshold:.4f}"


@dataclass(frozen=True)
class ColumnCheck:
    """select.columns' rules on one column (any column: a custom tagger's, the input's own); a null value fails."""

    column: str
    min: float | None = None
    max: float | None = None
    equals: Any = None

    @property
    def name(self) -> str:
        return f"column:{self.column}"

    def failure(self, row: dict) -> str | None:
        """None when the row passes, else the reject detail."""
        value = row[self.column]
        passes = value is not None and (self.equals is None or value == self.equals) and (
            self.min is None or value >= self.min) and (self.max is None or value <= self.max)
        return None if passes else f"value={value!r}"


@dataclass(frozen=True)
class LineGuards:
    """Rules a line model cannot override, applied wherever lines are removed (issue 25): a line that
    holds most of the document's characters, a long sentence-like line and a long table row (a page
    laid out in a table, which trafilatura flattens into one row) always stay; a removal that would
    take more than `max_removed_share` of the document's characters is undone as a whole, so line
    removal never empties a document. Each rule is off at its neutral value (1.0, 0, 0, 1.0, False).
    Defaults: chosen by leave-one-source-out cross-validation on the extraction dev set
    (bench/bench_clutter_guards.py, bench/RESULTS.md "Issue 25")."""

    dominant_share: float = 0.3  # a line with more than this share of the document's characters stays
    prose_min_words: int = 25  # a line of at least this many estimated words that ends a sentence stays
    table_min_chars: int = 300  # a table row ("| a | b |") of at least this many characters stays
    max_removed_share: float = 0.3  # more of the characters than this would go: nothing goes
    never_empty: bool = True  # a removal that would leave no characters is undone (counted as removal_cap)

    @classmethod
    def off(cls) -> LineGuards:
        return cls(dominant_share=1.0, prose_min_words=0, table_min_chars=0, max_removed_share=1.0, never_empty=False)


CLUSTER_SIZE = "minhash_cluster_size"  # stage 2's column (schemas.documents.RULES): what rehydration reads
GUARDS = ("dominant_line", "flattened_table", "long_prose", "removal_cap")  # names in stats, in the order they apply
NO_GUARDS = LineGuards.off()
TABLE_CELL = " | "


@dataclass(frozen=True)
class SelectSettings:
    taggers: tuple[DeclaredTagger, ...]  # as tag declared them: the input's columns
    checks: tuple[KeepCheck, ...] = ()
    line_thresholds: tuple[tuple[str, float], ...] = ()  # (lines tagger, threshold), in config order
    line_guards: LineGuards = LineGuards()  # what line removal never takes
    class_tagger: str = ""  # whose label is the mix class; empty: no rebalancing
    class_min_score: float = 0.0
    weights: dict[str, float] = field(default_factory=dict)  # class -> weight (copy_table); missing: 1
    seed: int = 0
    decontam_action: str = ""  # drop or cut a document the decontam tagger found benchmark items in; "": no such tagger
    pii_tagger: str = ""  # the pii tagger whose spans are replaced; empty: none
    pii_placeholders: dict[str, str] = field(default_factory=dict)  # kind -> placeholder, for the kinds replaced
    column_checks: tuple[ColumnCheck, ...] = ()  # after `checks`
    kept: tuple[pa.Field, ...] = ()  # the input's other columns (custom taggers', a user's own): passed on as they are
    rehydrate: tuple[SizeRange, ...] = ()  # copies per MinHash cluster-size range (pipeline.select.rehydrate); empty: off


GUARDED_LINES = pa.struct([pa.field("guard", pa.string()), pa.field("lines", pa.int32())])
REMOVED_LINE = pa.struct([pa.field("line", pa.string()), pa.field("score", pa.float64()), pa.field("rule", pa.string())])
# per benchmark found in a document: its items, and the characters select removed for it (all the
# document's when dropped, its merged spans' when cut)
DECONTAM_REMOVED = pa.struct([pa.field("benchmark", pa.string()), pa.field("item_ids", pa.list_(pa.string())),
                              pa.field("ngrams", pa.int64()), pa.field("chars", pa.int64())])


def selected_schema(settings: SelectSettings) -> pa.Schema:
    """The select documents: the tag columns without line scores, PII spans and decontam spans (text may
    be rewritten, so they would no longer align; they stay in the tag output), then the input's other
    columns, then lines removed per lines tagger and sample_copies."""
    return extend(
        tagged_schema([tagger for tagger in settings.taggers if tagger.kind not in ("lines", "pii", DECONTAM)]),
        *settings.kept,
        *[pa.field(f"lines_removed_{name}", pa.int32()) for name, _ in settings.line_thresholds],
        pa.field("sample_copies", pa.int32()),  # how many times export emits this document (rebalancing)
    )


def filtered_schema(settings: SelectSettings) -> pa.Schema:
    """Between the two passes: every document with its fate, token counts and mix class."""
    return extend(
        selected_schema(settings),
        pa.field("status", pa.string(), nullable=False),
        pa.field("reject_detail", pa.string()),
        pa.field("removed_lines", pa.list_(REMOVED_LINE)),
        pa.field("lines_guarded", pa.list_(GUARDED_LINES)),  # lines under a threshold that a guard kept (LineGuards)
        pa.field("decontam_removed", pa.list_(DECONTAM_REMOVED)),  # per benchmark hit (decontam_action set)
        pa.field("tokens_in", pa.int64()),  # estimated tokens of the tagged text
        pa.field("tokens_cut", pa.int64()),  # of them, cut as benchmark text (decontam_action cut)
        pa.field("tokens", pa.int64()),  # after line removal
        pa.field("mix_class", pa.string()),
    )


def filter_table(table: pa.Table, settings: SelectSettings) -> pa.Table:
    """Rules in Python on the few columns they read, line scores only for the documents that pass them;
    every column select does not change passes through as Arrow."""
    schema = filtered_schema(settings)
    texts = pc.fill_null(table.column("text"), "").combine_chunks()
    python_texts = texts.to_pylist()
    tokens_in = np.array([estimated_tokens(text) for text in python_texts], np.int64)
    replacements = _pii_replacements(table, settings)
    rows = table.select(_rule_columns(settings, table.column_names)).to_pylist()
    tokens_cut = np.zeros(len(rows), np.int64)
    cleaned: dict[int, str] = {}  # row -> its rewritten text (benchmark spans cut, PII replaced, lines removed)
    for i, row in enumerate(rows):
        row["status"], row["reject_detail"], row["removed_lines"], row["lines_guarded"] = STATUS_KEPT, None, [], []
        row["decontam_removed"] = []
        cuts: list[tuple[int, int]] = []
        if settings.decontam_action and row.get(hits_column(DECONTAM)):
            cuts = _decontaminate(row, python_texts[i], settings.decontam_action)
            if cuts:
                tokens_cut[i] = tokens_in[i] - estimated_tokens(cut_spans(python_texts[i], cuts))
        if cuts or i in replacements:
            # both edits at the tag-time offsets, in one pass: neither moves the other's spans
            text = _rewrite(python_texts[i], cuts, replacements.get(i, []), settings.pii_placeholders)
            if text != python_texts[i]:
                cleaned[i] = text
        for check in (*settings.checks, *settings.column_checks) if row["status"] == STATUS_KEPT else ():
            detail = check.failure(row)
            if detail is not None:
                row["status"], row["reject_detail"] = check.name, detail
                break
    # No token spans a line break (a cut keeps every line break, a placeholder holds none), so the
    # removed lines' tokens are exactly what a text lost.
    tokens = tokens_in.copy()
    for i, text in cleaned.items():
        tokens[i] = estimated_tokens(text)
    if settings.line_thresholds:
        kept = [i for i, row in enumerate(rows) if row["status"] == STATUS_KEPT]
        line_columns = [line_scores_column(name) for name, _ in settings.line_thresholds]
        for i, scored in zip(kept, table.select(line_columns).take(pa.array(kept, pa.int64())).to_pylist(), strict=True):
            rows[i].update(scored)
            text = _remove_lines(rows[i], cleaned.get(i, python_texts[i]), settings.line_thresholds, settings.line_guards)
            if rows[i]["removed_lines"]:
                cleaned[i] = text
    removed = [(i, entry["line"]) for i in cleaned for entry in rows[i]["removed_lines"]]
    if removed:
        np.subtract.at(tokens, [i for i, _ in removed], [estimated_tokens(line) for _, line in removed])
    if cleaned:
        mask = np.zeros(len(rows), bool)
        mask[list(cleaned)] = True
        texts = pc.replace_with_mask(texts, pa.array(mask), pa.array([cleaned[i] for i in sorted(cleaned)], pa.string()))
    for row in rows:
        row["mix_class"] = _mix_class(row, settings)
        row["sample_copies"] = 1 if row["status"] == STATUS_KEPT else 0
    computed = {"text": texts.cast(pa.string()), "tokens_in": pa.array(tokens_in, pa.int64()), "tokens": pa.array(tokens, pa.int64()),
                "tokens_cut": pa.array(tokens_cut, pa.int64())}
    written = set(schema.names) - set(table.column_names)
    return pa.Table.from_arrays(
        [computed[f.name] if f.name in computed else
         pa.array([row.get(f.name) for row in rows], f.type) if f.name in written else table.column(f.name).cast(f.type)
         for f in schema],
        schema=schema,
    )


def _decontaminate(row: dict, text: str, action: str) -> list[tuple[int, int]]:
    """A document holding benchmark items: with `drop`, its status is `decontam:<first benchmark>`;
    with `cut`, the merged spans to cut ([] when dropped), a document the cut would leave blank dropped
    the same way. Sets the row's decontam_removed: per benchmark its items and the characters it cost."""
    hits = row[hits_column(DECONTAM)]
    spans: dict[str, list[tuple[int, int]]] = {}
    for span in row.get(spans_column(DECONTAM)) or []:
        spans.setdefault(span["benchmark"], []).append((span["start"], span["end"]))
    cuts = merge_spans([span for found in spans.values() for span in found]) if action == "cut" else []
    dropped = action == "drop" or not cut_spans(text, cuts).strip()
    row["decontam_removed"] = [
        {"benchmark": hit["benchmark"], "item_ids": hit["item_ids"], "ngrams": hit["ngrams"],
         "chars": len(text) if dropped else sum(end - start for start, end in merge_spans(spans.get(hit["benchmark"], [])))}
        for hit in hits]
    if not dropped:
        return cuts
    first = hits[0]
    row["status"] = f"{DECONTAM}:{first['benchmark']}"
    row["reject_detail"] = f"items={','.join(first['item_ids'][:5])}{',...' if len(first['item_ids']) > 5 else ''} ngrams={first['ngrams']}"
    return []


def _pii_replacements(table: pa.Table, settings: SelectSettings) -> dict[int, list[tuple[str, int, int]]]:
    """Per row with PII of a replaced kind, its spans (kind, start, end): replaced in every document, kept or
    rejected, so no reject snippet holds them."""
    if not settings.pii_tagger or not settings.pii_placeholders:
        return {}
    found = table.column(spans_column(settings.pii_tagger)).to_pylist()
    return {i: spans for i, row in enumerate(found)
            if (spans := [(span["kind"], span["start"], span["end"]) for span in row or [] if span["kind"] in settings.pii_placeholders])}


def _rewrite(text: str, cuts: Sequence[tuple[int, int]], replacements: Sequence[tuple[str, int, int]],
             placeholders: dict[str, str]) -> str:
    """`text` with the merged `cuts` removed but their line breaks (as pipeline.decontam.cut_spans) and the
    PII `replacements` replaced by their kind's placeholder (as pipeline.pii.redact), all at `text`'s own
    offsets; a PII span a cut overlaps goes with the cut."""
    edits = [(start, end, "\n" * text.count("\n", start, end)) for start, end in cuts]
    edits += [(start, end, placeholders[kind]) for kind, start, end in replacements
              if not any(start < cut_end and cut_start < end for cut_start, cut_end in cuts)]
    pieces, at = [], 0
    for start, end, new in sorted(edits):
        pieces += [text[at:start], new]
        at = end
    return "".join(pieces) + text[at:]


def _rule_columns(settings: SelectSettings, names: Sequence[str]) -> list[str]:
    """The input columns the keep rules, decontamination and the mix class read, for every document."""
    read = {"doc_id"}
    if settings.decontam_action:
        read |= {hits_column(DECONTAM), spans_column(DECONTAM)}
    for check in settings.checks:
        read |= {label_column(check.tagger), score_column(check.tagger), *([top_column(check.tagger)] if check.score_label else [])}
    if settings.class_tagger:
        read |= {label_column(settings.class_tagger), score_column(settings.class_tagger)}
    read |= {check.column for check in settings.column_checks}
    return [name for name in names if name in read]


def guard_of(line: str, document_chars: int, guards: LineGuards) -> str | None:
    """The guard (GUARDS) that keeps `line` whatever its score, or None; `document_chars` is the
    document's non-blank characters (stripped lines)."""
    stripped = line.strip()
    chars = len(stripped)
    if not chars:
        return None
    if guards.dominant_share < 1.0 and chars > guards.dominant_share * document_chars:
        return "dominant_line"
    if guards.table_min_chars and chars >= guards.table_min_chars and (stripped.startswith("|") or TABLE_CELL in stripped):
        return "flattened_table"
    if guards.prose_min_words and estimated_words(stripped) >= guards.prose_min_words and ends_sentence(stripped):
        return "long_prose"
    return None


@dataclass
class CleanedText:
    text: str
    removed: list[tuple[str, float]]  # (line, score) of each removed line
    removed_index: list[int] = field(default_factory=list)  # their line numbers
    guarded: dict[str, int] = field(default_factory=dict)  # guard -> lines under the threshold it kept


def remove_lines(text: str, scores: Sequence[float | None], threshold: float, guards: LineGuards = NO_GUARDS) -> CleanedText:
    """`text` without the lines whose score is below `threshold`, except those `guards` keep; blank
    (unscored) lines stay, so paragraph breaks survive, and a text with nothing to remove comes back
    unchanged."""
    lines = (text or "").split("\n")
    if len(lines) != len(scores):
        raise ValueError(f"{len(scores)} line scores for a text of {len(lines)} lines")
    document_chars = sum(len(line.strip()) for line in lines)
    guarded: dict[str, int] = {}
    going = []
    for index, (line, score) in enumerate(zip(lines, scores, strict=True)):
        if score is not None and score < threshold:
            guard = guard_of(line, document_chars, guards)
            if guard is None:
                going.append(index)
            else:
                guarded[guard] = guarded.get(guard, 0) + 1
    if going and (guards.max_removed_share < 1.0 or guards.never_empty):
        removed_chars = sum(len(lines[index].strip()) for index in going)
        if removed_chars > guards.max_removed_share * document_chars or (guards.never_empty and removed_chars >= document_chars):
            guarded["removal_cap"] = len(going)
            going = []
    if not going:
        return CleanedText(text or "", [], [], guarded)
    gone = set(going)
    kept = [line for index, line in enumerate(lines) if index not in gone]
    removed = [(lines[index], float(scores[index])) for index in going]  # type: ignore[arg-type]
    return CleanedText("\n".join(kept).strip(), removed, going, guarded)


def _remove_lines(row: dict, text: str, thresholds: Sequence[tuple[str, float]], guards: LineGuards = NO_GUARDS) -> str:
    """Lines any lines tagger scored under its threshold, removed unless a guard keeps them (a line
    counts for the first tagger that marks it); sets the row's removed lines, counts, the lines each
    guard kept and, when nothing is left, its reject."""
    scores: list[float | None] = [None] * len(text.split("\n"))
    rule_of: dict[int, str] = {}
    for name, threshold in thresholds:
        row[f"lines_removed_{name}"] = 0
        for index, score in enumerate(row.get(line_scores_column(name)) or []):
            if score is not None and score < threshold and index not in rule_of and index < len(scores):
                rule_of[index], scores[index] = name, score
    cleaned = remove_lines(text, scores, 1.0 if rule_of else 0.0, guards)  # exactly the marked lines can go
    for index in cleaned.removed_index:
        row[f"lines_removed_{rule_of[index]}"] += 1
    row["removed_lines"] = [
        {"line": line, "score": score, "rule": f"{rule_of[index]}_line"}
        for index, (line, score) in zip(cleaned.removed_index, cleaned.removed, strict=True)
    ]
    row["lines_guarded"] = [{"guard": guard, "lines": count} for guard, count in cleaned.guarded.items()]
    if cleaned.removed_index and not cleaned.text.strip():
        first = rule_of[cleaned.removed_index[0]]
        row["status"], row["reject_detail"] = f"{first}_emptied", f"lines_removed={len(cleaned.removed_index)}"
    return cleaned.text


def _mix_class(row: dict, settings: SelectSettings) -> str:
    if not settings.class_tagger or float(row[score_column(settings.class_tagger)]) < settings.class_min_score:
        return REST_CLASS
    return row[label_column(settings.class_tagger)]


def copy_table(table: pa.Table, settings: SelectSettings) -> pa.Table:
    """Kept rows get sample_copies from their class weight, times their MinHash cluster size's copies when
    rehydrating; 0 copies makes a downsampled reject."""
    columns = {name: table.column(name).to_pylist() for name in ("doc_id", "status", "reject_detail", "mix_class", "sample_copies")}
    status, detail, copies = columns["status"], columns["reject_detail"], columns["sample_copies"]
    # An input from before stage 2 wrote cluster sizes has none: each document counts as a cluster of one.
    sizes = (table.column(CLUSTER_SIZE).to_pylist() if CLUSTER_SIZE in table.schema.names else [None] * table.num_rows)
    for i, (doc_id, mix_class) in enumerate(zip(columns["doc_id"], columns["mix_class"], strict=True)):
        if status[i] != STATUS_KEPT:
            continue
        weight = settings.weights.get(mix_class, 1.0)
        copies[i] = sample_copies(doc_id, weight, settings.seed)
        if settings.rehydrate:
            copies[i] *= range_of(sizes[i], settings.rehydrate).copies
        if copies[i] == 0:
            status[i], detail[i] = RULE_DOWNSAMPLED, f"class={mix_class} weight={weight:.4f}"
    for name, values in (("status", status), ("reject_detail", detail), ("sample_copies", copies)):
        index = table.schema.get_field_index(name)
        table = table.set_column(index, table.schema.field(index), pa.array(values, table.schema.field(index).type))
    return table


def filter_batches(batches: Iterator[pa.RecordBatch], settings: SelectSettings) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield from filter_table(pa.Table.from_batches([batch]), settings).to_batches()


def copy_batches(batches: Iterator[pa.RecordBatch], settings: SelectSettings) -> Iterator[pa.RecordBatch]:
    for batch in batches:
        yield from copy_table(pa.Table.from_batches([batch]), settings).to_batches()
