"""An AsyncAPI 3.0 document of the bus, for developers of member-unit systems in other languages.

This module knows the messages (what each kind is, an example of each, where its JSON Schema is);
the caller says which channels (topics) carry them, since the topic catalogue lives a floor up, in
`streams`. Payloads refer to the JSON Schemas of `schemas.export` by relative path, so the document
and the schemas are read together (docs/contract/ in the repository).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

ASYNCAPI_VERSION = "3.0.0"
KAFKA_BINDING_VERSION = "0.5.0"


@dataclass(frozen=True, slots=True)
class MessageDoc:
    title: str
    summary: str
    example: Mapping[str, Any] | None = None


# One per JSON Schema of schemas.export; the examples are checked against the contract by the tests.
MESSAGES: dict[str, MessageDoc] = {
    "case_report": MessageDoc(
        "Case report",
        "A case's status reported by a hospital, fever clinic or the CDC (suspected, confirmed, asymptomatic, "
        "close contact, excluded, recovered, deceased), with the places the person travelled from.",
        {"event_id": "third-hospital-2020-0117", "kind": "case_report", "schema_version": 1,
         "source_unit": "third-hospital", "occurred_at": "2020-01-24T20:40:00+08:00",
         "reported_at": "2020-01-24T21:00:00+08:00", "case_id": "gy-001", "status": "suspected",
         "person_ref": "p-7f3a9c", "region": "lizhou", "township": "lizhou-dongba",
         "travel": [{"region": "hubei-wuhan", "left_at": "2020-01-20T08:00:00+08:00"}],
         "facility": "发热门诊"}),
    "checkpoint_alert": MessageDoc(
        "Checkpoint alert",
        "A screening point at an airport, dock, station or road reporting a person: fever, arrival from a "
        "high-risk region, or a refusal to be screened, and what was done.",
        {"event_id": "gy-rail-20200124-0031", "kind": "checkpoint_alert", "schema_version": 1,
         "source_unit": "railway", "occurred_at": "2020-01-24T19:13:00+08:00", "checkpoint_id": "gy-rail",
         "person_ref": "p-2c81d0", "reason": "fever", "temperature_c": 38.4, "origin_region": "hubei-wuhan",
         "destination_region": "lizhou", "direction": "inbound", "action": "referred"}),
    "checkpoint_heartbeat": MessageDoc(
        "Checkpoint heartbeat",
        "A screening point saying it is staffed and screening, with how many people it screened since its "
        "last heartbeat. A checkpoint that falls silent raises `checkpoint_silent`.",
        {"event_id": "gy-east-toll-hb-0412", "kind": "checkpoint_heartbeat", "schema_version": 1,
         "source_unit": "transport", "occurred_at": "2020-01-24T19:10:30+08:00", "checkpoint_id": "gy-east-toll",
         "screened": 42}),
    "duty_shift": MessageDoc(
        "Duty shift",
        "One officer's duty shift; the roster is the set of these. For each key the shift published last wins "
        "(the topic is compacted); publish it again with `status: cancelled` to cancel it.",
        {"event_id": "lizhou-hq-roster-0124-01", "kind": "duty_shift", "schema_version": 1,
         "source_unit": "lizhou-hq", "occurred_at": "2020-01-24T17:30:00+08:00", "unit_id": "lizhou-hq",
         "post": "principal", "officer_id": "lz-01", "officer_name": "褚建平", "phone": "0839-3200000",
         "shift_start": "2020-01-24T18:00:00+08:00", "shift_end": "2020-01-25T08:00:00+08:00",
         "status": "scheduled"}),
    "escalation_ack": MessageDoc(
        "Escalation acknowledgement",
        "A duty officer acknowledging or resolving an escalation routed to the unit.",
        {"event_id": "health-ack-0007", "kind": "escalation_ack", "schema_version": 1, "source_unit": "health",
         "occurred_at": "2020-01-24T21:05:00+08:00", "escalation_id": "esc-0123456789abcdef0123",
         "unit_id": "health", "officer_id": "wjw-03", "action": "acknowledge", "note": "已派流调队"}),
    "escalation": MessageDoc(
        "Escalation revision",
        "One revision of an escalation: what the rule found, its severity and status, the units it is routed "
        "to and the officers on duty there, its evidence and its acknowledgement deadline. Revisions of one "
        "escalation are numbered 1, 2, ...; a reader may receive a revision twice (at-least-once) and shows "
        "each (escalation_id, revision) once."),
    "dead_letter": MessageDoc(
        "Dead letter",
        "An input record that was refused: the field at fault and the reason, where it came from "
        "(topic/partition/offset) and its bytes, with refused personal data replaced by `[redacted]`.",
        {"reason": "person_ref: personal data refused: looks like a mobile phone number; send a pseudonym",
         "field": "person_ref", "topic": "jpc.checkpoint-alerts", "partition": 2, "offset": 26,
         "event_id": "gy-rail-20200124-0032", "source_unit": "railway",
         "raw": '{"event_id":"gy-rail-20200124-0032","person_ref":"[redacted]"}'}),
}


@dataclass(frozen=True, slots=True)
class ChannelDoc:
    """A topic, as the caller's catalogue describes it."""

    id: str  # the channel's name in the document, e.g. "caseReports"
    address: str  # the topic; `{name}` marks a parameter
    title: str
    description: str
    messages: tuple[str, ...]  # names of MESSAGES
    key: str  # what the record key is, in words
    key_example: str
    action: Literal["send", "receive"]  # what the bus does on it
    partitions: int
    configs: Mapping[str, str] = field(default_factory=dict)
    parameters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)


