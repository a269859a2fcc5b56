"""The virtual users' cookie jar against RFC 6265: domain, path, expiry, Secure, ordering."""

from __future__ import annotations

from assay.runner.load.cookies import CookieJar, default_path, path_matches

NOW = 1_700_000_000.0


def jar_with(*set_cookies: str, host: str = "shop.example.com", path: str = "/account/login") -> CookieJar:
    jar = CookieJar()
    jar.store(list(set_cookies), host, path, now=NOW)
    return jar


def test_a_host_only_cookie_goes_back_to_its_exact_host_only():
    jar = jar_with("sid=1; Path=/")
    assert jar.header("shop.example.com", "/", False, NOW) == "sid=1"
    assert jar.header("SHOP.example.com", "/", False, NOW) == "sid=1"
    assert jar.header("api.shop.example.com", "/", False, NOW) is None
    assert jar.header("example.com", "/", False, NOW) is None


def test_a_domain_cookie_goes_to_the_domain_and_its_subdomains_and_a_foreign_domain_is_refused():
    jar = jar_with("a=1; Domain=.example.com; Path=/", "b=2; Domain=other.org; Path=/")
    assert jar.header("example.com", "/", False, NOW) == "a=1"
    assert jar.header("api.example.com", "/x", False, NOW) == "a=1"
    assert jar.header("badexample.com", "/", False, NOW) is None
    assert jar.header("other.org", "/", False, NOW) is None
    assert len(jar) == 1


def test_an_ip_address_host_gets_host_only_cookies():
    jar = jar_with("a=1; Domain=0.0.1; Path=/", "b=2; Path=/", host="127.0.0.1")
    assert jar.header("127.0.0.1", "/", False, NOW) == "b=2"
    assert len(jar) == 1


def test_paths_match_the_cookie_path_and_below_it_and_default_to_the_request_directory():
    assert default_path("/account/login") == "/account"
    assert default_path("/login") == "/" and default_path("") == "/"
    assert path_matches("/account", "/account") and path_matches("/account/x", "/account")
    assert path_matches("/account/x", "/account/") and not path_matches("/accounts", "/account")
    jar = jar_with("d=1", "p=2; Path=/api", "bad=3; Path=relative")
    assert jar.header("shop.example.com", "/account/orders", False, NOW) == "d=1; bad=3"
    assert jar.header("shop.example.com", "/api/v1", False, NOW) == "p=2"
    assert jar.header("shop.example.com", "/", False, NOW) is None


def test_longer_paths_go_first_then_older_cookies():
    jar = jar_with("z=1; Path=/", "y=2; Path=/a/b", "x=3; Path=/a", "w=4; Path=/")
    assert jar.header("shop.example.com", "/a/b/c", False, NOW) == "y=2; x=3; z=1; w=4"


def test_max_age_wins_over_expires_and_expired_cookies_go():
    jar = jar_with(
        "short=1; Path=/; Max-Age=10; Expires=Wed, 01 Jan 2100 00:00:00 GMT",
        "long=2; Path=/; Max-Age=1000",
        "dated=3; Path=/; Expires=Wed, 01 Jan 2100 00:00:00 GMT",
        "past=4; Path=/; Expires=Thu, 01 Jan 1970 00:00:00 GMT",
        "junk=5; Path=/; Max-Age=soon",
    )
    assert jar.header("shop.example.com", "/", False, NOW) == "short=1; long=2; dated=3; junk=5"
    assert jar.header("shop.example.com", "/", False, NOW + 11) == "long=2; dated=3; junk=5"
    assert len(jar) == 3  # the expired one is gone, not only left out


def test_a_cookie_is_replaced_by_name_domain_and_path_and_deleted_by_a_past_expiry():
    jar = jar_with("sid=1; Path=/", "sid=9; Path=/other")
    jar.store(["sid=2; Path=/"], "shop.example.com", "/", now=NOW)
    assert jar.header("shop.example.com", "/", False, NOW) == "sid=2"
    assert jar.header("shop.example.com", "/other", False, NOW) == "sid=9; sid=2"
    jar.store(["sid=; Path=/; Max-Age=0"], "shop.example.com", "/", now=NOW)
    assert jar.header("shop.example.com", "/", False, NOW) is None
    assert jar.header("shop.example.com", "/other", False, NOW) == "sid=9"


def test_secure_cookies_go_over_https_only_and_httponly_changes_nothing():
    jar = jar_with("s=1; Path=/; Secure", "h=2; Path=/; HttpOnly")
    assert jar.header("shop.example.com", "/", True, NOW) == "s=1; h=2"
    assert jar.header("shop.example.com", "/", False, NOW) == "h=2"


def test_values_with_equals_signs_and_quotes_are_kept_as_sent():
    jar = jar_with("t=a=b==; Path=/", 'q="x y"; Path=/')
    assert jar.header("shop.example.com", "/", False, NOW) == 't=a=b==; q="x y"'


def test_a_refreshed_cookie_keeps_living_and_a_changed_one_is_sent_at_once():
    jar = jar_with("sid=1; Path=/; Max-Age=10")
    assert jar.header("shop.example.com", "/", False, NOW) == "sid=1"
    jar.store(["sid=1; Path=/; Max-Age=10"], "shop.example.com", "/", now=NOW + 8)
    assert jar.header("shop.example.com", "/", False, NOW + 15) == "sid=1"
    assert jar.header("shop.example.com", "/", False, NOW + 18) is None
    jar.store(["sid=2; Path=/"], "shop.example.com", "/", now=NOW + 20)
    assert jar.header("shop.example.com", "/", False, NOW + 20) == "sid=2"
    jar.store(["sid=3; Path=/"], "shop.example.com", "/", now=NOW + 21)
    assert jar.header("shop.example.com", "/", False, NOW + 21) == "sid=3"
