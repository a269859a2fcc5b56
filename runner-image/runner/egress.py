"""The egress policy: which addresses Assay may connect to when a tenant chose the URL.

The gateway's VNG forwarder and openAPIinspector, the operator's webhooks and, where it shares
their network position, the runner fetch URLs that a tenant wrote. Without a policy a tenant
could make them read what only they can reach: etcd, the API server, cloud metadata, the
gateway's own listeners. So every such connection goes through one check:

- denied by default: every address that is not globally routable (loopback, link-local,
  private and unique-local, shared/CGNAT, multicast, reserved, unspecified), IPv4-mapped and
  NAT64 forms of those included;
- `ASSAY_EGRESS_DENY` adds ranges (the cluster's service and pod ranges where they are public);
- `ASSAY_EGRESS_ALLOW` opens ranges an administrator trusts, e.g. an internal API's subnet;
  a deny entry wins over an allow entry.

Entries are comma- or space-separated `ADDRESS[/PREFIX][:PORT[-PORT]]`, IPv6 in brackets when a
port follows (`[fd00::]/8:443`). Host names are not accepted: they could resolve elsewhere later.

The check runs on the resolved address at connect time, and the connection is made to exactly
that address (TLS still verifies the host name), so DNS rebinding cannot slip past it; every
redirect hop is a new connection and is checked again. Environment proxies are ignored.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import socket
import time
from dataclasses import dataclass
from typing import Callable, Iterable, Optional, Union

import httpcore
import httpx

Address = Union[ipaddress.IPv4Address, ipaddress.IPv6Address]
Network = Union[ipaddress.IPv4Network, ipaddress.IPv6Network]

ALLOW_ENV = "ASSAY_EGRESS_ALLOW"
DENY_ENV = "ASSAY_EGRESS_DENY"
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


class EgressDenied(httpx.ConnectError):
    """A connection the policy refuses. A ConnectError, so code that treats any failed connect
    as "unreachable" stays safe; code that wants to say why catches this first."""

    def __init__(self, host: str, port: int):
        super().__init__(f"{host}:{port} is not an address Assay may connect to (egress policy)")
        self.host, self.port = host, port


@dataclass(frozen=True)
class Rule:
    network: Network
    ports: Optional[tuple[int, int]] = None

    def matches(self, address: Address, port: int) -> bool:
        return address in self.network and (self.ports is None or self.ports[0] <= port <= self.ports[1])

    @classmethod
    def parse(cls, entry: str) -> "Rule":
        entry = entry.strip()
        ports = None
        if entry.startswith("["):
            address, closed, rest = entry[1:].partition("]")
            if not closed:
                raise ValueError(f"egress policy entry {entry!r}: expected ADDRESS[/PREFIX][:PORT[-PORT]]")
            prefix, _, port_text = rest.partition(":")
            network_text = address + prefix
        elif entry.count(":") == 1:
            network_text, _, port_text = entry.partition(":")
        else:
            network_text, port_text = entry, ""
        try:
            network = ipaddress.ip_network(network_text, strict=False)
            if port_text:
                low, _, high = port_text.partition("-")
                ports = (int(low), int(high or low))
                if not 0 < ports[0] <= ports[1] <= 65535:
                    raise ValueError
        except ValueError:
            raise ValueError(f"egress policy entry {entry!r}: expected ADDRESS[/PREFIX][:PORT[-PORT]]") from None
        return cls(network, ports)


def _parse_rules(text: str) -> tuple[Rule, ...]:
    return tuple(Rule.parse(entry) for entry in text.replace(",", " ").split())


def _unwrapped(address: Address) -> Address:
    """The IPv4 address inside an IPv4-mapped or NAT64 IPv6 address (which reach it too)."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return address.ipv4_mapped
        if address in _NAT64:
            return ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    return address


@dataclass(frozen=True)
class EgressPolicy:
    allow: tuple[Rule, ...] = ()
    deny: tuple[Rule, ...] = ()

    @classmethod
    def parse(cls, allow: str = "", deny: str = "") -> "EgressPolicy":
        return cls(_parse_rules(allow), _parse_rules(deny))

    @classmethod
    def from_env(cls, environ: Optional[dict] = None) -> "EgressPolicy":
        environ = os.environ if environ is None else environ
        return cls.parse(environ.get(ALLOW_ENV, ""), environ.get(DENY_ENV, ""))

    def permits(self, address: Union[str, Address], port: int) -> bool:
        address = _unwrapped(ipaddress.ip_address(address.split("%", 1)[0]) if isinstance(address, str) else address)
        if any(rule.matches(address, port) for rule in self.deny):
            return False
        if any(rule.matches(address, port) for rule in self.allow):
            return True
        return address.is_global and not address.is_multicast

    @classmethod
    def for_runs(cls) -> Optional["EgressPolicy"]:
        """The policy a run was given, or None: a runner obeys one only where it shares the
        gateway's network position, and that is where the node running it passes one."""
        return cls.from_env() if ALLOW_ENV in os.environ or DENY_ENV in os.environ else None


