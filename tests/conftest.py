"""Shared test set-up: no test may reach the network."""

import ipaddress
import socket

import pytest

_connect = socket.socket.connect


def _loopback_only(sock: socket.socket, address, *args, **kwargs):
    # Unix sockets and loopback (Jupyter kernels talk to the test over 127.0.0.1) are fine.
    if isinstance(address, tuple) and not _is_loopback(address[0]):
        raise RuntimeError(f"A test tried to reach {address}: the course must work offline.")
    return _connect(sock, address, *args, **kwargs)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:  # a host name
        return host == "localhost"


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    monkeypatch.setattr(socket.socket, "connect", _loopback_only)
