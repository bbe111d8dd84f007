"""Which proxy, if any, a connection to a URL goes through: one rule for the API server, the registries
and skopeo.

The rule is Go's (``golang.org/x/net/http/httpproxy``, what ``net/http`` and
so skopeo use), so that the engine's own requests and skopeo's copies never
disagree about a host:

* ``HTTPS_PROXY`` serves https URLs, ``HTTP_PROXY`` http URLs; neither stands
  in for the other. The uppercase name wins over the lowercase one; an empty
  value counts as unset. A value without a scheme means ``http://``.
* ``localhost`` and loopback IP literals (127.0.0.0/8, ::1) never go through a
  proxy, whatever the variables say.
* ``NO_PROXY`` is a comma-separated list; an entry that matches sends the
  connection direct: ``*`` matches every host; ``10.0.0.0/8`` (a CIDR) matches
  IP literals in that range; ``10.1.2.3`` an IP literal; ``example.com``
  matches that host and its subdomains, ``.example.com`` and ``*.example.com``
  its subdomains only. An IP or a name may carry ``:port``, then it matches
  that port alone (443 for an https URL without one, 80 for http). Names are
  compared as written: a CIDR never matches a name, even one that resolves
  into it.
"""
from __future__ import annotations

import base64
import ipaddress
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Final, Union
from urllib.parse import unquote, urlsplit

# The variables as Go reads them: the first non-empty one of each pair.
_HTTPS_VARIABLES: Final = ("HTTPS_PROXY", "https_proxy")
_HTTP_VARIABLES: Final = ("HTTP_PROXY", "http_proxy")
_NO_PROXY_VARIABLES: Final = ("NO_PROXY", "no_proxy")
_DEFAULT_PORTS: Final = {"https": "443", "http": "80"}
# Go also takes socks5 proxies; the engine's HTTP clients do not, so such a proxy fails loudly everywhere.
_PROXY_SCHEMES: Final = ("http", "https")

_Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]
_Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]


@dataclass(frozen=True)
class Proxy:
    """A proxy to connect through. ``url`` carries no credentials, so it may be logged and shown;
    the username and password only ever travel in ``Proxy-Authorization``."""

    url: str
    username: str = field(default="", repr=False)
    password: str = field(default="", repr=False)

    @classmethod
    def parse(cls, value: str) -> Proxy:
        """A proxy from a variable's value, such as ``http://user:secret@proxy.example:3128`` or
        ``proxy.example:3128``; ``ValueError`` (naming no credentials) when it has no host."""
        parts = urlsplit(value if "://" in value else f"http://{value}")
        try:
            host, port = parts.hostname, parts.port
        except ValueError:
            host = port = None
        if not host:
            raise ValueError(f"{_without_userinfo(value)!r} is not a usable proxy address")
        if parts.scheme not in _PROXY_SCHEMES:
            raise ValueError(f"the proxy address {_without_userinfo(value)!r} has scheme {parts.scheme!r}: "
                             "image-clone speaks to http:// and https:// proxies only")
        netloc = f"[{host}]" if ":" in host else host
        if port is not None:
            netloc += f":{port}"
        return cls(f"{parts.scheme}://{netloc}", unquote(parts.username or ""), unquote(parts.password or ""))

    def headers(self) -> dict[str, str]:
        """What to send the proxy: ``Proxy-Authorization`` when its URL carried credentials."""
        if not self.username and not self.password:
            return {}
        token = base64.b64encode(f"{self.username}:{self.password}".encode()).decode()
        return {"Proxy-Authorization": f"Basic {token}"}

    def __str__(self) -> str:
        return self.url


@dataclass(frozen=True)
class _IpEntry:
    address: _Address
    port: str

    def matches(self, host: str, port: str, ip: _Address | None) -> bool:
        return ip == self.address and self.port in ("", port)


@dataclass(frozen=True)
class _CidrEntry:
    network: _Network

    def matches(self, host: str, port: str, ip: _Address | None) -> bool:
        return ip is not None and ip.version == self.network.version and ip in self.network


