
import os

import pytest

from thresher.pipeline.prepare.extract import (
    KILL_GRACE_S,
    PageExtractor,
    binary_kind,
    decode_html,
    extract_page,
    extract_text,
    meta_charset,
    normalize_encoding,
    parse_hazard,
)

CHINESE = "茶叶的历史可以追溯到几千年前，人们在山间种植茶树，采摘嫩叶，再经过杀青、揉捻和干燥制成成品。" * 8
ARTICLE = (
    "<html><head><title>Tea</title>{meta}</head><body><nav><a href='/'>Home</a></nav><article><h1>Tea</h1>"
    "<p>{text}</p><p>{text}</p></article><footer>Contact</footer></body></html>"
)


def page(text, meta=""):
    return ARTICLE.format(text=text, meta=meta)


def test_encoding_names_widen_to_supersets():
    assert normalize_encoding("GB2312") == "gb18030"
    assert normalize_encoding("gbk") == "gb18030"
    assert normalize_encoding("ISO-8859-1") == "cp1252"
    assert normalize_encoding("no-such-charset") == ""


def test_meta_charset_forms():
    assert meta_charset(b'<meta charset="GBK">') == "GBK"
    assert meta_charset(b'<meta http-equiv="Content-Type" content="text/html; charset=gb2312" />') == "gb2312"
    assert meta_charset(b"<p>charset=utf-8 in text is not a meta</p>") == ""


def test_http_charset_decodes():
    decoded = decode_html(page(CHINESE).encode("gb2312"), "gb2312")
    assert decoded.source == "http" and CHINESE in decoded.html


def test_meta_charset_only():
    decoded = decode_html(page(CHINESE, '<meta charset="gbk">').encode("gbk"), "")
    assert decoded.source == "meta" and decoded.encoding == "gb18030" and CHINESE in decoded.html


def test_gbk_extension_characters_need_gb18030():
    text = "镕基" + CHINESE  # 镕 is in GBK but not in GB2312
    decoded = decode_html(page(text).encode("gbk"), "gb2312")
    assert text in decoded.html and "\ufffd" not in decoded.html


def test_wrong_declared_charset_falls_back_to_detection():
    decoded = decode_html(page(CHINESE).encode("gbk"), "utf-8")
    assert CHINESE in decoded.html and decoded.source == "detected"
    # Declared latin-1 never fails to decode, but a Chinese page must not come out as mojibake.
    decoded = decode_html(page(CHINESE, "<meta charset='iso-8859-1'>").encode("gbk"), "iso-8859-1")
    assert CHINESE in decoded.html


def test_utf8_wins_over_a_wrong_single_byte_declaration():
    decoded = decode_html(page("Größe café naïve").encode("utf-8"), "iso-8859-1")
    assert "Größe café naïve" in decoded.html and decoded.source == "utf-8"


def test_real_single_byte_pages_keep_their_charset():
    russian = "Стратегия пожарной безопасности и охрана труда на предприятии. " * 10
    assert russian in decode_html(page(russian).encode("cp1251"), "windows-1251").html
    german = "Die Stadtbibliothek hat ihre neue Lesehalle eröffnet, die Größe ist übermäßig. " * 10
    assert german in decode_html(page(german).encode("latin-1"), "iso-8859-1").html


def test_bom():
    assert decode_html(b"\xef\xbb\xbf" + page("hello").encode()).source == "bom"


def test_extract_page_main_text():
    text, drop = extract_page(page(CHINESE, '<meta charset="gbk">').encode("gbk"), "", "https://e.cn/a", 10)
    assert drop is None and CHINESE[:40] in text and "Home" not in text


def test_empty_extraction_is_a_drop():
    html = b"<html><head><script>var a = 1;</script></head><body><div id='app'></div></body></html>"
    text, drop = extract_page(html, "utf-8", "", 10)
    assert text == "" and drop.rule == "empty_extraction"


def test_min_text_chars():
    _, drop = extract_page(page("Short text here.").encode(), "utf-8", "", 10, min_chars=10_000)
    assert drop.rule == "empty_extraction"


def test_time_is_bounded():
    big = page(" ".join(f"Sentence number {i} of a very long page about tea." for i in range(20_000)))
    _, drop = extract_page(big.encode(), "utf-8", "", timeout_s=0.01)
    assert drop.rule == "extract_timeout"


