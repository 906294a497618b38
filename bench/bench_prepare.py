"""Stage 1 throughput: pages/s per core of the prepare job, beside a plain warcio + trafilatura loop.

Two inputs, each written as WARC files under bench/work/:
- crawl-like: a real dump's language mix. The real pages of the shared crawl (428 pages),
  cc-main-2020-34-sample.warc.gz (a real Common Crawl WARC) and the Japanese ClueWeb09 WARC, plus
  pages built from ../shared/data/langid/sentences/ inside the templates of real pages (their
  navigation, comments, footer, scripts and size; on a third of them only the paragraphs rewritten,
  the chrome left as it was; <html lang> stated, absent or a template's wrong "en-US": `built_page`),
  mixed to Common Crawl's published language shares (`CC_LANGUAGE_SHARES`). Real pages fill each
  language's quota first (languages by lid.176 on their whole text), built pages the rest.
- all-kept: English and Chinese pages only (the real ones, and as many built ones at 9:1), where
  the pre-check can skip nothing.

On each, in one run: the job with the pre-check on and off (Spark local mode, one task slot per core,
session start excluded and printed; WARC files of 50 pages, so tasks balance), their kept documents
compared, and the baseline: one process, warcio's ArchiveIterator and trafilatura.extract on the raw
bytes of every response record, nothing else (no charset handling, URL filter, language ID, dedup or
output). The job's figure is pages per wall second per core; the baseline's pages per CPU second.

    .venv/bin/python bench/bench_prepare.py [--pages 1000] [--cores N] [--mix crawl-like,all-kept]
"""

from __future__ import annotations

import argparse
import io
import json
import os
import random
import re
import shutil
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))  # for `bench.` imports when run as a script

from bench._smoke import add_smoke_flag, announce, scratch_directory, tiny_data  # noqa: E402
from thresher.pipeline.prepare.extract import decode_html  # noqa: E402

DATA = REPO.parent / "shared" / "data"
WORK = REPO / "bench" / "work"
PAGES_PER_FILE = 50

# Share of HTML pages by primary language in Common Crawl's monthly crawls, rounded: "Distribution of
# Languages", https://commoncrawl.github.io/cc-crawl-statistics/plots/languages (CLD2 on the HTML;
# CC-MAIN-2024 crawls: English about 43-46%, then Russian, German, Japanese, Chinese about 5-6% each).
# "other" is spread over the remaining languages of langid/sentences/.
CC_LANGUAGE_SHARES = {
    "en": 0.45, "ru": 0.06, "de": 0.055, "ja": 0.05, "zh": 0.05, "es": 0.045, "fr": 0.045, "it": 0.025,
    "pt": 0.02, "nl": 0.02, "pl": 0.02, "other": 0.135,
}
KEPT_MIX = {"en": 0.9, "zh": 0.1}  # English and Chinese at Common Crawl's 45:5

def real_pages(paths: list[Path]) -> list[dict]:
    """Every content record with a payload, as (url, HTTP status, content type, payload) dicts."""
    from thresher.pipeline.prepare.warc import WarcRecord, iter_records

    pages = []
    for path in paths:
        with open(path, "rb") as handle:
            for record in iter_records(handle, 5_000_000):
                if isinstance(record, WarcRecord) and record.kind == "response" and record.payload is not None:
                    content_type = record.mime_type + (f"; charset={record.charset}" if record.charset else "")
                    pages.append({"url": record.url, "status": record.http_status or 200,
                                  "content_type": content_type, "payload": record.payload})
    return pages


def page_language(page: dict) -> str:
    """lid.176's language of a page's whole text (to compose the mixes only)."""
    from thresher.pipeline.langid import top_language
    from thresher.pipeline.prepare.precheck import cheap_look

    if page["status"] != 200 or "html" not in page["content_type"]:
        return ""
    charset = page["content_type"].partition("charset=")[2]
    return top_language(cheap_look(decode_html(page["payload"], charset).html).text[:20_000])[0]


