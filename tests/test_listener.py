"""A listening socket per worker (api/listener.py): what a worker process receives
is its own socket in the port's SO_REUSEPORT group, and the kernel spreads the
connections over the workers' sockets. `ctxgraph serve --workers 2` serving through
them: tests/test_cli.py."""

from __future__ import annotations

import errno
import pickle
import socket
from multiprocessing.reduction import ForkingPickler

import pytest

from api.listener import REUSE_PORT, worker_listener

pytestmark = pytest.mark.skipif(not REUSE_PORT, reason="the platform has no SO_REUSEPORT")


def as_a_worker_gets_it(sock: socket.socket) -> socket.socket:
    """The socket as multiprocessing hands it to a spawned worker."""
    received: socket.socket = pickle.loads(ForkingPickler.dumps(sock))
    return received


def accepted(sock: socket.socket) -> int:
    sock.setblocking(False)
    n = 0
    while True:
        try:
            conn, _ = sock.accept()
        except BlockingIOError:
            return n
        conn.close()
        n += 1


def test_connections_are_spread_over_the_workers_sockets() -> None:
    parent = worker_listener("127.0.0.1", 0)  # port 0: the parent's port for all
    port = parent.getsockname()[1]
    workers = [as_a_worker_gets_it(parent) for _ in range(2)]
    clients: list[socket.socket] = []
    try:
        for w in workers:
            assert w.fileno() != parent.fileno()
            assert w.getsockname() == ("127.0.0.1", port)
            assert w.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT)
            w.listen(128)
        clients = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(64)]
        counts = [accepted(w) for w in workers]
        # by a hash of each connection's addresses: all 64 on one socket is a 2**-63 chance
        assert sum(counts) == 64, counts
        assert min(counts) > 0, counts
    finally:
        for s in [parent, *workers, *clients]:
            s.close()


def test_a_taken_port_fails_in_the_parent() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError, match="in use") as refused:
            worker_listener("127.0.0.1", taken.getsockname()[1])
        assert refused.value.errno == errno.EADDRINUSE
