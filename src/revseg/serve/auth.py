"""Credentials of the serve API: a bearer token for reads, Segment's basic auth for ingest.

Both compare in constant time. A credential that is not configured leaves its endpoints open,
which :func:`check_bind` allows only on a loopback address.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import socket

from revseg.errors import UsageError


def bearer_ok(header: str | None, token: str | None) -> bool:
    """``Authorization: Bearer {token}``; anything goes when no token is configured."""
    if token is None:
        return True
    scheme, _, given = (header or "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


def basic_ok(header: str | None, write_key: str | None) -> bool:
    """Segment's HTTP API auth: basic auth, user = write key, password empty (ignored, as
    Segment does); anything goes when no write key is configured."""
    if write_key is None:
        return True
    scheme, _, encoded = (header or "").partition(" ")
    if scheme.lower() != "basic":
        return False
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return False
    user = decoded.partition(":")[0]
    return hmac.compare_digest(user.encode(), write_key.encode())


def is_loopback(host: str) -> bool:
    """Whether every address ``host`` names is a loopback one (127.0.0.0/8, ::1)."""
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None)
    except OSError:
        return False
    return bool(infos) and all(ipaddress.ip_address(str(info[4][0]).split("%")[0]).is_loopback for info in infos)


def check_bind(host: str, api_token: str | None) -> None:
    """Refuse to expose membership beyond this machine without a token (exit 2)."""
    if api_token is None and not is_loopback(host):
        raise UsageError(
            f"refusing to serve on {host}, which is not a loopback address, without a read API token: "
            "set serve.api_token in revseg.yml (e.g. \"{{ env_var('REVSEG_API_TOKEN') }}\"), "
            "or bind --host 127.0.0.1"
        )