def built_page(lang: str, sentences: list[str], template: dict, rng: random.Random, index: int) -> dict:
    """A page of `lang` sentences in the template of a real page (its navigation, footer, comments,
    scripts and size): every text node of the body rewritten in `lang` (a localised site), or on a
    third of the pages only those inside <p> (the site's chrome left in its own language). Its
    `<html lang>` states `lang` on 60% of the pages, a template's "en-US" on 10%, nothing on the rest."""
    import lxml.html

    charset = template["content_type"].partition("charset=")[2]
    tree = lxml.html.fromstring(decode_html(template["payload"], charset).html)
    for meta in tree.xpath("//meta[@charset] | //meta[@http-equiv]"):
        meta.getparent().remove(meta)
    stated = rng.random()
    tree.attrib.pop("lang", None)
    if stated < 0.7:
        tree.set("lang", lang if stated < 0.6 else "en-US")
    body = tree.find("body") if tree.find("body") is not None else tree
    only_paragraphs = index % 3 == 0
    for element in body.iter():
        if element.tag in ("script", "style") or not isinstance(element.tag, str):
            continue
        inside_p = element.tag == "p" or any(parent.tag == "p" for parent in element.iterancestors())
        if only_paragraphs and not inside_p:
            continue
        for attribute in ("text", "tail"):
            value = getattr(element, attribute)
            if value and value.strip() and (attribute == "text" or not only_paragraphs or element.getparent() is not None
                                            and element.getparent().tag == "p"):
                setattr(element, attribute, _text_like(len(value.strip()), sentences, rng))
    payload = lxml.html.tostring(tree, encoding="utf-8", doctype="<!DOCTYPE html>")
    return {"url": f"https://site{index % 97}.{lang}.example/article/{index}", "status": 200,
            "content_type": "text/html; charset=utf-8", "payload": payload}


def _text_like(length: int, sentences: list[str], rng: random.Random) -> str:
    """Sentences, then a cut one, of about `length` characters (a menu item gets a few words)."""
    text = ""
    while len(text) < length:
        text += rng.choice(sentences) + " "
    return text[: max(length, 1)].strip() or sentences[0][:length]


_NOT_IN_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")  # lxml refuses these in text


def _sentences(directory: Path) -> dict[str, list[str]]:
    return {path.stem: [_NOT_IN_XML.sub("", line).strip() for line in path.read_text(encoding="utf-8").splitlines()
                        if _NOT_IN_XML.sub("", line).strip()] for path in sorted(directory.glob("*.txt"))}


def compose(total: int, shares: dict[str, float], real: list[dict], sentences: dict[str, list[str]], seed: int) -> list[dict]:
    """`total` pages at `shares`: real pages of each language first (file order), built pages for the rest,
    each in the template of a real page taken at random."""
    rng = random.Random(seed)
    templates = [page for page in real if page["status"] == 200 and "html" in page["content_type"] and page["lang"]]

    def built(lang: str, index: int) -> dict:
        return built_page(lang, sentences[lang], templates[rng.randrange(len(templates))], rng, index)

    by_language: dict[str, list[dict]] = {}
    for page in real:
        by_language.setdefault(page["lang"], []).append(page)
    named = [lang for lang in shares if lang != "other"]
    others = [lang for lang in sentences if lang not in named]
    pages: list[dict] = []
    for lang, share in shares.items():
        quota = round(share * total)
        if lang == "other":
            spare = [page for key, group in sorted(by_language.items()) if key not in named for page in group]
            chosen = spare[:quota]
            chosen += [built(others[i % len(others)], len(pages) + i) for i in range(quota - len(chosen))] if others else []
        else:
            chosen = by_language.get(lang, [])[:quota]
            chosen += [built(lang, len(pages) + i) for i in range(quota - len(chosen))] if lang in sentences else []
        pages += chosen
    rng.shuffle(pages)
    return pages


