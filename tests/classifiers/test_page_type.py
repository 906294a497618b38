"""Page-type model input and the transparent weak-label rules."""

from __future__ import annotations

from thresher.classifiers.page_type import page_type_input, text_features, url_words, weak_page_type

PROSE = "\n".join(
    ["The council met on Tuesday to discuss the new library, which will open next spring in the old market hall."] * 6
)


def test_url_words_mark_host_and_path():
    assert url_words("https://bbs.example.com/thread-12.html?id=3") == "url_bbs url_example url_com url_thread url_0 url_html url_id url_0"
    assert url_words("") == "" and url_words(None) == ""
    assert page_type_input("https://a.com/x", "body").endswith("body")


def test_url_rules_come_first():
    assert weak_page_type("https://www.youtube.com/watch?v=abc", PROSE) == ("video", "url_video")
    assert weak_page_type("https://bbs.example.cn/thread-1-1.html", PROSE) == ("forum", "url_forum")
    assert weak_page_type("https://item.jd.com/100012.html", PROSE) == ("product", "url_product")
    assert weak_page_type("https://map.baidu.com/search", PROSE)[0] == "tool"
    assert weak_page_type("https://music.163.com/song?id=1", PROSE)[0] == "audio"
    assert weak_page_type("https://blog.example.com/tag/python/", PROSE)[0] == "listing"


def test_text_rules_when_the_url_says_nothing():
    assert weak_page_type("https://example.com/a/1.html", PROSE) == ("article", "text_prose_paragraphs")
    forum = "楼主 说得好\n回复 2楼\n回复 3楼\n发表于 2020-01-01\n" + PROSE
    assert weak_page_type("https://example.com/a/2.html", forum) == ("forum", "text_forum_markers")
    shop = "Add to cart\n$19.99\nIn stock\nFree returns"
    assert weak_page_type("https://example.com/a/3.html", shop) == ("product", "text_shop_markers")
    menu = "\n".join(["Home", "News", "Sports", "Weather", "Contact", "About us", "Jobs", "Login"])
    assert weak_page_type("https://example.com/", menu) == ("listing", "text_mostly_short_lines")
    assert weak_page_type("https://example.com/a/4.html", "Just one short line") is None


def test_text_features_count_chinese_by_characters():
    features = text_features("这是一个很长的中文句子，用来测试按字符计算的长度规则是否有效。\n短")
    assert features["lines"] == 2 and features["long_lines"] == 0 and features["sentence_line_share"] == 0.5
