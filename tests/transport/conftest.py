"""Fixtures shared by the transport tests that drive sessions over real socket pairs."""

from __future__ import annotations

import socket
from collections.abc import Iterator

import pytest

from .helpers import nonblocking_pair


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """One connected pair of non-blocking sockets (the server's end, the client's end),
    closed after the test."""
    ours, peer = nonblocking_pair()
    yield ours, peer
    ours.close()
    peer.close()


@pytest.fixture
def pairs() -> Iterator[list[socket.socket]]:
    """A list the test adds sockets to (see :func:`.helpers.nonblocking_pair`), every one
    closed after the test."""
    peers: list[socket.socket] = []
    yield peers
    for sock in peers:
        sock.close()