def write_warcs(pages: list[dict], directory: Path, name: str) -> list[str]:
    """`pages` as gzipped WARC files of PAGES_PER_FILE response records each."""
    from warcio.statusandheaders import StatusAndHeaders
    from warcio.warcwriter import WARCWriter

    shutil.rmtree(directory, ignore_errors=True)
    directory.mkdir(parents=True)
    files = []
    for start in range(0, len(pages), PAGES_PER_FILE):
        path = directory / f"{name}-{start // PAGES_PER_FILE:05d}.warc.gz"
        with open(path, "wb") as handle:
            writer = WARCWriter(handle, gzip=True)
            for page in pages[start : start + PAGES_PER_FILE]:
                headers = StatusAndHeaders(f"{page['status']} OK", [("Content-Type", page["content_type"])], protocol="HTTP/1.1")
                writer.write_record(writer.create_warc_record(page["url"], "response", payload=io.BytesIO(page["payload"]),
                                                              http_headers=headers))
        files.append(str(path))
    return files


def baseline(files: list[str]) -> tuple[int, float]:
    """Pages and CPU seconds of the plain loop over `files`."""
    import trafilatura
    from warcio.archiveiterator import ArchiveIterator

    pages = 0
    start = time.process_time()
    for path in files:
        with open(path, "rb") as handle:
            for record in ArchiveIterator(handle):
                if record.rec_type == "response":
                    trafilatura.extract(record.content_stream().read())
                    pages += 1
    return pages, time.process_time() - start


def tree_cpu_seconds() -> float:
    """CPU seconds of this process and every process under it (the JVM, Spark's Python workers, their
    extraction children), each live one's own plus those of its children it has reaped."""
    import psutil

    total = 0.0
    me = psutil.Process()
    for process in [me, *me.children(recursive=True)]:
        try:
            times = process.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def run_job(spark, files: list[str], output: Path, precheck: bool) -> tuple[dict, float, float, dict[str, str]]:
    """(stats, wall seconds, CPU seconds of the process tree, doc_id -> md5 of the kept documents) of
    the prepare job on `files`."""
    import pyarrow.parquet as pq

    from thresher.jobs.prepare import run_prepare
    from thresher.pipeline.config import load_config

    shutil.rmtree(output, ignore_errors=True)
    started, cpu_before = time.time(), tree_cpu_seconds()
    stats = run_prepare(spark, files, str(output), load_config(None, {"prepare.precheck.enabled": precheck}))
    wall, cpu = time.time() - started, tree_cpu_seconds() - cpu_before
    table = pq.read_table(output / "documents", columns=["doc_id", "md5"])
    return stats, wall, cpu, dict(zip(table["doc_id"].to_pylist(), table["md5"].to_pylist(), strict=True))


def _in_child(function, *args):
    """`function(*args)` in a forked process, so that what it imports or sets (trafilatura's parser
    lookup, its extraction child) never reaches the baseline's loop in this one."""
    import multiprocessing

    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=lambda: send.send(function(*args)))
    process.start()
    send.close()  # so that a child that fails ends the wait (EOFError) instead of leaving it hanging
    try:
        return receive.recv()
    finally:
        process.join()


def _process_cpu_seconds() -> float:
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def process_warc_cpu(files: list[str], precheck: bool) -> tuple[int, float, dict[str, float]]:
    """(pages, CPU seconds of this process and its extraction child, each step's summed seconds) of
    `process_warc` over `files`: stage 1's per-page work without Spark, after one warm-up file."""
    from thresher.jobs.prepare import resolved_prepare_config
    from thresher.pipeline.config import load_config
    from thresher.pipeline.prepare.records import ROW_FILE, ROW_SCHEMA, process_warc, steps_for

    config = resolved_prepare_config(load_config(None, {"prepare.precheck.enabled": precheck}))
    list(process_warc(files[0], config))  # starts the extraction child and loads lid.176
    started, pages, steps = _process_cpu_seconds(), 0, Counter()
    for path in files:
        for row in process_warc(path, config):
            if row[0] == ROW_FILE:
                stats = json.loads(row[ROW_SCHEMA.names.index("detail")])
                steps.update({step: rule["nanoseconds"] / 1e9 for step, rule in stats["rules"].items()})
            else:
                pages += 1
    steps_for(config).extractor.close()  # reaps the child: its CPU counts
    return pages, _process_cpu_seconds() - started, dict(steps)


