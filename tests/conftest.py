"""Shared fixtures. Broker tests run against a real Apache Kafka started by deploy/kafka.sh."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
KAFKA_SH = ROOT / "deploy" / "kafka.sh"
JPC = str(ROOT / ".venv" / "bin" / "jpc")


@dataclass(frozen=True)
class Broker:
    bootstrap: str
    env: dict[str, str]

    def stop(self) -> None:
        subprocess.run(["bash", str(KAFKA_SH), "stop"], env=self.env, check=False, capture_output=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_broker(name: str) -> Broker:
    """A single-node broker of our own on free loopback ports, data under .cache/test-kafka/<name>."""
    port, cport = _free_port(), _free_port()
    env = {**os.environ, "JPC_KAFKA_PORT": str(port), "JPC_KAFKA_CONTROLLER_PORT": str(cport),
           "JPC_KAFKA_DATA": str(ROOT / ".cache" / "test-kafka" / name)}
    subprocess.run(["bash", str(KAFKA_SH), "reset"], env=env, check=False, capture_output=True)
    done = subprocess.run(["bash", str(KAFKA_SH), "start"], env=env, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.fail(f"broker did not start: {done.stdout[-2000:]}{done.stderr[-2000:]}")
    return Broker(f"127.0.0.1:{port}", env)


@pytest.fixture(scope="session")
def broker() -> Iterator[Broker]:
    """The shared test broker (tests isolate themselves by app id, group and offsets)."""
    given = os.environ.get("JPC_TEST_BROKERS")
    if given:
        yield Broker(given, dict(os.environ))
        return
    started = start_broker("session")
    try:
        yield started
    finally:
        started.stop()


@pytest.fixture
def fresh_broker(request: pytest.FixtureRequest) -> Iterator[Broker]:
    """A broker of the test's own, for tests that need the contract's topics empty."""
    started = start_broker(request.node.name.replace("[", "-").replace("]", "")[:60])
    try:
        yield started
    finally:
        started.stop()
