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
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from thresher.classifiers.base import ModelNotFoundError, UnusableModelError
from thresher.classifiers.clutter import CLUTTER, KEEP
from thresher.classifiers.label_scoring import CausalLMScorer, LabelScorer, normalised
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

    def prompt_hash(self, lang: str) -> str:
        """What a row records: the template's SHA-256; for topic, one hash of both steps' templates."""
        if self.task != "topic":
            return self.prompts[self.task][lang].sha256
        return hashlib.sha256((self.prompts["topic_domain"][lang].sha256 + self.prompts["topic_subtopic"][lang].sha256).encode()).hexdigest()

    def request(self, step: str, label_set: LabelSet, lang: str, **values: str) -> tuple[list[int], list[list[int]]]:
        """(prompt token ids, one token list per label) of one scoring step: the filled prompt, its
        document cut to fit the model's context, and the labels alone (names and descriptions are in
        the prompt, never scored)."""
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

    def _choose(self, step: str, label_set: LabelSet, lang: str, **values: str) -> dict[str, float]:
        ids, answers = self.request(step, label_set, lang, **values)
        return dict(zip(label_set.labels, normalised(self.scorer.label_logprobs(ids, answers)).tolist(), strict=True))

    def annotate(self, document: dict[str, Any]) -> dict[str, Any]:
        """label, probability, label_probabilities (normalised over the step's labels), prompt_hash; for
        topic also domain_probabilities, and probability = P(domain) x P(subtopic | domain)."""
        lang = prompt_language(document.get("lang"))
        values = {"document": (document.get("text") or "")[: self.max_chars], "url": document.get("url") or ""}
        if self.task == "clutter":
            values["position"] = (
                f"line {document['line_index'] + 1} of {document['line_count']}"
                if lang == "en"
                else f"第 {document['line_index'] + 1} 行，共 {document['line_count']} 行"
            )
        if self.task != "topic":
            probabilities = self._choose(self.task, self.labels, lang, **values)
            label = max(probabilities, key=probabilities.get)
            return {"label": label, "probability": probabilities[label], "label_probabilities": probabilities, "prompt_hash": self.prompt_hash(lang)}
        tree: TopicTree = self.labels
        domains = self._choose("topic_domain", tree.domains, lang, **values)
        domain = max(domains, key=domains.get)
        domain_name = tree.domains.names[domain][lang]
        subtopics = self._choose("topic_subtopic", tree.subtopics[domain], lang, domain=domain_name, **values)
        subtopic = max(subtopics, key=subtopics.get)
        return {
            "label": f"{domain}.{subtopic}",
            "probability": domains[domain] * subtopics[subtopic],
            "label_probabilities": {f"{domain}.{sub}": p for sub, p in subtopics.items()},
            "domain_probabilities": domains,
            "prompt_hash": self.prompt_hash(lang),
        }


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


def resume_state(output: Path) -> tuple[set[str], list[dict]]:
    """(keys of the complete rows already written, those rows' provenance); a partial last line (a
    killed run) is cut off the file so the rerun appends after the last complete row."""
    if not output.exists():
        return set(), []
    data = output.read_bytes()
    complete = data[: data.rfind(b"\n") + 1]
    if len(complete) != len(data):
        with open(output, "r+b") as handle:
            handle.truncate(len(complete))
    done, provenance = set(), []
    for number, line in enumerate(complete.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise AnnotationError(f"{output}:{number}: not a labels row ({exc}); pass another --output") from exc
        done.add(row_key(row))
        provenance.append({key: row.get(key) for key in ("task", "model_hash", "prompt_hash")})
    return done, provenance


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
) -> dict[str, int]:
    """Annotate the sample of `input_path` into `output` (JSONL, appended and flushed row by row)."""
    if task not in ANNOTATION_TASKS:
        raise AnnotationError(f"unknown annotation task {task!r} (known: {', '.join(ANNOTATION_TASKS)})")
    prompts = load_prompts(task, prompts_dir)
    annotator = Annotator(task, scorer, prompts, label_sets(task, prompts_dir, topics_file), max_chars)
    output = Path(output)
    done, provenance = resume_state(output)
    hashes = {annotator.prompt_hash(lang) for lang in ("en", "zh")}
    for row in provenance:
        if row["task"] != task or row["model_hash"] != scorer.hash:
            raise AnnotationError(
                f"{output} holds labels for task {row['task']!r} by another model or task; pass another --output to start a new file"
            )
        if row["prompt_hash"] not in hashes:
            raise AnnotationError(f"{output} was written with another prompt template; pass another --output to start a new file")
    order = stratified_sample([(r["doc_id"], r["lang"] or "") for r in read_documents(input_path, columns=("doc_id", "lang"))],
                              sample, seed)
    wanted = set(order) - done if task != "clutter" else set(order)
    documents = {row["doc_id"]: row for row in read_documents(input_path) if row["doc_id"] in wanted}
    output.parent.mkdir(parents=True, exist_ok=True)
    written = skipped = 0
    with open(output, "a", encoding="utf-8") as out:
        for doc_id in order:
            document = documents.get(doc_id)
            if document is None:  # annotated by an earlier run
                skipped += 1
                continue
            items = clutter_lines(document, max_lines, seed) if task == "clutter" else [document]
            for item in items:
                if row_key(item) in done:
                    skipped += 1
                    continue
                result = annotator.annotate(item)
                row = {
                    "doc_id": item["doc_id"],
                    "url": item.get("url") or "",
                    "lang": item.get("lang") or "",
                    "text": item.get("text") or "",
                    **({"line_index": item["line_index"], "line_count": item["line_count"]} if task == "clutter" else {}),
                    "task": task,
                    **result,
                    "model": scorer.name,
                    "model_hash": scorer.hash,
                }
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
                out.flush()
                written += 1
                if progress:
                    progress(written)
            documents.pop(doc_id, None)
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


def _load_scorer(args: argparse.Namespace, model_dir: Path) -> LabelScorer:
    """The --model's scorer; a model that does not load (a bad config.json, pickled-only or broken weights)
    is one line naming it, not the library's chained tracebacks."""
    from thresher.schemas.errors import UserError

    try:
        if args.backend == "vllm":
            from thresher.classifiers.vllm_backend import VLLMScorer

            return VLLMScorer(model_dir, args.vllm_scoring)
        return CausalLMScorer(model_dir, args.device)
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
    try:
        load_prompts(args.task, prompts_dir)  # templates, label names and descriptions checked before the model loads
        label_sets(args.task, prompts_dir, topics_file)
        scorer = _load_scorer(args, model_dir)
        summary = annotate_file(
            args.input, args.output, args.task, scorer, args.sample, args.seed, args.max_chars, args.max_lines, prompts_dir, topics_file
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
