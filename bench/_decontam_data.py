"""Real data for decontamination (a helper, not a script): the three shared benchmarks as config
would name them, the crawl and DCLM texts that must give no hit, and benchmark items planted into
real pages whole, in part and reformatted. Shared by bench/bench_decontam.py and
tests/pipeline/test_decontam.py; everything is read from ../shared/data when called, never copied.
"""

from __future__ import annotations

import html
import json
import random
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path

from thresher.pipeline.decontam import Benchmark, DecontamIndex, Settings, find, normalise, read_items, tokenize
from thresher.pipeline.lexicon import HAN_CHAR
from thresher.pipeline.prepare.extract import decode_html
from thresher.pipeline.prepare.warc import WarcRecord, iter_records

LANGUAGES = {"gsm8k": "en", "humaneval": "en", "cmmlu": "zh"}
_TAG = re.compile(r"<script\b.*?</script>|<style\b.*?</style>|<!--.*?-->|<[^>]+>", re.S | re.I)


def shared_benchmarks(shared: Path) -> list[Benchmark]:
    root = shared / "benchmarks"
    return [
        Benchmark("gsm8k", str(root / "gsm8k/test.jsonl"), ("question", "answer")),
        Benchmark("humaneval", str(root / "humaneval/HumanEval.jsonl.gz"), ("prompt", "canonical_solution"), "task_id"),
        Benchmark("cmmlu", str(root / "cmmlu/test"), ("Question", "A", "B", "C", "D")),
    ]


def crawl_texts(shared: Path) -> list[str]:
    """The visible text of every page of the 428-page crawl: its HTML with tags, scripts and styles
    removed, a superset of what extraction keeps, so no hit here means none on the extracted text."""
    texts = []
    for path in sorted((shared / "crawl").glob("*.warc.gz")):
        with path.open("rb") as raw:
            for record in iter_records(raw, 20_000_000):
                if isinstance(record, WarcRecord) and record.payload and record.kind == "response":
                    page = decode_html(record.payload, record.charset).html
                    texts.append(html.unescape(_TAG.sub("\n", page)))
    return texts


def dclm_texts(shared: Path) -> list[str]:
    return [json.loads(line)["text"] for name in ("agreement_data.jsonl", "majority_data.jsonl")
            for line in (shared / "quality/dclm" / name).open(encoding="utf-8")]


def host_pages(shared: Path) -> dict[str, list[str]]:
    """Real page texts to plant into, by language: the extraction ground truth's English news
    articles and Chinese (magic_html) main texts."""
    truth = json.loads((shared / "extraction/ground-truth.json").read_text(encoding="utf-8"))
    english = [page["articleBody"] for page in truth["scrapinghub"].values() if len(page.get("articleBody", "")) > 500]
    chinese = [page["content"] for page in truth["magic_html"].values() if len(HAN_CHAR.findall(page.get("content", ""))) > 300]
    return {"en": english, "zh": chinese}


@dataclass(frozen=True)
class Planted:
    benchmark: str
    item_id: str
    way: str  # whole, question (first field alone), sixty (the first 60% of the item), reformatted
    text: str  # the host page with the piece pasted in
    identifiable: bool  # the piece can name its item at all (see `identifiable`)


WAYS = ("whole", "question", "sixty", "reformatted")
_FULL_WIDTH = {c: chr(ord(c) + 0xFEE0) for c in map(chr, range(0x21, 0x7F))}


def reformat(text: str, rng: random.Random) -> str:
    """The same item as a careless copy shows it: upper case, ASCII in full-width forms, punctuation
    swapped, whitespace reflowed."""
    text = text.upper()
    text = re.sub(r"[,.;:?!]", lambda m: rng.choice([" ", "", "，", "。", " - ", "..."]), text)
    text = re.sub(r"\s+", lambda m: rng.choice([" ", "  ", "\n", "\t", " \n "]), text)
    return "".join(_FULL_WIDTH.get(c, c) if rng.random() < 0.5 else c for c in text)


def plant(host: str, piece: str, rng: random.Random) -> str:
    """`piece` pasted into `host` at a random line break."""
    lines = host.split("\n")
    at = rng.randrange(len(lines) + 1)
    return "\n".join([*lines[:at], piece, *lines[at:]])


def planted(shared: Path, benchmarks: list[Benchmark], settings: Settings, per_benchmark: int | None = None,
            seed: int = 0) -> list[Planted]:
    """Each benchmark's items (every one, or a seeded sample of `per_benchmark`), each planted in the
    four ways into a host page of its language."""
    rng = random.Random(seed)
    hosts = host_pages(shared)
    out = []
    for benchmark in benchmarks:
        items = list(read_items(benchmark))
        questions = Counter(normalise(fields[0]) for _, fields in items)
        shared_questions = {fields[0] for _, fields in items if questions[normalise(fields[0])] > 1}
        if per_benchmark is not None and per_benchmark < len(items):
            items = rng.sample(items, per_benchmark)
        for item_id, fields in items:
            whole = "\n".join(fields)
            pieces = {"whole": whole, "question": fields[0], "sixty": whole[: int(len(whole) * 0.6)],
                      "reformatted": reformat(whole, rng)}
            for way in WAYS:
                host = rng.choice(hosts[LANGUAGES[benchmark.name]])
                known = identifiable(benchmark.name, pieces[way], way != "sixty", fields[0] in shared_questions, settings)
                out.append(Planted(benchmark.name, item_id, way, plant(host, pieces[way], rng), known))
    return out


def identifiable(benchmark: str, piece: str, whole_part: bool, shared_question: bool, settings: Settings) -> bool:
    """Whether `piece` can name its item: it holds a whole n-gram of its script's stream (Han for
    CMMLU, words otherwise), or it is a whole question or item of at least the shorter length the
    index keeps whole, and no question that other items share ("下列说法正确的是" names none)."""
    words, han = tokenize(piece)
    stream, n, min_short = ((han, settings.han_ngram, settings.min_short_han) if LANGUAGES[benchmark] == "zh"
                            else (words, settings.word_ngram, settings.min_short_words))
    if len(stream.hashes) >= n:
        return True
    return whole_part and len(stream.hashes) >= min_short and not shared_question


def recall_tally(plants: list[Planted], index: DecontamIndex) -> tuple[dict, dict, int]:
    """(found, total) per (benchmark, way): a plant is found when `index` names its item in its benchmark;
    plants too short to name any item are left out and counted."""
    found, total, unidentifiable = defaultdict(int), defaultdict(int), 0
    for plant in plants:
        if not plant.identifiable:
            unidentifiable += 1
            continue
        total[plant.benchmark, plant.way] += 1
        found[plant.benchmark, plant.way] += any(h.benchmark == plant.benchmark and plant.item_id in h.item_ids
                                                 for h in find(plant.text, index))
    return found, total, unidentifiable
