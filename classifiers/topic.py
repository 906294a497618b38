"""Topic: a 200-class taxonomy (configs/topics.yaml) with each class's rebalancing weight, the
classifier's input, and weak labels from bilingual keyword seeds. Select turns a class weight into
copies of each document (pipeline.select.mix.sample_copies).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from thresher.classifiers.tasks import topic_input
from thresher.pipeline.config import ConfigError
from thresher.pipeline.lexicon import HAN_RUN
from thresher.pipeline.package_files import package_path

_WORD = re.compile(r"[a-z0-9]+(?:['\-][a-z0-9]+)*")


@dataclass(frozen=True)
class Topic:
    label: str  # "<domain>.<subtopic>"
    en: str
    zh: str
    description_en: str  # what belongs in the class, shown beside the name to an annotating model
    description_zh: str
    weight: float  # domain weight x subtopic weight
    keywords_en: tuple[str, ...]
    keywords_zh: tuple[str, ...]
    domain_keywords_en: tuple[str, ...]
    domain_keywords_zh: tuple[str, ...]


@dataclass(frozen=True)
class Domain:
    id: str
    en: str
    zh: str
    description_en: str
    description_zh: str


@dataclass
class Taxonomy:
    topics: list[Topic]
    domains: list[Domain] = field(default_factory=list)  # in file order; each topic's label starts with one's id
    # named groups of classes for mix targets (topics.yaml `groups:`): name -> domain ids and labels
    groups: dict[str, tuple[str, ...]] = field(default_factory=dict)
    _by_label: dict[str, Topic] = field(default_factory=dict, repr=False)

    def __post_init__(self):
        self._by_label = {t.label: t for t in self.topics}

    @property
    def labels(self) -> list[str]:
        return [t.label for t in self.topics]

    def weight(self, label: str) -> float:
        """The rebalancing weight of `label`; 1.0 for a label the taxonomy does not know."""
        topic = self._by_label.get(label)
        return topic.weight if topic else 1.0

    def weights(self) -> dict[str, float]:
        return {t.label: t.weight for t in self.topics}


def default_topics_file() -> Path:
    """configs/topics.yaml, the shipped taxonomy."""
    return package_path("configs/topics.yaml")


class TaxonomyError(ConfigError):
    """A taxonomy file that cannot be used; the message names the file and the class."""


def load_taxonomy(path: str | Path | None = None) -> Taxonomy:
    """The taxonomy in `path` (default configs/topics.yaml), checked: unique ids, weights >= 0, every
    domain and subtopic named and described in English and Chinese."""
    path = Path(path) if path else default_topics_file()
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TaxonomyError(f"cannot read topic taxonomy {path}: {exc}") from exc
    topics: list[Topic] = []
    domains: list[Domain] = []
    for d_index, domain in enumerate((raw or {}).get("domains") or []):
        where = f"{path}: domains[{d_index}]"
        if not isinstance(domain, dict) or not domain.get("id"):
            raise TaxonomyError(f"{where} lacks 'id'")
        domains.append(Domain(str(domain["id"]), *_names(domain, str(domain["id"]), path)))
        domain_weight = _weight(domain, where)
        domain_keywords = domain.get("keywords") or {}
        for s_index, sub in enumerate(domain.get("subtopics") or []):
            if not isinstance(sub, dict) or not sub.get("id"):
                raise TaxonomyError(f"{where}.subtopics[{s_index}] lacks 'id'")
            label = f"{domain['id']}.{sub['id']}"
            en, zh, description_en, description_zh = _names(sub, label, path)
            keywords = sub.get("keywords") or {}
            topics.append(
                Topic(
                    label=label,
                    en=en,
                    zh=zh,
                    description_en=description_en,
                    description_zh=description_zh,
                    weight=domain_weight * _weight(sub, f"{where}.subtopics[{s_index}]"),
                    keywords_en=tuple(str(k).lower() for k in keywords.get("en", [])),
                    keywords_zh=tuple(str(k).lower() for k in keywords.get("zh", [])),
                    domain_keywords_en=tuple(str(k).lower() for k in domain_keywords.get("en", [])),
                    domain_keywords_zh=tuple(str(k).lower() for k in domain_keywords.get("zh", [])),
                )
            )
    labels = [t.label for t in topics]
    if not topics:
        raise TaxonomyError(f"{path} defines no topics (expected domains: [{{id, subtopics: [...]}}])")
    if len(set(labels)) != len(labels):
        raise TaxonomyError(f"{path}: duplicate topic ids: {sorted({x for x in labels if labels.count(x) > 1})}")
    return Taxonomy(topics, domains, _groups((raw or {}).get("groups"), labels, path))


def _names(node: dict, label: str, path: Path) -> tuple[str, str, str, str]:
    """(en, zh, description en, description zh) of a domain or subtopic; a missing one is an error naming the class."""
    for lang in ("en", "zh"):
        if not isinstance(node.get(lang), str) or not node[lang].strip():
            raise TaxonomyError(f"{path}: topic class {label} has no {lang} name; give it `{lang}: ...`")
    description = node.get("description")
    for lang in ("en", "zh"):
        text = description.get(lang) if isinstance(description, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise TaxonomyError(
                f"{path}: topic class {label} has no {lang} description; give it `description: {{en: ..., zh: ...}}` "
                "(one sentence each: what belongs there)"
            )
    return node["en"].strip(), node["zh"].strip(), description["en"].strip(), description["zh"].strip()


def _groups(raw, labels: list[str], path: Path) -> dict[str, tuple[str, ...]]:
    """topics.yaml `groups:`: name -> list of domain ids and `<domain>.<subtopic>` labels, each known."""
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        raise TaxonomyError(f"{path}: groups must be a mapping of name -> list of domain ids and labels")
    known = set(labels) | {label.split(".", 1)[0] for label in labels}
    groups = {}
    for name, members in raw.items():
        members = [members] if isinstance(members, str) else members
        if not isinstance(members, list) or not members:
            raise TaxonomyError(f"{path}: groups.{name} must be a non-empty list of domain ids and labels")
        unknown = [m for m in members if m not in known]
        if unknown:
            raise TaxonomyError(f"{path}: groups.{name}: {unknown} are not domains or labels of the taxonomy")
        groups[str(name)] = tuple(str(m) for m in members)
    return groups


def _weight(node: dict, where: str) -> float:
    weight = node.get("weight", 1.0)
    if isinstance(weight, bool) or not isinstance(weight, (int, float)) or weight < 0:
        raise TaxonomyError(f"{where}: weight must be a number >= 0, got {weight!r}")
    return float(weight)


class KeywordLabeler:
    """Weak topic labels from keyword seeds: subtopic keyword hits count 2, domain keyword hits 1.

    A text gets the best class when it has at least `min_hits` subtopic hits and beats the runner-up
    by `margin` points; otherwise no label. English keywords match whole words, Chinese substrings
    (non-overlapping, longest first); a keyword without CJK characters (e.g. "NBA" in a Chinese
    list) matches as a word.
    """

    def __init__(self, taxonomy: Taxonomy, min_hits: int = 2, margin: int = 2):
        self.taxonomy = taxonomy
        self.min_hits = min_hits
        self.margin = margin
        keywords = {k for t in taxonomy.topics for k in t.keywords_en + t.keywords_zh + t.domain_keywords_en + t.domain_keywords_zh}
        english = {k.lower() for k in keywords if not HAN_RUN.search(k)}
        chinese = {k for k in keywords if HAN_RUN.search(k)}
        self._english = english
        self._english_words = max((len(k.split()) for k in english), default=0)
        self._chinese = chinese
        self._chinese_chars = max((len(k) for k in chinese), default=0)

    def _counts(self, text: str) -> dict[str, int]:
        """Keyword hits by set lookups (a regex alternation of a thousand keywords is ~10x slower)."""
        counts: dict[str, int] = {}
        words = _WORD.findall(text.lower())
        for n in range(1, self._english_words + 1):
            for i in range(len(words) - n + 1):
                phrase = words[i] if n == 1 else " ".join(words[i : i + n])
                if phrase in self._english:
                    counts[phrase] = counts.get(phrase, 0) + 1
        for run in HAN_RUN.findall(text):
            i = 0
            while i < len(run):  # longest keyword first, non-overlapping: 物理学 wins over 物理
                for size in range(min(self._chinese_chars, len(run) - i), 0, -1):
                    if run[i : i + size] in self._chinese:
                        counts[run[i : i + size]] = counts.get(run[i : i + size], 0) + 1
                        i += size
                        break
                else:
                    i += 1
        return counts

    def label(self, text: str) -> tuple[str, str] | None:
        """(topic label, the matched keywords) or None."""
        counts = self._counts(topic_input(text))
        if not counts:
            return None
        scored = []
        for topic in self.taxonomy.topics:
            sub_hits = sum(counts.get(k, 0) for k in topic.keywords_en + topic.keywords_zh)
            if sub_hits == 0:
                continue
            domain_hits = sum(counts.get(k, 0) for k in topic.domain_keywords_en + topic.domain_keywords_zh)
            scored.append((2 * sub_hits + domain_hits, sub_hits, topic))
        if not scored:
            return None
        scored.sort(key=lambda item: (-item[0], item[2].label))
        best_score, best_hits, best = scored[0]
        runner_up = scored[1][0] if len(scored) > 1 else 0
        if best_hits < self.min_hits or best_score - runner_up < self.margin:
            return None
        matched = [k for k in best.keywords_en + best.keywords_zh if counts.get(k)]
        return best.label, ",".join(matched)


def seed_examples(taxonomy: Taxonomy) -> list[tuple[str, str]]:
    """One (text, label) per class made of its names and keywords, so a model trained on a crawl that
    lacks some classes still knows all of them. Training-only: never part of an evaluation split."""
    return [
        (" ".join((t.en, t.zh, *t.keywords_en, *t.keywords_zh, *t.domain_keywords_en, *t.domain_keywords_zh)), t.label)
        for t in taxonomy.topics
    ]
