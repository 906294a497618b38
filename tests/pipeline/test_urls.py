import pytest

from thresher.pipeline.urls import normalized_url, registered_domain_guess, url_host


def test_hosts():
    assert url_host("https://User@WWW.Example.COM.:8080/a") == "www.example.com"
    assert url_host("not a url") == ""
    assert registered_domain_guess("http://www.bbc.co.uk/news") == "bbc.co.uk"


@pytest.mark.parametrize(
    ("url", "normalized"),
    [
        ("HTTPS://WWW.Example.COM/Path/Page.html", "https://www.example.com/Path/Page.html"),  # path keeps its case
        ("https://example.com:443/a", "https://example.com/a"),
        ("http://example.com:80/a", "http://example.com/a"),
        ("http://example.com:8080/a", "http://example.com:8080/a"),
        ("https://example.com:80/a", "https://example.com:80/a"),  # not https's default port
        ("https://example.com/a#comments", "https://example.com/a"),
        ("https://example.com", "https://example.com/"),
        ("https://example.com./a", "https://example.com/a"),
        ("https://example.com/a?utm_source=x&id=3&UTM_Medium=y&fbclid=abc&gclid=1", "https://example.com/a?id=3"),
        ("https://example.com/a?b=2&a=1&a=0", "https://example.com/a?a=0&a=1&b=2"),
        ("https://example.com/a?utm_campaign=z", "https://example.com/a"),
        ("  https://example.com/a  ", "https://example.com/a"),
        ("https://example.com/a?q=", "https://example.com/a?q="),
        ("https://[::1", "https://[::1"),  # does not parse: as it is
    ],
)
def test_normalized_url(url, normalized):
    assert normalized_url(url) == normalized


def test_normalized_url_groups_what_one_page_is_fetched_as():
    variants = ["https://News.Example.org:443/story?id=7&utm_source=tw#top", "https://news.example.org/story?fbclid=x&id=7",
                "HTTPS://news.example.org/story?id=7"]
    assert len({normalized_url(url) for url in variants}) == 1
    assert normalized_url("https://news.example.org/story?id=8") != normalized_url(variants[0])
    assert normalized_url("http://news.example.org/story?id=7") != normalized_url(variants[0])  # another scheme, kept apart
