"""The ``CABLEWAY_REUSEPORT`` experiment of ``--workers`` (issue 20): off by default; on,
a worker listens on its own ``SO_REUSEPORT`` socket at the supervisor's address."""

from __future__ import annotations

import os
import socket

from cableway.transport.worklink import WORKER_ENV, WorkerRole, reuseport_socket


def test_the_role_says_reuseport_only_when_asked() -> None:
    plain = WorkerRole(0, "/tmp/hub.sock", {("127.0.0.1", 80): [5]})
    assert "reuseport" not in plain.to_env()
    assert WorkerRole.from_env({WORKER_ENV: plain.to_env()}) == plain
    on = WorkerRole(1, "/tmp/hub.sock", {("127.0.0.1", 80): [5]}, reuseport=True)
    assert WorkerRole.from_env({WORKER_ENV: on.to_env()}) == on


def test_a_reuseport_worker_listens_on_its_own_socket_at_the_held_address() -> None:
    held = reuseport_socket(socket.AF_INET, ("127.0.0.1", 0), listening=False)
    address = held.getsockname()
    role = WorkerRole(0, "/tmp/hub.sock", {("127.0.0.1", 0): [os.dup(held.fileno())]}, True)
    [own] = role.sockets("127.0.0.1", 0) or []
    try:
        assert own.getsockname() == address
        assert own.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 1
        assert own.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 1
        assert held.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN) == 0
        with socket.create_connection(address, timeout=5):
            conn, _ = own.accept()  # the connection came to the worker's socket
            conn.close()
    finally:
        own.close()
        held.close()
