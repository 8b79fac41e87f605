"""Deterministic event streams over the shipped Guangyuan directory, for the fault tests.

`valid_stream(n, seed)` is n valid events in reporting order, as a member-unit system would publish
them over a few days of an outbreak: 12-hour duty rosters (with a missing leader now and then, and
cancellations), checkpoint heartbeats every ten minutes (with screening points that fall silent and come
back), alerts (fever, arrivals from Hubei, refusals), case reports (imported, clustered, late, excluded)
and the duty officers' acknowledgements and resolves (some in time, some late enough to climb the
ladder). The same (n, seed) gives the same bytes, so `jpc replay` of the file is the expected outcome.

`hostile_records(good, n, seed)` is n bad records aimed at the four input topics, each with the reason
family the dead letter must name: bytes that are not UTF-8, JSON nested past any parser's limit, numbers
past any float, valid JSON of the wrong kind for its topic, unknown units and checkpoints, times a
century away, conflicting duplicates of good events, acknowledgements of escalations that never existed,
field names longer than any dead letter should carry. The ones that reach the engine (unknown ids,
duplicates, acks) sort right after a good event and occur at the engine clock replay has there, so they
move no clock: the outcome must be what replay of the good events alone gives.

Pure: no broker, no files. `python -m tests.faultgen N [SEED] > events.jsonl` writes a stream.
"""

from __future__ import annotations

import random
import sys
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from agents.core.ids import escalation_id
from schemas.codec import Refusal, decode_event
from streams.keys import record_key
from streams.topics import CASE_REPORTS, CHECKPOINT_ALERTS, DUTY_ROSTERS, ESCALATION_ACKS, INPUT_TOPIC_OF_KIND

CST = timezone(timedelta(hours=8))
START = datetime(2020, 1, 24, 0, 0, tzinfo=CST)  # New Year's Eve: the day Sichuan went to level I
Event = dict[str, Any]

# Units that publish rosters (and so are watched for duty gaps), with two officers per post in rotation.
ROSTERED = ("hq-office", "health", "cdc", "public-security", "transport", "lizhou-hq", "zhaohua-hq",
            "chaotian-hq", "cangxi-hq", "gy-edz-hq", "qingchuan-hq", "lizhou-dongba")
# Screening points that send heartbeats, and the unit operating each (its source_unit).
SCREENING = {"gy-rail": "railway", "gy-airport": "airport", "gy-east-toll": "transport",
             "longtan-toll": "transport", "lingjiang-toll": "transport", "lizhou-nanhe-coach": "transport",
             "qipanguan-g5": "transport", "qipanguan-g108": "transport", "zhaohua-rail": "railway",
             "hongyan-dock": "transport", "cangxi-toll": "transport", "jianmenguan-rail": "railway",
             "yaodu-g212": "transport", "wangcang-rail": "railway", "gy-west-toll": "transport"}
CHECKPOINT_UNIT = {"gy-rail": "lizhou-hq", "gy-airport": "gy-edz-hq", "gy-east-toll": "lizhou-hq",
                   "longtan-toll": "lizhou-hq", "lingjiang-toll": "lizhou-hq", "lizhou-nanhe-coach": "lizhou-hq",
                   "qipanguan-g5": "chaotian-hq", "qipanguan-g108": "chaotian-hq", "zhaohua-rail": "zhaohua-hq",
                   "hongyan-dock": "zhaohua-hq", "cangxi-toll": "cangxi-hq", "jianmenguan-rail": "jiange-hq",
                   "yaodu-g212": "qingchuan-hq", "wangcang-rail": "wangcang-hq", "gy-west-toll": "gy-edz-hq"}
TOWNSHIPS = {"lizhou": ("lizhou-dongba", "lizhou-jialing", "lizhou-hexi"), "zhaohua": ("zhaohua-yuanba",),
             "cangxi": ("cangxi-lingjiang", "cangxi-qiping"), "chaotian": ("chaotian-chaotian",),
             "gy-edz": ("gy-edz-panlong",)}
