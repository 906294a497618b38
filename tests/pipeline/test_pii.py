import pytest

from thresher.pipeline.pii import (
    CARD_NUMBER,
    EMAIL,
    ID_NUMBER,
    IP_ADDRESS,
    PHONE,
    PLACEHOLDERS,
    PiiSpan,
    find_pii,
    id_check_character,
    luhn_valid,
    redact,
)


def spans_of(text, *found):
    """The spans of (kind, substring) pairs, each substring's first occurrence at or after the previous one's end."""
    spans, at = [], 0
    for kind, value in found:
        start = text.index(value, at)
        spans.append(PiiSpan(kind, start, start + len(value)))
        at = start + len(value)
    return spans


def test_finds_each_kind_planted_in_english_text_with_exact_spans():
    text = ("Contact Jane Doe at jane.doe@example.co.uk or JD_42+news@mail-server.example.com for details.\n"
            "Our servers answer on 8.8.8.8 and 2001:4860:4860::8888; the backup is at 203.0.114.25.\n"
            "Call +44 20 7946 0958, +1 (415) 555-0100 or +8613812345678 any time.\n"
            "Pay with 4111 1111 1111 1111, 5555-5555-5555-4444, 378282246310005 or 3782 822463 10005.\n"
            "Her Chinese ID number, 11010519491231002X, was printed on the form.")
    assert find_pii(text) == spans_of(
        text, (EMAIL, "jane.doe@example.co.uk"), (EMAIL, "JD_42+news@mail-server.example.com"),
        (IP_ADDRESS, "8.8.8.8"), (IP_ADDRESS, "2001:4860:4860::8888"), (IP_ADDRESS, "203.0.114.25"),
        (PHONE, "+44 20 7946 0958"), (PHONE, "+1 (415) 555-0100"), (PHONE, "+8613812345678"),
        (CARD_NUMBER, "4111 1111 1111 1111"), (CARD_NUMBER, "5555-5555-5555-4444"), (CARD_NUMBER, "378282246310005"),
        (CARD_NUMBER, "3782 822463 10005"), (ID_NUMBER, "11010519491231002X"))


def test_finds_each_kind_planted_in_chinese_text_with_exact_spans():
    text = ("如有疑问请发邮件至zhangsan@163.com或13812345678@qq.com，手机13912345678，"
            "也可拨打+86 138 1234 5678或159-8765-4321。\n"
            "身份证号码：440305199003071236，另一位的是11010519491231002x。\n"
            "银联卡号6222021000000000009已冻结，服务器地址为114.114.115.119和2408:8000:1010:1::8。")
    assert find_pii(text) == spans_of(
        text, (EMAIL, "zhangsan@163.com"), (EMAIL, "13812345678@qq.com"), (PHONE, "13912345678"),
        (PHONE, "+86 138 1234 5678"), (PHONE, "159-8765-4321"), (ID_NUMBER, "440305199003071236"),
        (ID_NUMBER, "11010519491231002x"), (CARD_NUMBER, "6222021000000000009"), (IP_ADDRESS, "114.114.115.119"),
        (IP_ADDRESS, "2408:8000:1010:1::8"))


def test_identity_number_check_character_is_iso_7064_mod_11_2():
    assert id_check_character("11010519491231002") == "X"
    assert id_check_character("44030519900307123") == "6"
    assert find_pii("号码 440305199003071237 已注销") == []  # wrong check digit
    assert find_pii("号码 440305199002301233 已注销") == []  # 30 February
    assert find_pii("号码 990305199003071236 已注销") == []  # no province 99


def test_card_numbers_need_luhn_and_a_known_issuer():
    assert luhn_valid("4111111111111111") and not luhn_valid("4111111111111112")
    assert find_pii("card 4111 1111 1111 1112 declined") == []  # Luhn fails
    assert luhn_valid("9111111111111110")
    assert find_pii("ref 9111111111111110 kept") == []  # Luhn passes, no issuer starts with 9
    assert find_pii("card 41111111111111111 (17 digits)") == []  # Visa is 13, 16 or 19 digits