@pytest.mark.parametrize("depth", [1_000, 200_000])
def test_deeply_nested_html_does_not_crash(depth):
    html = "<html><body>" + "<div>" * depth + "<p>" + "deep text " * 50 + "</p>" + "</div>" * depth + "</body></html>"
    text, drop = extract_page(html.encode(), "utf-8", "", 30)
    assert (drop is None) != (text == "")


def test_extract_text_without_timeout_outside_main_thread():
    import threading

    out = []
    thread = threading.Thread(target=lambda: out.append(extract_text(page(CHINESE), "", timeout_s=5)))
    thread.start()
    thread.join()
    assert CHINESE[:20] in out[0]


def test_a_hanging_extractor_becomes_a_timeout_and_the_next_page_still_extracts(monkeypatch):
    import time

    import trafilatura

    def hang(*args, **kwargs):
        while True:  # a page that never finishes, in pure Python as trafilatura's own loops are
            time.sleep(0.01)

    monkeypatch.setattr(trafilatura, "extract", hang)
    started = time.monotonic()
    text, drop = extract_page(page("A page that hangs the extractor.").encode(), "utf-8", "", timeout_s=0.3)
    assert text == "" and drop.rule == "extract_timeout" and time.monotonic() - started < 3
    monkeypatch.undo()
    text, drop = extract_page(page(CHINESE).encode(), "utf-8", "", timeout_s=10)
    assert drop is None and CHINESE[:20] in text


def test_an_extractor_exception_is_an_extract_error(monkeypatch):
    import trafilatura

    def broken(*args, **kwargs):
        raise ValueError("lxml said no")

    monkeypatch.setattr(trafilatura, "extract", broken)
    text, drop = extract_page(page(CHINESE).encode(), "utf-8", "", timeout_s=10)
    assert text == "" and drop.rule == "extract_error" and "ValueError: lxml said no" in drop.detail


def test_binary_payloads_are_recognised_and_text_is_not():
    assert binary_kind(b"%PDF-1.7\n%\xe2\xe3") == "pdf"
    assert binary_kind(b"\x89PNG\r\n\x1a\n\x00\x00") == "png"
    assert binary_kind(b"\xff\xd8\xff\xe0\x00\x10JFIF") == "jpeg"
    assert binary_kind(bytes(range(256)) * 8) == "binary"
    assert binary_kind(page(CHINESE).encode("gbk")) == ""
    assert binary_kind(page("plain").encode("utf-16"), "") == ""  # BOM: NULs are text here
    assert binary_kind(page("plain").encode("utf-16-le"), "utf-16le") == ""
    assert binary_kind(b"\x1b$B" + "日本語".encode("iso2022_jp") + b"<p>text</p>" * 10) == ""


NOT_TEXT_CODECS = ["base64", "hex", "rot13", "zlib", "uu", "idna", "punycode", "undefined", "bz2", "quopri",
                   "unicode_escape", "utf-8\x00", "../../etc", "x" * 80]


@pytest.mark.parametrize("name", NOT_TEXT_CODECS)
def test_codecs_that_are_no_page_charset_are_not_encodings(name):
    assert normalize_encoding(name) == ""


@pytest.mark.parametrize("name", NOT_TEXT_CODECS)
def test_a_page_declaring_a_codec_that_is_no_charset_is_decoded_by_detection(name):
    # Not valid UTF-8, so the declared names are tried: in the HTTP header and in <meta>.
    latin = page("Caf\u00e9 cr\u00e8me br\u00fbl\u00e9e, the menu of the day. " * 20, f'<meta charset="{name}">')
    payload = latin.encode("cp1252")
    for http in (name, ""):
        decoded = decode_html(payload, http)
        assert decoded.source in ("detected", "fallback") and "menu of the day" in decoded.html
        text, drop = extract_page(payload, http, "", 10)
        assert drop is None and "menu of the day" in text


def test_a_decoding_failure_is_a_decode_error_drop(monkeypatch):
    import thresher.pipeline.prepare.extract as extract

    def broken(payload, http_charset=""):
        raise LookupError("unknown encoding: nonsense")

    monkeypatch.setattr(extract, "decode_html", broken)
    text, drop = extract_page(page(CHINESE).encode(), "utf-8", "", 10)
    assert text == "" and drop.rule == "decode_error" and "LookupError: unknown encoding" in drop.detail


