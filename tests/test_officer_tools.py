"""Duty officers' commands against the real broker: ack, escalations, duty, watch.

The session broker is shared, so every test writes its own synthetic revisions under fresh escalation
ids (and roster records with fresh officer ids in a window of time nobody else uses) and looks only at
those; the watch test gets a unit of its own through a directory of its own.
"""

from __future__ import annotations

import asyncio
import json
import random
import subprocess
import uuid
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest
import yaml
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from schemas.codec import decode_event
from schemas.escalation import Escalation, Evidence, revision_json
from schemas.events import DutyShift, EscalationAck
from streams.client import MemberUnitClient
from tests.conftest import JPC, ROOT, Broker

pytestmark = [pytest.mark.broker, pytest.mark.timeout(180)]
CST = timezone(timedelta(hours=8))
ACKS = "jpc.escalation-acks"


# ---- helpers --------------------------------------------------------------------------------------------

def jpc(broker: Broker, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in broker.env.items() if not k.startswith("JPC_") or k.startswith("JPC_KAFKA")}
    return subprocess.run([JPC, *args, "--brokers", broker.bootstrap], capture_output=True, text=True,
                          timeout=120, env=env)


def new_id() -> str:
    return "esc-" + uuid.uuid4().hex[:20]


def escalation(esc_id: str, revision: int = 1, *, status: str = "open", opened: datetime, step: int = 0,
               routed: tuple[str, ...] = ("lizhou-hq", "hq-office"), acked: dict[str, str] | None = None,
               title: str = "广元站：高风险地区来人入境") -> Escalation:
    return Escalation(
        escalation_id=esc_id, revision=revision, step=step, rule="high_risk_arrival", severity="IV",
        status=status, region="lizhou", subject={"person_ref": esc_id, "date": "2020-01-24"},  # type: ignore[arg-type]
        title=title, summary="synthetic", routed_to=list(routed), assignees={u: [] for u in routed}, fallback={},
        evidence=[Evidence(source_unit="railway", event_id=f"ev-{esc_id}", kind="checkpoint_alert",
                           occurred_at=opened)],
        opened_at=opened, updated_at=opened + timedelta(minutes=revision), ack_deadline=opened + timedelta(hours=1),
        acked_by=acked or {},
    )


async def write_revisions(bootstrap: str, revisions: list[Escalation], unit_topics: bool = True) -> None:
    """As the worker writes them: every revision to jpc.escalations, and to each routed unit's topic,
    keyed by escalation id with Kafka's default partitioner."""
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for r in revisions:
            key, value = r.escalation_id.encode(), revision_json(r)
            await producer.send_and_wait("jpc.escalations", value, key=key)
            for unit in r.routed_to if unit_topics else ():
                await producer.send_and_wait(f"jpc.escalations.{unit}", value, key=key)
    finally:
        await producer.stop()


async def end_offsets(bootstrap: str, topic: str) -> dict[TopicPartition, int]:
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap)
    await consumer.start()
    try:
        await consumer._client.force_metadata_update()
        tps = [TopicPartition(topic, p) for p in sorted(consumer.partitions_for_topic(topic) or [])]
        return dict(await consumer.end_offsets(tps))
    finally:
        await consumer.stop()


async def records_since(bootstrap: str, starts: dict[TopicPartition, int]) -> list[Any]:
    """Every record written after `starts` up to the present end."""
    ends = await end_offsets(bootstrap, next(iter(starts)).topic)
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    await consumer.start()
    out: list[Any] = []
    try:
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        async with asyncio.timeout(30):
            for tp in starts:
                while await consumer.position(tp) < ends[tp]:
                    out += (await consumer.getmany(tp, timeout_ms=300)).get(tp, [])
    finally:
        await asyncio.sleep(0)  # aiokafka's stop() chokes on its own start-up task if that never ran
        await consumer.stop()
    return out


def acks_sent(broker: Broker, starts: dict[TopicPartition, int], esc_id: str) -> list[Any]:
    return [r for r in asyncio.run(records_since(broker.bootstrap, starts)) if r.key == esc_id.encode()]


@pytest.fixture(scope="module")
def provisioned(broker: Broker) -> Broker:
    done = jpc(broker, "topics", "create")
    assert done.returncode == 0, done.stderr
    return broker


# ---- jpc ack --------------------------------------------------------------------------------------------

