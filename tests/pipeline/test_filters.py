from pipeline.filters import DocumentFilter, Drop, FilterStats, first_drop


class ShortText(DocumentFilter):
    name = "short"

    def __init__(self, minimum):
        super().__init__()
        self.minimum = minimum

    def judge(self, doc):
        if len(doc["text"]) < self.minimum:
            return Drop("short_text", str(len(doc["text"])))
        return None


class Boom(DocumentFilter):
    def judge(self, doc):
        raise ValueError("bad doc")


def test_base_class_counts_seen_and_drops_by_rule():
    rule = ShortText(5)
    verdicts = [rule({"text": t}) for t in ["abc", "abcdef", "", "abcdefgh"]]
    assert verdicts[0] == Drop("short_text", "3") and verdicts[1] is None
    assert rule.stats.seen == 4
    assert rule.stats.dropped == {"short_text": 2}
    assert rule.stats.seconds >= 0


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


def test_stats_merge_adds_up():
    a, b = FilterStats(seen=2, seconds=1.0), FilterStats(seen=3, seconds=0.5)
    a.dropped["x"] += 1
    b.dropped.update({"x": 2, "y": 1})
    a.merge(b)
    assert (a.seen, a.seconds, dict(a.dropped)) == (5, 1.5, {"x": 3, "y": 1})
