import pytest

from pipeline.extract import binary_kind, decode_html, extract_page, extract_text, meta_charset, normalize_encoding

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

    from pipeline.extract import _TRAFILATURA_OPTIONS, extract_with_origins

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
    from pipeline.extract import align_origins

    rendered = [("Title", "head"), ("Repeated", "p"), ("An item", "item"), ("Repeated", "item")]
    assert align_origins(["Title", "", "Repeated", "An item", " Repeated ", "not rendered"], rendered) == [
        "head",
        "",
        "p",
        "item",
        "item",
        "other",
    ]