def trafilatura_cpu(htmls: list[str], c_level_lookup: bool) -> float:
    """CPU seconds of trafilatura.extract (thresher's options) over `htmls`, with lxml.html's element
    class lookup (a Python call per element proxy) or the C-level one stage 1 gives it."""
    import trafilatura

    from thresher.pipeline.prepare.extract import c_level_element_lookup

    if c_level_lookup:
        c_level_element_lookup()
    started = time.process_time()
    for html in htmls:
        trafilatura.extract(html, include_comments=True)
    return time.process_time() - started


def per_page_costs(name: str, pages: list[dict], files: list[str]) -> None:
    """Print stage 1's per-page CPU without Spark on one mix, beside the baseline measured right before."""
    htmls = [decode_html(page["payload"], page["content_type"].partition("charset=")[2]).html for page in pages
             if page["status"] == 200 and "html" in page["content_type"]]
    base_pages, base_cpu = baseline(files)
    python_lookup, c_lookup = _in_child(trafilatura_cpu, htmls, False), _in_child(trafilatura_cpu, htmls, True)
    print(f"{name} trafilatura.extract on {len(htmls)} decoded pages: {python_lookup:.1f}s CPU with lxml.html's "
          f"element lookup, {c_lookup:.1f}s with the C-level one ({c_lookup / python_lookup - 1:+.0%})")
    for precheck in (True, False):
        done, cpu, steps = _in_child(process_warc_cpu, files, precheck)
        print(f"{name} per-page work without Spark (process_warc), pre-check {'on ' if precheck else 'off'}: {done} pages "
              f"in {cpu:.1f}s CPU = {done / cpu:.1f} pages per CPU second ({done / cpu / (base_pages / base_cpu):.2f}x "
              f"the baseline's {base_pages / base_cpu:.1f}); steps' seconds "
              f"{json.dumps({step: round(seconds, 1) for step, seconds in steps.items()})}; "
              f"load average {os.getloadavg()[0]:.1f}")