# --- connecting through it ------------------------------------------------------------------


def _addresses(infos: Iterable) -> list[str]:
    return list(dict.fromkeys(info[4][0] for info in infos))


def _checked(host: str, port: int, addresses: list[str], policy: Optional[EgressPolicy]) -> list[str]:
    if policy is None:
        return addresses
    allowed = [address for address in addresses if policy.permits(address, port)]
    if not allowed:
        raise EgressDenied(host, port)
    return allowed


def _literal(host: str) -> Optional[str]:
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        return None


class ResolvingBackend(httpcore.AsyncNetworkBackend):
    """Resolves host names itself, checks each address against the policy (if any), then
    connects to an allowed address. `on_resolved(ms)` is told how long the lookup took."""

    def __init__(
        self,
        inner: httpcore.AsyncNetworkBackend,
        policy: Optional[EgressPolicy] = None,
        on_resolved: Optional[Callable[[float], None]] = None,
    ):
        self._inner, self._policy, self._on_resolved = inner, policy, on_resolved

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        local_address: Optional[str] = None,
        socket_options: Optional[Iterable] = None,
    ):
        literal = _literal(host)
        if literal is not None:
            addresses = [literal]
        else:
            began = time.perf_counter()
            try:
                infos = await asyncio.wait_for(
                    asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM), timeout
                )
            except asyncio.TimeoutError:
                raise httpcore.ConnectTimeout(f"DNS lookup of {host} timed out") from None
            except OSError as exc:
                raise httpcore.ConnectError(f"DNS lookup of {host} failed: {exc}") from exc
            finally:
                if self._on_resolved is not None:
                    self._on_resolved((time.perf_counter() - began) * 1000.0)
            addresses = _addresses(infos)
        last_error: Optional[Exception] = None
        for address in _checked(host, port, addresses, self._policy):
            try:
                return await self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        raise last_error or httpcore.ConnectError(f"{host} resolved to no address")

    async def connect_unix_socket(
        self, path: str, timeout: Optional[float] = None, socket_options: Optional[Iterable] = None
    ):
        if self._policy is not None:
            raise EgressDenied(path, 0)
        return await self._inner.connect_unix_socket(path, timeout=timeout, socket_options=socket_options)

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _SyncCheckingBackend(httpcore.NetworkBackend):
    def __init__(self, inner: httpcore.NetworkBackend, policy: EgressPolicy):
        self._inner, self._policy = inner, policy

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: Optional[float] = None,
        local_address: Optional[str] = None,
        socket_options: Optional[Iterable] = None,
    ):
        literal = _literal(host)
        try:
            addresses = [literal] if literal else _addresses(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except OSError as exc:
            raise httpcore.ConnectError(f"DNS lookup of {host} failed: {exc}") from exc
        last_error: Optional[Exception] = None
        for address in _checked(host, port, addresses, self._policy):
            try:
                return self._inner.connect_tcp(
                    address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
                )
            except (httpcore.ConnectError, httpcore.ConnectTimeout) as exc:
                last_error = exc
        raise last_error or httpcore.ConnectError(f"{host} resolved to no address")

    def connect_unix_socket(
        self, path: str, timeout: Optional[float] = None, socket_options: Optional[Iterable] = None
    ):
        raise EgressDenied(path, 0)

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def install(transport: Union[httpx.AsyncHTTPTransport, httpx.HTTPTransport], backend_for) -> None:
    """Put `backend_for(current backend)` under the transport's connection pool. httpx has no
    public way to pass a network backend; the pool attribute has been stable through httpcore
    1.x, and a change there fails here, loudly, rather than connecting unchecked."""
    pool = getattr(transport, "_pool", None)
    backend = getattr(pool, "_network_backend", None)
    if not isinstance(backend, (httpcore.AsyncNetworkBackend, httpcore.NetworkBackend)):
        raise RuntimeError("httpx/httpcore changed: cannot install the egress policy on this transport")
    pool._network_backend = backend_for(backend)


def async_client(policy: EgressPolicy, **kwargs) -> httpx.AsyncClient:
    """An AsyncClient whose every connection obeys `policy`; no environment proxies, and
    redirects are not followed unless asked (each hop is checked when they are)."""
    transport = httpx.AsyncHTTPTransport(verify=kwargs.pop("verify", True), trust_env=False)
    install(transport, lambda inner: ResolvingBackend(inner, policy))
    return httpx.AsyncClient(transport=transport, trust_env=False, **kwargs)


def client(policy: EgressPolicy, **kwargs) -> httpx.Client:
    """The synchronous form of `async_client`."""
    transport = httpx.HTTPTransport(verify=kwargs.pop("verify", True), trust_env=False)
    install(transport, lambda inner: _SyncCheckingBackend(inner, policy))
    return httpx.Client(transport=transport, trust_env=False, **kwargs)
