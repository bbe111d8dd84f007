"""The proxy rule: which proxy a URL goes through, as Go's httpproxy (and so skopeo) decides."""
from __future__ import annotations

import pytest

from ansible_collections.imageclone.backup.plugins.module_utils.proxies import Proxy, ProxyEnvironment

PROXY = "http://proxy.example:3128"


def proxied(url: str, no_proxy: str = "", https: str = PROXY, http: str = PROXY) -> bool:
    return ProxyEnvironment(https_proxy=https, http_proxy=http, no_proxy=no_proxy).proxy_for(url) is not None


def test_uppercase_wins_and_an_empty_variable_counts_as_unset():
    environ = {"HTTPS_PROXY": "http://upper:1", "https_proxy": "http://lower:2", "HTTP_PROXY": "",
               "http_proxy": "http://plain:3", "no_proxy": "example.com"}
    settings = ProxyEnvironment.from_environ(environ)
    assert settings == ProxyEnvironment("http://upper:1", "http://plain:3", "example.com")
    assert settings.as_environ() == {"HTTPS_PROXY": "http://upper:1", "HTTP_PROXY": "http://plain:3",
                                     "NO_PROXY": "example.com"}


def test_each_scheme_has_its_own_variable_and_neither_stands_in_for_the_other():
    only_http = ProxyEnvironment(http_proxy=PROXY)
    assert only_http.proxy_for("https://registry.example/v2/") is None
    assert only_http.proxy_for("http://registry.example/v2/") == Proxy(PROXY)
    only_https = ProxyEnvironment(https_proxy=PROXY)
    assert only_https.proxy_for("http://registry.example/v2/") is None
    assert only_https.proxy_for("https://registry.example/v2/") == Proxy(PROXY)


@pytest.mark.parametrize("url", ["https://localhost:6443", "https://127.0.0.1:5000/v2/", "https://127.8.9.10",
                                 "https://[::1]:443", "https://[::ffff:127.0.0.1]:443"])
def test_localhost_and_loopback_addresses_never_go_through_a_proxy(url):
    assert not proxied(url)


def test_a_name_that_resolves_to_loopback_is_still_a_name():
    assert proxied("https://localhost.localdomain") and proxied("https://kube.lab.test:6443")


@pytest.mark.parametrize(("no_proxy", "url", "expected"), [
    ("*", "https://anything.example", False),
    ("other.example, *", "https://anything.example", False),
    # names: the name and its subdomains; a leading dot or "*." keeps the name itself proxied
    ("example.com", "https://example.com", False),
    ("example.com", "https://registry.example.com", False),
    ("example.com", "https://badexample.com", True),
    (".example.com", "https://example.com", True),
    (".example.com", "https://registry.example.com", False),
    ("*.example.com", "https://example.com", True),
    ("*.example.com", "https://a.b.example.com", False),
    ("EXAMPLE.com", "https://Registry.Example.COM", False),
    # ports: an entry with a port matches that port only; a URL without one has its scheme's
    ("example.com:5000", "https://example.com:5000", False),
    ("example.com:5000", "https://example.com:5001", True),
    ("example.com:443", "https://example.com", False),
    ("example.com:80", "http://example.com", False),
    ("example.com:80", "https://example.com", True),
    # IP literals and CIDRs match IP literals only, never names
    ("10.1.2.3", "https://10.1.2.3:6443", False),
    ("10.1.2.3:6443", "https://10.1.2.3:6443", False),
    ("10.1.2.3:6443", "https://10.1.2.3:443", True),
    ("10.96.0.0/12", "https://10.96.0.1", False),
    ("10.96.0.0/12", "https://10.112.0.1", True),
    ("10.0.0.0/8", "https://kubernetes.default.svc", True),
    ("2001:db8::/32", "https://[2001:db8::1]:5000", False),
    ("[2001:db8::1]:5000", "https://[2001:db8::1]:5000", False),
    ("2001:db8::1", "https://[2001:db8::1]:5000", False),
    ("10.0.0.0/8", "https://[2001:db8::1]", True),
    ("10.1.2.3", "https://10.1.2.3.example.com", True),
    # empty and malformed entries are skipped
    (" , ,:5000, example.com ", "https://example.com", False),
    ("10.0.0.0/99", "https://10.0.0.1", True),
])
def test_no_proxy_entries(no_proxy, url, expected):
    assert proxied(url, no_proxy) is expected


def test_a_proxy_without_a_scheme_is_http_and_its_credentials_stay_out_of_its_url():
    proxy = Proxy.parse("robot:p%40ss@proxy.example:3128")
    assert proxy.url == "http://proxy.example:3128" and str(proxy) == proxy.url
    assert "p@ss" not in repr(proxy) and "robot" not in repr(proxy)
    assert proxy.headers() == {"Proxy-Authorization": "Basic cm9ib3Q6cEBzcw=="}  # robot:p@ss
    assert Proxy.parse("https://[2001:db8::1]:8443").url == "https://[2001:db8::1]:8443"
    assert Proxy.parse(PROXY).headers() == {}


@pytest.mark.parametrize("value", ["socks5://robot:secret@proxy.example:1080", "http://robot:secret@:3128",
                                   "http://robot:secret@proxy.example:port"])
def test_an_unusable_proxy_fails_without_naming_its_credentials(value):
    with pytest.raises(ValueError) as refused:
        ProxyEnvironment(https_proxy=value).proxy_for("https://registry.example")
    assert "secret" not in str(refused.value) and "robot" not in str(refused.value)
