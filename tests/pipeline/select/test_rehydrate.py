"""select.rehydrate: cluster-size ranges checked, and the copies each size gets."""

from __future__ import annotations

import pytest

from thresher.pipeline.config import ConfigError, load_config
from thresher.pipeline.select.rehydrate import FINEWEB2_REHYDRATE, parse_rehydrate, range_of


def test_fineweb2_s_weights_give_its_copies_per_cluster_size():
    ranges = parse_rehydrate(FINEWEB2_REHYDRATE)
    copies = {size: range_of(size, ranges).copies for size in (1, 2, 3, 4, 5, 99, 100, 999, 1000, 50_000)}
    assert copies == {1: 1, 2: 2, 3: 3, 4: 3, 5: 5, 99: 5, 100: 8, 999: 8, 1000: 1, 50_000: 1}
    assert range_of(None, ranges).name == "1" and range_of(0, ranges).copies == 1  # no cluster size: a cluster of one
    assert [r.name for r in ranges] == ["1", "2", "3", "4", "5-99", "100-999", "1000+"]
    assert parse_rehydrate({}) == ()


@pytest.mark.parametrize(("mapping", "message"), [
    ({"1": 1, "3+": 2}, r"select.rehydrate: the ranges must cover every cluster size once, from 1 up; '3\+' does not follow on from 2$"),
    ({"1": 1, "2-9": 2}, r"select.rehydrate: the last range must be open \(\"10\+\"\): clusters of 10 or more would get no copy count$"),
    ({"1+": 1, "5": 2}, r"'5' does not follow on after the open range$"),
    ({"1": 1, "2-x": 2}, r"select.rehydrate: '2-x' is not a cluster-size range: write N, N-M or N\+"),
    ({"1": 1, "5-2": 2}, r"'5-2' is an empty range"),
    ({"1": 0, "2+": 2}, r"select.rehydrate.1: 0 copies: give a whole number of at least 1$"),
])
def test_a_bad_range_or_copy_count_is_one_line_naming_it(mapping, message):
    with pytest.raises(ConfigError, match=message):
        parse_rehydrate(mapping)


def test_the_config_takes_fineweb2_s_setting_and_is_off_by_default():
    assert load_config().select.rehydrate == {}
    assert load_config(None, {"select.rehydrate": FINEWEB2_REHYDRATE}).select.rehydrate == FINEWEB2_REHYDRATE
