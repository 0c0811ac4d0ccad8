"""The ports the harness, the bench and `cairn dev` give their servers are chosen
below the kernel's ephemeral range: an outgoing connection made between the
choice and the server's bind (which takes its local port from that range)
cannot take one of them. A CI run failed on exactly that ("Address already in
use" for a frontend's HTTP port)."""

from __future__ import annotations

import socket

import pytest

from cairn_cli import processes
from cairn_cli.processes import LOWEST_CHOSEN_PORT, free_port, free_ports


def test_ports_are_distinct_bindable_and_below_the_ephemeral_range() -> None:
    start = processes._ephemeral_start()
    if start is None or start - LOWEST_CHOSEN_PORT <= 1000:
        pytest.skip("no room below this machine's ephemeral range (the kernel's ports are used)")
    ports = free_ports(8) + [free_port()]
    assert len(set(ports[:8])) == 8
    for port in ports:
        assert LOWEST_CHOSEN_PORT <= port < start
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind(("127.0.0.1", port))  # free once chosen


def test_without_a_known_ephemeral_range_the_kernel_chooses(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(processes, "_ephemeral_start", lambda: None)
    ports = free_ports(3)
    assert len(set(ports)) == 3 and all(0 < p < 65536 for p in ports)


def test_a_taken_port_is_not_chosen(monkeypatch: pytest.MonkeyPatch) -> None:
    start = processes._ephemeral_start()
    if start is None or start - LOWEST_CHOSEN_PORT <= 1000:
        pytest.skip("no room below this machine's ephemeral range")
    busy, free = free_ports(2)
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
        taken.bind(("127.0.0.1", busy))
        taken.listen()
        picks = iter([busy, busy, free])  # the taken port twice, then a free one
        monkeypatch.setattr(processes.secrets, "randbelow", lambda n: next(picks) - LOWEST_CHOSEN_PORT)
        assert free_ports(1) == [free]
