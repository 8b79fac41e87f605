"""Shared fixtures. Broker tests run against a real Apache Kafka started by deploy/kafka.sh."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.kafka import KAFKA_SH, Broker, free_port
from bench.kafka import start_broker as start_kafka

ROOT = Path(__file__).resolve().parent.parent
JPC = str(ROOT / ".venv" / "bin" / "jpc")
__all__ = ["JPC", "KAFKA_SH", "ROOT", "Broker", "free_port", "start_broker"]  # what the test modules import


def start_broker(name: str) -> Broker:
    """A single-node broker of our own on free loopback ports, data under .cache/test-kafka/<name>."""
    try:
        return start_kafka(ROOT / ".cache" / "test-kafka" / name)
    except RuntimeError as exc:
        pytest.fail(str(exc))


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
