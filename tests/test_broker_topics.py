"""Every event kind through its topic on a real broker, byte-exact; topics provisioned idempotently."""

from __future__ import annotations

import asyncio
import subprocess
import uuid

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from schemas.codec import Refusal, decode_event, encode_event
from schemas.directory import load_directory
from schemas.events import InputEvent
from streams.client import MemberUnitClient, record_key
from streams.provision import TopicMismatch, check, provision
from streams.topics import INPUT_TOPIC_OF_KIND, TopicSpec, catalogue
from tests.conftest import JPC, Broker

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]

EVENTS = [
    b'{"event_id":"rt-1","kind":"case_report","schema_version":1,"source_unit":"third-hospital",'
    b'"occurred_at":"2020-01-24T20:40:00+08:00","reported_at":"2020-01-24T21:00:00+08:00","case_id":"gy-001",'
    b'"status":"suspected","person_ref":"p-1","region":"lizhou","township":"\xe4\xb8\x9c\xe5\x9d\x9d\xe8\xa1\x97\xe9\x81\x93",'
    b'"travel":[{"region":"hubei-wuhan","left_at":"2020-01-20T08:00:00+08:00"}],"facility":"\xe5\x8f\x91\xe7\x83\xad\xe9\x97\xa8\xe8\xaf\x8a"}',
    b'{"event_id":"rt-2","kind":"checkpoint_alert","schema_version":1,"source_unit":"railway",'
    b'"occurred_at":"2020-01-24T19:13:00+08:00","checkpoint_id":"gy-rail","person_ref":"p-2","reason":"fever",'
    b'"temperature_c":38.4,"origin_region":"hubei-wuhan","destination_region":"lizhou","direction":"inbound",'
    b'"action":"referred"}',
    b'{"event_id":"rt-3","kind":"checkpoint_heartbeat","schema_version":1,"source_unit":"transport",'
    b'"occurred_at":"2020-01-24T19:10:30+08:00","checkpoint_id":"gy-east-toll","screened":42}',
    '{"event_id":"rt-4","kind":"duty_shift","schema_version":1,"source_unit":"lizhou-hq",'
    '"occurred_at":"2020-01-24T17:30:00+08:00","unit_id":"lizhou-hq","post":"principal","officer_id":"lz-01",'
    '"officer_name":"褚建平","phone":"0839-3200000","shift_start":"2020-01-24T18:00:00+08:00",'
    '"shift_end":"2020-01-25T08:00:00+08:00","status":"scheduled"}'.encode(),
    '{"event_id":"rt-5","kind":"escalation_ack","schema_version":1,"source_unit":"health",'
    '"occurred_at":"2020-01-24T21:05:00+08:00","escalation_id":"esc-0123456789abcdef0123","unit_id":"health",'
    '"officer_id":"wjw-03","action":"acknowledge","note":"已派流调队，除夕夜全员在岗"}'.encode(),
]


async def _end_offsets(bootstrap: str, topics: list[str]) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        if not tps:
            await consumer._client.force_metadata_update()
            tps = [TopicPartition(t, p) for t in topics for p in sorted(consumer.partitions_for_topic(t) or [])]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def _read_from(bootstrap: str, starts: dict[TopicPartition, int], want: int) -> list[tuple[str, bytes, bytes]]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    got: list[tuple[str, bytes, bytes]] = []
    try:
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        async with asyncio.timeout(60):
            while len(got) < want:
                for records in (await consumer.getmany(timeout_ms=500)).values():
                    got += [(r.topic, r.key, r.value) for r in records]
    finally:
        await consumer.stop()
    return got


