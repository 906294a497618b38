"""Issue 25: how many URLs the banned-subword rule hits, anywhere in the squashed URL (DataTrove, the
rule before) against from a word start only (urlfilter.word_starts, the rule now).

    .venv/bin/python bench/bench_url_subwords.py [--show N]

Ordinary URLs: every WARC-Target-URI of the WARC files under ../shared/data (crawl/ and warc/) and
every `url` / `id` URL field of the JSONL documents under quality/ and dedup/. Blocked entries: the
UT1 lists' own domains and URLs (shared/data/blocklists/ut1/*/{domains,urls}) and configs/blocklists.
Each against both subword lists: the shipped configs/blocklists/banned_subwords.txt and DataTrove's.
A hit on an ordinary URL is a page dropped for a word it does not contain; a hit on a blocked entry
is the rule doing its job (those domains are dropped by the domain lists anyway).
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, tiny_data  # noqa: E402
from thresher.pipeline.lexicon import read_list  # noqa: E402
from thresher.pipeline.prepare.urlfilter import UrlWordFilter, squash, trie_regex  # noqa: E402

DATA = REPO.parent / "shared" / "data"
SHIPPED = REPO / "configs" / "blocklists"


def warc_urls(root: Path) -> Iterator[str]:
    from warcio.archiveiterator import ArchiveIterator

    for path in sorted(p for p in root.rglob("*") if ".warc" in p.name or p.name.endswith(".arc.gz")):
        try:
            with open(path, "rb") as handle:
                for record in ArchiveIterator(handle, arc2warc=True):
                    uri = record.rec_headers.get_header("WARC-Target-URI")
                    if uri and record.rec_type in ("response", "resource", "conversion"):
                        yield uri.strip("<>")
        except Exception:  # noqa: BLE001, S112 - a truncated test file: the records before the cut count
            continue


def jsonl_urls(root: Path) -> Iterator[str]:
    for path in sorted(root.rglob("*")):
        if not (path.name.endswith(".jsonl") or path.name.endswith(".jsonl.gz") or path.name.endswith(".json.gz")):
            continue
        opener = gzip.open if path.name.endswith(".gz") else open
        with opener(path, "rt", encoding="utf-8", errors="replace") as handle:
            for line in handle:
                try:
                    row = json.loads(line)
                except ValueError:
                    continue
                for key in ("url", "id"):
                    value = row.get(key) if isinstance(row, dict) else None
                    if isinstance(value, str) and value.startswith(("http://", "https://")):
                        yield value
                        break


def ordinary_urls(data: Path) -> list[str]:
    urls = [*warc_urls(data / "crawl"), *warc_urls(data / "warc")]
    for folder in ("quality", "dedup"):
        urls.extend(jsonl_urls(data / folder))
    return sorted(set(urls))


def blocked_entries(data: Path) -> list[str]:
    files = sorted((data / "blocklists" / "ut1").glob("*/domains")) + sorted((data / "blocklists" / "ut1").glob("*/urls"))
    files += sorted(SHIPPED.glob("*/domains"))
    return sorted({entry for path in files for entry in read_list(path)})


def count(urls: list[str], subwords: list[str]) -> tuple[int, int, list[str], list[str]]:
    """(hits anywhere, hits at a word start, URLs hit before only, URLs hit after only)."""
    anywhere = trie_regex(squash(w) for w in subwords)
    words = UrlWordFilter(banned_subwords=subwords)
    before = {url for url in urls if anywhere is not None and anywhere.search(squash(url))}
    after = {url for url in urls if words.banned_subword(url)}
    return len(before), len(after), sorted(before - after), sorted(after - before)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--show", type=int, default=10, help="URLs shown of those the change affects")
    add_smoke_flag(parser)
    args = parser.parse_args()
    data = DATA
    if args.smoke:
        announce()
        data = tiny_data()
        ut1 = data / "blocklists" / "ut1" / "adult"
        ut1.mkdir(parents=True)
        (ut1 / "domains").write_text("pornhub.example\nfreeviagra.test\ncialis-shop.test\n", encoding="utf-8")
        (data / "blocklists" / "datatrove").mkdir(parents=True)
        (data / "blocklists" / "datatrove" / "banned_subwords.txt").write_text("pornhub\ncialis\n", encoding="utf-8")
    lists = {"configs/blocklists/banned_subwords.txt": SHIPPED / "banned_subwords.txt",
             "datatrove/banned_subwords.txt": data / "blocklists" / "datatrove" / "banned_subwords.txt"}
    sets = {"ordinary URLs": ordinary_urls(data), "blocklist entries": blocked_entries(data)}
    for set_name, urls in sets.items():
        for list_name, path in lists.items():
            subwords = read_list(path)
            before, after, lost, gained = count(urls, subwords)
            print(f"{set_name}: {len(urls)}; {list_name} ({len(subwords)} subwords): "
                  f"hit anywhere (before) {before}, by the word-start rule (after) {after}")
            for url in lost[: args.show]:
                print(f"    no longer hit: {url}")
            for url in gained[: args.show]:
                print(f"    newly hit: {url}")


if __name__ == "__main__":
    main()
