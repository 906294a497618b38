"""Default models from a crawl with one command: weak labels from transparent rules, then fastText.

Labels come from thresher.classifiers.page_type.weak_page_type (URL patterns, then text features),
classifiers.clutter.weak_clutter_label (DCLM/C4-style line rules) and classifiers.topic.KeywordLabeler
(bilingual keyword seeds from the taxonomy). They are written to MODELS_DIR/weak_labels/*.jsonl in
the same format users bring, so they can be inspected, corrected and retrained with
`thresher classifiers train`. The topic model also learns one seed example per class (names and
keywords), so all 200 classes exist even when the crawl lacks some.

Input: any documents input (pipeline.stagedir.documents.read_documents: committed stage directories,
Parquet, JSONL with `text` (or `raw_content`) and optionally `url`, datasets directories), or WARC
files (run through stage 1's per-file extraction).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from thresher.classifiers.clutter import weak_clutter_label
from thresher.classifiers.page_type import weak_page_type
from thresher.classifiers.topic import KeywordLabeler, Taxonomy, seed_examples
from thresher.classifiers.training import LabelledData, read_labelled, train_and_save
from thresher.pipeline.seeded_hash import unit_hash
from thresher.pipeline.stagedir.documents import FieldMapping, document_file_kind, read_documents
from thresher.schemas.errors import InputError

MODEL_NAMES = ("page_type", "clutter", "topic")
# fastText options per model on top of the backend defaults. Weak labels give few long documents per
# class; at the default lr 0.5 / 25 epochs the 200-class topic model underfits into one or two
# classes (on the test crawl: 5% training accuracy; lr 1.0 / 50 epochs: 44%).
MODEL_PARAMS: dict[str, dict[str, Any]] = {
    "page_type": {"epoch": 50},
    "clutter": {},
    "topic": {"epoch": 50, "lr": 1.0},
}
WEAK_LABELS_DIR = "weak_labels"
SUMMARY_NAME = "bootstrap.json"


def bootstrap_texts(paths: Sequence[str], prepare_config=None, fields: FieldMapping | None = None,
                    ) -> Iterator[tuple[str, str]]:
    """(url, text) of every document under `paths`: WARC files through stage 1's extraction (they need
    `prepare_config`, a resolved PrepareConfig), everything else through the documents reader (with
    `fields`, the columns a user's documents name)."""
    for name in paths:
        path = Path(name)
        if not path.is_file() or document_file_kind(path) is not None:
            yield from ((row["url"] or "", row["text"] or "") for row in _documents(name, fields))
        elif ".warc" in path.name.lower() or path.name.lower().endswith((".arc", ".arc.gz")):
            yield from _warc_documents(path, prepare_config)
        else:
            raise InputError(f"bootstrap input {path}: expected a stage directory, Parquet, JSONL or WARC")


def _documents(path: str, fields: FieldMapping | None) -> Iterator[dict]:
    """The (url, text) rows of a documents input; without `fields`, one without `text` is read from
    RedPajama's `raw_content`."""
    if fields is not None:
        return read_documents(path, fields, columns=("url", "text"))
    try:
        return read_documents(path, columns=("url", "text"))
    except InputError as no_text:
        try:
            return read_documents(path, FieldMapping(text="raw_content"), columns=("url", "text"))
        except InputError:
            raise no_text from None


def _warc_documents(path: Path, prepare_config) -> Iterator[tuple[str, str]]:
    from thresher.pipeline.prepare.records import ROW_DOCUMENT, ROW_SCHEMA, process_warc

    if prepare_config is None:
        raise ValueError("WARC inputs need the prepare config (language ID, extraction settings)")
    kind, url, text = (ROW_SCHEMA.names.index(n) for n in ("row_kind", "url", "text"))
    for row in process_warc(str(path.resolve()), prepare_config):
        if row[kind] == ROW_DOCUMENT:
            yield row[url] or "", row[text] or ""


def sample_documents(documents: Iterator[tuple[str, str]], limit: int, seed: int) -> list[tuple[str, str]]:
    """At most `limit` documents: those with the smallest hash of url and text, so the sample does not
    depend on input order."""
    keyed = sorted(((unit_hash(seed, url + "\x00" + text[:1000]), url, text) for url, text in documents if text.strip()))
    return [(url, text) for _key, url, text in keyed[:limit]]


def weak_label_rows(documents: list[tuple[str, str]], taxonomy: Taxonomy, max_lines_per_label: int, seed: int) -> dict[str, list[dict[str, Any]]]:
    """The weak-label rows of each model, in the training-data format (`text`, `label`, plus the rule)."""
    labeler = KeywordLabeler(taxonomy)
    rows: dict[str, list[dict[str, Any]]] = {name: [] for name in MODEL_NAMES}
    for url, text in documents:
        page = weak_page_type(url, text)
        if page:
            rows["page_type"].append({"url": url, "text": text, "label": page[0], "rule": page[1]})
        topic = labeler.label(text)
        if topic:
            rows["topic"].append({"text": text, "label": topic[0], "rule": f"keywords:{topic[1]}"})
        lines = text.split("\n")
        for index, line in enumerate(lines):
            verdict = weak_clutter_label(line)
            if verdict:
                rows["clutter"].append(
                    {"text": line, "line_index": index, "line_count": len(lines), "label": verdict[0], "rule": verdict[1]}
                )
    # Lines are plentiful and repetitive: cap each label (a deterministic sample) to bound training.
    by_label: dict[str, list[dict[str, Any]]] = {}
    for row in rows["clutter"]:
        by_label.setdefault(row["label"], []).append(row)
    rows["clutter"] = [
        row
        for label in sorted(by_label)
        for row in sorted(by_label[label], key=lambda r: unit_hash(seed, f"{r['line_index']}\x00{r['text']}"))[:max_lines_per_label]
    ]
    return rows


def bootstrap(
    inputs: Sequence[str],
    output_dir: str | Path,
    taxonomy: Taxonomy,
    prepare_config=None,
    max_documents: int = 50_000,
    max_lines_per_label: int = 200_000,
    holdout: float = 0.1,
    seed: int = 0,
    params: dict[str, Any] | None = None,
    fields: FieldMapping | None = None,
) -> dict[str, Any]:
    """Weak-label the documents under `inputs` (documents read with `fields`) and train the three fastText
    models into `output_dir`."""
    output_dir = Path(output_dir)
    documents = sample_documents(bootstrap_texts(inputs, prepare_config, fields), max_documents, seed)
    if not documents:
        raise ValueError(f"no documents with text under {', '.join(inputs)}")
    rows = weak_label_rows(documents, taxonomy, max_lines_per_label, seed)
    labels_dir = output_dir / WEAK_LABELS_DIR
    labels_dir.mkdir(parents=True, exist_ok=True)
    summary: dict[str, Any] = {"inputs": [str(Path(p).resolve()) for p in inputs], "documents": len(documents), "models": {}}
    for name in MODEL_NAMES:
        counts = Counter(row["label"] for row in rows[name])
        if len(counts) < 2:
            raise ValueError(
                f"weak labels for {name} found {dict(counts) or 'no'} labels in {len(documents)} documents: at least two "
                "labels are needed; bootstrap on a larger or more varied crawl, or train on labelled data"
            )
        labels_path = labels_dir / f"{name}.jsonl"
        with labels_path.open("w", encoding="utf-8") as out:
            for row in rows[name]:
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        extra = None
        if name == "topic":
            seeds = seed_examples(taxonomy)
            extra = LabelledData([text for text, _ in seeds], [label for _, label in seeds])
        record = train_and_save(
            "fasttext",
            read_labelled([labels_path], task=name),
            output_dir / name,
            params={**MODEL_PARAMS[name], **(params or {})},
            holdout=holdout,
            seed=seed,
            sources=[str(labels_path)],
            extra_train=extra,
            task=name,
        )
        summary["models"][name] = {
            "weak_label_counts": dict(sorted(counts.items())),
            "weak_label_rules": dict(sorted(Counter(row["rule"].split(":")[0] for row in rows[name]).items())),
            "heldout": record["heldout"],
        }
    (output_dir / SUMMARY_NAME).write_text(json.dumps(summary, indent=2, ensure_ascii=False) + "\n")
    return summary
