"""`thresher annotate`: labels for a stage 3 classifier from a local causal LM, by constrained scoring.

For each sampled document (for clutter: each line of it) a prompt from configs/prompts/ is filled with
the (truncated) document and the task's label set. The model's answer is never parsed: the
log-likelihood of every allowed label after the prompt is computed, with the prompt run once and its
key/value cache shared by all labels in one batch (classifiers.label_scoring; with
--backend vllm, classifiers.vllm_backend), and the probabilities are normalised over the labels.
Topics take two steps: the domain, then a subtopic of it. The prompt lists each label with its name
and a description (configs/prompts/labels.yaml, configs/topics.yaml); only the label is scored.

The output is JSONL that `thresher classifiers train` reads (`text`, `label`, plus `url` for page
type and `line_index`/`line_count` for clutter), one row per document or line, each recording the
prompt template's hash and the model's name and hash. Which documents are annotated is a function of
the input and --seed (stratified by language), and a rerun continues after the last complete row.
The input is read as every stage reads documents (pipeline.stagedir.documents.read_documents): a
document without an id gets the one derived from its file and row number.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from thresher.classifiers.base import ModelNotFoundError, UnusableModelError
from thresher.classifiers.clutter import CLUTTER, KEEP
from thresher.classifiers.label_scoring import (
    NORMALISATIONS,
    CausalLMScorer,
    LabelScorer,
    ScoringRequest,
    label_scores,
    normalised,
)
from thresher.classifiers.page_type import PAGE_TYPES
from thresher.classifiers.topic import default_topics_file, load_taxonomy
from thresher.pipeline.package_files import package_path
from thresher.pipeline.seeded_hash import unit_hash
from thresher.pipeline.stagedir.documents import read_documents, resolve_source

ANNOTATION_TASKS = ("page_type", "topic", "clutter", "quality")
QUALITY_LABELS = ("high", "low")
TRAIN_TASK = {"page_type": "page_type", "topic": "topic", "clutter": "clutter", "quality": "plain"}
DEFAULT_MAX_CHARS = 3000  # the document prefix in a prompt; page type and topic show early in a page
DEFAULT_MAX_LINES = 40  # clutter: lines judged per document (chosen by seeded hash)
DEFAULT_BATCH_SIZE = 8  # documents (clutter: lines) whose prompts run in one forward pass
DEFAULT_LABEL_SCORE = "calibrated"  # bench/bench_annotate.py measures the choice
CONTENT_FREE = "N/A"  # the document of the content-free prompt that calibrates label scores


def shipped_prompts_dir() -> Path:
    """configs/prompts: the prompt templates and label names thresher ships."""
    return package_path("configs/prompts")


class AnnotationError(ValueError):
    """A labels file, prompt or model that cannot be used; the message names it and what to do."""


# ----------------------------------------------------------------------------------------------
# Label sets and prompts


@dataclass(frozen=True)
class LabelSet:
    """The allowed answers of one scoring step and what the prompt says about each: its name and a
    description. Only the labels themselves are scored."""

    labels: tuple[str, ...]
    names: dict[str, dict[str, str]]  # label -> {"en": ..., "zh": ...}
    descriptions: dict[str, dict[str, str]]  # label -> {"en": ..., "zh": ...}

    def listing(self, lang: str) -> str:
        """One line per label for the prompt's {labels}: `- label: Name. Description` (in Chinese with ：and 。)."""
        colon, stop = ("：", "。") if lang == "zh" else (": ", ". ")
        return "\n".join(f"- {label}{colon}{self.names[label][lang]}{stop}{self.descriptions[label][lang]}" for label in self.labels)


@dataclass(frozen=True)
class TopicTree:
    domains: LabelSet
    subtopics: dict[str, LabelSet]  # domain id -> its subtopics (ids without the domain)

    @property
    def labels(self) -> tuple[str, ...]:
        """Every `domain.subtopic` of the taxonomy."""
        return tuple(f"{domain}.{sub}" for domain, subs in self.subtopics.items() for sub in subs.labels)