@pytest.mark.parametrize("text", [
    # version and section numbers shaped like IPv4
    "Upgrade to version 1.2.3.4 today.", "Released v1.2.3.4 and V 8.8.8.8.", "Version: 2.10.3.1 (build 44)",
    "软件版本 4.3.2.1 已发布", "see section 1.2.3.4 of the spec", "OID 1.3.6.1.4.1.311.21.7",
    "dotted 1.2.3.4.5 is no address", "ip 999.1.1.1 and 01.02.03.04",
    # private, loopback, shared and documentation addresses are not personal
    "ping 192.168.1.1, 10.0.0.8, 127.0.0.1, 172.16.4.1, 100.64.0.1, 192.0.2.10", "link-local fe80::1ff:fe23:4567:890a",
    # dates and times
    "On 2023-10-12, 2023.10.12, 12/10/2023 and 20231012 at 12:30:45 or 2024-05-09T08:57:40Z.", "2019年11月19日 08:57:40",
    # prices
    "Now $1,299.99 (was €1.000.000.000), ¥13,800.00, 13800元, £40 or 49.95 Euro.",
    # ISBNs
    "ISBN 978-3-16-148410-0, ISBN 9783161484100, ISBN 0-306-40615-2, ISBN 7-5366-0104-X.",
    # coordinates
    "Located at 39.9042, 116.4074 (40.7128° N, 74.0060° W), i.e. 39.9042,116.4074.",
    # hex ids, UUIDs, MAC addresses, code
    "commit a94a8fe5ccb19ba61c4c0873d391e987982fbbd3 id 0x1A2B3C4D 5f3a9c2e1b7d4e60",
    "uuid 123e4567-e89b-12d3-a456-426614174000 mac 00:1A:2B:3C:4D:5E", "std::vector<int> a::b; x = dead::beef",
    # long numbers: order numbers failing Luhn, inside longer runs, identifiers and URLs
    "Order 4111111111111112 shipped; tracking 1234567890123456789.", "订单号 13812345678901 已发货",
    "user13812345678 and 13812345678x", "https://weibo.com/item/13812345678?id=13912345678",
    "DOI 10.1177/2053168021990204 and 10.1002/(SICI)1520-6602(1998)1:1<27::AID-INBI4>3.0.CO;2-6",
    # e-mail look-alikes
    "assets/logo@2x.png and icon@3x.webp, @username, user@localhost, npm i pkg@1.2.3",
    # too short to be an international number
    "电话区号 +86 (0)0312, score +3 12",
])
def test_no_finding_in_look_alikes(text):
    assert find_pii(text) == []


def test_an_email_run_on_into_the_next_sentence_ends_at_its_domain():
    text = "leave us a message at contact@enginethemes.com.What are you waiting for?"
    assert find_pii(text) == spans_of(text, (EMAIL, "contact@enginethemes.com"))


def test_long_digit_runs_after_a_plus_are_read_in_linear_time():
    import time

    text = ("+" + "1" * 60 + " ") * 1000  # the first phone pattern tried every split of each run: 2 s here
    started = time.process_time()
    assert find_pii(text) == []
    assert time.process_time() - started < 0.5


def test_redact_replaces_only_the_kinds_given():
    text = "Mail a@example.com from 8.8.8.8 or call +44 20 7946 0958."
    spans = find_pii(text)
    assert redact(text, spans, PLACEHOLDERS) == "Mail <EMAIL> from <IP_ADDRESS> or call <PHONE>."
    assert redact(text, spans, {EMAIL: "email@example.com"}) == "Mail email@example.com from 8.8.8.8 or call +44 20 7946 0958."
    assert redact(text, spans, {}) == text
    assert redact(text, [], PLACEHOLDERS) == text


