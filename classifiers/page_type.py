"""Page type: is this a text-rich detail page (an article), or a forum, tool, video, audio, adult,
listing or product page? Stage 3 select keeps the types of config `select.keep.page_type.label_in`.

The model sees `page_type_input(url, text)`: URL words marked with a `url_` prefix, then the start of
the text. `weak_page_type` is the transparent rule set that labels a crawl for the bootstrap model:
URL patterns first (they are the strongest, cheapest signal), then text features.
"""

from __future__ import annotations

import re
from urllib.parse import urlsplit

from thresher.pipeline.lexicon import ends_sentence, estimated_words

PAGE_TYPES = ("article", "forum", "tool", "video", "audio", "adult", "listing", "product")
INPUT_TEXT_CHARS = 3000  # the start of the page carries its type; the rest adds cost, not signal

_URL_WORD = re.compile(r"[a-z]+|\d+")


def url_words(url: str) -> str:
    """The host and path of `url` as `url_`-prefixed words (digits collapsed to `url_0`)."""
    try:
        parts = urlsplit(url or "")
    except ValueError:
        return ""
    words = _URL_WORD.findall(f"{parts.netloc} {parts.path} {parts.query}".lower())
    return " ".join("url_0" if w.isdigit() else f"url_{w}" for w in words)


def page_type_input(url: str, text: str) -> str:
    return f"{url_words(url)} \n {(text or '')[:INPUT_TEXT_CHARS]}"


# (page type, rule name, URL regex), checked in order; the first match labels the page.
URL_RULES: list[tuple[str, str, re.Pattern]] = [
    (t, name, re.compile(pattern, re.IGNORECASE))
    for t, name, pattern in [
        ("adult", "url_adult", r"porn|xxx|hentai|\bsex|adult|nsfw|camgirl|escort|色情|成人"),
        ("video", "url_video", r"youtube\.com/watch|youtu\.be/|vimeo\.com/\d|bilibili\.com/video|v\.qq\.com|youku\.com|iqiyi\.com|"
         r"douyin\.com/video|/videos?/|/watch[/?]|/tv/|/vod/|/movie/\d|/play/\d"),
        ("audio", "url_audio", r"soundcloud\.com|music\.163\.com|spotify\.com|ximalaya\.com|podcasts?[./]|/music/|/songs?/|"
         r"/audio/|/radio/|/episodes?/|\.mp3\b"),
        ("product", "url_product", r"item\.jd\.com|detail\.tmall\.com|item\.taobao\.com|amazon\.[a-z.]+/.*(/dp/|/gp/product)|"
         r"/products?/|/item/\d|/goods/|/shop/|/store/|/sku/|/dp/|/cart\b"),
        ("tool", "url_tool", r"maps?\.(google|baidu|amap|bing)|/maps?/|translate\.|/translat|calculator|converter|/tools?/|"
         r"weather\.|/weather/|tianqi|/search[/?]|/query[/?]|/lookup|8684\.cn|/bus/|/transit/|/timetable"),
        ("forum", "url_forum", r"bbs\.|/bbs/|forums?[./]|/thread[-/]|showthread|viewtopic|/topic/\d|/t/\d|tieba\.baidu\.com|"
         r"zhihu\.com/question|reddit\.com/r/|stackoverflow\.com/questions|stackexchange\.com/questions|/discussions?/|/community/"),
        ("listing", "url_listing", r"/tags?/|/category/|/categories/|/archives?/|/list[_/-]|/index\.(html?|php)$|/page/\d+/?$|"
         r"/sitemap|/directory/"),
    ]
]

_FORUM_TEXT = re.compile(r"回复|楼主|沙发|板凳|发表于|\d+\s*楼|reply|replies|posted by|quote|joined:|member since|posts:", re.IGNORECASE)
_PRODUCT_TEXT = re.compile(r"add to (cart|basket)|buy now|in stock|加入购物车|立即购买|库存|包邮|[$€£¥￥]\s?\d+(\.\d\d)?", re.IGNORECASE)
_VIDEO_TEXT = re.compile(r"播放量|次播放|subscribe|views\b|弹幕|watch later|full episode", re.IGNORECASE)
_ADULT_TEXT = re.compile(r"\bporn|\bxxx\b|\bnude|\bsex videos?|色情|成人视频|裸聊|约炮", re.IGNORECASE)


def text_features(text: str) -> dict[str, float]:
    lines = [line.strip() for line in (text or "").split("\n") if line.strip()]
    if not lines:
        return {"lines": 0, "short_line_share": 1.0, "sentence_line_share": 0.0, "long_lines": 0, "chars": 0}
    short = sum(estimated_words(line) < 5 for line in lines)
    sentences = sum(ends_sentence(line) for line in lines)
    long_lines = sum(estimated_words(line) >= 20 for line in lines)
    return {
        "lines": len(lines),
        "short_line_share": short / len(lines),
        "sentence_line_share": sentences / len(lines),
        "long_lines": long_lines,
        "chars": sum(map(len, lines)),
    }


def weak_page_type(url: str, text: str) -> tuple[str, str] | None:
    """(page type, rule) from transparent rules, or None when no rule is confident."""
    for page_type, rule, pattern in URL_RULES:
        if pattern.search(url or ""):
            return page_type, rule
    text = text or ""
    if len(_ADULT_TEXT.findall(text)) >= 3:
        return "adult", "text_adult_words"
    if len(_FORUM_TEXT.findall(text)) >= 4:
        return "forum", "text_forum_markers"
    if len(_PRODUCT_TEXT.findall(text)) >= 3:
        return "product", "text_shop_markers"
    if len(_VIDEO_TEXT.findall(text)) >= 3 and len(text) < 2000:
        return "video", "text_video_markers"
    features = text_features(text)
    if features["lines"] >= 8 and features["short_line_share"] >= 0.7 and features["sentence_line_share"] < 0.2:
        return "listing", "text_mostly_short_lines"
    if features["long_lines"] >= 3 and features["sentence_line_share"] >= 0.4 and features["chars"] >= 500:
        return "article", "text_prose_paragraphs"
    return None
