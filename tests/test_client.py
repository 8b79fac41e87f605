"""The embeddable member-unit client: build, validate and publish in three lines, straight or spooled."""

from __future__ import annotations

import re
import subprocess
import textwrap
from datetime import datetime, timedelta, timezone

import pytest

import streams.client
from schemas.events import CheckpointHeartbeat
from streams.client import EventRefused, MemberUnitClient, build_event, record_key
from tests.conftest import JPC, Broker
from tests.member_events import count_ids, end_offsets

CST = timezone(timedelta(hours=8))
AT = datetime(2020, 1, 24, 19, 10, 30, tzinfo=CST)


def fixed_clock() -> datetime:
    return AT


def docstring_example(marker: str) -> str:
    """The indented example under the module docstring's line that starts the `async with` of `marker`."""
    doc = streams.client.__doc__ or ""
    match = re.search(rf"\n(    async with {marker}\(.*?)(?:\n\n|\Z)", doc, re.S)
    assert match, f"no {marker} example in streams/client.py's docstring"
    return textwrap.dedent(match.group(1))


@pytest.mark.core
def test_event_fills_the_envelope_and_validates() -> None:
    event = build_event("checkpoint_heartbeat", "transport", fixed_clock, checkpoint_id="gy-east-toll", screened=42)
    assert isinstance(event, CheckpointHeartbeat)
    assert (event.source_unit, event.schema_version, event.occurred_at) == ("transport", 1, AT)
    assert re.fullmatch(r"[0-9a-f]{32}", event.event_id)
    other = build_event("checkpoint_heartbeat", "transport", fixed_clock, checkpoint_id="gy-east-toll", screened=1)
    assert other.event_id != event.event_id
    given = build_event("checkpoint_heartbeat", "transport", fixed_clock, event_id="hb-1",
                        occurred_at=AT - timedelta(minutes=5), checkpoint_id="gy-east-toll", screened=1)
    assert (given.event_id, given.occurred_at) == ("hb-1", AT - timedelta(minutes=5))


@pytest.mark.core
@pytest.mark.parametrize(("fields", "field", "reason"), [
    ({"checkpoint_id": "gy-rail", "person_ref": "p-1", "reason": "fever", "direction": "inbound",
      "action": "referred"}, "temperature_c", "temperature_c: required when reason is fever"),
    ({"checkpoint_id": "gy-rail", "person_ref": "13912345678", "reason": "refused_screening",
      "direction": "inbound", "action": "referred"}, "person_ref", "person_ref: personal data refused"),
    ({"checkpoint_id": "gy-rail", "person_ref": "p-1", "reason": "refused_screening", "direction": "inbound",
      "action": "referred", "colour": "red"}, "colour", "colour: unknown field"),
])
def test_a_bad_event_is_refused_naming_the_field(fields: dict[str, object], field: str, reason: str) -> None:
    with pytest.raises(EventRefused) as refused:
        build_event("checkpoint_alert", "railway", fixed_clock, **fields)
    assert refused.value.field == field
    assert refused.value.reason.startswith(reason)
    assert isinstance(refused.value, ValueError)  # callers that caught ValueError still do


@pytest.mark.core
async def test_a_client_without_a_unit_says_so() -> None:
    client = MemberUnitClient("127.0.0.1:1")
    with pytest.raises(EventRefused, match="source_unit: required"):
        client.event("checkpoint_heartbeat", checkpoint_id="gy-east-toll", screened=1)
    assert client.event("checkpoint_heartbeat", source_unit="transport", checkpoint_id="gy-east-toll",
                        screened=1).source_unit == "transport"


@pytest.fixture(scope="module")
def provisioned(broker: Broker) -> Broker:
    done = subprocess.run([JPC, "topics", "create", "--brokers", broker.bootstrap], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return broker


@pytest.mark.broker
@pytest.mark.timeout(120)
async def test_the_three_lines_of_the_docstring_publish_an_event(provisioned: Broker) -> None:
    example = docstring_example("MemberUnitClient")
    assert len(example.strip().splitlines()) == 3
    starts = await end_offsets(provisioned.bootstrap, ("jpc.checkpoint-alerts",))
    scope: dict[str, object] = {"MemberUnitClient": MemberUnitClient}
    body = textwrap.indent(example.replace("127.0.0.1:9092", provisioned.bootstrap), "    ")
    exec(f"async def example():\n{body}\n    return heartbeat", scope)  # our own docstring, run as written
    heartbeat = await scope["example"]()  # type: ignore[operator]
    assert isinstance(heartbeat, CheckpointHeartbeat)
    run = heartbeat.event_id
    counts = await count_ids(provisioned.bootstrap, starts, run)
    assert counts == {run: 1}
    assert record_key(heartbeat) == b"gy-east-toll"