def attribute_page(attributes: int) -> bytes:
    names = " ".join(f"a{i}=x" for i in range(attributes))
    return f"<html><body><div {names}>hello</div><article><p>{CHINESE}</p></article></body></html>".encode()


def test_a_tag_with_more_attributes_than_libxml2_handles_in_time_is_screened_out():
    import time

    assert parse_hazard(attribute_page(900).decode()) == ""
    started = time.monotonic()
    text, drop = extract_page(attribute_page(300_000), "utf-8", "", 30)
    assert text == "" and drop.rule == "extract_timeout" and "300000 attributes" in drop.detail
    assert time.monotonic() - started < 5  # unscreened, this page parses for more than 14 minutes


def test_an_attribute_screen_counts_attributes_not_words():
    words = "word " * 5000
    assert parse_hazard(f'<html><head><meta name="description" content="{words}"></head></html>') == ""
    assert parse_hazard(f"<html><body><img src=\"data:image/png;base64,{'A' * 100_000}\"></body></html>") == ""
    valueless = " ".join(f"b{i}" for i in range(2000))
    assert "2000 attributes" in parse_hazard(f"<p {valueless}>")


def test_the_extractor_process_gives_what_extract_page_gives():
    extractor = PageExtractor(timeout_s=10, min_chars=1)
    try:
        for payload, charset in ((page(CHINESE).encode("gbk"), "gbk"), (page("").encode(), "utf-8"),
                                 (attribute_page(2000), "utf-8"), (page(CHINESE).encode(), "base64")):
            text, drop, cpu = extractor(payload, charset, "")
            assert (text, drop) == extract_page(payload, charset, "", 10) and cpu >= 0
    finally:
        extractor.close()


def stall_uninterruptibly(*args, **kwargs):
    """Blocks SIGALRM, as libxml2 inside one C call in effect does, and never returns."""
    import signal
    import time

    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGALRM})
    while True:
        time.sleep(0.05)


def test_a_page_that_stalls_past_the_signal_is_killed_and_the_next_page_extracts(monkeypatch):
    import time

    import trafilatura

    monkeypatch.setattr(trafilatura, "extract", stall_uninterruptibly)
    extractor = PageExtractor(timeout_s=0.5, min_chars=1)  # forked after the patch: its child stalls
    try:
        started = time.monotonic()
        text, drop, _ = extractor(page("A page that stalls the parser.").encode(), "utf-8", "")
        elapsed = time.monotonic() - started
        assert text == "" and drop.rule == "extract_timeout" and "killed" in drop.detail
        assert elapsed < 0.5 + KILL_GRACE_S + 1.5
        monkeypatch.undo()  # the next child is forked from this process, unpatched now
        text, drop, _ = extractor(page(CHINESE).encode(), "utf-8", "")
        assert drop is None and CHINESE[:20] in text
    finally:
        extractor.close()


def test_a_crashing_extraction_process_fails_only_its_page(monkeypatch):
    import os

    import trafilatura

    monkeypatch.setattr(trafilatura, "extract", lambda *args, **kwargs: os._exit(70))
    extractor = PageExtractor(timeout_s=10, min_chars=1)
    try:
        text, drop, _ = extractor(page(CHINESE).encode(), "utf-8", "")
        assert text == "" and drop.rule == "extract_error" and "exit code 70" in drop.detail
        monkeypatch.undo()
        text, drop, _ = extractor(page(CHINESE).encode(), "utf-8", "")
        assert drop is None and CHINESE[:20] in text
    finally:
        extractor.close()


