"""A virtual user's cookie jar (RFC 6265), small enough to keep one per user.

    jar = CookieJar()
    jar.store(set_cookie_values, host, path)        # from a response
    header = jar.header(host, path, secure, now)    # "a=1; b=2" or None

Set-Cookie values are parsed by the standard library (`http.cookiejar.parse_ns_headers`:
the Netscape form browsers speak, Expires dates included); what a jar keeps and sends
follows RFC 6265:

- Domain: a cookie with a Domain attribute (leading dot ignored) goes to that domain and its
  subdomains, and is refused unless the request's host is within it; without one it goes back
  to the exact host only. An IP address host only ever gets host-only cookies. (There is no
  public-suffix list: a load test talks to the hosts its author chose.)
- Path: the Path attribute, or the request path's directory when it has none or one that does
  not start with '/'; a cookie goes to that path and the paths below it.
- Expiry: Max-Age wins over Expires; a cookie whose time has passed (Max-Age <= 0, an Expires
  in the past) removes the stored one of the same name, domain and path. Without either it
  lives as long as the jar (a session cookie).
- Secure cookies go out over https only. HttpOnly means nothing to a client without scripts.

The Cookie header lists longer paths first, then older cookies first, as browsers do.
Why not `http.cookiejar.CookieJar`: it works on urllib Request and Response objects and
re-derives every policy decision per request; a load test sends thousands of requests a
second and needs only the header string.
"""

from __future__ import annotations

import ipaddress
import math
import time
from functools import lru_cache
from http.cookiejar import parse_ns_headers
from typing import Optional

_CACHED_HEADERS = 8
"""Cookie headers a jar remembers, by (host, path, secure), until its cookies change."""


class _Cookie:
    __slots__ = ("name", "value", "domain", "host_only", "path", "expires", "secure", "order")

    def __init__(self, name, value, domain, host_only, path, expires, secure, order):
        self.name, self.value, self.domain, self.host_only = name, value, domain, host_only
        self.path, self.expires, self.secure, self.order = path, expires, secure, order


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def domain_matches(host: str, domain: str) -> bool:
    return host == domain or (host.endswith("." + domain) and not _is_ip(host))


def path_matches(request_path: str, cookie_path: str) -> bool:
    if request_path == cookie_path:
        return True
    if request_path.startswith(cookie_path):
        return cookie_path.endswith("/") or request_path[len(cookie_path)] == "/"
    return False


def default_path(request_path: str) -> str:
    if not request_path.startswith("/"):
        return "/"
    cut = request_path.rfind("/")
    return request_path[:cut] if cut > 0 else "/"


@lru_cache(maxsize=4096)
def _parse(set_cookie: str) -> Optional[tuple]:
    """(name, value, domain or None, path or None, max_age, expires, secure) of one
    Set-Cookie value; None for one without a value. Servers that refresh a session send the
    same text again and again, so it is parsed once."""
    parsed = parse_ns_headers([set_cookie])
    if not parsed or parsed[0][0][1] is None:
        # `Set-Cookie: token` is a cookie with an empty name (RFC 6265 5.2 step 5); browsers
        # send it back as "token". Rare enough to drop instead.
        return None
    attributes = parsed[0]
    name, value = attributes[0]
    domain = path = max_age = expires = None
    secure = False
    for key, attr in attributes[1:]:
        key = key.lower()
        if key == "domain" and attr:
            domain = str(attr).lstrip(".").lower()
        elif key == "path":
            path = attr if attr and str(attr).startswith("/") else None
        elif key == "max-age" and attr is not None:
            try:
                max_age = float(attr)
            except ValueError:
                pass  # RFC 6265 5.2.2: an invalid Max-Age is ignored
        elif key == "expires" and isinstance(attr, (int, float)):
            expires = float(attr)
        elif key == "secure":
            secure = True
    return name, value, domain, path, max_age, expires, secure


class CookieJar:
    """The cookies of one virtual user."""

    __slots__ = ("cookies", "_created", "_headers", "_fresh_until")

    def __init__(self):
        self.cookies: dict[tuple[str, str, str], _Cookie] = {}
        self._created = 0
        self._headers: dict[tuple[str, str, bool], Optional[str]] = {}
        self._fresh_until = math.inf
        """When the first stored cookie expires: remembered headers are good until then."""

    def __len__(self) -> int:
        return len(self.cookies)

    def clear(self) -> None:
        self.cookies.clear()
        self._headers.clear()

    def store(self, set_cookies: list[str], host: str, request_path: str, now: Optional[float] = None) -> None:
        """Take in a response's Set-Cookie header values, for a request to `host` + `request_path`."""
        now = time.time() if now is None else now
        host = host.lower()
        for text in set_cookies:
            parsed = _parse(text)
            if parsed is None:
                continue
            name, value, domain, path, max_age, expires, secure = parsed
            host_only = domain is None
            if host_only:
                domain = host
            if max_age is not None:
                expires = now + max_age if max_age > 0 else 0.0
            if not host_only and not domain_matches(host, domain):
                continue  # a server may not set cookies for a domain it is not in
            if not host_only and _is_ip(host):
                domain, host_only = host, True
            key3 = (name, domain, path or default_path(request_path))
            if expires is not None and expires <= now:
                if self.cookies.pop(key3, None) is not None:
                    self._headers.clear()
                continue
            old = self.cookies.get(key3)
            if old is not None and old.value == value and old.secure == secure and old.host_only == host_only:
                old.expires = expires  # a refreshed cookie: what the jar sends stays the same
            else:
                order = old.order if old is not None else self._created
                self._created += 1
                self.cookies[key3] = _Cookie(name, value, domain, host_only, key3[2], expires, secure, order)
                self._headers.clear()
            if expires is not None and expires < self._fresh_until:
                self._fresh_until = expires

    def header(self, host: str, request_path: str, secure: bool, now: Optional[float] = None) -> Optional[str]:
        """The Cookie header value for a request, or None when no cookie goes with it."""
        if not self.cookies:
            return None
        if self._fresh_until != math.inf:
            if (time.time() if now is None else now) >= self._fresh_until:
                self._expire(time.time() if now is None else now)
        key = (host, request_path, secure)
        headers = self._headers
        if key in headers:
            return headers[key]
        if len(headers) >= _CACHED_HEADERS:
            headers.clear()
        value = headers[key] = self._build(host.lower(), request_path, secure)
        return value

    def _expire(self, now: float) -> None:
        """Drop the cookies whose time has come; the remembered headers with them."""
        for key in [key for key, c in self.cookies.items() if c.expires is not None and c.expires <= now]:
            del self.cookies[key]
        self._headers.clear()
        self._fresh_until = min((c.expires for c in self.cookies.values() if c.expires is not None), default=math.inf)

    def _build(self, host: str, request_path: str, secure: bool) -> Optional[str]:
        picked = []
        for cookie in self.cookies.values():
            if cookie.secure and not secure:
                continue
            if cookie.host_only:
                if host != cookie.domain:
                    continue
            elif not domain_matches(host, cookie.domain):
                continue
            if not path_matches(request_path, cookie.path):
                continue
            picked.append(cookie)
        if not picked:
            return None
        if len(picked) > 1:
            picked.sort(key=lambda c: (-len(c.path), c.order))
        return "; ".join(f"{c.name}={c.value}" for c in picked)