def asyncapi_document(channels: Sequence[ChannelDoc], *, info: Mapping[str, Any],
                      servers: Mapping[str, Mapping[str, Any]], schemas_base: str = "schemas/") -> dict[str, Any]:
    keys: dict[str, tuple[str, str]] = {}
    for channel in channels:
        for name in channel.messages:
            if name not in MESSAGES:
                raise ValueError(f"channel {channel.id}: no message {name!r}")
            if keys.setdefault(name, (channel.key, channel.key_example)) != (channel.key, channel.key_example):
                raise ValueError(f"message {name!r} has different keys on different channels")
    return {
        "asyncapi": ASYNCAPI_VERSION,
        "info": dict(info),
        "servers": {name: dict(server) for name, server in servers.items()},
        "defaultContentType": "application/json",
        "channels": {c.id: _channel(c) for c in channels},
        "operations": dict(_operation(c) for c in channels),
        "components": {"messages": {name: _message(name, *keys[name], schemas_base)
                                    for name in MESSAGES if name in keys}},
    }


def _channel(channel: ChannelDoc) -> dict[str, Any]:
    out: dict[str, Any] = {
        "address": channel.address,
        "title": channel.title,
        "description": channel.description,
        "messages": {name: {"$ref": f"#/components/messages/{name}"} for name in channel.messages},
    }
    if channel.parameters:
        out["parameters"] = {name: dict(p) for name, p in channel.parameters.items()}
    kafka: dict[str, Any] = {} if channel.parameters else {"topic": channel.address}
    kafka["partitions"] = channel.partitions
    if channel.configs:
        kafka["topicConfiguration"] = _topic_configuration(channel.configs)
    kafka["bindingVersion"] = KAFKA_BINDING_VERSION
    out["bindings"] = {"kafka": kafka}
    return out


def _topic_configuration(configs: Mapping[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in sorted(configs.items()):
        if name == "cleanup.policy":
            out[name] = value.split(",")
        elif name.endswith((".ms", ".bytes")):
            out[name] = int(value)
        else:
            out[name] = value
    return out


def _operation(channel: ChannelDoc) -> tuple[str, dict[str, Any]]:
    verb = "receive" if channel.action == "receive" else "send"
    op_id = verb + channel.id[0].upper() + channel.id[1:]
    return op_id, {
        "action": channel.action,
        "channel": {"$ref": f"#/channels/{channel.id}"},
        "summary": (f"The bus consumes {channel.address}; member-unit systems produce to it."
                    if channel.action == "receive" else f"The bus produces {channel.address}."),
        "messages": [{"$ref": f"#/channels/{channel.id}/messages/{name}"} for name in channel.messages],
    }


def _message(name: str, key: str, key_example: str, schemas_base: str) -> dict[str, Any]:
    doc = MESSAGES[name]
    out: dict[str, Any] = {
        "name": name,
        "title": doc.title,
        "summary": doc.summary,
        "contentType": "application/json",
        "payload": {"$ref": f"{schemas_base}{name}.schema.json"},
        "bindings": {"kafka": {"key": {"type": "string", "description": key, "examples": [key_example]},
                               "bindingVersion": KAFKA_BINDING_VERSION}},
    }
    if doc.example is not None:
        out["examples"] = [{"name": f"{name}-example", "payload": dict(doc.example)}]
    return out
