"""The core's shortcuts make exactly what the long way makes: times parsed from a minute seen before,
revisions built without validation, microseconds since the epoch from a timedelta's fields."""

from __future__ import annotations

import pickle
import random
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import orjson
import pytest

from agents.core.engine import Engine, Source
from agents.core.proof import Proof
from agents.core.timers import epoch_micros
from schemas import codec
from schemas.codec import _EVENT, accept_plain, decode_event
from schemas.directory import load_directory
from schemas.escalation import Escalation, revision_json

pytestmark = pytest.mark.core

SCENARIO = Path(__file__).resolve().parent.parent / "agents" / "scenarios" / "guangyuan-2020-01-24.jsonl"


def heartbeat(occurred_at: str) -> bytes:
    return orjson.dumps({"event_id": "hb-1", "kind": "checkpoint_heartbeat", "schema_version": 1,
                         "source_unit": "lizhou-hq", "occurred_at": occurred_at, "checkpoint_id": "cp-1",
                         "screened": 3})


@pytest.mark.parametrize("offset", ["+08:00", "-03:30", "+00:00", "Z", "z", "+23:59"])
@pytest.mark.parametrize("separator", ["T", "t", " "])
def test_every_second_of_a_known_minute_is_what_the_models_make(offset: str, separator: str) -> None:
    rng = random.Random(f"{offset}{separator}")
    accepted = 0
    for minute in ("2020-01-24{}06:00", "1999-12-31{}23:59", "2099-12-31{}23:59", "2000-01-01{}00:00"):
        stem = minute.format(separator)
        seconds = [f"{s:02d}" for s in range(60)] + ["60", "99", "5", "0a"]
        rng.shuffle(seconds)
        for second in seconds:
            for fraction in ("", ".5"):
                raw = heartbeat(f"{stem}:{second}{fraction}{offset}")
                fast = accept_plain(raw)
                try:
                    slow = _EVENT.validate_json(raw)
                except ValueError:
                    assert fast is None, raw
                    continue
                if fast is not None:
                    assert fast == slow
                    assert fast.occurred_at.utcoffset() == slow.occurred_at.utcoffset()
                    assert fast.occurred_at.isoformat() == slow.occurred_at.isoformat()
                    assert type(fast.occurred_at.tzinfo) is type(slow.occurred_at.tzinfo)
                    accepted += 1
    assert accepted >= 60  # a minute within bounds, second by second


def test_a_minute_out_of_bounds_is_never_learnt() -> None:
    for _ in range(2):  # the second time, a cached minute (there must be none) would answer
        assert accept_plain(heartbeat("1999-12-31T23:59:30+00:00")) is None
        assert accept_plain(heartbeat("2100-01-01T00:00:30+00:00")) is None
    assert not any(k.startswith(("1999-12-31T23:59+00", "2100-01-01T00:00+00")) for k in codec._MINUTES)


def test_revisions_built_without_validation_are_what_validation_makes() -> None:
    directory = load_directory()
    engine = Engine(directory, clock="event")
    revisions: list[Escalation] = []
    for line_no, line in enumerate(SCENARIO.read_bytes().splitlines(), start=1):
        event = decode_event(line)
        if not isinstance(event, codec.Refusal):
            revisions += engine.process(event, Source(line=line_no)).revisions
    revisions += engine.advance(datetime(2020, 1, 26, tzinfo=UTC))
    assert len(revisions) > 20
    for revision in revisions:
        validated = Escalation.model_validate(revision.model_dump())
        assert validated == revision
        assert list(revision.__dict__) == list(Escalation.model_fields)
        assert revision.model_fields_set == validated.model_fields_set
        assert revision_json(revision) == revision_json(validated)


def test_epoch_micros_is_exact_in_every_kind_of_zone() -> None:
    rng = random.Random(7)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    zones = [UTC, ZoneInfo("Asia/Shanghai"), ZoneInfo("America/New_York"),
             *(timezone(timedelta(minutes=rng.randint(-1439, 1439))) for _ in range(20))]
    for _ in range(20_000):
        when = (datetime(1950, 1, 1, tzinfo=UTC) + timedelta(microseconds=rng.randrange(150 * 365 * 86_400 * 10**6))
                ).astimezone(rng.choice(zones))
        assert epoch_micros(when) == (when - epoch) // timedelta(microseconds=1)


def proof_fields(proof: Proof) -> tuple[object, ...]:
    return (proof.source_unit, proof.event_id, proof.kind, proof.occurred_at, proof.topic, proof.partition,
            proof.offset, proof.checkpoint_id)


@pytest.mark.parametrize("position", [(None, None, None), ("jpc.checkpoint-alerts", 3, 1234)])
def test_a_proof_comes_back_from_a_snapshot_as_it_went_in(position: tuple[str | None, int | None, int | None]) -> None:
    at = datetime(2020, 1, 24, 6, 0, 5, tzinfo=timezone(timedelta(hours=8)))
    proofs = [Proof("lizhou-hq", f"ca-{i}", "checkpoint_alert", at, *position, checkpoint_id="cp-1") for i in range(3)]
    back = pickle.loads(pickle.dumps(proofs, protocol=pickle.HIGHEST_PROTOCOL))
    assert [proof_fields(p) for p in back] == [proof_fields(p) for p in proofs]
    if position == (None, None, None):  # a tail without a Kafka position is shared, restored or not
        assert all(p._tail is proofs[0]._tail for p in back)


def test_a_snapshot_written_before_the_positional_restore_still_loads() -> None:
    """Snapshots of earlier versions named Proof itself, with its eight constructor arguments."""
    at = datetime(2020, 1, 24, 6, 0, 5, tzinfo=UTC)
    old = pickle.dumps(OldStyleProof(Proof("cdc", "cr-1", "case_report", at, "jpc.case-reports", 0, 7)))
    back = pickle.loads(old)
    assert proof_fields(back) == ("cdc", "cr-1", "case_report", at, "jpc.case-reports", 0, 7, None)


class OldStyleProof:  # stands in for a Proof as earlier versions pickled it
    def __init__(self, proof: Proof) -> None:
        self.proof = proof

    def __reduce__(self) -> tuple[object, ...]:
        return Proof, proof_fields(self.proof)
