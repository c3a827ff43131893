"""aria2c's command line for tests and benchmarks on 127.0.0.1: DHT, LPD and PEX off,
bound to loopback, quiet, nothing saved beside the download."""

from __future__ import annotations

import socket


def aria2_args(aria2c: str, port: int) -> list[str]:
    return [
        aria2c,
        "--enable-dht=false",
        "--enable-dht6=false",
        "--bt-enable-lpd=false",
        "--enable-peer-exchange=false",
        "--disable-ipv6=true",
        "--interface=127.0.0.1",
        f"--listen-port={port}",
        "--bt-external-ip=127.0.0.1",
        "--summary-interval=0",
        "--console-log-level=warn",
        "--file-allocation=none",
        "--auto-save-interval=0",
        "--bt-save-metadata=false",
    ]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