def test_ack_refuses_an_unknown_escalation_and_sends_nothing(provisioned: Broker) -> None:
    esc_id = new_id()
    starts = asyncio.run(end_offsets(provisioned.bootstrap, ACKS))
    done = jpc(provisioned, "ack", esc_id, "--unit", "lizhou-hq", "--officer", "lz-01")
    assert done.returncode == 2
    assert done.stderr.count("\n") == 1, done.stderr
    assert f"unknown escalation '{esc_id}'" in done.stderr
    assert "Traceback" not in done.stderr
    assert done.stdout == ""
    assert acks_sent(provisioned, starts, esc_id) == []


def test_ack_refuses_a_unit_the_escalation_is_not_routed_to(provisioned: Broker) -> None:
    esc_id = new_id()
    opened = datetime.now(CST) - timedelta(minutes=20)
    asyncio.run(write_revisions(provisioned.bootstrap, [escalation(esc_id, routed=("lizhou-dongba",), opened=opened)]))
    starts = asyncio.run(end_offsets(provisioned.bootstrap, ACKS))
    for unit in ("health", "lizhou-hq"):  # unrelated; the routed unit's parent, not routed itself
        done = jpc(provisioned, "ack", esc_id, "--unit", unit, "--officer", "x-01")
        assert done.returncode == 2, done.stdout
        assert done.stderr.count("\n") == 1, done.stderr
        assert f"{esc_id} is not routed to {unit}" in done.stderr
    assert "lizhou-hq is above lizhou-dongba" in done.stderr
    # The ladder routes the parent (a new revision): now the parent may acknowledge.
    asyncio.run(write_revisions(provisioned.bootstrap, [
        escalation(esc_id, 2, step=1, routed=("lizhou-dongba", "lizhou-hq", "hq-office"), opened=opened)]))
    done = jpc(provisioned, "ack", esc_id, "--unit", "lizhou-hq", "--officer", "lz-01")
    assert done.returncode == 0, done.stderr
    assert [decode_event(r.value).unit_id for r in acks_sent(provisioned, starts, esc_id)] == ["lizhou-hq"]  # type: ignore[union-attr]


def test_ack_is_published_keyed_by_escalation_and_decodes(provisioned: Broker) -> None:
    esc_id = new_id()
    asyncio.run(write_revisions(provisioned.bootstrap, [
        escalation(esc_id, opened=datetime.now(CST) - timedelta(minutes=5))]))
    starts = asyncio.run(end_offsets(provisioned.bootstrap, ACKS))
    refused = jpc(provisioned, "ack", esc_id, "-u", "lizhou-hq", "-o", "lz-01", "--note", "回电13912345678")
    assert refused.returncode == 2
    assert "note: personal data refused: looks like a mobile phone number" in refused.stderr
    assert "13912345678" not in refused.stderr
    done = jpc(provisioned, "ack", esc_id, "-u", "lizhou-hq", "-o", "lz-01", "--note", "已安排社区上门排查", "--json")
    assert done.returncode == 0, done.stderr
    told = json.loads(done.stdout)
    (record,) = acks_sent(provisioned, starts, esc_id)  # the refused one sent nothing
    assert record.key == esc_id.encode()
    event = decode_event(record.value)
    assert isinstance(event, EscalationAck)
    assert (event.escalation_id, event.unit_id, event.source_unit, event.officer_id, event.action, event.note) == (
        esc_id, "lizhou-hq", "lizhou-hq", "lz-01", "acknowledge", "已安排社区上门排查")
    assert event.event_id.startswith("ack-")
    assert abs(event.occurred_at - datetime.now(CST)) < timedelta(minutes=2)
    assert event.occurred_at.utcoffset() is not None
    assert told["sent"] is True
    assert (told["event_id"], told["partition"], told["offset"]) == (event.event_id, record.partition, record.offset)


def test_resolve_and_an_already_resolved_escalation(provisioned: Broker) -> None:
    esc_id = new_id()
    opened = datetime.now(CST) - timedelta(hours=2)
    asyncio.run(write_revisions(provisioned.bootstrap, [escalation(esc_id, opened=opened)]))
    starts = asyncio.run(end_offsets(provisioned.bootstrap, ACKS))
    done = jpc(provisioned, "ack", esc_id, "-u", "hq-office", "-o", "hq-01", "--resolve")
    assert done.returncode == 0, done.stderr
    assert f"hq-office resolved {esc_id}" in done.stdout
    asyncio.run(write_revisions(provisioned.bootstrap, [  # the bus's answer
        escalation(esc_id, 2, status="resolved", acked={"hq-office": "hq-01"}, opened=opened)]))
    again = jpc(provisioned, "ack", esc_id, "-u", "lizhou-hq", "-o", "lz-01", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout) == {"sent": False, "reason": "already resolved", "escalation_id": esc_id,
                                        "revision_seen": 2, "status_seen": "resolved"}
    actions = [decode_event(r.value).action for r in acks_sent(provisioned, starts, esc_id)]  # type: ignore[union-attr]
    assert actions == ["resolve"]