# Every finding on the 428 pages of ../shared/data/crawl (stage 1 text, every language kept), reviewed
# by hand: each is a real address or number printed on the page (README "PII" lists why each is right).
CRAWL_FINDINGS = sorted([
    ("https://www.nytimes.com/2019/11/19/opinion/republicans-elections-impeachment.html", EMAIL, "letters@nytimes.com"),
    ("https://news-site-011.example.org/article/0ec95c7261d122f3", EMAIL, "thekian1@entermedia.co.kr"),
    ("https://www.morebikes.co.uk/7908/bike-style-book-soundtrack-review/", PHONE, "+49 (0)40 890 85-433"),
    ("https://www.nj.com/entertainment/2019/11/florida-man-exists-south-dakota-hold-my-beer-meth-were-on-it.html",
     EMAIL, "akuperinsky@njadvancemedia.com"),
    ("https://news-site-107.example.org/article/9da36ae4714bfccc", EMAIL, "pillgoo9@gmail.com"),
    ("https://www.chron.com/business/article/New-car-sales-plunge-10-percent-in-October-14847624.php", EMAIL,
     "paul.takahashi@chron.com"),
    ("https://blog.givewell.org/2018/09/10/september-2018-open-thread/", EMAIL, "info@givewell.org"),
    ("https://www.space.com/nasa-picks-spacex-blue-origin-private-moon-lander-companies.html", EMAIL, "tmalik@space.com"),
    ("https://www.barrons.com/articles/home-depot-stock-earnings-report-51574168486", EMAIL, "allen.root@dowjones.com"),
    ("https://www.rechtambild.de/2011/10/bgh-marions-kochbuch-de/", EMAIL, "info@rechtambild.de"),
    ("http://www.sauvonsluniversite.fr/spip.php?article8532", EMAIL, "suivi.reformes.blanquer@gmail.com"),
    ("https://www.spiegel.de/spiegel/print/d-161500790.html", EMAIL, "mikepmorris614@yahoo.com"),
    *[("https://techcrunch.com/2024/05/09/tesla-drives-luminar-lidar-sales-and-motional-pauses-robotaxi-plans/", EMAIL,
       f"{name}@techcrunch.com") for name in ("kirsten.korosec", "sean.okane", "rebecca.bellan")],
    ("https://www.cnblogs.com/good-looking-hk/p/18182241", IP_ADDRESS, "47.119.23.205"),
    ("https://www.cnblogs.com/good-looking-hk/p/18182241", IP_ADDRESS, "110.42.230.56"),
    ("https://www.cnblogs.com/good-looking-hk/p/18182241", IP_ADDRESS, "110.42.230.56"),
    ("https://j.021east.com/p/1715572974045997", PHONE, "17717060505"),
    ("https://www.bbc.com/news/articles/crgyg90v71jo", EMAIL, "eastyorkslincs.news@bbc.co.uk"),
    ("https://careercup.com/question?id=2780", EMAIL, "mail2vcp@gmail.com"),
    ("https://forumengine.enginethemes.com/thread/new-packages-directoryengine-and-freelanceengine/", EMAIL,
     "contact@enginethemes.com"),
    ("https://forum.uipath.com/t/uipath-load-testing/739028/3", EMAIL, "robert.wagner@uipath.com"),
    ("https://magiciansandmagic.com/forums/topic/how-to-use-the-forums/", EMAIL, "Kenny@magiciansandmagic.com"),
    ("https://www.codeproject.com/Questions/5382597/How-I-can-integrate-EID-reader-with-tablet", PHONE,
     "+1 (416) 849-8900"),
])


@pytest.fixture(scope="module")
def crawl_texts(shared_data):
    """(url, text) of every page of the shared crawl through stage 1's per-page steps, every language kept."""
    from thresher.jobs.prepare import resolved_prepare_config
    from thresher.pipeline.config import load_config
    from thresher.pipeline.prepare.records import ROW_DOCUMENT, ROW_SCHEMA, process_warc

    config = resolved_prepare_config(load_config(None, {"prepare.languages": [], "prepare.lang_threshold": 0.0}))
    kind, url, text = (ROW_SCHEMA.names.index(name) for name in ("row_kind", "url", "text"))
    return [(row[url], row[text]) for path in sorted((shared_data / "crawl").glob("*.warc.gz"))
            for row in process_warc(str(path), config) if row[kind] == ROW_DOCUMENT]


def test_the_real_crawl_flags_exactly_the_reviewed_findings(crawl_texts):
    assert len(crawl_texts) == 428
    found = sorted((url, span.kind, text[span.start:span.end]) for url, text in crawl_texts for span in find_pii(text))
    assert found == CRAWL_FINDINGS
