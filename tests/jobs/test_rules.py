"""Stage 2 job in Spark local mode on real documents with planted duplicates."""

from __future__ import annotations

import hashlib
import json
import random

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from thresher.jobs.rules import LINE_DEDUP_RULE, MINHASH_RULE, run_rules
from thresher.pipeline.config import load_config
from thresher.pipeline.filters import FilterStats, first_drop
from thresher.pipeline.rules.clusters import KEPT_RULE
from thresher.pipeline.rules.heuristics import DocumentView, build_filters, load_resources
from thresher.pipeline.stagedir import COMMITTED_MARKER, read_commit
from thresher.schemas.clusters import CLUSTERS
from thresher.schemas.dedup_keys import DEDUP_BANDS_TABLE, DEDUP_DOCS_TABLE, DEDUP_LINES_TABLE
from thresher.schemas.documents import PREPARED, RULES
from thresher.schemas.rejects import REJECT
from thresher.schemas.stats import read_stats

FOOTER = "Subscribe to our newsletter for weekly updates on all our stories"
FOOTER_COPIES = 10
MAX_OCCURRENCES = 3
DEDUP_TABLES = (DEDUP_DOCS_TABLE, DEDUP_BANDS_TABLE, DEDUP_LINES_TABLE)


def _doc_id(name: str) -> str:
    return hashlib.sha1(name.encode()).hexdigest()[:16]