def precheck_rejects(stats: dict) -> int:
    return sum(count for rule, count in stats["rejects_by_rule"].items() if rule.endswith("_precheck") or "_precheck:" in rule)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=1000, help="pages in the crawl-like mix (default 1,000)")
    parser.add_argument("--cores", type=int, default=os.cpu_count(), help="Spark local cores (default: all)")
    parser.add_argument("--mix", default="crawl-like,all-kept", help="which mixes, comma-separated")
    parser.add_argument("--per-page-only", action="store_true",
                        help="only the per-page work without Spark (process_warc, trafilatura's parser lookup)")
    parser.add_argument("--no-per-page", action="store_true", help="only the jobs and the baseline")
    add_smoke_flag(parser)
    args = parser.parse_args()
    data, work = DATA, WORK
    if args.smoke:
        announce()
        data, work, args.pages, args.cores = tiny_data(), scratch_directory(), 40, 1

    from pyspark.sql import SparkSession

    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    warcs = sorted((data / "crawl").glob("*.warc.gz")) + [
        path for path in (data / "warc" / "cc-main-2020-34-sample.warc.gz", data / "warc" / "clueweb09-ja-eucjp.warc.gz")
        if path.is_file()
    ]
    real = real_pages(warcs)
    for page in real:
        page["lang"] = page_language(page)
    sentences = _sentences(data / "langid" / "sentences") if (data / "langid" / "sentences").is_dir() else {}
    if not sentences:  # the smoke run's tiny data has none: its real pages stand in for English and Chinese
        sentences = {"en": ["A short English sentence about the town's history and its old bridge."],
                     "zh": ["这是一个关于小镇历史和古老石桥的简短介绍。"], "de": ["Ein kurzer deutscher Satz über die Stadt."]}
    mixes = {
        "crawl-like": compose(args.pages, CC_LANGUAGE_SHARES, real, sentences, seed=28),
        "all-kept": compose(sum(page["lang"] in KEPT_MIX for page in real) * 2, KEPT_MIX,
                            [page for page in real if page["lang"] in KEPT_MIX], sentences, seed=29),
    }
    print(f"machine: {os.cpu_count()} cores, load average before {os.getloadavg()[0]:.1f}; Spark local[{args.cores}]")

    if args.per_page_only:
        for name in [mix for mix in args.mix.split(",") if mix]:
            per_page_costs(name, mixes[name], write_warcs(mixes[name], work / f"mix-{name}", name))
        return 0
    started = time.time()
    spark = (
        SparkSession.builder.master(f"local[{args.cores}]").appName("bench-prepare")
        .config("spark.ui.enabled", "false").config("spark.sql.shuffle.partitions", str(args.cores))
        .config("spark.driver.memory", "2g").getOrCreate()
    )
    spark.sparkContext.setLogLevel("ERROR")
    # The first job of a session also starts Spark's Python workers and their extraction children: one
    # file, excluded like the session start, so that neither mix's first job carries it.
    warm_up = write_warcs(real[:PAGES_PER_FILE], work / "mix-warm-up", "warm-up")
    for precheck in (True, False):
        run_job(spark, warm_up, work / "bench-prepare-warm-up", precheck)
    print(f"session start: {time.time() - started:.1f}s with a warm-up job on {len(warm_up)} file per setting, "
          "excluded from every job figure below")
    for name in [mix for mix in args.mix.split(",") if mix]:
        pages = mixes[name]
        files = write_warcs(pages, work / f"mix-{name}", name)
        languages = Counter("real" if "lang" in page else "built" for page in pages)
        print(f"{name}: {len(pages)} pages in {len(files)} files ({languages['real']} real, {languages['built']} built)")
        kept = {}
        rates = {}
        for precheck in (True, False):
            stats, wall, cpu, kept[precheck] = run_job(spark, files, work / f"bench-prepare-{name}", precheck)
            documents_in = stats["documents_in"]
            setting = "on " if precheck else "off"
            rates[precheck] = (documents_in / wall / args.cores, documents_in / cpu)
            print(f"{name} job, pre-check {setting}: {documents_in} pages in {wall:.1f}s wall = "
                  f"{rates[precheck][0]:.1f} pages/s per core; {cpu:.1f}s CPU in all its processes = "
                  f"{rates[precheck][1]:.1f} pages per CPU second; {stats['documents_out']} documents, "
                  f"{precheck_rejects(stats)} pre-check rejects, load average {os.getloadavg()[0]:.1f}")
            # Wall-clock inside each per-page step, summed over tasks (stats.json `rules`; extract includes its child).
            print(f"{name} job steps, pre-check {setting}: "
                  f"{json.dumps({step: round(rule['seconds'], 1) for step, rule in stats['rules'].items()})}")
        lost, gained = sorted(set(kept[False]) - set(kept[True])), sorted(set(kept[True]) - set(kept[False]))
        changed = sorted(doc for doc in set(kept[True]) & set(kept[False]) if kept[True][doc] != kept[False][doc])
        print(f"{name} kept documents, on vs off: {len(kept[False])} off, {len(lost)} lost "
              f"({len(lost) / max(len(kept[False]), 1):.2%}), {len(gained)} gained, {len(changed)} changed; lost: {lost[:10]}")
        base_pages, base_cpu = baseline(files)
        base_rate = base_pages / base_cpu
        print(f"{name} baseline (1 process, warcio + trafilatura.extract): {base_pages} pages in {base_cpu:.1f}s CPU = "
              f"{base_rate:.1f} pages/s per core; job with pre-check {rates[True][0] / base_rate:.2f}x "
              f"(per CPU second {rates[True][1] / base_rate:.2f}x), without {rates[False][0] / base_rate:.2f}x "
              f"({rates[False][1] / base_rate:.2f}x), load average {os.getloadavg()[0]:.1f}")
        if not args.no_per_page:
            per_page_costs(name, pages, files)
    spark.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