def label_sets(task: str, prompts_dir: Path | None = None, topics_file: Path | None = None) -> LabelSet | TopicTree:
    """The labels `task` is annotated with: page types, keep/clutter and high/low from labels.yaml
    (default: the shipped prompts'), topics (domain, then subtopic) from the taxonomy file."""
    if task == "topic":
        return _topic_tree(Path(topics_file or default_topics_file()))
    names_file = (prompts_dir or shipped_prompts_dir()) / "labels.yaml"
    try:
        entries = (yaml.safe_load(names_file.read_text(encoding="utf-8")) or {}).get(task) or {}
    except (OSError, yaml.YAMLError, AttributeError) as exc:
        raise AnnotationError(f"cannot read label names {names_file}: {exc}") from exc
    labels = {"page_type": PAGE_TYPES, "clutter": (KEEP, CLUTTER), "quality": QUALITY_LABELS}[task]
    if not isinstance(entries, dict):
        raise AnnotationError(f"{names_file}: {task} must map each label to its names and description")
    unknown = sorted(str(label) for label in entries if label not in labels)
    if unknown:  # a label the classifier and select do not know would be annotated, trained and weighted
        raise AnnotationError(f"{names_file}: {task} label {unknown[0]} is not one of the task's labels ({', '.join(labels)}); "
                              "remove it or correct its name")
    names, descriptions = {}, {}
    for label in labels:
        entry = entries.get(label)
        description = entry.get("description") if isinstance(entry, dict) else None
        for lang in ("en", "zh"):
            if not _text(entry, lang) or not _text(description, lang):
                raise AnnotationError(
                    f"{names_file}: {task} label {label} has no {lang} name or description; "
                    f"give it `{label}: {{en: ..., zh: ..., description: {{en: ..., zh: ...}}}}`"
                )
        names[label] = {lang: entry[lang].strip() for lang in ("en", "zh")}
        descriptions[label] = {lang: description[lang].strip() for lang in ("en", "zh")}
    return LabelSet(tuple(labels), names, descriptions)


def _text(node: Any, lang: str) -> bool:
    return isinstance(node, dict) and isinstance(node.get(lang), str) and bool(node[lang].strip())


def _topic_tree(path: Path) -> TopicTree:
    """Domains, then each domain's subtopics (ids without the domain), from the checked taxonomy."""
    taxonomy = load_taxonomy(path)
    domains = LabelSet(
        tuple(d.id for d in taxonomy.domains),
        {d.id: {"en": d.en, "zh": d.zh} for d in taxonomy.domains},
        {d.id: {"en": d.description_en, "zh": d.description_zh} for d in taxonomy.domains},
    )
    subtopics = {}
    for domain in taxonomy.domains:
        topics = [t for t in taxonomy.topics if t.label.split(".", 1)[0] == domain.id]
        subtopics[domain.id] = LabelSet(
            tuple(t.label.split(".", 1)[1] for t in topics),
            {t.label.split(".", 1)[1]: {"en": t.en, "zh": t.zh} for t in topics},
            {t.label.split(".", 1)[1]: {"en": t.description_en, "zh": t.description_zh} for t in topics},
        )
    return TopicTree(domains, subtopics)


@dataclass(frozen=True)
class Prompt:
    template: str
    sha256: str

    def fill(self, **values: str) -> str:
        """The template with its placeholders replaced (str.replace: braces in documents are safe)."""
        text = self.template
        for key, value in values.items():
            text = text.replace("{" + key + "}", value)
        return text.rstrip()


def load_prompts(task: str, prompts_dir: Path | None = None) -> dict[str, dict[str, Prompt]]:
    """step -> language -> Prompt; a step is the task itself, or topic_domain and topic_subtopic
    (templates from `prompts_dir`, default the shipped ones)."""
    prompts_dir = prompts_dir or shipped_prompts_dir()
    steps = ("topic_domain", "topic_subtopic") if task == "topic" else (task,)
    prompts: dict[str, dict[str, Prompt]] = {}
    for step in steps:
        prompts[step] = {}
        for lang in ("en", "zh"):
            path = prompts_dir / f"{step}.{lang}.txt"
            try:
                template = path.read_text(encoding="utf-8")
            except OSError as exc:
                raise AnnotationError(f"missing prompt template {path} ({exc.strerror}); see configs/prompts/README.md") from exc
            if "{document}" not in template or "{labels}" not in template:
                raise AnnotationError(f"prompt template {path} needs the placeholders {{document}} and {{labels}}")
            prompts[step][lang] = Prompt(template, hashlib.sha256(template.encode("utf-8")).hexdigest())
    return prompts