# ---- jpc escalations ------------------------------------------------------------------------------------

def test_escalations_latest_revision_each_oldest_unacknowledged_first(provisioned: Broker) -> None:
    now = datetime.now(CST)
    a, b, c, d = (new_id() for _ in range(4))
    asyncio.run(write_revisions(provisioned.bootstrap, [
        escalation(d, 1, opened=now - timedelta(hours=6)),
        escalation(d, 2, status="resolved", acked={"lizhou-hq": "lz-01"}, opened=now - timedelta(hours=6)),
        escalation(c, 1, status="acknowledged", acked={"lizhou-hq": "lz-02"}, opened=now - timedelta(hours=5)),
        escalation(b, 1, opened=now - timedelta(hours=1, seconds=30)),
        escalation(a, 1, opened=now - timedelta(hours=3, seconds=30)),
        escalation(a, 2, step=1, opened=now - timedelta(hours=3, seconds=30)),
        escalation(a, 1, opened=now - timedelta(hours=3, seconds=30)),  # re-sent after a restart: not the latest
    ]))
    mine = {a, b, c, d}
    for unit_args in ((), ("--unit", "lizhou-hq")):
        done = jpc(provisioned, "escalations", "--json", *unit_args)
        assert done.returncode == 0, done.stderr
        shown = [json.loads(line) for line in done.stdout.splitlines()]
        assert [(r["escalation_id"], r["revision"]) for r in shown if r["escalation_id"] in mine] == [
            (a, 2), (b, 1), (c, 1), (d, 2)]
        opened = jpc(provisioned, "escalations", "--json", "--open", *unit_args)
        only_open = [json.loads(line) for line in opened.stdout.splitlines()]
        assert all(r["status"] == "open" for r in only_open)
        assert [r["escalation_id"] for r in only_open if r["escalation_id"] in mine] == [a, b]
    text = jpc(provisioned, "escalations", "--unit", "lizhou-hq", "--open")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    row_a = next(line for line in lines if a in line)
    assert row_a.split()[:4] == ["3h00m", "IV", "open", "1"]
    assert "overdue" in row_a  # opened three hours ago with a one-hour deadline
    assert lines.index(row_a) < lines.index(next(line for line in lines if b in line))
    assert not any(c in line or d in line for line in lines)


# ---- jpc duty -------------------------------------------------------------------------------------------

