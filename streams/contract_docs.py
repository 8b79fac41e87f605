"""The contract as documents: the AsyncAPI 3.0 document of the topic catalogue, and its JSON Schemas.

Generated from the code (topics from `streams.topics.catalogue` for the shipped directory, payloads
from the pydantic models), checked in as docs/contract/, and compared byte for byte by the tests, so
the documents other teams build on cannot drift from what the bus does.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml

from schemas.asyncapi import ChannelDoc, asyncapi_document
from schemas.directory import load_directory
from schemas.export import export
from streams.topics import (
    CASE_REPORTS,
    CHECKPOINT_ALERTS,
    DEAD_LETTER,
    DUTY_ROSTERS,
    ESCALATION_ACKS,
    ESCALATIONS,
    INPUT_TOPIC_OF_KIND,
    UNIT_PREFIX,
    TopicSpec,
    catalogue,
)

DESCRIPTION = """\
The event bus of the Guangyuan joint prevention and control command headquarters (联防联控指挥部),
contract version 1. Member-unit systems publish events to the input channels; the bus validates each,
correlates them into escalations, routes every escalation to the units responsible and the officers on
duty there, and climbs the command tree when nobody acknowledges in time.

Publishing: one JSON object per record (UTF-8), the record key as given for each message, to the
channel of its kind. Use acks=all with an idempotent producer. A record that breaks the contract is not
processed: it goes to `jpc.dead-letter` with the field and the reason.

Reading: the input channels may hold records of aborted transactions (publishers with a store-and-forward
spool send in Kafka transactions, exactly once); read them with isolation.level=read_committed. Escalation
channels are written at least once: show each (escalation_id, revision) once.

Payload schemas are JSON Schema draft 2020-12 files, referred to by path relative to this document.
"""


def _channel_docs(specs: list[TopicSpec], unit_ids: list[str]) -> list[ChannelDoc]:
    by_name = {s.name: s for s in specs}

    def topic(name: str) -> dict[str, Any]:
        spec = by_name[name]
        return {"address": name, "partitions": spec.partitions, "configs": spec.configs}

    kinds_of: dict[str, tuple[str, ...]] = {}
    for kind, name in INPUT_TOPIC_OF_KIND.items():
        kinds_of[name] = (*kinds_of.get(name, ()), kind)
    unit_spec = by_name[UNIT_PREFIX + unit_ids[0]]
    return [
        ChannelDoc("caseReports", title="Case reports", action="receive", messages=kinds_of[CASE_REPORTS],
                   description="Case reports from hospitals, fever clinics and the CDC.",
                   key="the report's `region` (a region id of the directory)", key_example="lizhou",
                   **topic(CASE_REPORTS)),
        ChannelDoc("checkpointAlerts", title="Checkpoint alerts and heartbeats", action="receive",
                   messages=kinds_of[CHECKPOINT_ALERTS],
                   description="Alerts and heartbeats from the screening points, on one topic so that a "
                               "checkpoint's records stay in order.",
                   key="the `checkpoint_id`", key_example="gy-rail", **topic(CHECKPOINT_ALERTS)),
        ChannelDoc("dutyRosters", title="Duty rosters", action="receive", messages=kinds_of[DUTY_ROSTERS],
                   description="Duty shifts. Compacted: for each key the last shift published is the roster, "
                               "kept for ever.",
                   key="`unit_id/post/officer_id/shift_start`, shift_start in ISO 8601 with its offset "
                       "(`+00:00` for UTC)",
                   key_example="lizhou-hq/principal/lz-01/2020-01-24T18:00:00+08:00", **topic(DUTY_ROSTERS)),
        ChannelDoc("escalationAcks", title="Escalation acknowledgements", action="receive",
                   messages=kinds_of[ESCALATION_ACKS],
                   description="Duty officers acknowledging or resolving escalations (`jpc ack`).",
                   key="the `escalation_id`", key_example="esc-0123456789abcdef0123", **topic(ESCALATION_ACKS)),
        ChannelDoc("escalations", title="Escalations", action="send", messages=("escalation",),
                   description="Every revision of every escalation.",
                   key="the `escalation_id`", key_example="esc-7d6ad9681f44d8f57d40", **topic(ESCALATIONS)),
        ChannelDoc("unitEscalations", address=UNIT_PREFIX + "{unit_id}", title="A unit's escalations",
                   action="send", messages=("escalation",), partitions=unit_spec.partitions,
                   configs=unit_spec.configs,
                   description="The revisions routed to one unit, for its duty officers (`jpc watch --unit`). "
                               "Duty officers' consumers use the group id `jpc.duty.<unit_id>`.",
                   key="the `escalation_id`", key_example="esc-7d6ad9681f44d8f57d40",
                   parameters={"unit_id": {"description": "A unit id of the directory.", "enum": unit_ids,
                                           "examples": ["lizhou-hq"]}}),
        ChannelDoc("deadLetters", title="Dead letters", action="send", messages=("dead_letter",),
                   description="Refused input records, with the field at fault and the reason.",
                   key="the topic the record was read from", key_example=CHECKPOINT_ALERTS,
                   **topic(DEAD_LETTER)),
    ]


def contract_document() -> dict[str, Any]:
    """The AsyncAPI document for the shipped directory (its units name the per-unit topics)."""
    directory = load_directory()
    unit_ids = sorted(u.id for u in directory.units)
    specs = catalogue(unit_ids)
    public = [s.name for s in specs if not s.internal and not s.name.startswith(UNIT_PREFIX)]
    channels = _channel_docs(specs, unit_ids)
    documented = {c.address for c in channels}
    if missing := sorted(set(public) - documented):  # a topic added to the catalogue must be documented
        raise ValueError(f"topics in the catalogue without a channel: {', '.join(missing)}")
    info = {"title": "jpc-bus", "version": "1.0.0", "description": DESCRIPTION,
            "license": {"name": "Apache-2.0"}}
    servers = {"local": {"host": "127.0.0.1:9092", "protocol": "kafka",
                         "description": "A development broker (deploy/kafka.sh start)."}}
    return asyncapi_document(channels, info=info, servers=servers)


def asyncapi_text(fmt: str = "yaml") -> str:
    document = contract_document()
    if fmt == "json":
        return json.dumps(document, ensure_ascii=False, indent=2) + "\n"
    header = "# Generated by `jpc schemas asyncapi` from the code: do not edit by hand.\n"
    return header + yaml.dump(document, Dumper=_Dumper, sort_keys=False, allow_unicode=True, width=110)


class _Dumper(yaml.SafeDumper):
    """Multi-line text as a literal block, so the document reads as it was written."""


def _text(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|" if "\n" in value else None)


_Dumper.add_representer(str, _text)


def write_schemas(directory: Path) -> list[Path]:
    return export(directory)


def write_contract(directory: Path) -> list[Path]:
    """docs/contract/ as checked in: asyncapi.yaml and schemas/*.schema.json."""
    directory.mkdir(parents=True, exist_ok=True)
    document = directory / "asyncapi.yaml"
    document.write_text(asyncapi_text("yaml"), encoding="utf-8")
    return [document, *write_schemas(directory / "schemas")]
