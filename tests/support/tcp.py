"""Byte pumps for the TCP proxies tests put in front of a gateway (to slow a body down, to
balance, to cut a connection by killing what is behind it)."""

from __future__ import annotations

import socket
from collections.abc import Callable


def pipe(source: socket.socket, target: socket.socket, chunk: int, each: Callable[[int], None] | None = None) -> None:
    """Copy `source` to `target` in pieces of up to `chunk` bytes until either side ends,
    calling `each(bytes so far)` after every piece; then shut both down, so the other
    direction's pump ends too."""
    sent = 0
    try:
        while data := source.recv(chunk):
            target.sendall(data)
            if each is not None:
                sent += len(data)
                each(sent)
    except OSError:
        pass
    finally:
        for s in (source, target):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()