@dataclass(frozen=True)
class _DomainEntry:
    suffix: str  # always with its leading dot
    port: str
    itself_too: bool  # "example.com" matches example.com; ".example.com" only below it

    def matches(self, host: str, port: str, ip: _Address | None) -> bool:
        named = host.endswith(self.suffix) or (self.itself_too and host == self.suffix[1:])
        return ip is None and named and self.port in ("", port)


_Entry = Union[_IpEntry, _CidrEntry, _DomainEntry]


@dataclass(frozen=True)
class ProxyEnvironment:
    """``HTTPS_PROXY``, ``HTTP_PROXY`` and ``NO_PROXY`` as read once; ``proxy_for`` applies the rule."""

    https_proxy: str = ""
    http_proxy: str = ""
    no_proxy: str = ""
    _entries: tuple[_Entry, ...] = field(init=False, repr=False, compare=False)
    _everything: bool = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        parts = [part.strip().lower() for part in self.no_proxy.split(",")]
        object.__setattr__(self, "_everything", "*" in parts)
        object.__setattr__(self, "_entries", tuple(entry for entry in map(_entry, parts) if entry is not None))

    @classmethod
    def from_environ(cls, environ: Mapping[str, str]) -> ProxyEnvironment:
        return cls(_first(environ, _HTTPS_VARIABLES), _first(environ, _HTTP_VARIABLES),
                   _first(environ, _NO_PROXY_VARIABLES))

    def as_environ(self) -> dict[str, str]:
        """The variables to hand a child process (skopeo) so that it decides exactly as ``proxy_for``."""
        values = {"HTTPS_PROXY": self.https_proxy, "HTTP_PROXY": self.http_proxy, "NO_PROXY": self.no_proxy}
        return {name: value for name, value in values.items() if value}

    def proxy_for(self, url: str) -> Proxy | None:
        """The proxy a connection to ``url`` goes through, ``None`` for a direct connection.
        ``ValueError`` when the variable that applies holds no usable proxy address."""
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        configured = {"https": self.https_proxy, "http": self.http_proxy}.get(scheme, "")
        if not configured:
            return None
        host = (parts.hostname or "").lower()
        if not self._proxied(_ascii(host), str(parts.port or _DEFAULT_PORTS[scheme])):
            return None
        return Proxy.parse(configured)

    def _proxied(self, host: str, port: str) -> bool:
        if not host or host == "localhost":
            return False
        ip = _ip(host)
        if ip is not None and ip.is_loopback:
            return False
        if self._everything:
            return False
        return not any(entry.matches(host, port, ip) for entry in self._entries)


def _entry(text: str) -> _Entry | None:
    """One NO_PROXY entry (stripped, lowercase); ``None`` for the wildcard, an empty or a malformed one."""
    if not text or text == "*":
        return None
    if "/" in text:
        try:
            return _CidrEntry(ipaddress.ip_network(text, strict=False))
        except ValueError:
            pass
    host, port = _split_port(text)
    if not host:
        return None
    ip = _ip(host)
    if ip is not None:
        return _IpEntry(ip, port)
    if host.startswith("*."):
        host = host[1:]
    return _DomainEntry(_ascii(host if host.startswith(".") else f".{host}"), port, not host.startswith("."))


def _split_port(text: str) -> tuple[str, str]:
    """``host:port`` or ``[v6]:port`` into host and port; the whole text when it has no port."""
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if bracket and rest.startswith(":") and rest[1:].isdigit():
            return host, rest[1:]
        return text, ""
    host, colon, port = text.rpartition(":")
    if colon and port.isdigit() and ":" not in host:
        return host, port
    return text, ""


def _ip(host: str) -> _Address | None:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return None
    # ::ffff:127.0.0.1 is 127.0.0.1, for the loopback rule and for NO_PROXY alike.
    return getattr(address, "ipv4_mapped", None) or address


def _ascii(host: str) -> str:
    """Internationalized names compared in their ASCII (punycode) form, as Go does."""
    try:
        return host.encode("idna").decode("ascii")
    except UnicodeError:
        return host


def _first(environ: Mapping[str, str], names: tuple[str, ...]) -> str:
    return next((environ[name] for name in names if environ.get(name)), "")


def _without_userinfo(value: str) -> str:
    return value.rpartition("@")[2]
