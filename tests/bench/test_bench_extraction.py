"""The extraction bench's paired bootstrap over pages, on hand-made pages and texts."""

from __future__ import annotations

from bench.bench_extraction import Page, paired_bootstrap


def dev_pages() -> list[Page]:
    pages = []
    for i in range(12):
        pages.append(Page(f"https://t.org/{i}", "trafilatura", {"with": [f"kept fact {i}"], "without": [f"menu {i}"]}, b"", ""))
        pages.append(Page(f"https://m.cn/{i}", "magic_html", {"content": f"正文内容第{i}段，讲河流。"}, b"", ""))
        pages.append(Page(f"https://s.com/{i}", "scrapinghub", {"articleBody": f"The article body number {i} tells a long story."}, b"", ""))
    return pages


def texts(pages: list[Page], clutter: bool) -> dict[str, str]:
    """Each page's ground truth as its text (trafilatura pages: the wanted snippet), with or without a
    menu line that holds the unwanted snippet."""
    out = {}
    for page in pages:
        number = page.url.rsplit("/", 1)[1]
        text = page.truth.get("content") or page.truth.get("articleBody") or f"kept fact {number}"
        out[page.url] = text + (f"\nmenu {number} Home News Login" if clutter else "")
    return out


def test_the_same_cleaning_differs_by_nothing_and_a_cleaner_one_wins_everywhere():
    pages = dev_pages()
    clean, cluttered = texts(pages, False), texts(pages, True)
    same = paired_bootstrap(pages, clean, clean, resamples=50)
    assert all(value == (0.0, 0.0, 0.0) for value in same.values())
    better = paired_bootstrap(pages, clean, cluttered, resamples=50)
    assert set(better) == {"trafilatura", "magic_html", "scrapinghub", "mean"}
    for delta, low, high in better.values():
        assert 0 < low <= delta <= high
    # the comparison is paired and seeded: the same call gives the same interval, the reverse its negative
    assert paired_bootstrap(pages, clean, cluttered, resamples=50) == better
    reverse = paired_bootstrap(pages, cluttered, clean, resamples=50)
    assert all(abs(reverse[key][0] + better[key][0]) < 1e-12 for key in better)