REGION_HQ = {r: f"{r}-hq" for r in ("lizhou", "zhaohua", "chaotian", "wangcang", "qingchuan", "jiange", "cangxi",
                                    "gy-edz")}
HIGH_RISK = ("hubei-wuhan", "hubei-xiaogan", "hubei-huanggang")
ELSEWHERE = ("sichuan-chengdu", "shaanxi-hanzhong", "gansu-longnan", "chongqing")
HOSPITALS = ("third-hospital", "central-hospital", "first-hospital")


def _iso(at: datetime) -> str:
    return at.isoformat()


def _local_date(at: datetime) -> str:
    return at.astimezone(CST).date().isoformat()


def reported(event: Event) -> datetime:
    return datetime.fromisoformat(event.get("reported_at", event["occurred_at"]))


def sort_key(event: Event) -> tuple[datetime, str, str]:
    """The order the worker's intake releases records in, and so the order of the file."""
    return reported(event), event["event_id"], event["source_unit"]


class _Simulation:
    """Ten-minute slots of a few days of the outbreak; every event gets a unique id in creation order."""

    def __init__(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.events: list[Event] = []
        self.seq = 0
        self.silent_until: dict[str, datetime] = {}
        self.cases: list[tuple[str, str, str, datetime]] = []  # case id, region, township, occurred
        self.people: list[str] = []  # pseudonyms seen at checkpoints: some of them fall ill later

    def add(self, kind: str, source: str, at: datetime, reported_at: datetime | None = None,
            **fields: Any) -> Event:
        self.seq += 1
        event: Event = {"event_id": f"fg-{self.seq:06d}", "kind": kind, "schema_version": 1,
                        "source_unit": source, "occurred_at": _iso(at)}
        if reported_at is not None and reported_at != at:
            event["reported_at"] = _iso(reported_at)
        event.update(fields)
        self.events.append(event)
        return event

    def ack(self, unit: str, at: datetime, rule: str, subject: dict[str, str], action: str = "acknowledge") -> None:
        self.add("escalation_ack", unit, at, escalation_id=escalation_id(rule, subject), unit_id=unit,
                 officer_id=f"{unit}-duty-{self.rng.randint(1, 2)}", action=action)

    # ---- rosters: day shift 08-20, night shift 20-08, published half an hour ahead ----
    def rosters(self, slot: datetime) -> None:
        if slot.hour not in (7, 19) or slot.minute != 30:
            return
        start = slot + timedelta(minutes=30)
        for unit in ROSTERED:
            for post in ("principal", "in_charge", "duty_officer"):
                if post == "in_charge" and self.rng.random() < 0.08:
                    # Nobody in charge tonight: a duty gap, filled an hour or two in by a stand-in.
                    late = start + timedelta(minutes=self.rng.choice((40, 70, 100)))
                    self._shift(unit, post, slot + timedelta(minutes=self.rng.randint(0, 5)), late, start,
                                f"{unit}-standby")
                    continue
                officer = f"{unit}-{post}-{(start.hour // 12 + start.day) % 2 + 1}"
                published = slot + timedelta(seconds=self.rng.randint(0, 600))
                self._shift(unit, post, published, start, start, officer)
                if self.rng.random() < 0.02:  # the shift is cancelled later and re-staffed
                    cancel_at = published + timedelta(minutes=self.rng.randint(10, 25))
                    self._shift(unit, post, cancel_at, start, start, officer, status="cancelled")
                    self._shift(unit, post, cancel_at + timedelta(seconds=30), start, start, f"{unit}-{post}-relief")

    def _shift(self, unit: str, post: str, published: datetime, start: datetime, nominal: datetime,
               officer: str, status: str = "scheduled") -> None:
        self.add("duty_shift", unit, published, unit_id=unit, post=post, officer_id=officer,
                 officer_name=f"值班员{officer[-1]}", phone="0839-3200000", shift_start=_iso(start),
                 shift_end=_iso(nominal + timedelta(hours=12)), status=status)

    # ---- screening points: a heartbeat every ten minutes, unless the point has gone quiet ----
    def heartbeats(self, slot: datetime) -> None:
        for cp, unit in SCREENING.items():
            if self.silent_until.get(cp, slot) > slot:
                continue
            if self.rng.random() < 0.004:  # the point stops reporting for 40 to 90 minutes
                self.silent_until[cp] = slot + timedelta(minutes=self.rng.choice((40, 60, 90)))
                continue
            at = slot + timedelta(seconds=self.rng.randint(0, 590))
            self.add("checkpoint_heartbeat", unit, at, checkpoint_id=cp, screened=self.rng.randint(0, 200))

    # ---- travellers stopped at the screening points ----
    def alerts(self, slot: datetime) -> None:
        for _ in range(self.rng.choice((0, 0, 1, 1, 2))):
            cp = self.rng.choice(tuple(SCREENING))
            at = slot + timedelta(seconds=self.rng.randint(0, 590))
            person = f"p-{self.rng.randint(1, 4000):05d}"
            self.people.append(person)
            roll = self.rng.random()
            if roll < 0.45:
                origin = self.rng.choice(HIGH_RISK if self.rng.random() < 0.3 else ELSEWHERE)
                temp = round(self.rng.uniform(36.8, 39.6), 1)
                self.add("checkpoint_alert", SCREENING[cp], at, checkpoint_id=cp, person_ref=person, reason="fever",
                         temperature_c=temp, origin_region=origin, direction="inbound",
                         action="referred" if temp >= 37.3 else "released")
                if temp >= 37.3:
                    self._answer_fever(cp, person, at, origin in HIGH_RISK)
            elif roll < 0.85:
                dest = self.rng.choice((*REGION_HQ, "shaanxi-hanzhong"))
                self.add("checkpoint_alert", SCREENING[cp], at, checkpoint_id=cp, person_ref=person,
                         reason="high_risk_origin", temperature_c=36.6, origin_region=self.rng.choice(HIGH_RISK),
                         destination_region=dest, direction="inbound", action="quarantined")
                unit = REGION_HQ.get(dest, CHECKPOINT_UNIT[cp])
                if self.rng.random() < 0.7:
                    self.ack(unit, at + timedelta(minutes=self.rng.randint(3, 90)), "high_risk_arrival",
                             {"person_ref": person, "date": _local_date(at)})
            else:
                self.add("checkpoint_alert", SCREENING[cp], at, checkpoint_id=cp, person_ref=person,
                         reason="refused_screening", direction=self.rng.choice(("inbound", "outbound")),
                         action="referred")

    def _answer_fever(self, cp: str, person: str, at: datetime, high_risk: bool) -> None:
        subject = {"checkpoint_id": cp, "person_ref": person, "date": _local_date(at)}
        for unit in (CHECKPOINT_UNIT[cp], "health", *(("public-security",) if high_risk else ())):
            if self.rng.random() < 0.8:  # some never answer: the ladder climbs for them
                self.ack(unit, at + timedelta(minutes=self.rng.randint(2, 80)), "fever_at_checkpoint", subject)
        if self.rng.random() < 0.3:
            self.ack("health", at + timedelta(minutes=self.rng.randint(90, 240)), "fever_at_checkpoint", subject,
                     action="resolve")

    # ---- case reports from the hospitals ----
    def case_reports(self, slot: datetime) -> None:
        if self.rng.random() >= 0.35:
            return
        region = self.rng.choice(tuple(TOWNSHIPS))
        township = self.rng.choice(TOWNSHIPS[region])
        case_id = f"gy-2020-{len(self.cases) + 1:05d}"
        occurred = slot + timedelta(seconds=self.rng.randint(0, 590))
        # A report past the two-hour deadline now and then: sorted by when it was sent.
        sent = occurred + timedelta(minutes=self.rng.choice((0, 0, 0, 10, 30, 150, 300)))
        person = self.rng.choice(self.people) if self.people and self.rng.random() < 0.3 else \
            f"p-c{len(self.cases):05d}"
        status = self.rng.choice(("suspected", "confirmed", "confirmed", "asymptomatic", "close_contact"))
        fields: dict[str, Any] = {"case_id": case_id, "status": status, "person_ref": person, "region": region,
                                  "township": township}
        days_since_travel = self.rng.randint(1, 20) if self.rng.random() < 0.35 else None
        if days_since_travel is not None:  # within the 14-day window or not
            left = occurred - timedelta(days=days_since_travel)
            fields["travel"] = [{"region": self.rng.choice(HIGH_RISK), "left_at": _iso(left)}]
        self.add("case_report", self.rng.choice(HOSPITALS), occurred, sent, **fields)
        self.cases.append((case_id, region, township, occurred))
        imported = days_since_travel is not None and days_since_travel < 14 and status != "close_contact"
        if imported and self.rng.random() < 0.6:
            self.ack("health", sent + timedelta(minutes=self.rng.randint(5, 60)), "imported_case",
                     {"case_id": case_id})
        if len(self.cases) > 3 and self.rng.random() < 0.1:  # an earlier case is excluded by its test
            old_id, old_region, old_town, _ = self.rng.choice(self.cases[:-1])
            self.add("case_report", "cdc", sent + timedelta(minutes=5), case_id=old_id, status="excluded",
                     person_ref=f"p-x{old_id[-5:]}", region=old_region, township=old_town)


def valid_events(n: int, seed: int = 2020) -> list[Event]:
    """n valid events in reporting order (see the module docstring)."""
    sim = _Simulation(seed)
    slot = START
    # Generate past the cut so events scheduled ahead (acks, late reports) exist for the part we keep.
    while True:
        for _ in range(36):  # six hours at a time
            sim.rosters(slot)
            sim.heartbeats(slot)
            sim.alerts(slot)
            sim.case_reports(slot)
            slot += timedelta(minutes=10)
        if sum(1 for e in sim.events if reported(e) <= slot) >= n:
            return sorted(sim.events, key=sort_key)[:n]


def lines(events: list[Event]) -> list[bytes]:
    return [orjson.dumps(e) for e in events]


def valid_stream(n: int, seed: int = 2020) -> list[bytes]:
    return lines(valid_events(n, seed))


def topic_of(event: Event) -> str:
    return INPUT_TOPIC_OF_KIND[event["kind"]]


def key_of(event: Event) -> bytes:
    """The contract's record key (§6), as the member-unit client sets it."""
    decoded = decode_event(orjson.dumps(event))
    if isinstance(decoded, Refusal):
        raise ValueError(f"not a valid event: {decoded.reason}")
    return record_key(decoded)


# ---------------------------------------------------------------------------------------------------
# Hostile records

@dataclass(frozen=True, slots=True)
class Hostile:
    """One bad record: where it is sent, after which good event, and what its dead letter must name."""

    family: str  # what kind of bad it is, for the tallies
    topic: str
    key: bytes | None
    value: bytes
    after: int  # index of the good event it is published right after
    field: str  # the dead letter's `field`
    stage: str  # "intake" (refused before the engine) or "engine" (refused by the core)


INPUT_TOPICS = (CASE_REPORTS, CHECKPOINT_ALERTS, DUTY_ROSTERS, ESCALATION_ACKS)
KIND_OF_TOPIC = {CASE_REPORTS: "case_report", CHECKPOINT_ALERTS: "checkpoint_alert", DUTY_ROSTERS: "duty_shift",
                 ESCALATION_ACKS: "escalation_ack"}
WRONG_KIND = {CASE_REPORTS: "checkpoint_alert", CHECKPOINT_ALERTS: "duty_shift", DUTY_ROSTERS: "escalation_ack",
              ESCALATION_ACKS: "case_report"}
FAMILIES = ("random_bytes", "invalid_utf8", "deep_nesting", "huge_number", "wrong_kind", "not_an_event",
            "unknown_unit", "unknown_reference", "century_away", "conflicting_duplicate", "unknown_escalation",
            "personal_data", "huge_key")
# Valid JSON that is no event, and the field its dead letter names.
NOT_EVENTS = ((b"[]", "(event)"), (b"42", "(event)"), (b'"case_report"', "(event)"), (b"null", "(event)"),
              (b"{}", "kind"), (b'{"kind":"quarantine_order"}', "kind"))
# An id of the directory swapped for one it lacks: refused by the engine, which knows the directory.
UNKNOWN_REFERENCE = {"case_report": ("region", "hubei-wuhan"), "checkpoint_alert": ("checkpoint_id", "beijing-west"),
                     "duty_shift": ("unit_id", "wuhan-hq"), "escalation_ack": ("unit_id", "wuhan-hq")}


def hostile_records(good: list[Event], n: int, seed: int = 6) -> list[Hostile]:
    """n bad records over the four input topics, families in rotation (see the module docstring)."""
    rng = random.Random(seed)
    clock: list[datetime] = []  # the engine clock replay has after each good event: the highest occurred_at
    for event in good:
        at = datetime.fromisoformat(event["occurred_at"])
        clock.append(max(clock[-1], at) if clock else at)
    out = []
    for i in range(n):
        family = FAMILIES[i % len(FAMILIES)]
        topic = INPUT_TOPICS[(i // len(FAMILIES)) % len(INPUT_TOPICS)]
        out.append(_hostile(rng, i, family, topic, good, rng.randrange(len(good)), clock))
    return out


def _hostile(rng: random.Random, i: int, family: str, topic: str, good: list[Event], after: int,
             clock: list[datetime]) -> Hostile:
    kind = KIND_OF_TOPIC[topic]
    key = f"bad-{i}".encode()
    prev = good[after]

    def like(kind: str, **fields: Any) -> Event:
        """A well-formed event placed right after `prev` in reporting order (its id sorts just after prev's
        at prev's reporting time) and occurring at replay's clock there, so that it moves no clock."""
        base: Event = {"event_id": f"{prev['event_id']}.bad{i}", "kind": kind, "schema_version": 1,
                       "occurred_at": _iso(clock[after]), "reported_at": _iso(reported(prev))}
        return {**base, **_SHAPES[kind](i, clock[after]), **fields}

    def make(value: bytes | Event, field: str, stage: str = "intake", on: str = topic) -> Hostile:
        raw = value if isinstance(value, bytes) else orjson.dumps(value)
        return Hostile(family, on, key, raw, after, field, stage)

    match family:
        case "random_bytes":
            return make(b"\xff" + rng.randbytes(rng.randint(1, 3000)), "(event)")
        case "invalid_utf8":
            text = orjson.dumps(like(kind))
            cut = rng.randint(10, len(text) - 2)
            return make(text[:cut] + b"\xc3\x28" + text[cut:], "(event)")
        case "deep_nesting":
            depth = rng.choice((300, 5_000, 50_000))
            if rng.random() < 0.5:
                return make(b"[" * depth + b"]" * depth, "(event)")
            body = orjson.dumps(like(kind))[:-1]  # nested inside an otherwise good event
            return make(body + b',"key_id":' + b'{"a":' * depth + b"1" + b"}" * depth + b"}", "(event)")
        case "huge_number":
            digits = b"9" * rng.choice((30, 400, 5000))
            # Past 4300 digits (Python's limit on int <-> str) the parser refuses the number as JSON.
            named = len(digits) <= 4300
            body = orjson.dumps(like("checkpoint_heartbeat" if kind == "checkpoint_alert" else kind))
            if kind == "checkpoint_alert":
                return make(body.replace(b'"screened":1', b'"screened":' + digits), "screened" if named else "(event)")
            return make(body.replace(b'"schema_version":1', b'"schema_version":' + digits),
                        "schema_version" if named else "(event)")
        case "wrong_kind":
            return make(like(WRONG_KIND[topic]), "kind")
        case "not_an_event":
            value, field = rng.choice(NOT_EVENTS)
            return make(value, field)
        case "unknown_unit":
            return make(like(kind, source_unit="wuhan-cdc"), "source_unit", "engine")
        case "unknown_reference":
            field, value = UNKNOWN_REFERENCE[kind]
            return make(like(kind, **{field: value}), field, "engine")
        case "century_away":
            at = clock[after].replace(year=rng.choice((1920, 2120)))
            return make(like(kind, occurred_at=_iso(at), reported_at=_iso(at)), "occurred_at")
        case "conflicting_duplicate":
            # A good event's (source_unit, event_id) with other content, sent a second after it: the
            # original stands, the twin is refused before it can move the clock.
            same_topic = [j for j in range(max(0, after - 200), after + 1) if topic_of(good[j]) == topic]
            j = rng.choice(same_topic) if same_topic else after
            clash = {**good[j], "reported_at": _iso(reported(good[j]) + timedelta(seconds=1))}
            return Hostile(family, topic_of(good[j]), key_of(good[j]), orjson.dumps(clash), j, "event_id", "engine")
        case "unknown_escalation":
            ack = like("escalation_ack", escalation_id=f"esc-{rng.getrandbits(80):020x}")
            return make(ack, "escalation_id", "engine", ESCALATION_ACKS)
        case "personal_data":
            if kind in ("case_report", "checkpoint_alert"):
                return make(like(kind, person_ref=f"139{rng.randint(10**7, 10**8 - 1)}"), "person_ref")
            ack = like("escalation_ack", note=f"call 1381234{rng.randint(1000, 9999)}")
            return make(ack, "note", on=ESCALATION_ACKS)
        case "huge_key":  # an unknown field whose name is longer than any dead letter should carry
            name = "k" * rng.choice((2_000, 20_000))
            return make(like(kind, **{name: 1}), name)
    raise ValueError(family)


def padded(value: bytes, size: int) -> bytes:
    """The same event with `size` tabs of whitespace after its opening brace: valid JSON, still one line."""
    return value[:1] + b"\t" * size + value[1:]


_SHAPES: dict[str, Any] = {
    "case_report": lambda i, at: {"source_unit": "cdc", "case_id": f"bad-case-{i}", "status": "suspected",
                                  "person_ref": f"p-bad-{i}", "region": "lizhou"},
    "checkpoint_alert": lambda i, at: {"source_unit": "transport", "checkpoint_id": "gy-rail",
                                       "person_ref": f"p-bad-{i}", "reason": "refused_screening",
                                       "direction": "inbound", "action": "referred"},
    "checkpoint_heartbeat": lambda i, at: {"source_unit": "railway", "checkpoint_id": "gy-rail", "screened": 1},
    "duty_shift": lambda i, at: {"source_unit": "health", "unit_id": "health", "post": "duty_officer",
                                 "officer_id": f"bad-{i}", "officer_name": "无名", "phone": "0839-3200000",
                                 "shift_start": _iso(at), "shift_end": _iso(at + timedelta(hours=1)),
                                 "status": "scheduled"},
    "escalation_ack": lambda i, at: {"source_unit": "health", "escalation_id": "esc-00000000000000000000",
                                     "unit_id": "health", "officer_id": "nobody", "action": "acknowledge"},
}


def interleave(good: list[Event], bad: list[Hostile]) -> list[tuple[str, bytes | None, bytes, Hostile | None]]:
    """Publishing order: each bad record right after the good event it follows. (topic, key, value, bad?)"""
    after: dict[int, list[Hostile]] = {}
    for b in bad:
        after.setdefault(b.after, []).append(b)
    out: list[tuple[str, bytes | None, bytes, Hostile | None]] = []
    for i, event in enumerate(good):
        out.append((topic_of(event), key_of(event), orjson.dumps(event), None))
        out += [(b.topic, b.key, b.value, b) for b in after.get(i, [])]
    return out


def main(argv: list[str]) -> None:
    n = int(argv[1]) if len(argv) > 1 else 20_000
    seed = int(argv[2]) if len(argv) > 2 else 2020
    for line in valid_stream(n, seed):
        sys.stdout.buffer.write(line + b"\n")


if __name__ == "__main__":
    main(sys.argv)