def prompt_language(lang: str | None) -> str:
    return "zh" if (lang or "").startswith("zh") else "en"


# ----------------------------------------------------------------------------------------------
# Annotating one document


@dataclass
class Annotator:
    task: str
    scorer: LabelScorer
    prompts: dict[str, dict[str, Prompt]]
    labels: LabelSet | TopicTree
    max_chars: int = DEFAULT_MAX_CHARS
    label_score: str = DEFAULT_LABEL_SCORE
    _shared: dict = field(default_factory=dict, repr=False)  # (step, lang, values) -> shared instruction tokens
    _content_free: dict = field(default_factory=dict, repr=False)  # content-free prompt ids -> label log-likelihoods

    def prompt_hash(self, lang: str) -> str:
        """What a row records: the template's SHA-256; for topic, one hash of both steps' templates."""
        if self.task != "topic":
            return self.prompts[self.task][lang].sha256
        return hashlib.sha256((self.prompts["topic_domain"][lang].sha256 + self.prompts["topic_subtopic"][lang].sha256).encode()).hexdigest()

    def request(self, step: str, label_set: LabelSet, lang: str, **values: str) -> tuple[list[int], list[list[int]]]:
        """(prompt token ids, one token list per label) of one scoring step: the filled prompt (in the
        model's chat template where it has one), its document cut to fit the model's context, and the
        labels alone (names and descriptions are in the prompt, never scored)."""
        prompt = self.prompts[step][lang]
        answers = [self.scorer.encode_answer(x) for x in label_set.labels]
        limit = self.scorer.context - max(map(len, answers)) if self.scorer.context else 0
        document = values.pop("document")
        while True:
            ids = self.scorer.encode_prompt(prompt.fill(labels=label_set.listing(lang), document=document, **values))
            if not limit or len(ids) <= limit:
                return ids, answers
            if not document:
                raise AnnotationError(
                    f"the {step}.{lang} prompt with its label list is {len(ids)} tokens, more than the model's context "
                    f"({self.scorer.context}) allows with an answer: shorten the template or the label descriptions, or use a longer-context model"
                )
            # The prompt outgrows the model's context: cut the document in proportion, with a margin.
            document = document[: int(len(document) * limit / len(ids) * 0.9)]

    def _shared_tokens(self, step: str, label_set: LabelSet, lang: str, values: dict[str, str]) -> int:
        """How many leading tokens of this step's prompts come before the document (the same for every
        document): where two prompts with different documents first differ."""
        key = (step, lang, label_set.labels, tuple(sorted((k, v) for k, v in values.items() if k != "document")))
        if key not in self._shared:
            a, _ = self.request(step, label_set, lang, **{**values, "document": "\x01"})
            b, _ = self.request(step, label_set, lang, **{**values, "document": "\x02"})
            self._shared[key] = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
        return self._shared[key]

    def _choose_many(self, step: str, asks: list[tuple[LabelSet, str, dict[str, str]]]) -> list[dict[str, float]]:
        """Normalised label probabilities of one step for several documents, scored as one batch."""
        requests = []
        for label_set, lang, values in asks:
            ids, answers = self.request(step, label_set, lang, **values)
            requests.append(ScoringRequest(ids, answers, self._shared_tokens(step, label_set, lang, values)))
        totals = self.scorer.score_many(requests)
        results = []
        for (label_set, lang, values), request, total in zip(asks, requests, totals, strict=True):
            content_free = self._content_free_totals(step, label_set, lang, values) if self.label_score == "calibrated" else None
            scores = label_scores(total, request.answers, self.label_score, content_free)
            results.append(dict(zip(label_set.labels, normalised(scores).tolist(), strict=True)))
        return results

    def _content_free_totals(self, step: str, label_set: LabelSet, lang: str, values: dict[str, str]):
        """The labels' log-likelihoods after the prompt with "N/A" for the document (computed once per
        distinct prompt, alone, so the figure never depends on the batch it was first needed in)."""
        ids, answers = self.request(step, label_set, lang, **{**values, "document": CONTENT_FREE})
        key = tuple(ids)
        if key not in self._content_free:
            self._content_free[key] = self.scorer.score_many([ScoringRequest(ids, answers, 0)])[0]
        return self._content_free[key]

    def _values(self, document: dict[str, Any]) -> tuple[str, dict[str, str]]:
        lang = prompt_language(document.get("lang"))
        values = {"document": (document.get("text") or "")[: self.max_chars], "url": document.get("url") or ""}
        if self.task == "clutter":
            values["position"] = (
                f"line {document['line_index'] + 1} of {document['line_count']}"
                if lang == "en"
                else f"第 {document['line_index'] + 1} 行，共 {document['line_count']} 行"
            )
        return lang, values

    def annotate(self, document: dict[str, Any]) -> dict[str, Any]:
        """One document's labels (`annotate_many` of one)."""
        return self.annotate_many([document])[0]

    def annotate_many(self, documents: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Per document: label, probability, label_probabilities (normalised over the step's labels),
        prompt_hash; for topic also domain_probabilities, and probability = P(domain) x P(subtopic |
        domain). The documents' prompts of a step are scored together (CausalLMScorer.score_many)."""
        prepared = [self._values(document) for document in documents]
        if self.task != "topic":
            chosen = self._choose_many(self.task, [(self.labels, lang, values) for lang, values in prepared])
            results = []
            for (lang, _), probabilities in zip(prepared, chosen, strict=True):
                label = max(probabilities, key=probabilities.get)
                results.append({"label": label, "probability": probabilities[label], "label_probabilities": probabilities,
                                "prompt_hash": self.prompt_hash(lang)})
            return results
        tree: TopicTree = self.labels
        domains = self._choose_many("topic_domain", [(tree.domains, lang, values) for lang, values in prepared])
        picked = [max(d, key=d.get) for d in domains]
        subtopics = self._choose_many("topic_subtopic", [
            (tree.subtopics[domain], lang, {**values, "domain": tree.domains.names[domain][lang]})
            for domain, (lang, values) in zip(picked, prepared, strict=True)
        ])
        results = []
        for domain, domain_probabilities, subs, (lang, _) in zip(picked, domains, subtopics, prepared, strict=True):
            subtopic = max(subs, key=subs.get)
            results.append({
                "label": f"{domain}.{subtopic}",
                "probability": domain_probabilities[domain] * subs[subtopic],
                "label_probabilities": {f"{domain}.{sub}": p for sub, p in subs.items()},
                "domain_probabilities": domain_probabilities,
                "prompt_hash": self.prompt_hash(lang),
            })
        return results


# ----------------------------------------------------------------------------------------------
# Input, sampling, resumable output


def stratified_sample(docs: Sequence[tuple[str, str]], sample: int | None, seed: int) -> list[str]:
    """doc_ids to annotate, in annotation order. `docs` are (doc_id, lang). Each language gets its share
    of `sample` (largest remainder), filled with its documents of smallest unit_hash(seed, doc_id);
    the order is by that hash, so a larger sample extends a smaller one's order per language."""
    unique: dict[str, str] = {}
    for doc_id, lang in docs:
        unique.setdefault(doc_id, lang or "")
    by_lang: dict[str, list[str]] = {}
    for doc_id, lang in unique.items():
        by_lang.setdefault(lang, []).append(doc_id)
    for ids in by_lang.values():
        ids.sort(key=lambda d: (unit_hash(seed, d), d))
    total = len(unique)
    if sample is None or sample >= total:
        quotas = {lang: len(ids) for lang, ids in by_lang.items()}
    else:
        exact = {lang: sample * len(ids) / total for lang, ids in by_lang.items()}
        quotas = {lang: math.floor(share) for lang, share in exact.items()}
        for lang in sorted(exact, key=lambda x: (-(exact[x] - quotas[x]), x))[: sample - sum(quotas.values())]:
            quotas[lang] += 1
    chosen = [doc_id for lang, ids in by_lang.items() for doc_id in ids[: quotas[lang]]]
    return sorted(chosen, key=lambda d: (unit_hash(seed, d), d))


def clutter_lines(document: dict, max_lines: int, seed: int) -> list[dict]:
    """The document's non-blank lines to judge (at most `max_lines`, by seeded hash), in line order,
    as rows with line_index and line_count (the shape `classifiers train --task clutter` reads)."""
    lines = (document.get("text") or "").split("\n")
    candidates = [i for i, line in enumerate(lines) if line.strip()]
    chosen = sorted(sorted(candidates, key=lambda i: unit_hash(seed, f"{document['doc_id']}:{i}"))[:max_lines])
    return [
        {**document, "text": lines[i], "line_index": i, "line_count": len(lines)}
        for i in chosen
    ]


def row_key(row: dict) -> str:
    return f"{row['doc_id']}:{row['line_index']}" if "line_index" in row else str(row["doc_id"])


def resume_state(output: Path, allowed: Sequence[str] | None = None) -> tuple[set[str], list[dict]]:
    """(keys of the complete rows already written, those rows' provenance); a partial last line (a
    killed run) is cut off the file so the rerun appends after the last complete row. A row whose label
    is not one of `allowed` (the task's labels, the taxonomy's for topic) is refused, naming it."""
    if not output.exists():
        return set(), []
    data = output.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(output, "r+b") as handle:
            handle.truncate(len(complete))
    known = set(allowed) if allowed is not None else None
    done, provenance = set(), []
    for number, line in enumerate(complete.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnnotationError(f"{output}:{number}: not a labels row ({exc}); pass another --output") from exc
        if known is not None and row.get("label") not in known:
            raise AnnotationError(f"{output}:{number}: label {row.get('label')} is not in the task's labels (for topic: the taxonomy); "
                                  "pass another --output or the taxonomy it was annotated with")
        done.add(row_key(row))
        provenance.append({key: row.get(key) for key in ("task", "model_hash", "prompt_hash", "label_score")})
    return done, provenance


def part_paths(output: Path) -> list[Path]:
    """The per-process parts of a several-device run of `output` (OUTPUT.parts/part-I-of-N.jsonl)."""
    directory = output.parent / f"{output.name}.parts"
    return sorted(directory.glob("part-*.jsonl")) if directory.is_dir() else []


def part_path(output: Path, index: int, count: int) -> Path:
    return output.parent / f"{output.name}.parts" / f"part-{index:03d}-of-{count:03d}.jsonl"


def merge_parts(output: Path, order: Sequence[str]) -> int:
    """Fold every part of `output` into it: the rows of both, each key once, in plan order (document
    order of the sample, then line order), written to a temporary file and renamed over `output`; the
    parts are removed after. The result is the same whatever the number of processes that wrote them.
    Returns the rows merged from parts."""
    parts = part_paths(output)
    if not parts:
        return 0
    rank = {doc_id: i for i, doc_id in enumerate(order)}
    rows: dict[str, tuple[tuple, str]] = {}
    merged = 0
    for number, path in enumerate([output, *parts]):
        if not path.exists():
            continue
        data = path.read_bytes()
        for position, line in enumerate(data[: data.rfind(b"\n") + 1].decode("utf-8").splitlines()):
            if not line.strip():
                continue
            row = json.loads(line)
            key = row_key(row)
            if key not in rows:
                merged += number > 0
                rows[key] = ((rank.get(row["doc_id"], len(rank)), row.get("line_index", 0), number, position), line)
    temporary = output.parent / f".{output.name}.merging"
    with open(temporary, "w", encoding="utf-8") as out:
        for _, line in sorted(rows.values()):
            out.write(line + "\n")
        out.flush()
        os.fsync(out.fileno())
    os.replace(temporary, output)
    for path in parts:
        path.unlink()
    parts[0].parent.rmdir()
    return merged


def annotate_file(
    input_path: str | Path,
    output: str | Path,
    task: str,
    scorer: LabelScorer,
    sample: int | None = None,
    seed: int = 0,
    max_chars: int = DEFAULT_MAX_CHARS,
    max_lines: int = DEFAULT_MAX_LINES,
    prompts_dir: Path | None = None,
    topics_file: Path | None = None,
    progress=None,
    batch_size: int = DEFAULT_BATCH_SIZE,
    label_score: str = DEFAULT_LABEL_SCORE,
    shard: tuple[int, int] = (0, 1),
    done_in: Sequence[Path] = (),
) -> dict[str, int]:
    """Annotate the sample of `input_path` into `output` (JSONL, appended and flushed batch by batch).

    The plan's items (documents; for clutter their chosen lines) are cut into batches of `batch_size`
    in plan order; process `shard` = (i, n) scores the batches k with k % n == i. A batch is always the
    same items, whatever was done before or by whom, so a resumed or several-process run writes the
    rows an uninterrupted one-process run writes. Rows already in `output` or `done_in` are skipped."""
    if task not in ANNOTATION_TASKS:
        raise AnnotationError(f"unknown annotation task {task!r} (known: {', '.join(ANNOTATION_TASKS)})")
    if label_score not in NORMALISATIONS:
        raise AnnotationError(f"--label-score must be one of {', '.join(NORMALISATIONS)}, got {label_score!r}")
    prompts = load_prompts(task, prompts_dir)
    labels = label_sets(task, prompts_dir, topics_file)
    annotator = Annotator(task, scorer, prompts, labels, max_chars, label_score)
    output = Path(output)
    done, provenance = set(), []
    for path in (output, *done_in):
        keys, rows = resume_state(Path(path), labels.labels)
        done |= keys
        provenance += rows
    hashes = {annotator.prompt_hash(lang) for lang in ("en", "zh")}
    for row in provenance:
        if row["task"] != task or row["model_hash"] != scorer.hash:
            raise AnnotationError(
                f"{output} holds labels for task {row['task']!r} by another model or task; pass another --output to start a new file"
            )
        if row["prompt_hash"] not in hashes:
            raise AnnotationError(f"{output} was written with another prompt template; pass another --output to start a new file")
        if (row["label_score"] or "sum") != label_score:
            raise AnnotationError(f"{output} was written with --label-score {row['label_score'] or 'sum'}; pass that or another --output")
    order = stratified_sample([(r["doc_id"], r["lang"] or "") for r in read_documents(input_path, columns=("doc_id", "lang"))],
                              sample, seed)
    index, count = shard
    if task == "clutter":  # lines are only known from the text
        documents = {row["doc_id"]: row for row in read_documents(input_path) if row["doc_id"] in set(order)}
        items = [line for doc_id in order for line in clutter_lines(documents[doc_id], max_lines, seed)]
        batches = [items[k:k + batch_size] for k in range(0, len(items), batch_size)]
    else:
        keys = [[{"doc_id": d} for d in order[k:k + batch_size]] for k in range(0, len(order), batch_size)]
        needed = {row["doc_id"] for number, batch in enumerate(keys) if number % count == index
                  for row in batch if row["doc_id"] not in done}
        documents = {row["doc_id"]: row for row in read_documents(input_path) if row["doc_id"] in needed}
        batches = keys
    output.parent.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    with open(output, "a", encoding="utf-8") as out:
        for number, batch in enumerate(batches):
            todo = [row_key(item) not in done for item in batch]
            if number % count != index:
                continue
            skipped += todo.count(False)
            if not any(todo):
                continue
            if task != "clutter":
                batch = [documents[item["doc_id"]] for item in batch]
            results = annotator.annotate_many(batch)  # the whole batch, rows written or not: the same figures as ever
            for item, result, wanted in zip(batch, results, todo, strict=True):
                if not wanted:
                    continue
                row = {
                    "doc_id": item["doc_id"],
                    "url": item.get("url") or "",
                    "lang": item.get("lang") or "",
                    "text": item.get("text") or "",
                    **({"line_index": item["line_index"], "line_count": item["line_count"]} if task == "clutter" else {}),
                    "task": task,
                    **result,
                    "label_score": label_score,
                    "model": scorer.name,
                    "model_hash": scorer.hash,
                }
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                written += 1
            out.flush()
            if progress:
                progress(written)
        os.fsync(out.fileno())
    return {"documents": len(order), "rows_written": written, "rows_skipped": skipped, "rows_total": len(done) + written}


# ----------------------------------------------------------------------------------------------
# Command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("input", metavar="INPUT", help="committed stage output directory (documents/), Parquet or JSONL file")
    parser.add_argument("--task", required=True, choices=ANNOTATION_TASKS, help="what to label: page_type, topic, clutter or quality")
    parser.add_argument("--model", required=True, help="local directory of a causal LM in transformers format (nothing is downloaded)")
    parser.add_argument("--output", required=True, help="labels JSONL to write; an existing one is continued after its last complete row")
    parser.add_argument("--sample", type=int, help="annotate this many documents, stratified by language (default: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the sample and its order (default: 0)")
    parser.add_argument("--max-chars", type=int, default=DEFAULT_MAX_CHARS, help=f"document characters in a prompt (default: {DEFAULT_MAX_CHARS})")
    parser.add_argument(
        "--max-lines", type=int, default=DEFAULT_MAX_LINES, help=f"clutter: lines judged per document (default: {DEFAULT_MAX_LINES})"
    )
    parser.add_argument("--prompts-dir", help="directory of prompt templates and labels.yaml (default: configs/prompts)")
    parser.add_argument("--topics-file", help="topic taxonomy (default: configs/topics.yaml)")
    parser.add_argument(
        "--backend",
        choices=("transformers", "vllm"),
        default="transformers",
        help="inference engine: transformers, or vllm where it is installed (a CUDA machine) (default: transformers)",
    )
    parser.add_argument(
        "--vllm-scoring",
        choices=("prefix_cache", "prompt_logprobs"),
        default="prefix_cache",
        help="--backend vllm: prefix_cache (one request per label token, the prompt's KV shared through vLLM's prefix cache) "
        "or prompt_logprobs (one request per label, the prompt recomputed for each; a cross-check) (default: prefix_cache)",
    )
    parser.add_argument("--device", default="auto", help="auto (first GPU, else CPU), cpu or cuda:N (default: auto)")
    parser.add_argument(
        "--devices",
        help="several devices, one process each (e.g. cuda:0,cuda:1 or cpu,cpu): each writes its own resumable part "
        "(OUTPUT.parts/), merged into OUTPUT in plan order; the output is the same whatever the number of processes",
    )
    parser.add_argument(
        "--batch-size", type=int, default=DEFAULT_BATCH_SIZE,
        help=f"documents (clutter: lines) scored per forward pass, the instructions' key/value cache shared (default: {DEFAULT_BATCH_SIZE})",
    )
    parser.add_argument(
        "--label-score", choices=NORMALISATIONS, default=DEFAULT_LABEL_SCORE,
        help="how label log-likelihoods become probabilities: sum over the label's tokens (short labels win), mean per token, "
        f"or calibrated against the content-free prompt (document \"N/A\"; Zhao et al. 2021) (default: {DEFAULT_LABEL_SCORE})",
    )


def _load_scorer(args: argparse.Namespace, model_dir: Path, device: str | None = None) -> LabelScorer:
    """The --model's scorer; a model that does not load (a bad config.json, pickled-only or broken weights)
    is one line naming it, not the library's chained tracebacks."""
    from thresher.schemas.errors import UserError

    try:
        if args.backend == "vllm":
            from thresher.classifiers.vllm_backend import VLLMScorer

            return VLLMScorer(model_dir, args.vllm_scoring)
        return CausalLMScorer(model_dir, device or args.device)
    except UserError:
        raise
    except Exception as exc:  # whatever transformers, safetensors or vLLM raise for files they cannot read
        reason = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else ""
        raise UnusableModelError(f"--model {model_dir}: cannot be loaded ({type(exc).__name__}: {reason}); pass a "
                                 "causal LM directory in transformers format with .safetensors weights") from None


def run(args: argparse.Namespace) -> int:
    from thresher.pipeline.config import ConfigError

    if args.sample is not None and args.sample < 1:
        raise ConfigError(f"--sample must be at least 1, got {args.sample}")
    if args.backend == "vllm" and args.device != "auto":
        raise ConfigError("--device is for --backend transformers; vLLM runs on the visible GPU (choose it with CUDA_VISIBLE_DEVICES)")
    model_dir = Path(args.model)
    if not (model_dir / "config.json").is_file():
        raise ModelNotFoundError(f"--model {model_dir}: no config.json there; pass a local causal LM directory (transformers format)")
    resolve_source(args.input)  # an unusable input (missing, no text column, an uncommitted stage) before the model loads
    prompts_dir = Path(args.prompts_dir) if args.prompts_dir else shipped_prompts_dir()
    topics_file = Path(args.topics_file) if args.topics_file else None
    if args.batch_size < 1:
        raise ConfigError(f"--batch-size must be at least 1, got {args.batch_size}")
    devices = [d.strip() for d in args.devices.split(",")] if args.devices else []
    if devices and (args.device != "auto" or args.backend == "vllm" or not all(devices)):
        raise ConfigError("--devices is for --backend transformers, instead of --device; give it as cpu,cpu or cuda:0,cuda:1")
    try:
        load_prompts(args.task, prompts_dir)  # templates, label names and descriptions checked before the model loads
        labels = label_sets(args.task, prompts_dir, topics_file)
        output = Path(args.output)
        if part_paths(output) or len(devices) > 1:  # labels outside the task's checked before any model loads
            resume_state(output, labels.labels)
            for part in part_paths(output):
                resume_state(part, labels.labels)
        if len(devices) > 1:
            summary = _annotate_on_devices(args, devices, prompts_dir, topics_file)
        else:
            if part_paths(output):  # a several-device run was stopped: its rows first
                merge_parts(output, _plan(args))
            resume_state(output, labels.labels)
            scorer = _load_scorer(args, model_dir, devices[0] if devices else None)
            summary = annotate_file(
                args.input, args.output, args.task, scorer, args.sample, args.seed, args.max_chars, args.max_lines, prompts_dir,
                topics_file, batch_size=args.batch_size, label_score=args.label_score,
            )
    except AnnotationError as exc:
        raise ConfigError(str(exc)) from exc
    print(
        f"[thresher] annotate {args.task}: {summary['rows_written']} rows written, {summary['rows_skipped']} already there, "
        f"{summary['rows_total']} in {args.output}; train with `thresher classifiers train --task {TRAIN_TASK[args.task]} "
        f"--data {args.output} --output MODEL_DIR`",
        file=sys.stderr,
    )
    return 0


def _plan(args: argparse.Namespace) -> list[str]:
    return stratified_sample([(r["doc_id"], r["lang"] or "") for r in read_documents(args.input, columns=("doc_id", "lang"))],
                             args.sample, args.seed)


def _annotate_part(args: argparse.Namespace, index: int, count: int, device: str, prompts_dir, topics_file) -> dict[str, int]:
    """One process of a several-device run: its batches into its own part, the rows already in OUTPUT skipped."""
    if device.startswith("cpu"):  # the cores shared out, one share a process
        import torch

        torch.set_num_threads(max(1, (os.cpu_count() or 1) // count))
    scorer = _load_scorer(args, Path(args.model), device)
    output = Path(args.output)
    part = part_path(output, index, count)
    part.parent.mkdir(parents=True, exist_ok=True)
    return annotate_file(
        args.input, part, args.task, scorer, args.sample, args.seed, args.max_chars, args.max_lines, prompts_dir, topics_file,
        batch_size=args.batch_size, label_score=args.label_score, shard=(index, count), done_in=[output],
    )


def _annotate_on_devices(args: argparse.Namespace, devices: list[str], prompts_dir, topics_file) -> dict[str, int]:
    """One process per device (spawned: CUDA and torch threads start clean), each on every n-th batch;
    their parts merged into OUTPUT. Parts of a stopped run (any number of processes) are merged first."""
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    output = Path(args.output)
    order = _plan(args)
    merge_parts(output, order)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(len(devices), mp_context=context) as pool:
        futures = [pool.submit(_annotate_part, args, i, len(devices), device, prompts_dir, topics_file) for i, device in enumerate(devices)]
        summaries = [future.result() for future in futures]
    merge_parts(output, order)
    written = sum(s["rows_written"] for s in summaries)
    total = sum(1 for line in output.read_text(encoding="utf-8").splitlines() if line.strip()) if output.exists() else 0
    return {"documents": len(order), "rows_written": written, "rows_skipped": sum(s["rows_skipped"] for s in summaries), "rows_total": total}
