"""A listening socket per worker process, so the kernel spreads the connections.

uvicorn's workers accept from one socket the parent bound, and libuv accepts every
pending connection in one go: when clients open their connections together, as a
load balancer's or a benchmark's keep-alive pool does, they land on whichever
worker woke first. `ss -tnp` counted 8 / 8, 6 / 10 and 16 / 0 connections per
worker for 16 connections on `--workers 2`; the worker holding them saturates while
the other idles (bench/README.md, "What is left").

With SO_REUSEPORT each worker binds and listens on a socket of its own for the
same address, and Linux hands each new connection to one of the listening sockets
of the group by a hash of its addresses. The parent binds first (so a taken port
fails before any worker starts, and port 0 resolves to one port for all) and
never listens: only listening sockets receive connections.

Caveat of the kernel's scheme: connections queued on a worker that exits before
accepting them are reset, where a shared socket would let another worker take them.

Also here: the open-files limit that a process's connection cap (api/http_protocol.py)
needs, raised before the workers start.
"""

from __future__ import annotations

import resource
import socket
from typing import Any

REUSE_PORT = hasattr(socket, "SO_REUSEPORT")
"""Whether this platform can give each worker its own socket (Linux, macOS, BSDs)."""


def _bind(sock: socket.socket, address: Any) -> socket.socket:
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        sock.bind(address)
    except BaseException:
        sock.close()
        raise
    return sock


def _bound(family: int, address: Any) -> socket.socket:
    return _bind(socket.socket(family, socket.SOCK_STREAM), address)


class WorkerListener(socket.socket):
    """The parent's bound socket. Handed to a worker process (pickled by
    multiprocessing), it arrives as a new socket bound to the same address in the
    same SO_REUSEPORT group, which uvicorn's worker then listens on."""

    def __reduce__(self) -> tuple[Any, ...]:
        return (_bound, (self.family, self.getsockname()))


def worker_listener(host: str, port: int) -> WorkerListener:
    """The parent's socket for `host:port` (see the module docstring)."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = WorkerListener(family, socket.SOCK_STREAM)
    _bind(sock, (host, port))
    return sock


OPEN_FILES_RESERVE = 256
"""Descriptors a server process keeps beyond its client connections: database
connections, the listening sockets, log and data files."""


def allow_open_files(connections: int) -> int:
    """Raise this process's soft limit on open files (workers inherit it) so that
    `connections` client sockets fit beside OPEN_FILES_RESERVE, as far as the hard limit
    allows; returns how many connections fit. Over the limit accept() fails with EMFILE,
    and the event loop then stops accepting for a while: a cap below it answers 503."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = connections + OPEN_FILES_RESERVE
    if soft != resource.RLIM_INFINITY and soft < wanted:
        raised = wanted if hard == resource.RLIM_INFINITY else min(wanted, hard)
        if raised > soft:
            resource.setrlimit(resource.RLIMIT_NOFILE, (raised, hard))
            soft = raised
    if soft == resource.RLIM_INFINITY:
        return connections
    return max(1, min(connections, soft - OPEN_FILES_RESERVE))