def test_duty_at_a_past_time_shows_who_was_on_duty_and_the_gaps(provisioned: Broker) -> None:
    # A night of a year long gone that no other test uses: the roster topic is compacted, never emptied.
    base = datetime(random.randint(2001, 2015), random.randint(1, 12), random.randint(1, 28), 18, tzinfo=CST)
    tag = uuid.uuid4().hex[:8]
    unit = "jiange-hq"

    def shift(post: str, who: str, start_h: float, end_h: float, status: str = "scheduled") -> DutyShift:
        return DutyShift(
            kind="duty_shift", schema_version=1, event_id=f"t-{tag}-{who}-{status}", source_unit=unit,
            occurred_at=base - timedelta(hours=1), unit_id=unit, post=post, officer_id=f"{who}-{tag}",  # type: ignore[arg-type]
            officer_name="值班员", phone="0839-6620000", shift_start=base + timedelta(hours=start_h),
            shift_end=base + timedelta(hours=end_h), status=status,  # type: ignore[arg-type]
        )

    async def publish() -> None:
        async with MemberUnitClient(provisioned.bootstrap) as bus:
            for s in (shift("principal", "p1", 0, 8), shift("principal", "p2", 10, 20),
                      shift("in_charge", "c1", 0, 12), shift("in_charge", "c1", 0, 12, "cancelled"),
                      shift("in_charge", "c2", 0, 30), shift("duty_officer", "d1", 1, 3)):
                await bus.publish(s)

    asyncio.run(publish())
    at = base + timedelta(hours=8, minutes=13)  # "who was on duty at 02:13?"
    done = jpc(provisioned, "duty", "--unit", unit, "--at", at.isoformat(), "--json")
    assert done.returncode == 0, done.stderr
    (report,) = json.loads(done.stdout)["units"]
    mine = [o for o in report["on_duty"] if o["officer_id"].endswith(tag)]
    # 02:13 falls in principal's gap between p1 (until 02:00) and p2 (from 04:00); c1 was cancelled.
    assert [(o["post"], o["officer_id"]) for o in mine] == [("in_charge", f"c2-{tag}")]
    gaps = [(g["post"], g["start"], g["end"]) for g in report["gaps"]]
    iso = lambda h: (base + timedelta(hours=h)).isoformat()  # noqa: E731
    assert ("principal", iso(8), iso(10)) in gaps
    assert any(g[0] == "principal" and g[1] == iso(20) for g in gaps)  # the last shift ends: a gap opens
    # The whole city at once holds the same answer for the unit.
    city = jpc(provisioned, "duty", "--at", at.isoformat(), "--json")
    assert city.returncode == 0, city.stderr
    (same,) = [u for u in json.loads(city.stdout)["units"] if u["unit_id"] == unit]
    assert same == report
    earlier = jpc(provisioned, "duty", "--unit", unit, "--at", (base + timedelta(hours=2)).isoformat())
    assert earlier.returncode == 0, earlier.stderr
    on_duty = earlier.stdout
    for officer in (f"p1-{tag} 值班员", f"c2-{tag}", f"d1-{tag}"):
        assert officer in on_duty
    assert f"c1-{tag}" not in on_duty  # the cancelled shift covers nothing
    assert f"gap: principal {(base + timedelta(hours=8)).strftime('%Y-%m-%d %H:%M')} → " \
           f"{(base + timedelta(hours=10)).strftime('%Y-%m-%d %H:%M')} (2h00m)" in on_duty


def test_duty_refuses_a_bad_time_in_one_line(provisioned: Broker) -> None:
    done = jpc(provisioned, "duty", "--at", "half past two")
    assert done.returncode == 2
    assert done.stderr.startswith("jpc: --at: 'half past two' is not a time")
    assert done.stderr.count("\n") == 1


# ---- jpc watch ------------------------------------------------------------------------------------------

def test_watch_json_shows_each_revision_once(provisioned: Broker, tmp_path: Path) -> None:
    unit = f"t-{uuid.uuid4().hex[:10]}"
    directory = yaml.safe_load((ROOT / "schemas" / "data" / "guangyuan.yaml").read_text(encoding="utf-8"))
    directory["units"].append({"id": unit, "name": "测试值班单位", "level": "city", "parent": "hq-office"})
    path = tmp_path / "directory.yaml"
    path.write_text(yaml.safe_dump(directory, allow_unicode=True), encoding="utf-8")
    created = jpc(provisioned, "topics", "create", "--directory", str(path))
    assert created.returncode == 0, created.stderr
    opened = datetime.now(CST) - timedelta(minutes=10)
    e1, e2 = new_id(), new_id()
    r11 = escalation(e1, 1, routed=(unit,), opened=opened)
    r12 = escalation(e1, 2, step=1, routed=(unit,), opened=opened)
    r21 = escalation(e2, 1, routed=(unit,), opened=opened)
    # Delivered twice, as at-least-once delivery may: after a worker restart the same bytes come again.
    asyncio.run(write_revisions(provisioned.bootstrap, [r11, r12, r11, r12, r21, r21]))
    for args in (("--unit", unit), ("--from-beginning",)):
        done = jpc(provisioned, "watch", "--directory", str(path), "--json", "--exit-at-end", *args)
        assert done.returncode == 0, done.stderr
        shown = [orjson.loads(line) for line in done.stdout.splitlines()]
        if args[0] == "--unit":  # the unit's own topic holds only this test's revisions
            assert [Escalation.model_validate(r) for r in shown] == [r11, r12, r21]
        # Partitions interleave as they are fetched; within an escalation, revisions come in order.
        assert [r["revision"] for r in shown if r["escalation_id"] == e1] == [1, 2]
        assert [r["revision"] for r in shown if r["escalation_id"] == e2] == [1]
    # The unit's duty group committed what it showed: reading is a duty obligation, and a second look
    # starts where the first one stopped.
    again = jpc(provisioned, "watch", "--directory", str(path), "--json", "--exit-at-end", "--unit", unit)
    assert again.returncode == 0, again.stderr
    assert again.stdout == ""
