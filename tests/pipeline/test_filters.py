import itertools
import time

from thresher.pipeline.filters import (
    DocumentFilter,
    Drop,
    FilterStats,
    first_drop,
    merge_rule_stats,
    rule_stats_from_json,
    rule_stats_report,
    rule_stats_to_json,
    take_stats,
)
from thresher.pipeline.prepare.urlfilter import DomainBlocklistFilter


class ShortText(DocumentFilter):
    name = "short"

    def __init__(self, minimum):
        super().__init__()
        self.minimum = minimum

    def judge(self, doc):
        if len(doc["text"]) < self.minimum:
            return Drop("short_text", str(len(doc["text"])))
        return None


class Sleepy(DocumentFilter):
    name = "sleepy"
    NAP_S = 0.02

    def judge(self, doc):
        time.sleep(self.NAP_S)
        return Drop("tired") if doc["text"] == "tired" else None


class Boom(DocumentFilter):
    def judge(self, doc):
        raise ValueError("bad doc")


def test_base_class_counts_seen_and_drops_exactly():
    rule = ShortText(5)
    verdicts = [rule({"text": t}) for t in ["abc", "abcdef", "", "abcdefgh"]]
    assert verdicts[0] == Drop("short_text", "3") and verdicts[1] is None
    assert (rule.stats.seen, rule.stats.dropped) == (4, 2)


def test_base_class_times_each_call_in_wall_clock():
    rule = Sleepy()
    for text in ("tired", "awake", "tired"):
        rule({"text": text})
    assert (rule.stats.seen, rule.stats.dropped) == (3, 2)
    assert rule.stats.seconds >= 3 * Sleepy.NAP_S  # wall-clock: a step that waits is charged for it
    assert rule.stats.seconds < 3 * Sleepy.NAP_S + 1.0


def test_exceptions_propagate_but_are_still_counted_as_seen():
    rule = Boom()
    try:
        rule({"text": "x"})
    except ValueError:
        pass
    assert rule.stats.seen == 1 and not rule.stats.dropped


def test_first_drop_stops_at_the_first_rule_that_drops():
    never_reached = Boom()
    chain = [ShortText(2), ShortText(10), never_reached]
    assert first_drop(chain, {"text": "hello"}) == Drop("short_text", "5")
    assert never_reached.stats.seen == 0
    assert first_drop(chain[:2], {"text": "long enough text"}) is None
    assert [(f.stats.seen, f.stats.dropped) for f in chain] == [(2, 0), (2, 1), (0, 0)]


def test_take_stats_returns_the_counts_in_filter_order_and_resets_them():
    chain = [ShortText(2), DomainBlocklistFilter("adult", ["bad.example"]), DomainBlocklistFilter("gambling", [])]
    for text in ("a", "abc"):
        first_drop(chain, {"text": text, "url": "https://bad.example/x"})
    stats = take_stats(chain)
    assert list(stats) == ["short", "url_domain_blocklist:adult", "url_domain_blocklist:gambling"]
    assert [(s.seen, s.dropped) for s in stats.values()] == [(2, 1), (1, 1), (0, 0)]
    assert all(f.stats == FilterStats() for f in chain)
    assert [(s.seen, s.dropped) for s in take_stats(chain).values()] == [(0, 0)] * 3


def _task(seen, dropped, nanoseconds):
    return {"a": FilterStats(seen, dropped, nanoseconds), "b": FilterStats(seen - dropped, 0, nanoseconds // 3)}


def test_merge_is_associative_and_independent_of_task_order():
    tasks = [_task(10, 3, 1_000_000_007), _task(4, 4, 33), _task(0, 0, 0), _task(7, 1, 123_456_789)]
    whole = merge_rule_stats(tasks)
    assert whole == {"a": FilterStats(21, 8, 1_123_456_829), "b": FilterStats(13, 0, 1_000_000_007 // 3 + 11 + 41_152_263)}
    for order in itertools.permutations(tasks):
        assert merge_rule_stats(order) == whole and list(merge_rule_stats(order)) == ["a", "b"]
    left = merge_rule_stats([merge_rule_stats(tasks[:2]), merge_rule_stats(tasks[2:])])
    right = merge_rule_stats([tasks[0], merge_rule_stats([tasks[1], merge_rule_stats(tasks[2:])])])
    assert left == right == whole
    assert merge_rule_stats([]) == {}


def test_merge_keeps_the_pipeline_order_of_the_rules():
    first = {"url_parse": FilterStats(1), "extract": FilterStats(1), "langid": FilterStats(1)}
    assert list(merge_rule_stats([first, {"extract": FilterStats(2)}])) == ["url_parse", "extract", "langid"]


def test_task_stats_travel_exactly_and_are_reported_in_seconds():
    stats = {"z_last_alphabetically": FilterStats(5, 2, 1_500_000_000), "a": FilterStats(3, 0, 1)}
    assert rule_stats_from_json(rule_stats_to_json(stats)) == stats
    report = rule_stats_report(stats)
    assert list(report) == ["z_last_alphabetically", "a"]
    assert report["z_last_alphabetically"] == {"seen": 5, "dropped": 2, "seconds": 1.5}


class Picky(DocumentFilter):
    """Skips its check on documents without a language, and says so."""

    name = "picky"

    def judge(self, doc):
        if not doc.get("lang"):
            self.skip("words", "no_lang")
        return None


def test_a_skipped_check_is_counted_with_its_reason_right_after_its_filter():
    filters = [Picky(), ShortText(3)]
    for doc in ({"text": "long enough", "lang": "de"}, {"text": "long enough"}, {"text": "also long", "lang": None}):
        first_drop(filters, doc)
    stats = take_stats(filters)
    assert list(stats) == ["picky", "picky:words:skipped:no_lang", "short"]
    assert stats["picky:words:skipped:no_lang"] == FilterStats(seen=2, dropped=0, nanoseconds=0)
    assert "picky:words:skipped:no_lang" not in take_stats(filters)  # reset
    # A task that met the skip after others that did not: the merged entry still follows its filter.
    zeros = {"picky": FilterStats(), "short": FilterStats()}
    merged = merge_rule_stats([zeros, {**zeros}, stats])
    assert list(merged) == ["picky", "picky:words:skipped:no_lang", "short"]
    assert set(rule_stats_report(merged)["picky:words:skipped:no_lang"]) == {"seen", "dropped", "seconds"}
