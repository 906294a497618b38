"""The shared text vocabulary: CJK ranges, sentence ends, word estimates, and the boilerplate phrase
files, which match line for line what the hard-coded patterns they replace matched."""

from __future__ import annotations

import json
import re

from thresher.pipeline.config import load_config
from thresher.pipeline.lexicon import (
    CJK_CHAR,
    COLONS,
    HAN_CHAR,
    HAN_RUN,
    clutter_phrases,
    ends_sentence,
    estimated_words,
    phrase_pattern,
    read_list,
)

# The patterns as pipeline/heuristics.py and classifiers/clutter.py hard-coded them before the files.
OLD_PROMPT_LINE = re.compile(
    r"\b(sign (in|up)|log ?in|register now|subscribe|newsletter|add to (cart|basket)|items? in (your )?cart"
    r"|click here|read more|advertisement|sponsored|all rights reserved|share this|follow us)\b"
    r"|注册|登录|登陆|订阅|广告|点击|扫码|关注我们|关注公众号|加入购物车|版权所有|免责声明|上一篇|下一篇|返回顶部",
    re.IGNORECASE,
)
OLD_POLICY_LINE = re.compile(r"terms of use|privacy policy|cookie policy|uses cookies|use of cookies|use cookies")
OLD_CLUTTER_BOILERPLATE = re.compile(
    r"sign in|sign up|log in|login|register|subscribe|newsletter|read more|continue reading|share (this|on)|follow us|"
    r"cookie|privacy policy|terms (of|and) (use|service)|all rights reserved|copyright|©|skip to (main )?content|back to top|"
    r"items? in (your )?cart|shopping cart|next post|previous post|related posts|leave a (comment|reply)|"
    r"上一篇|下一篇|上一页|下一页|登录|注册|首页|返回顶部|版权所有|分享到|关注我们|点击查看|阅读全文|阅读原文|免责声明|"
    r"联系我们|扫一扫|二维码|客服|广告|相关阅读|相关文章|热门推荐|责任编辑|备案",
    re.IGNORECASE,
)
CRAFTED = [
    "Sign up for our newsletter", "Design in wood", "LOGIN", "Log in", "blogin here", "Register now!",
    "registered users", "Add to basket", "3 items in your cart", "Click here to read more", "Sponsored content",
    "© 2024 All rights reserved", "Share this: Twitter", "share on facebook", "Follow us", "Skip to main content",
    "This site uses cookies.", "Terms of Use", "Cookie Policy", "leave a reply", "请先登录后评论", "上一篇：茶叶",
    "扫码关注公众号", "加入购物车", "关于我们 | 联系我们", "The river rises in the hills.", "订阅号", "首页 > 新闻",
]


def _real_lines(shared_data) -> list[str]:
    lines = list(CRAFTED)
    for name in ("dclm/agreement_data.jsonl", "chinesewebtext/dirty.jsonl", "chinesewebtext/clean.jsonl"):
        for row in (shared_data / "quality" / name).open(encoding="utf-8"):
            lines += [line.strip() for line in json.loads(row)["text"].split("\n") if line.strip()]
    return lines


def test_phrase_files_match_what_the_hard_coded_patterns_matched(shared_data):
    config = load_config()
    prompt = phrase_pattern(config.resolve_path(config.rules.spam.prompt_lines_file))
    policy = phrase_pattern(config.resolve_path(config.rules.c4.policy_lines_file))
    lines = _real_lines(shared_data)
    assert len(lines) > 5000
    hits = {"prompt": 0, "policy": 0, "clutter": 0}
    for line in lines:
        assert bool(prompt.search(line)) == bool(OLD_PROMPT_LINE.search(line)), line
        assert bool(policy.search(line.lower())) == bool(OLD_POLICY_LINE.search(line.lower())), line
        assert bool(clutter_phrases().search(line)) == bool(OLD_CLUTTER_BOILERPLATE.search(line)), line
        hits["prompt"] += bool(prompt.search(line))
        hits["policy"] += bool(policy.search(line.lower()))
        hits["clutter"] += bool(clutter_phrases().search(line))
    assert all(count >= 3 for count in hits.values()), hits  # the comparison saw matches of every list


def test_phrase_pattern_is_compiled_once_per_file(tmp_path):
    phrases = tmp_path / "phrases.txt"
    phrases.write_text("# a comment\nfoo (bar|baz)\n\nqux\n", encoding="utf-8")
    pattern = phrase_pattern(phrases)
    assert pattern is phrase_pattern(str(tmp_path / "." / "phrases.txt"))
    assert pattern.search("FOO BAZ") and pattern.search("a qux") and not pattern.search("foo qu")
    assert not pattern.search("# a comment")
    assert read_list(phrases) == ["foo (bar|baz)", "qux"]


def test_cjk_ranges():
    assert HAN_CHAR.findall("中文 text 日本語 ひらがな カタカナ 한국어") == list("中文日本語")
    assert CJK_CHAR.findall("日本語 ひらがな") == list("日本語ひらがな")
    assert HAN_CHAR.match("\u3400") and HAN_CHAR.match("\uf900") and HAN_CHAR.match("\u9fff")
    assert not HAN_CHAR.match("\u4dc0")  # Yijing hexagram symbols sit between Extension A and the URO block
    assert HAN_RUN.findall("NBA比赛很精彩, 篮球") == ["比赛很精彩", "篮球"]


def test_sentence_ends_and_word_estimates():
    assert ends_sentence("The river rises in the hills.  ") and ends_sentence("我们今天学习中文。")
    assert ends_sentence("他说：“好。”") and ends_sentence("(see below)") and ends_sentence("one; two;")
    assert not ends_sentence("Ingredients:") and ends_sentence("Ingredients:", also=COLONS)
    assert not ends_sentence("Home | News | Contact")
    assert estimated_words("two words 中文") == 4
    assert estimated_words("我们今天学习中文") == 1 + 4  # one whitespace "word", eight characters at two a word