@pytest.fixture(scope="module")
def provisioned(broker: Broker) -> Broker:
    done = subprocess.run([JPC, "topics", "create", "--brokers", broker.bootstrap], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return broker


async def test_every_kind_round_trips_byte_exact_through_its_topic(provisioned: Broker) -> None:
    topics = sorted(set(INPUT_TOPIC_OF_KIND.values()))
    starts = await _end_offsets(provisioned.bootstrap, topics)
    events: list[InputEvent] = []
    async with MemberUnitClient(provisioned.bootstrap) as bus:
        for raw in EVENTS:
            event = decode_event(raw)
            assert not isinstance(event, Refusal), event
            events.append(event)
            meta = await bus.publish_json(raw)
            assert meta.topic == INPUT_TOPIC_OF_KIND[event.kind]
    got = await _read_from(provisioned.bootstrap, starts, len(EVENTS))
    sent = [(INPUT_TOPIC_OF_KIND[e.kind], record_key(e), raw) for e, raw in zip(events, EVENTS, strict=True)]
    assert sorted(got) == sorted(sent)
    for _, _, value in got:  # Chinese text survives, and decodes to the same model
        assert decode_event(value) in events
    assert any("东坝街道".encode() in v for _, _, v in got)


async def test_models_published_by_the_client_decode_to_themselves(provisioned: Broker) -> None:
    starts = await _end_offsets(provisioned.bootstrap, ["jpc.duty-rosters"])
    shift = decode_event(EVENTS[3])
    async with MemberUnitClient(provisioned.bootstrap) as bus:
        await bus.publish(shift)  # type: ignore[arg-type]
    [(topic, key, value)] = await _read_from(provisioned.bootstrap, starts, 1)
    assert (topic, key) == ("jpc.duty-rosters", b"lizhou-hq/principal/lz-01/2020-01-24T18:00:00+08:00")
    assert value == encode_event(shift)  # type: ignore[arg-type]
    assert decode_event(value) == shift


def test_topics_create_is_idempotent_and_refuses_a_mismatch(provisioned: Broker) -> None:
    again = subprocess.run([JPC, "topics", "create", "--brokers", provisioned.bootstrap],
                           capture_output=True, text=True)
    assert again.returncode == 0, again.stderr
    assert " 0 created" in again.stdout
    directory = load_directory()
    specs = catalogue([u.id for u in directory.units])
    assert asyncio.run(check([provisioned.bootstrap], specs, 1)) == []
    clash = subprocess.run([JPC, "topics", "create", "--brokers", provisioned.bootstrap, "--partitions", "3"],
                           capture_output=True, text=True)
    assert clash.returncode == 2
    assert "jpc.case-reports has 4 partitions, the catalogue says 3" in clash.stderr
    assert clash.stderr.count("\n") == 1
    assert "Traceback" not in clash.stderr


async def test_a_compacted_topic_is_not_silently_changed(provisioned: Broker) -> None:
    name = f"jpc.test-{uuid.uuid4().hex[:8]}"
    await provision([provisioned.bootstrap], [TopicSpec(name, 2, "k", {"cleanup.policy": "delete"})], 1)
    with pytest.raises(TopicMismatch, match=r"cleanup\.policy=delete, the catalogue says compact"):
        await provision([provisioned.bootstrap], [TopicSpec(name, 2, "k", {"cleanup.policy": "compact"})], 1)
    assert await check([provisioned.bootstrap], [TopicSpec(name, 2, "k", {"cleanup.policy": "delete"})], 1) == []


def test_publish_reports_refused_lines_and_sends_the_rest(provisioned: Broker, tmp_path) -> None:  # type: ignore[no-untyped-def]
    path = tmp_path / "events.jsonl"
    path.write_bytes(EVENTS[2] + b"\n{not json\n\n" + EVENTS[1].replace(b'"p-2"', b'"13912345678"') + b"\n")
    done = subprocess.run([JPC, "publish", "--brokers", provisioned.bootstrap, str(path)],
                          capture_output=True, text=True)
    assert done.returncode == 1
    assert "line 2: (event): not valid JSON" in done.stderr
    assert "line 4: person_ref: personal data refused" in done.stderr
    assert "published 1, refused 2" in done.stderr


def test_unreachable_broker_is_one_line_not_a_traceback() -> None:
    done = subprocess.run([JPC, "topics", "create", "--brokers", "127.0.0.1:1"], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 2
    assert done.stderr.startswith("jpc: cannot reach Kafka at 127.0.0.1:1")
    assert "Traceback" not in done.stderr
