"""Addresses for the multi-host test bed (deploy/testbed/testbed.sh): free
ports for its RabbitMQ nodes and a free link-local network for its hosts."""

from __future__ import annotations

import random
import socket
import subprocess


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_base_port() -> int:
    """BASE with BASE+1..3 (AMQP) and BASE+20001..20003 (distribution) free."""
    for _ in range(50):
        base = random.randrange(6000, 9000, 10)
        ports = [base + n for n in (1, 2, 3)] + [base + 20000 + n for n in (1, 2, 3)]
        if all(_port_free(port) for port in ports):
            return base
    raise RuntimeError("no free port range for the test bed nodes")


def free_link_local_net() -> int:
    """N such that no interface of this machine has an address in 169.254.N.0/24."""
    used = subprocess.run(["ip", "-o", "-4", "addr"], capture_output=True, text=True).stdout
    return random.choice([n for n in range(100, 250) if f"169.254.{n}." not in used])
