"""`jpc topics create`: provision the catalogue idempotently; never silently change a topic."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from streams.topics import TopicSpec


class TopicMismatch(RuntimeError):
    """An existing topic disagrees with the catalogue; nothing was changed."""


@dataclass(frozen=True, slots=True)
class ProvisionReport:
    created: list[str]
    existing: list[str]


async def provision(bootstrap: list[str], specs: list[TopicSpec], replication: int,
                    timeout_s: float = 30.0, progress: Callable[[str], None] | None = None) -> ProvisionReport:
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = await _describe(admin, [s.name for s in specs])
        problems = [p for s in specs if s.name in existing
                    for p in _mismatches(s, existing[s.name], replication)]
        if problems:
            raise TopicMismatch("; ".join(problems))
        missing = [s for s in specs if s.name not in existing]
        if missing:
            response = await admin.create_topics(
                [NewTopic(s.name, s.partitions, replication, topic_configs=s.configs) for s in missing],
                timeout_ms=int(timeout_s * 1000),
            )
            errors = [(name, code, msg) for name, code, msg in _topic_errors(response) if code not in (0, 36)]
            if errors:  # 36: TOPIC_ALREADY_EXISTS (a concurrent provisioner got there first)
                raise RuntimeError("; ".join(f"{n}: error {c} {m or ''}".strip() for n, c, m in errors))
            if progress:
                for spec in missing:
                    progress(spec.name)
        return ProvisionReport([s.name for s in missing], [s.name for s in specs if s.name in existing])
    finally:
        await admin.close()


async def check(bootstrap: list[str], specs: list[TopicSpec], replication: int,
                timeout_s: float = 30.0) -> list[str]:
    """What is missing or different, in words (empty: the broker matches the catalogue)."""
    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=int(timeout_s * 1000))
    await admin.start()
    try:
        existing = await _describe(admin, [s.name for s in specs])
    finally:
        await admin.close()
    problems = [f"{s.name}: missing" for s in specs if s.name not in existing]
    problems += [p for s in specs if s.name in existing for p in _mismatches(s, existing[s.name], replication)]
    return problems


@dataclass(frozen=True, slots=True)
class _Existing:
    partitions: int
    replication: int
    configs: dict[str, str]


async def _describe(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, _Existing]:
    present = set(await admin.list_topics()) & set(names)
    if not present:
        return {}
    described = await admin.describe_topics(sorted(present))
    shape = {t["topic"]: t["partitions"] for t in described if t.get("error_code", 0) == 0}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, name) for name in sorted(shape)])
    configs: dict[str, dict[str, str]] = {}
    for response in responses:
        for resource in response.to_object()["resources"]:
            entries = resource.get("config_entries", [])
            configs[resource["resource_name"]] = {e["config_names"]: e["config_value"] for e in entries}
    return {
        name: _Existing(len(parts), len(parts[0]["replicas"]) if parts else 0, configs.get(name, {}))
        for name, parts in shape.items()
    }


def _mismatches(spec: TopicSpec, have: _Existing, replication: int) -> list[str]:
    out = []
    if have.partitions != spec.partitions:
        out.append(f"{spec.name} has {have.partitions} partitions, the catalogue says {spec.partitions}")
    if have.replication != replication:
        out.append(f"{spec.name} has replication {have.replication}, expected {replication}")
    for key, want in spec.configs.items():
        if have.configs.get(key) != want:
            out.append(f"{spec.name} has {key}={have.configs.get(key)}, the catalogue says {want}")
    return out


def _topic_errors(response: Any) -> list[tuple[str, int, str | None]]:
    obj = response.to_object()
    out = []
    for topic in obj.get("topic_errors", obj.get("topics", [])):
        out.append((topic.get("topic", topic.get("name")), topic.get("error_code", 0), topic.get("error_message")))
    return out