def _near_copy(text: str, seed: int) -> str:
    """`text` with about 3% of its words replaced: a near duplicate (Jaccard of 5-shingles ~0.85)."""
    rng = random.Random(seed)
    words = text.split(" ")
    for index in rng.sample(range(len(words)), max(1, len(words) // 33)):
        words[index] = rng.choice(words)
    return " ".join(words)


def _make_input(shared_data, directory, files: int):
    rows = [json.loads(line) for line in (shared_data / "quality/dclm/agreement_data.jsonl").open()]
    good = [r["text"] for r in rows if str(r["label"]) == "1"][:60]
    docs = [(f"dclm-{i}", text) for i, text in enumerate(good)]
    config = load_config()
    filters = build_filters(config.rules, load_resources(config.rules, config.resolve_path))
    passing = [d for d in docs if len(d[1].split()) > 300 and first_drop(filters, DocumentView(d[1], "en")) is None]
    originals = sorted(passing, key=lambda d: _doc_id(d[0]))[:3]
    assert len(originals) == 3
    planted = {}
    for number, (name, text) in enumerate(originals):
        copy_name = f"copy-{number}"
        copy = _near_copy(text, number)
        assert first_drop(filters, DocumentView(copy, "en")) is None
        docs.append((copy_name, copy))
        planted[_doc_id(copy_name)] = _doc_id(name)
    footed = sorted(docs[:FOOTER_COPIES], key=lambda d: _doc_id(d[0]))
    with_footer = {name for name, _ in footed}
    docs = [(name, text + "\n" + FOOTER if name in with_footer else text) for name, text in docs]
    table = pa.Table.from_pylist(
        [
            {
                "doc_id": _doc_id(name),
                "url": f"https://example.org/{name}",
                "domain": "example.org",
                "warc_path": "test.warc.gz",
                "warc_record_id": f"<urn:uuid:{name}>",
                "fetch_time": "2024-01-01T00:00:00Z",
                "text": text,
                "lang": "en",
                "lang_score": 0.99,
                "md5": hashlib.md5(text.encode()).hexdigest(),
            }
            for name, text in docs
        ],
        schema=PREPARED,
    )
    (directory / "documents").mkdir(parents=True)
    step = -(-len(table) // files)
    for part in range(files):
        pq.write_table(table.slice(part * step, step), directory / "documents" / f"part-{part}.parquet")
    (directory / COMMITTED_MARKER).write_text("{}")
    return table, planted, [_doc_id(name) for name, _ in footed]


@pytest.fixture(scope="module")
def runs(spark, shared_data, tmp_path_factory):
    config = load_config(overrides={"rules.line_dedup_max_occurrences": MAX_OCCURRENCES})
    results = {}
    previous = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        for partitions in (1, 4):
            base = tmp_path_factory.mktemp(f"rules{partitions}")
            table, planted, footed = _make_input(shared_data, base / "input", partitions)
            spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
            stats = run_rules(spark, str(base / "input"), str(base / "output"), config)
            results[partitions] = (base / "output", stats)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", previous)
    return results, table, planted, footed


def _read(path, schema):
    table = pq.read_table(path, schema=schema)
    return sorted(table.to_pylist(), key=lambda r: tuple(str(r[k]) for k in schema.names))


def test_output_is_committed_with_contract_schemas(runs):
    results, *_ = runs
    output, stats = results[4]
    assert (output / COMMITTED_MARKER).is_file()
    assert read_stats(output) == stats
    assert pq.read_schema(next((output / "documents").glob("*.parquet"))).names == RULES.names
    assert pq.read_schema(next((output / "rejects").glob("*.parquet"))).names == REJECT.names


def test_stats_add_up(runs):
    results, table, *_ = runs
    output, stats = results[4]
    assert stats["documents_in"] == len(table)
    assert stats["documents_in"] == stats["documents_out"] + stats["details"]["documents_rejected"]
    rejects = pq.read_table(output / "rejects").to_pylist()
    assert sum(stats["rejects_by_rule"].values()) == len(rejects)
    assert all(r["stage"] == "rules" for r in rejects)


def test_minhash_removes_planted_near_duplicates(runs):
    results, _, planted, _ = runs
    output, stats = results[4]
    rejects = pq.read_table(output / "rejects").to_pylist()
    duplicates = {r["doc_id"]: r["detail"] for r in rejects if r["rule"] == MINHASH_RULE}
    kept_ids = set(pq.read_table(output / "documents").column("doc_id").to_pylist())
    for copy_id, original_id in planted.items():
        kept, dropped = sorted([copy_id, original_id])  # the smaller doc_id of a cluster is kept
        assert duplicates.get(dropped) == f"kept {kept}"
        assert kept in kept_ids and dropped not in kept_ids
    assert len(duplicates) == len(planted)
    assert stats["details"]["minhash_cluster_sizes"] == {"2": len(planted)}


def test_line_dedup_keeps_the_first_occurrences(runs):
    results, _, _, footed = runs
    output, stats = results[4]
    rejects = pq.read_table(output / "rejects").to_pylist()
    removed = sorted(r["doc_id"] for r in rejects if r["rule"] == LINE_DEDUP_RULE)
    assert removed == sorted(footed)[MAX_OCCURRENCES:]
    assert all(r["content"] == FOOTER for r in rejects if r["rule"] == LINE_DEDUP_RULE)
    assert stats["details"]["lines_removed"] == FOOTER_COPIES - MAX_OCCURRENCES
    documents = pq.read_table(output / "documents").to_pylist()
    assert stats["details"]["lines_removed_in_documents_out"] == sum(row["lines_removed_dedup"] for row in documents)
    assert stats["details"]["lines_removed_in_documents_out"] == len(set(removed) & {row["doc_id"] for row in documents})
    for row in documents:
        assert (FOOTER in row["text"]) == (row["doc_id"] in sorted(footed)[:MAX_OCCURRENCES])
        assert row["lines_removed_dedup"] == (1 if row["doc_id"] in removed else 0)


def test_output_identical_with_1_and_4_partitions(runs):
    results, *_ = runs
    (one, stats_one), (four, stats_four) = results[1], results[4]
    assert _read(one / "documents", RULES) == _read(four / "documents", RULES)
    assert _read(one / "rejects", REJECT) == _read(four / "rejects", REJECT)
    assert _comparable(stats_one) == _comparable(stats_four)


def _comparable(stats):
    """The stats that depend on the data only: no times, digest or inputs; the rules without their seconds."""
    drop = ("started", "finished", "seconds", "config_digest", "inputs", "details", "rules")
    return {**{k: v for k, v in stats.items() if k not in drop},
            "rules": {rule: (s["seen"], s["dropped"]) for rule, s in stats["rules"].items()},
            "details": {k: v for k, v in stats["details"].items() if k != "timings"}}


def test_rules_commits_to_s3_the_same_objects_it_commits_to_local_disk(runs, spark_s3, shared_data, s3_url, tmp_path,
                                                                      copies_and_renames):
    from thresher.pipeline.stagedir import read_commit, storage
    from thresher.pipeline.stagedir.parts import read_parts

    results, *_ = runs
    local, local_stats = results[4]
    _make_input(shared_data, tmp_path / "input", 4)
    config = load_config(overrides={"rules.line_dedup_max_occurrences": MAX_OCCURRENCES})
    previous = spark_s3.conf.get("spark.sql.shuffle.partitions")
    spark_s3.conf.set("spark.sql.shuffle.partitions", "4")
    try:
        stats = run_rules(spark_s3, str(tmp_path / "input"), f"{s3_url}/rules", config)
    finally:
        spark_s3.conf.set("spark.sql.shuffle.partitions", previous)
    assert _comparable(stats) == _comparable(local_stats)
    on_s3, on_disk = read_commit(f"{s3_url}/rules"), read_commit(local)
    assert on_s3.stats == stats
    for table in ("documents", "rejects"):
        assert (read_parts(spark_s3, f"{s3_url}/rules", table).collect()
                == read_parts(spark_s3, str(local), table).collect())  # row-identical, in the same order
        s3_parts, disk_parts = on_s3.parts(table), on_disk.parts(table)
        assert [on_s3.fs.cat_file(on_s3.path(part.name)) for part in s3_parts] == [
            on_disk.fs.cat_file(on_disk.path(part.name)) for part in disk_parts]  # byte-identical parts
    fs, root = storage(f"{s3_url}/rules")
    fs.invalidate_cache(root)
    assert sorted(path[len(root) + 1:] for path in fs.find(root)) == sorted(
        ["_COMMITTED", "stats.json", *(part.name for table in ("documents", "rejects", "clusters", *DEDUP_TABLES)
                                       for part in on_s3.parts(table))])
    assert copies_and_renames == []


def test_rules_stats_count_what_each_heuristic_family_saw_dropped_and_its_time(runs):
    results, table, *_ = runs
    config = load_config()
    families = [f.name for f in build_filters(config.rules, load_resources(config.rules, config.resolve_path))]
    for output, stats in results.values():
        rules = stats["rules"]
        assert list(read_stats(output)["rules"]) == list(rules) == families  # pipeline order, in the file too
        assert rules[families[0]]["seen"] == len(table) == stats["documents_in"]
        for before, after in zip(families, families[1:], strict=False):  # each family sees what the one before kept
            assert rules[after]["seen"] == rules[before]["seen"] - rules[before]["dropped"]
        rejected = {family: sum(n for rule, n in stats["rejects_by_rule"].items() if rule.split(":")[0] == family)
                    for family in families}
        assert {family: s["dropped"] for family, s in rules.items()} == rejected and sum(rejected.values()) > 0
        assert all(s["seconds"] > 0 for s in rules.values() if s["seen"])
        assert not any(key.startswith(("heuristic", "gopher", "c4")) for key in stats["details"]["timings"])


def test_the_report_shows_each_family_s_cost_in_pipeline_order(runs, tmp_path):
    from report_page import Page

    from thresher.pipeline.report.data import build_report
    from thresher.pipeline.report.html import render_html

    results, *_ = runs
    output, stats = results[4]
    (tmp_path / "rules").symlink_to(output)
    report = build_report(tmp_path)
    page = Page(render_html(report))
    table = page.table_with("share of the stage's filter time")
    assert table[0] == ["rule", "documents seen", "dropped", "% dropped", "seconds", "share of the stage's filter time"]
    assert [row[0] for row in table[1:-1]] == list(stats["rules"]) and table[-1][0] == "total"
    for row, s in zip(table[1:-1], stats["rules"].values(), strict=True):
        assert row[1] == f"{s['seen']:,}" and row[2] == f"{s['dropped']:,}"
    assert "rules: cost per rule" in page.sections


def test_a_retried_task_s_stats_replace_its_first_attempt_s(tmp_path):
    from thresher.jobs.rules import _read_rule_stats, _write_partition_stats

    config = load_config()
    resources = load_resources(config.rules, config.resolve_path)
    _write_partition_stats(str(tmp_path), 0, {"empty": FilterStats(7, 1, 5)})  # the failed attempt got this far
    _write_partition_stats(str(tmp_path), 1, {"empty": FilterStats(4, 0, 3)})
    _write_partition_stats(str(tmp_path), 0, {"empty": FilterStats(9, 2, 8)})  # the retry: the whole partition
    (tmp_path / "part-00002.json.0a1b.tmp").write_text("{")  # an attempt killed while writing
    merged = _read_rule_stats(str(tmp_path), config.rules, resources)
    assert merged["empty"] == FilterStats(13, 2, 11)
    assert list(merged)[1:] == [f.name for f in build_filters(config.rules, resources)][1:]
    assert all(s == FilterStats() for s in list(merged.values())[1:])


def _user_records(shared_data):
    english = [json.loads(line)["text"] for line in (shared_data / "quality/dclm/agreement_data.jsonl").open()][:16]
    chinese = [json.loads(line)["raw_content"]
               for line in (shared_data / "quality/chinesewebtext/cleared1.jsonl").open()][:6]
    return [{"content": text, "link": f"https://www.example.org/{i}"} for i, text in enumerate(english + chinese)]


def _write_user_input(directory, records, kind):
    import datasets

    if kind == "parquet":
        path = directory / "docs.parquet"
        pq.write_table(pa.Table.from_pylist(records), path)
    elif kind == "jsonl":
        path = directory / "docs.jsonl"
        path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    elif kind == "datasets":
        path = directory / "hf"
        datasets.Dataset.from_list(records).save_to_disk(str(path))
    else:  # a committed stage directory whose documents have only text and url
        path = directory / "stage"
        (path / "documents").mkdir(parents=True)
        table = pa.Table.from_pylist([{"text": r["content"], "url": r["link"]} for r in records])
        pq.write_table(table, path / "documents" / "part-0.parquet")
        (path / COMMITTED_MARKER).write_text("{}")
    return path


@pytest.mark.parametrize("kind", ["parquet", "jsonl", "datasets", "stage_text_url"])
def test_user_documents_go_through_rules(spark, shared_data, tmp_path, kind):
    from thresher.jobs import cli

    records = _user_records(shared_data)
    path = _write_user_input(tmp_path, records, kind)
    mapping = [] if kind == "stage_text_url" else ["--text-field", "content", "--url-field", "link"]
    code = cli.main(["rules", str(path), "--output", str(tmp_path / "out"), *mapping])
    assert code == 0
    from thresher.pipeline.stagedir.documents import derived_doc_id

    stats = read_stats(tmp_path / "out")
    assert stats["documents_in"] == len(records)
    assert stats["documents_out"] + stats["details"]["documents_rejected"] == len(records) and stats["documents_out"] > 0
    assert not (tmp_path / "out" / "_work").exists() and not (tmp_path / "out" / "_staging").exists()
    name = {"parquet": "docs.parquet", "jsonl": "docs.jsonl", "datasets": "data-00000-of-00001.arrow",
            "stage_text_url": "part-0.parquet"}[kind]
    by_id = {derived_doc_id(name, i): r for i, r in enumerate(records)}
    kept = pq.read_table(tmp_path / "out" / "documents").to_pylist()
    for row in kept:
        assert row["url"] == by_id[row["doc_id"]]["link"]
        assert row["lang"] == ("zh" if records.index(by_id[row["doc_id"]]) >= 16 else "en")  # lid.176 ran
    rejected = pq.read_table(tmp_path / "out" / "rejects").to_pylist()
    assert {r["doc_id"] for r in rejected if r["rule"] != LINE_DEDUP_RULE} | {r["doc_id"] for r in kept} == set(by_id)


def test_a_text_column_under_another_name_is_one_line_before_spark(tmp_path, capsys):
    from thresher.jobs import cli

    pq.write_table(pa.table({"content": ["some text"]}), tmp_path / "docs.parquet")
    code = cli.main(["rules", str(tmp_path / "docs.parquet"), "--output", str(tmp_path / "out")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "has no column 'text'" in err[0] and "--text-field" in err[0]
    assert not (tmp_path / "out").exists()


def test_a_malformed_jsonl_line_past_the_first_is_a_counted_reject(spark, shared_data, tmp_path):
    from thresher.jobs import cli
    from thresher.pipeline.stagedir.documents import INPUT_PARSE_ERROR

    records = _user_records(shared_data)[:8]
    lines = [json.dumps(r, ensure_ascii=False) + "\n" for r in records]
    lines.insert(3, '{"content": "cut off in the mid\n')  # line 4 of the file
    path = tmp_path / "docs.jsonl"
    path.write_text("".join(lines), encoding="utf-8")
    assert cli.main(["rules", str(path), "--output", str(tmp_path / "out"), "--text-field", "content", "--url-field", "link"]) == 0
    stats = read_stats(tmp_path / "out")
    assert stats["rejects_by_rule"][INPUT_PARSE_ERROR] == 1
    assert stats["documents_in"] == len(records) + 1  # the unparsable line is an input record, rejected
    assert stats["documents_out"] + stats["details"]["documents_rejected"] == stats["documents_in"]
    [reject] = [r for r in pq.read_table(tmp_path / "out" / "rejects").to_pylist() if r["rule"] == INPUT_PARSE_ERROR]
    assert reject["detail"].startswith(f"{path} line 4 is not JSON: ") and reject["content"] == '{"content": "cut off in the mid'
    assert reject["stage"] == "rules" and reject["doc_id"] is None


def test_the_cluster_table_names_every_member_the_kept_one_and_why(runs):
    results, table, planted, _ = runs
    output, _ = results[4]
    rows = pq.read_table(output / "clusters").to_pylist()
    assert pq.read_schema(next((output / "clusters").glob("*.parquet"))).names == CLUSTERS.names
    urls = dict(zip(table.column("doc_id").to_pylist(), table.column("url").to_pylist(), strict=True))
    expected = {min(pair): sorted(pair) for pair in planted.items()}
    assert {row["cluster_id"] for row in rows} == set(expected) and len(rows) == 2 * len(planted)
    for row in rows:
        assert row["doc_id"] in expected[row["cluster_id"]] and row["cluster_size"] == 2
        assert row["kept"] == (row["doc_id"] == row["cluster_id"]) and row["kept_by"] == KEPT_RULE
        assert row["url"] == urls[row["doc_id"]] and row["warc_path"] == "test.warc.gz"
        assert row["run"] == str(output.parent / "input")
        if row["kept"]:
            assert row["jaccard"] == 1.0 and row["diff"] is None
        else:  # about 3% of the words changed: Jaccard of 5-shingles near 0.85, the changed lines in the diff
            assert 0.6 < row["jaccard"] < 0.98
            assert any(line.startswith("-") for line in row["diff"].splitlines())
            assert any(line.startswith("+") for line in row["diff"].splitlines())
    sizes = {row["doc_id"]: row["minhash_cluster_size"] for row in pq.read_table(output / "documents").to_pylist()}
    assert {doc_id: size for doc_id, size in sizes.items() if size != 1} == dict.fromkeys(expected, 2)
    assert read_commit(output).parts("clusters")  # listed in the marker like the other tables
    one, _ = results[1]  # the same rows from one partition, but for the input's own directory

    def without_run(rows):
        return [{key: value for key, value in row.items() if key != "run"} for row in rows]
    assert without_run(_read(one / "clusters", CLUSTERS)) == without_run(_read(output / "clusters", CLUSTERS))


def test_the_report_shows_the_clusters_and_their_diffs_in_headless_chromium(runs, tmp_path):
    from PIL import Image
    from report_page import Page, chromium, section_page

    from thresher.pipeline.report import write_report

    results, _, planted, _ = runs
    run = tmp_path / "run"
    run.mkdir()
    (run / "rules").symlink_to(results[4][0], target_is_directory=True)
    report = write_report(run)["duplicate_clusters"]
    assert report["clusters"] == len(planted) and report["sizes"] == {"2": len(planted)}
    page = run / "report.html"
    dom = Page(chromium(page.as_uri(), tmp_path / "dom", "--dump-dom"))  # the document Chromium built
    assert "Duplicate clusters" in dom.sections
    assert sorted(row[0] for row in dom.table_with("members (kept first)")[1:]) == sorted(min(pair) for pair in planted.items())
    text = "".join(dom.text)
    sample = report["sample"][0]["members"][1]
    assert sample["diff"].splitlines()[1] in text  # a removed line of a member's diff, as text
    section = tmp_path / "clusters.html"
    section.write_text(section_page(page.read_text(encoding="utf-8"), "duplicate-clusters"), encoding="utf-8")
    shot = tmp_path / "clusters.png"  # look at it: it stays in pytest's tmp directory
    chromium(section.as_uri(), tmp_path / "shot", f"--screenshot={shot}", "--window-size=1200,900")
    image = Image.open(shot).convert("L")
    rows_with_ink = sum(1 for y in range(image.height) if min(image.crop((0, y, image.width, y + 1)).getdata()) < 128)
    assert image.size == (1200, 900) and rows_with_ink > 200, rows_with_ink


# --- two dumps in sequence: the second deduplicated against the first run's output ------------------------

DUMP_FOOTER = "Follow our newsroom on social media for the latest headlines every day"
OLD_FETCH, NEW_FETCH = "2024-01-10T08:00:00Z", "2024-03-05T08:00:00Z"
REPEATS = 4  # of the first dump's pages, per kind of repeat in the second


def _dump_rows(pages):
    """PREPARED rows of (name, url, fetch_time, text) pages, each doc_id a hash of its name (as random as a crawl's)."""
    return [{"doc_id": _doc_id(name), "url": url, "domain": url.split("/")[2].lower(), "warc_path": f"{name.split('-')[0]}.warc.gz",
             "warc_record_id": f"<urn:uuid:{name}>", "fetch_time": fetched, "text": text, "lang": "en", "lang_score": 0.99,
             "md5": hashlib.md5(text.encode()).hexdigest()} for name, url, fetched, text in pages]


def _write_documents(rows, directory, files: int = 1):
    table = pa.Table.from_pylist(rows, schema=PREPARED)
    (directory / "documents").mkdir(parents=True)
    step = -(-len(table) // files)
    for part in range(files):
        pq.write_table(table.slice(part * step, step), directory / "documents" / f"part-{part}.parquet")
    (directory / COMMITTED_MARKER).write_text("{}")
    return directory


def _two_dumps(shared_data):
    """Dump 1: 30 pages of the shared crawl (their main text, extraction/ground-truth.json). Dump 2, fetched later:
    14 new pages, and of dump 1's pages REPEATS exact copies at changed URLs, REPEATS edited copies (~3% of the
    words) at changed URLs and REPEATS edited copies at the same URL written another way; two new pages repeat two
    others' URLs (one a day later, one with an unparsable WARC-Date). DUMP_FOOTER ends 2 pages of dump 1 and 3 new pages of dump 2."""
    truth = json.loads((shared_data / "extraction/ground-truth.json").read_text(encoding="utf-8"))["scrapinghub"]
    config = load_config()
    filters = build_filters(config.rules, load_resources(config.rules, config.resolve_path))
    pages = [(url, entry["articleBody"]) for url, entry in sorted(truth.items())
             if 300 < len(entry["articleBody"].split()) < 3000 and first_drop(filters, DocumentView(entry["articleBody"], "en")) is None]
    old, new = pages[:30], pages[30:44]
    assert len(new) == 14
    first = [(f"one-{i}", url, OLD_FETCH, text + ("\n" + DUMP_FOOTER if i < 2 else "")) for i, (url, text) in enumerate(old)]
    second = [(f"two-{i}", url, NEW_FETCH, text + ("\n" + DUMP_FOOTER if i < 3 else "")) for i, (url, text) in enumerate(new[:12])]
    # The same URL as two-11 written another way, fetched a day later, with another text: the newer fetch is kept.
    second.append(("two-later", new[11][0] + "#top", "2024-03-06T08:00:00Z", new[12][1]))
    # two-9's URL again, with a WARC-Date that does not parse (as real WARCs have): the dated fetch is kept.
    second.append(("two-undated", new[9][0], "2019-03-65T00:00:00Z", new[13][1]))
    for i in range(REPEATS):
        name, url, _, text = first[2 + i]
        second.append((f"two-exact-{i}", f"https://mirror.example.net/{name}", NEW_FETCH, text))
        name, url, _, text = first[2 + REPEATS + i]
        second.append((f"two-edited-{i}", f"https://mirror.example.net/{name}/amp", NEW_FETCH, _near_copy(text, i)))
        name, url, _, text = first[2 + 2 * REPEATS + i]
        moved = url.replace("http://", "HTTP://", 1).replace("https://", "HTTPS://", 1) + "?utm_source=newsletter#comments"
        second.append((f"two-refetched-{i}", moved, NEW_FETCH, _near_copy(text, 10 + i)))
    return _dump_rows(first), _dump_rows(second)


@pytest.fixture(scope="module")
def dumps(spark, shared_data, tmp_path_factory):
    """Rules over dump 1; over dump 2 with dump 1's run as reference (at 4 and 1 shuffle partitions); and one
    single run over both dumps."""
    first, second = _two_dumps(shared_data)
    base = tmp_path_factory.mktemp("dumps")
    overrides = {"rules.line_dedup_max_occurrences": MAX_OCCURRENCES}
    runs = {"first": run_rules(spark, str(_write_documents(first, base / "in-first")), str(base / "first"),
                               load_config(overrides=overrides))}
    second_input = _write_documents(second, base / "in-second", files=3)
    with_reference = load_config(overrides={**overrides, "rules.dedup.references": [str(base / "first")]})
    previous = spark.conf.get("spark.sql.shuffle.partitions")
    try:
        for partitions in (4, 1):
            spark.conf.set("spark.sql.shuffle.partitions", str(partitions))
            runs[f"second-{partitions}"] = run_rules(spark, str(second_input), str(base / f"second-{partitions}"), with_reference)
    finally:
        spark.conf.set("spark.sql.shuffle.partitions", previous)
    runs["both"] = run_rules(spark, str(_write_documents(first + second, base / "in-both", files=2)), str(base / "both"),
                             load_config(overrides=overrides))
    return base, runs, first, second


def _documents(directory):
    return {row["doc_id"]: row for row in pq.read_table(directory / "documents").to_pylist()}


def _shingles(text):
    from thresher.pipeline.rules.minhash import shingles, tokenize

    return set(shingles(tokenize(text, "en"), 5))


def test_the_second_dump_keeps_no_duplicate_of_the_first_run_s_documents_and_counts_each_kind(dumps):
    base, runs, first, second = dumps
    kept_first, kept_second = _documents(base / "first"), _documents(base / "second-4")
    by_rule = runs["second-4"]["rejects_by_rule"]
    assert by_rule["exact_duplicate_of_reference"] == REPEATS
    assert by_rule["fuzzy_duplicate_of_reference"] == REPEATS
    assert by_rule["url_duplicate"] == REPEATS + 2  # the refetched pages, and one of each two new pages sharing a URL
    assert "line_dedup" not in by_rule and "minhash_duplicate" not in by_rule
    rejects = pq.read_table(base / "second-4" / "rejects").to_pylist()
    # 2 footers kept by the first run + 3 here, limit 3: the last 2 here go (and some of the crawl's own repeated lines)
    footers_removed = [r for r in rejects if r["rule"] == "line_duplicate_of_reference" and r["content"] == DUMP_FOOTER]
    assert len(footers_removed) == 2 and by_rule["line_duplicate_of_reference"] >= 2
    against_first = [r for r in rejects if r["rule"] in ("exact_duplicate_of_reference", "fuzzy_duplicate_of_reference")
                     or (r["rule"] == "url_duplicate" and "in this run" not in r["detail"])]
    assert len(against_first) == 3 * REPEATS
    for reject in against_first:  # each names the first run's kept copy and the run
        kept_id, run = reject["detail"].removeprefix("kept ").split(" in ")
        assert kept_id in kept_first and run == str(base / "first")
    assert {r["doc_id"]: r["detail"] for r in rejects if r["rule"] == "url_duplicate" and "in this run" in r["detail"]} == {
        _doc_id("two-11"): f"kept {_doc_id('two-later')} in this run",  # the newer fetch
        _doc_id("two-undated"): f"kept {_doc_id('two-9')} in this run"}  # a date, over none that parses
    from thresher.pipeline.urls import normalized_url

    assert not {row["md5"] for row in kept_second.values()} & {row["md5"] for row in kept_first.values()}
    assert not {normalized_url(r["url"]) for r in kept_second.values()} & {normalized_url(r["url"]) for r in kept_first.values()}
    for row in kept_second.values():  # fuzzy: no pair near the LSH threshold (~0.74); the edited copies are ~0.85
        words = _shingles(row["text"])
        assert max(len(words & _shingles(old["text"])) / len(words | _shingles(old["text"])) for old in kept_first.values()) < 0.5
    footers = [doc_id for doc_id, row in kept_second.items() if DUMP_FOOTER in row["text"]]
    assert len(footers) == 1 and sum(DUMP_FOOTER in row["text"] for row in kept_first.values()) == 2


def test_the_second_run_equals_a_single_run_over_both_dumps_minus_the_first_run_s_documents(dumps):
    """The relation: second = (single ∩ dump 2) − displaced, where displaced are the dump 2 documents the single run
    kept in place of a document the first run kept (the single run's reject of that document names them: it kept the
    newer fetch of a URL, or the smaller doc_id of a MinHash cluster). Texts are equal but for the edge lines line
    dedup removed, where only which copies of a line are kept differs: the first and second runs together keep no
    more copies of such a line than the limit, and of the footer the dumps share, as many as the single run.
    (It holds when no duplicate cluster chains through a document the first run dropped, as in these dumps.)"""
    base, runs, first, second = dumps
    single, kept_first, kept_second = _documents(base / "both"), _documents(base / "first"), _documents(base / "second-4")
    second_ids = {row["doc_id"] for row in second}
    single_rejects = pq.read_table(base / "both" / "rejects").to_pylist()
    displaced = {r["detail"].split()[1] for r in single_rejects
                 if r["doc_id"] in kept_first and r["rule"] in ("url_duplicate", "minhash_duplicate")}
    assert displaced and displaced <= second_ids  # this crawl's doc_ids put some dump 2 copies first
    assert set(kept_second) == {doc_id for doc_id in single if doc_id in second_ids} - displaced
    line_removed = {r["content"] for directory in ("both", "second-4", "first")
                    for r in pq.read_table(base / directory / "rejects").to_pylist() if r["rule"].startswith("line_")}
    assert DUMP_FOOTER in line_removed

    def without_removed_lines(text):
        return [line for line in text.split("\n") if line not in line_removed]

    for doc_id, row in kept_second.items():
        assert without_removed_lines(row["text"]) == without_removed_lines(single[doc_id]["text"])
    both_runs = [*kept_first.values(), *kept_second.values()]
    for line in line_removed:
        assert sum(row["text"].split("\n").count(line) for row in both_runs) <= MAX_OCCURRENCES
    footers_single = sum(DUMP_FOOTER in row["text"] for row in single.values())
    assert footers_single == MAX_OCCURRENCES == sum(DUMP_FOOTER in row["text"] for row in both_runs)


def test_the_second_run_is_the_same_whatever_the_partitioning(dumps):
    base, runs, *_ = dumps
    assert _read(base / "second-4" / "documents", RULES) == _read(base / "second-1" / "documents", RULES)
    assert _read(base / "second-4" / "rejects", REJECT) == _read(base / "second-1" / "rejects", REJECT)
    assert _comparable(runs["second-4"]) == _comparable(runs["second-1"])


def test_each_run_commits_the_keys_a_later_run_reads_instead_of_hashing(dumps):
    base, runs, *_ = dumps
    from thresher.pipeline.stagedir import read_commit

    commit = read_commit(base / "first")
    kept = set(_documents(base / "first"))
    docs = pq.read_table(base / "first" / DEDUP_DOCS_TABLE).to_pylist()
    assert {row["doc_id"] for row in docs} == kept and all(row["url_key"] and row["md5"] for row in docs)
    bands = pq.read_table(base / "first" / DEDUP_BANDS_TABLE)
    assert bands.num_rows == len(kept) * load_config().rules.minhash_bands
    from thresher.pipeline.rules.line_dedup import edge_lines

    counts = sorted(row["count"] for row in pq.read_table(base / "first" / DEDUP_LINES_TABLE).to_pylist())
    occurrences = {}
    for row in _documents(base / "first").values():  # the first run removed no line: its texts are as read
        for _, key, _ in edge_lines(row["text"], load_config().rules.line_dedup_edge_lines):
            occurrences[key] = occurrences.get(key, 0) + 1
    assert counts == sorted(occurrences.values()) and occurrences[DUMP_FOOTER] == 2
    for table in DEDUP_TABLES:
        assert commit.schema(table) is not None and commit.parts(table)
    assert runs["first"]["details"]["dedup_keys"]["minhash_bands"] == load_config().rules.minhash_bands


def test_a_reference_that_is_no_committed_rules_stage_is_one_line_before_spark(tmp_path, capsys):
    from thresher.jobs import cli

    _write_documents(_dump_rows([("one-0", "https://example.org/a", OLD_FETCH, "some text here")]), tmp_path / "in")
    (tmp_path / "config.yaml").write_text(f"rules:\n  dedup:\n    references: [{tmp_path / 'in'}]\n")
    code = cli.main(["rules", str(tmp_path / "in"), "--output", str(tmp_path / "out"), "--config", str(tmp_path / "config.yaml")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "rules.dedup.references[0]" in err[0]
    assert not (tmp_path / "out").exists()