def test_the_extraction_process_ends_with_its_parent():
    import subprocess
    import sys
    import time

    script = ("from thresher.pipeline.prepare.extract import PageExtractor; e = PageExtractor(10, 1); "
              "e(b'<html><body><p>hello there</p></body></html>', 'utf-8', ''); "
              "print(e._process.pid, flush=True); import os; os._exit(0)")
    child_pid = int(subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and os.path.exists(f"/proc/{child_pid}"):
        time.sleep(0.05)
    assert not os.path.exists(f"/proc/{child_pid}")


def test_utf16_without_a_bom_is_decoded_as_declared():
    html = page("An English page stored as UTF-16 without a byte-order mark. " * 10)
    for codec in ("utf-16le", "utf-16be"):
        decoded = decode_html(html.encode(codec), codec)
        assert decoded.html == html and decoded.source == "http"
    # Declared UTF-16 but sent as UTF-8 (a common mislabel): no NUL bytes, so UTF-8 it is.
    assert decode_html(page(CHINESE).encode(), "utf-16").html == page(CHINESE)


def test_utf16_without_a_bom_or_a_declaration_is_recognised_and_decoded():
    english, chinese = page("An English page stored as UTF-16 and declared nothing. " * 10), page(CHINESE)
    for codec in ("utf-16-le", "utf-16-be"):
        for html, declared in ((english, ""), (english, "iso-8859-1"), (chinese, "")):
            payload = html.encode(codec)
            assert binary_kind(payload, declared) == "", (codec, declared)  # not "binary": text, NUL bytes and all
            decoded = decode_html(payload, declared)
            assert decoded.html == html and decoded.encoding == codec, (codec, declared)
        text, drop = extract_page(english.encode(codec), "", "", 30)
        assert drop is None and "declared nothing" in text
    # Binary that is NUL-heavy at one parity is still binary: its other bytes do not decode as text.
    assert binary_kind(bytes([1, 0, 2, 0, 3, 0, 4, 0]) * 100) == "binary"
    # ... and UTF-8 with a few NULs sprinkled through it stays UTF-8.
    assert decode_html(english.replace(". ", ".\x00 ").encode()).encoding == "utf-8"


@pytest.mark.parametrize("depth", [300, 100_000])
def test_html_nested_deeper_than_libxml2_parses_is_named_with_its_depth(depth):
    html = "<html><body>" + "<div>" * depth + "<p>" + "deep text " * 50 + "</p>" + "</div>" * depth + "</body></html>"
    text, drop = extract_page(html.encode(), "utf-8", "", 30)
    assert text == "" and drop.rule == "html_too_deep" and "nested over 256 deep" in drop.detail
    shallow = html.replace("<div>" * depth, "<div>" * 100).replace("</div>" * depth, "</div>" * 100)
    assert extract_page(shallow.encode(), "utf-8", "", 30)[1] is None


def test_the_attribute_screen_ignores_scripts_styles_and_comments():
    fake_tag = "<b " + " ".join(f"x{i}" for i in range(2000))  # `if (a <b x0 x1 ...`: not a tag in a script
    for wrapper in ("<script>if (a {0}) {{}}</script>", "<SCRIPT type='x'>{0}</SCRIPT>", "<style>{0}</style>",
                    "<!-- {0} -->"):
        assert parse_hazard("<html><body>" + wrapper.format(fake_tag) + "<p>text</p></body></html>") == "", wrapper
    # Minified JavaScript from real pages (theguardian.com, cnn.com): `<` runs with no tag name after it.
    js = "for(i=0;i<vendors.length&&!window.requestAnimationFrame;++i)" + ",a" * 5000
    assert parse_hazard(f"<html><body><p>{js}</p></body></html>") == ""
    assert "2000 attributes" in parse_hazard("<html><body><script>x</script>" + fake_tag + "></body></html>")


FORUM_PAGE = (
    "<html><body><nav><ul><li><a href='/'>Home</a></li><li><a href='/news'>News</a></li></ul></nav><article>"
    "<h1>Spring floods in the valley</h1><p>{text}</p><ul><li>Sandbags at the town hall until Friday.</li>"
    "<li>The bridge on Mill Road stays closed.</li></ul><p>{text}</p></article>"
    "<div class='comments'><h3>Comments</h3><div class='comment'><p>My cellar was dry this year, thanks to the new levee, "
    "and the neighbours say the same about theirs.</p></div></div></body></html>"
)
PROSE = (
    "The river floods every spring, and the farmers of the valley plant their fields only after the water "
    "recedes, as their families have done for generations along the whole length of the river."
)


def test_extract_with_origins_returns_trafilaturas_text_and_each_lines_element():
    import trafilatura

    from thresher.pipeline.prepare.extract import _TRAFILATURA_OPTIONS, extract_with_origins

    html = FORUM_PAGE.format(text=PROSE)
    text, origins = extract_with_origins(html, "https://example.org/floods")
    assert text == trafilatura.extract(html, url="https://example.org/floods", **_TRAFILATURA_OPTIONS)
    lines = text.split("\n")
    assert len(origins) == len(lines)
    kinds = dict(zip(lines, origins, strict=True))
    assert kinds[PROSE] == "p"
    assert kinds["- Sandbags at the town hall until Friday."] == "item"
    assert any(origin == "head" for origin in origins)
    assert "comment" in origins  # include_comments: a forum's replies are part of its text
    assert extract_with_origins("<html><body></body></html>") == ("", [])


def test_align_origins_follows_the_rendered_lines_in_order():
    from thresher.pipeline.prepare.extract import align_origins

    rendered = [("Title", "head"), ("Repeated", "p"), ("An item", "item"), ("Repeated", "item")]
    assert align_origins(["Title", "", "Repeated", "An item", " Repeated ", "not rendered"], rendered) == [
        "head",
        "",
        "p",
        "item",
        "item",
        "other",
    ]


# --- Thread posts (issue 14): the replies of a forum thread that trafilatura leaves out ----------
FIRST_POST = "I bought a used road bike last week and the rear derailleur skips on the three smallest cogs. " * 3
REPLIES = (
    "Check the cable tension first: turn the barrel adjuster a quarter turn anticlockwise and shift again.",
    "A bent derailleur hanger does exactly that. Ask a shop to check its alignment, it takes five minutes.",
    "Worn chains skip on the small cogs. Measure it with a chain checker before you replace anything else.",
)
ZH_FIRST_POST = "我的电脑分辨率是二五六零乘一四四零，登录游戏以后全屏显示，有的地方看不到了，就像把游戏界面放大了一样。" * 6
ZH_REPLIES = (
    "你可以在游戏设置里面把显示模式改成窗口模式，然后再手动调整窗口的大小，应该就能看到全部界面了。",
    "显卡控制面板里有一个缩放选项，把它改成由显示器执行缩放，我之前也遇到过一样的问题，这样就解决了。",
    "我知道，只有回去翻一下之前的网页浏览记录了，大概半年前调过一次，具体是哪一个设置已经记不清楚了。",
)


def thread_page(first: str, replies: tuple[str, ...], title: str = "Rear derailleur skips on small cogs") -> str:
    """A forum thread as phpBB-like boards write it: one post box per post, author card and body."""

    def post(number: int, author: str, text: str) -> str:
        return (f'<div class="post" id="p{number}"><div class="author">{author}</div><div class="postbody">'
                f'<div class="content"><p>{text}</p></div></div></div>')

    posts = post(1, "rider42", first) + "".join(post(n + 2, f"user{n}", text) for n, text in enumerate(replies))
    return (f'<html><head><meta charset="utf-8"><title>{title}</title></head><body><nav><a href="/">Forum</a> '
            f'<a href="/bikes">Bikes</a></nav><h1>{title}</h1><div class="topic">{posts}</div>'
            "<footer>About us</footer></body></html>")


@pytest.mark.parametrize(("first", "replies"), [(FIRST_POST, REPLIES), (ZH_FIRST_POST, ZH_REPLIES)], ids=["en", "zh"])
def test_every_reply_of_a_thread_comes_out_once(first, replies):
    import trafilatura

    from thresher.pipeline.config import ThreadPostsConfig
    from thresher.pipeline.prepare.extract import _TRAFILATURA_OPTIONS

    html = thread_page(first, replies)
    alone = trafilatura.extract(html, **_TRAFILATURA_OPTIONS)
    assert first.strip() in alone and not any(reply in alone for reply in replies)  # trafilatura takes the first post only
    text, drop = extract_page(html.encode(), "utf-8", "https://forum.example/t/1", 10, thread_posts=ThreadPostsConfig())
    assert drop is None and text.count(first.strip()) == 1
    assert all(text.count(reply) == 1 for reply in replies)
    assert "user0" not in text and "rider42" not in text  # post bodies, not the author cards around them
    off, _ = extract_page(html.encode(), "utf-8", "https://forum.example/t/1", 10, thread_posts=ThreadPostsConfig(enabled=False))
    assert off == alone


def test_the_extraction_process_appends_thread_posts_as_extract_page_does():
    from thresher.pipeline.config import ThreadPostsConfig

    extractor = PageExtractor(timeout_s=10, min_chars=1, thread_posts=ThreadPostsConfig())
    try:
        payload = thread_page(FIRST_POST, REPLIES).encode()
        text, drop, _ = extractor(payload, "utf-8", "")
        assert drop is None and all(reply in text for reply in REPLIES)
    finally:
        extractor.close()


SIDEBAR_ITEMS = (
    "Ten quiet villages in the Alps where you can still rent a room above the bakery for the summer months.",
    "Why night trains are back: the operators, the routes and the prices of sleeping across Europe this year.",
    "A guide to the mountain huts of the high route, with the distances, the climbs and where to get water.",
)


def test_an_article_does_not_gain_its_sidebar_or_comments():
    import trafilatura

    from thresher.pipeline.config import ThreadPostsConfig
    from thresher.pipeline.prepare.extract import _TRAFILATURA_OPTIONS

    related = "".join(f'<div class="related-post"><a href="/r{n}">Related</a><p>{item}</p></div>' for n, item in enumerate(SIDEBAR_ITEMS))
    comments = "".join(f'<div class="comment-box"><span>reader{n}</span><p>{item}</p></div>' for n, item in enumerate(REPLIES))
    html = (f"<html><head><title>Floods</title></head><body><nav><a href='/'>Home</a></nav><div class='post-wrap'>"
            f"<article class='post-content'><h1>Floods</h1><p>{PROSE}</p><p>{PROSE[::-1]}</p><p>{PROSE.upper()}</p></article>"
            f"<aside class='sidebar'>{related}</aside><div class='reader-comments'>{comments}</div></div>"
            "<footer>Contact</footer></body></html>")
    text, drop = extract_page(html.encode(), "utf-8", "https://news.example/floods", 10, thread_posts=ThreadPostsConfig())
    assert drop is None and PROSE in text
    assert text == trafilatura.extract(html, url="https://news.example/floods", **_TRAFILATURA_OPTIONS)
    assert not any(item in text for item in SIDEBAR_ITEMS)


def test_thread_classes_are_the_repeated_post_classes_before_the_main_text():
    from thresher.pipeline.config import ThreadPostsConfig
    from thresher.pipeline.prepare.extract import thread_classes

    html = thread_page(FIRST_POST, REPLIES)
    assert set(thread_classes(html, FIRST_POST, ThreadPostsConfig())) == {"post", "postbody"}
    assert thread_classes(html, FIRST_POST, ThreadPostsConfig(min_posts=5)) == []  # four posts only
    assert thread_classes(html, "text that is nowhere in the page at all", ThreadPostsConfig()) == []
    single = html.replace(REPLIES[0], "").split('<div class="post" id="p2">')[0] + "</div></body></html>"
    assert thread_classes(single, FIRST_POST, ThreadPostsConfig()) == []  # one post box: no thread


def test_missing_thread_posts_weighs_chinese_characters_by_the_configured_weight():
    from trafilatura.utils import load_html

    from thresher.pipeline.config import ThreadPostsConfig
    from thresher.pipeline.prepare.extract import missing_thread_posts

    tree = load_html(thread_page(ZH_FIRST_POST, ZH_REPLIES[:2]))
    # Two replies of 48 characters: too little text at plain length, enough when a Chinese character counts 3.
    assert missing_thread_posts(tree, ["post"], ZH_FIRST_POST, ZH_FIRST_POST, ThreadPostsConfig(cjk_char_weight=1)) == []
    assert missing_thread_posts(tree, ["post"], ZH_FIRST_POST, ZH_FIRST_POST, ThreadPostsConfig(cjk_char_weight=3)) == list(ZH_REPLIES[:2])
    # Nothing is appended when trafilatura's body holds none of the posts (a comment list under an article).
    assert missing_thread_posts(tree, ["post"], PROSE, PROSE, ThreadPostsConfig(cjk_char_weight=3)) == []


def test_element_lines_breaks_at_blocks_and_skips_scripts_and_buttons():
    from lxml import html as lxml_html

    from thresher.pipeline.prepare.extract import element_lines

    element = lxml_html.fromstring(
        "<div>Hello <b>bold</b>  world<p>a <i>paragraph</i></p><script>var x = 1</script>after<!-- note -->"
        "wards<br>next <button>Reply</button>line</div>"
    )
    assert element_lines(element) == ["Hello bold world", "a paragraph", "afterwards", "next line"]
    inner = lxml_html.fromstring("<div><div>Inside</div>the tail is not the element's</div>")[0]
    assert element_lines(inner) == ["Inside"]


@pytest.mark.parametrize("depth", [1_000, 20_000])
def test_a_deeply_nested_thread_is_no_extraction_error(depth):
    from thresher.pipeline.config import ThreadPostsConfig

    page_html = thread_page(FIRST_POST, REPLIES)
    body = page_html.index("<body>") + len("<body>")
    nested = page_html[:body] + '<div class="post-wrap">' * depth + page_html[body:-len("</body></html>")] + "</div>" * depth + "</body></html>"
    text, drop = extract_page(nested.encode(), "utf-8", "", 30, thread_posts=ThreadPostsConfig())
    assert drop is None or drop.rule in ("empty_extraction", "html_too_deep")  # too deep for libxml2: said so
    assert (drop is None) != (text == "")


def test_extract_with_origins_marks_the_appended_posts():
    from thresher.pipeline.config import ThreadPostsConfig
    from thresher.pipeline.prepare.extract import extract_with_origins

    text, origins = extract_with_origins(thread_page(FIRST_POST, REPLIES), "", thread_posts=ThreadPostsConfig())
    kinds = dict(zip(text.split("\n"), origins, strict=True))
    assert all(kinds[reply] == "post" for reply in REPLIES) and kinds[FIRST_POST.strip()] == "p"


FORM_PAGE = (
    "<html><body><form action='/s'><label for='q'>Search the archive</label><input id='q' name='q' value='tea'>"
    "<select name='y'><option>2019</option><option selected>2020</option></select><textarea>Your comment</textarea>"
    "</form><article><h1>Tea</h1><p>{text}</p><p>{text}</p></article></body></html>"
)


def test_trafilatura_gives_the_same_text_without_lxml_htmls_python_lookup(shared_data):
    """trafilatura's parser gets lxml's C-level element lookup (no Python call per element proxy); its
    text is the one lxml.html's own parser, form-field element classes and all, gives."""
    import lxml.html
    import trafilatura
    from trafilatura.utils import load_html

    from thresher.pipeline.prepare.warc import WarcRecord, iter_records

    htmls = [FORM_PAGE.format(text="Green tea is steamed or pan-fired soon after picking, so its leaves stay green. " * 4)]
    with open(sorted((shared_data / "crawl").glob("*.warc.gz"))[0], "rb") as handle:
        for record in iter_records(handle, 5_000_000):
            if isinstance(record, WarcRecord) and record.payload and record.http_status == 200 and record.is_html:
                htmls.append(decode_html(record.payload, record.charset).html)
            if len(htmls) == 25:
                break
    python_lookup = lxml.html.HTMLParser(collect_ids=False, default_doctype=False, encoding="utf-8",
                                         remove_comments=True, remove_pis=True)
    for html in htmls:
        expected = trafilatura.extract(lxml.html.fromstring(html, parser=python_lookup), include_comments=True) or ""
        assert extract_text(html) == expected
    assert type(load_html(htmls[0]).find(".//input")) is lxml.html.HtmlElement  # not lxml.html's InputElement


def test_the_extraction_process_inherits_lid176_from_its_parent_instead_of_loading_it(tmp_path, monkeypatch):
    import shutil

    from thresher.pipeline import langid
    from thresher.pipeline.prepare.precheck import Precheck

    model = tmp_path / "lid.176.ftz"  # a path no earlier test loaded: nothing cached under it yet
    shutil.copy(langid.default_model_path(), model)
    loaded_by = tmp_path / "loaded-by"
    original = langid._load_fasttext

    def recording_load(path):
        with open(loaded_by, "a") as handle:
            handle.write(f"{os.getpid()}\n")
        return original(path)

    monkeypatch.setattr(langid, "_load_fasttext", recording_load)
    extractor = PageExtractor(5.0, 1, precheck=Precheck(frozenset({"en"}), 0.9, 1, str(model)))
    german = page("Die Geschichte des Tees reicht Jahrtausende zurück, und die Bauern pflücken die jungen Blätter. " * 5)
    try:
        _, drop, _ = extractor(german.encode(), "utf-8", "https://tee.example/")
    finally:
        extractor.close()
    assert drop is not None and drop.rule == "lang_not_kept_precheck:de"
    assert loaded_by.read_text().split() == [str(os.getpid())]
