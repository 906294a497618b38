from thresher.pipeline.urls import registered_domain_guess, url_host


def test_hosts():
    assert url_host("https://User@WWW.Example.COM.:8080/a") == "www.example.com"
    assert url_host("not a url") == ""
    assert registered_domain_guess("http://www.bbc.co.uk/news") == "bbc.co.uk"
