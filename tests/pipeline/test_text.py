import hashlib

from thresher.pipeline.text import normalize_text, text_md5


def test_removes_unicode_punctuation_of_every_script():
    assert normalize_text("Hello, world! (yes) — «quoted» ¿sí?") == "hello world yes quoted si\u0301"
    assert normalize_text("你好，世界。「引号」《书名》！") == "你好世界引号书名"


def test_nfd_lowercase_and_whitespace_collapse():
    assert normalize_text("  ÉCOLE\t\n  Été  ") == "e\u0301cole e\u0301te\u0301"
    # A precomposed and a decomposed accent normalize to the same string.
    assert normalize_text("caf\u00e9") == normalize_text("cafe\u0301")


def test_symbols_and_digits_are_not_punctuation():
    assert normalize_text("1 + 2 = 3 $ €") == "1 + 2 = 3 $ €"


def test_md5_equal_for_texts_differing_only_in_normalized_away_parts():
    a = "The quick brown fox.\n\nJumps over the lazy dog!"
    b = "the QUICK brown fox   jumps over the lazy dog"
    assert text_md5(a) == text_md5(b)
    assert text_md5(a) != text_md5("The quick brown cat jumps over the lazy dog")
    assert text_md5(a) == hashlib.md5(b"the quick brown fox jumps over the lazy dog").hexdigest()
