"""What the bench scripts' --smoke modes share (a helper, not a script): the flag, the line a smoke
run starts with, scratch directories, and tiny input in the layout of ../shared/data.

A smoke run checks that a script still runs end to end (tests/bench/test_bench_smoke.py runs every
script's in CI); its figures come from tiny generated input and are not results.
"""

from __future__ import annotations

import atexit
import json
import shutil
import tempfile
from pathlib import Path

SMOKE_HELP = "tiny input, seconds: checks the script runs (CI)"
SMOKE_LINE = "[smoke] figures on tiny input are not results"


def add_smoke_flag(parser) -> None:
    parser.add_argument("--smoke", action="store_true", help=SMOKE_HELP)


def announce() -> None:
    print(SMOKE_LINE, flush=True)


def not_run(what: str, why: str) -> None:
    """The line a smoke run prints for a part it cannot run here."""
    print(f"[smoke] not run: {what} ({why})", flush=True)


def scratch_directory() -> Path:
    """A fresh temporary directory, removed when the script exits: a smoke run leaves nothing behind
    and never touches a real run's caches under bench/work/."""
    path = Path(tempfile.mkdtemp(prefix="bench-smoke-"))
    atexit.register(shutil.rmtree, path, ignore_errors=True)
    return path


def tiny_data() -> Path:
    """A stand-in for ../shared/data, generated (a smoke run must not need the real one), with the
    files and fields the scripts read: the sample crawl's English articles as DCLM documents (every
    other one labelled 1; label 0 a shop page under a navigation line; agreement_data a subset of majority_data, as in the
    real files), its Chinese articles as ChineseWebText (a third of them at forum addresses: page
    types vary, as in a crawl), its complete WARC files as crawl/, and a ground truth for its article
    pages in each benchmark's format."""
    from thresher.pipeline.prepare.sample_crawl import chinese_articles, english_articles, write_sample_crawl

    data = scratch_directory() / "data"
    english, chinese = english_articles(), chinese_articles()
    shop = "Buy now: phone case model {}, in stock, $9.99 with free delivery. Add to cart before midnight."
    shop_page = "Home | Phones | Cases | Contact\n" + "\n".join(shop.format(k) for k in range(8))
    majority = [{"text": "\n".join(paragraphs) if i % 2 == 0 else f"{shop_page}\nShop number {i}.", "label": int(i % 2 == 0)}
                for i, (_, _, paragraphs) in enumerate(english)]
    cleared = [{"url": f"https://bbs.example.cn/thread-{i}.html" if i % 3 == 1 else url, "title": title,
                "raw_content": "\n".join(paragraphs), "language": "zh"} for i, (url, title, paragraphs) in enumerate(chinese)]
    _write_jsonl(data / "quality/dclm/majority_data.jsonl", majority)
    _write_jsonl(data / "quality/dclm/agreement_data.jsonl", majority[::3])
    _write_jsonl(data / "quality/chinesewebtext/cleared1.jsonl", cleared)
    _write_jsonl(data / "quality/chinesewebtext/clean.jsonl", [{"text": row["raw_content"]} for row in cleared[:4]])
    _write_jsonl(data / "quality/chinesewebtext/dirty.jsonl", [{"text": "彩票开奖结果实时更新，注册即送彩金。" * (k + 2)} for k in range(4)])

    for path in write_sample_crawl(data / "crawl"):
        if "truncated" in path:  # the real crawl has no broken file
            Path(path).unlink()
    truth: dict[str, dict] = {"trafilatura": {}, "magic_html": {}, "scrapinghub": {}}
    for i, (url, _, paragraphs) in enumerate(english[:-3]):  # the pages of sample-00000
        if i % 2:
            truth["trafilatura"][url] = {"with": [paragraphs[0][:80], paragraphs[-2][:80]], "without": [paragraphs[-1]]}
        else:
            truth["scrapinghub"][url] = {"articleBody": "\n".join(paragraphs[:-1])}
    for i, (url, title, paragraphs) in enumerate(chinese):
        truth["magic_html"][url] = {"content": "\n".join([title, *paragraphs[:-1]]), "kind": ("article", "forum")[i % 2]}
    (data / "extraction").mkdir(parents=True)
    (data / "extraction/ground-truth.json").write_text(json.dumps(truth, ensure_ascii=False), encoding="utf-8")
    return data


def _write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows), encoding="utf-8")
