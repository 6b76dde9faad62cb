"""Where a webhook may be sent: no server-side request forgery.

A target URL is checked when a subscription is made and again at every attempt (DNS answers
change): an http(s) URL without credentials whose host resolves only to public addresses. The
attempt then connects to the very address that was checked (``Target.address``), never looking
the name up a second time, so a name cannot be re-pointed between the check and the connection
(DNS rebinding). Operators allow internal receivers (and tests their loopback one) with a list
of CIDRs.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from eowatch.errors import EowatchError

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]

# what each refused kind of address is, in the words of the refusal
REFUSED: tuple[tuple[str, Callable[[Address], bool]], ...] = (
    ("unspecified", lambda a: a.is_unspecified),
    ("loopback", lambda a: a.is_loopback),
    ("link-local", lambda a: a.is_link_local),      # cloud metadata: 169.254.169.254
    ("multicast", lambda a: a.is_multicast),
    ("private", lambda a: a.is_private),            # 10/8, 172.16/12, 192.168/16, fc00::/7 ...
    ("reserved", lambda a: a.is_reserved),
    ("not globally routable", lambda a: not a.is_global),
)


class TargetRefused(EowatchError, ValueError):
    """A webhook target that must not be called, with the reason."""


@dataclass(frozen=True)
class Target:
    """A checked target: where to connect (``address``) and what to call it (``host``)."""

    url: str
    scheme: str
    host: str
    port: int
    path: str          # with the query
    address: str       # the checked IP address to connect to


def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver (hosts file, DNS) gives ``host``."""
    try:
        found = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TargetRefused(f"{host} does not resolve ({exc.strerror})") from None
    return list(dict.fromkeys(str(info[4][0]) for info in found))


def parse_networks(cidrs: Sequence[str]) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [ipaddress.ip_network(c.strip(), strict=False) for c in cidrs if c.strip()]


def refusal(address: Address) -> str | None:
    """What kind of address ``address`` is when it must not be called ("loopback"), or None."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        inner = refusal(address.ipv4_mapped)
        return f"IPv4-mapped {inner}" if inner else None
    for kind, matches in REFUSED:
        if matches(address):
            return kind
    return None


def check(url: str, allowed: Sequence[ipaddress.IPv4Network | ipaddress.IPv6Network] = (),
          resolve: Resolver = system_resolver) -> Target:
    """The target of ``url`` once it is known safe to call; TargetRefused otherwise. Nothing is
    sent anywhere: the only network use is the name lookup."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TargetRefused(f"{url!r}: only http and https targets are called, not "
                            f"{parts.scheme or 'a URL without scheme'}")
    if parts.username is not None or parts.password is not None:
        raise TargetRefused(f"{parts.scheme}://…@{parts.hostname}: credentials in a target URL "
                            "are refused (the secret signs each delivery instead)")
    host = parts.hostname
    if not host:
        raise TargetRefused(f"{url!r} names no host")
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        raise TargetRefused(f"{url!r}: the port is not a number from 0 to 65535") from None
    try:
        literal: Address | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    addresses = [str(literal)] if literal is not None else resolve(host, port)
    if not addresses:
        raise TargetRefused(f"{host} resolves to no address")
    for text in addresses:
        address = ipaddress.ip_address(text.split("%", 1)[0])   # a scope id is no address
        if any(address in network for network in allowed):
            continue
        why = refusal(address)
        if why is not None:
            shown = host if literal is not None else f"{host} ({address})"
            article = "an" if why[0] in "aeiouIU" else "a"
            raise TargetRefused(f"{shown} is {article} {why} address: webhooks are not sent "
                                "there (an operator allows internal receivers with "
                                "EOWATCH_WEBHOOK_ALLOW_CIDRS)")
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    return Target(url, parts.scheme, host, port, path, addresses[0].split("%", 1)[0])
