"""Shared test set-up: no test may reach the network."""

import ipaddress
import socket

import pytest
from solution_edits import users_of

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


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The tests every chapter shares (tests/chapter_tests.py) take their cases from the
    chapter's test module that imports them: its CHAPTER, WRONG and ALSO_RIGHT."""
    module = metafunc.module
    if "exercise_name" in metafunc.fixturenames:
        metafunc.parametrize("exercise_name", list(module.CHAPTER.exercises))
    if "wrong" in metafunc.fixturenames:
        metafunc.parametrize("wrong", module.WRONG, ids=[f"{case[0]}-{i}" for i, case in enumerate(module.WRONG)])
    if "wrong_piece" in metafunc.fixturenames:  # the wrong cases of pieces that other exercises use
        pieces = [case for case in module.WRONG if users_of(module.CHAPTER, case[0])]
        metafunc.parametrize("wrong_piece", pieces, ids=[f"{case[0]}-{module.WRONG.index(case)}" for case in pieces])
    if "also_right" in metafunc.fixturenames:
        metafunc.parametrize("also_right", module.ALSO_RIGHT,
                             ids=[f"{case[0]}-{i}" for i, case in enumerate(module.ALSO_RIGHT)])
