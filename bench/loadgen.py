"""Deterministic synthetic load: a week of a province-sized bus, minute by minute, in reporting order.

The mix is what member units send in a Spring Festival week: mostly checkpoint heartbeats and alerts
(with busy hours and the odd train unloading at a station), each day's duty rosters, a stream of case
reports from hospitals and the CDC, and duty officers acknowledging what reaches them. Rules fire at
rates a duty room would recognise: a few per cent of alerts are fevers or arrivals from high-risk
areas, a few per cent of case reports are late or imported, checkpoints occasionally fall silent, a
shift is now and then left unfilled, producers retry (duplicates) and a rare line is refused.

Same spec, same bytes: everything is drawn from one seeded `random.Random`.
"""

from __future__ import annotations

import math
import random
from bisect import bisect_right
from collections import defaultdict
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from agents.core.ids import escalation_id
from schemas.directory import Directory
from streams.topics import INPUT_TOPIC_OF_KIND

CST = timezone(timedelta(hours=8), "CST")
START = datetime(2020, 1, 24, 6, 0, tzinfo=CST)  # New Year's Eve, first light

# Relative intensity by hour of day: quiet nights, a morning and an evening rush (mean 1.0).
_PROFILE = (0.3, 0.2, 0.2, 0.2, 0.3, 0.5, 0.8, 1.2, 1.6, 1.6, 1.4, 1.3,
            1.2, 1.2, 1.3, 1.3, 1.4, 1.6, 1.7, 1.5, 1.2, 0.9, 0.6, 0.4)
HOURLY = tuple(p * 24 / sum(_PROFILE) for p in _PROFILE)
CHECKPOINT_WEIGHT = {"airport": 3.0, "rail": 3.0, "highway": 2.0, "coach": 1.5, "road": 1.0, "dock": 0.5}
OTHER_ORIGINS = ("shaanxi-hanzhong", "gansu-longnan", "chongqing", "henan-xinyang", "hunan-yueyang",
                 "anhui-fuyang", "sichuan-chengdu", "sichuan-mianyang")
REPORTERS = ("central-hospital", "first-hospital", "third-hospital", "tcm-hospital", "cdc")
FACILITIES = ("广元市第三人民医院隔离病区", "广元市中心医院发热门诊", "集中医学观察点", "居家隔离")
EXTRA_TOWNSHIPS = 24  # per region, besides the directory's own township units: grids of a province
FEVER = 37.3


@dataclass(frozen=True, slots=True)
class Mix:
    """Shares of the stream by kind (rosters and acks follow from the days and the escalations)."""

    heartbeat: float = 0.38
    alert: float = 0.55
    case: float = 0.025
    burst_per_minute: float = 0.02  # chance a train or flight unloads at a station this minute
    duplicate: float = 0.002  # producers retrying a send they did not see acknowledged
    refused: float = 0.0002  # a phone number typed where a pseudonym belongs


@dataclass(frozen=True, slots=True)
class LoadSpec:
    events: int
    persons: int = 200_000
    distinct_persons: bool = False  # every alert a new person: the memory load
    per_minute: float = 100.0  # mean events per minute of event time
    steady: bool = False  # the same intensity at every hour (else quiet nights, busy evenings: HOURLY)
    seed: int = 20200124
    start: datetime = START
    mix: Mix = field(default_factory=Mix)

    @property
    def name(self) -> str:
        persons = f"{self.persons}d" if self.distinct_persons else str(self.persons)
        return f"load-{self.events}-{persons}-{self.per_minute:g}pm-{self.seed}"


Record = tuple[str, bytes, bytes]  # topic, key, value: what a member unit would publish


def lines(directory: Directory, spec: LoadSpec) -> Iterator[bytes]:
    for _, _, value in records(directory, spec):
        yield value


def records(directory: Directory, spec: LoadSpec) -> Iterator[Record]:
    """The load as (topic, key, value), in reporting order; exactly `spec.events` of them."""
    week = _Week(directory, spec)
    emitted = 0
    minute = 0
    while True:
        for record in week.minute(minute):
            yield record
            emitted += 1
            if emitted == spec.events:
                return
        minute += 1


@dataclass(slots=True)
class _Case:
    case_id: str
    person: str
    region: str
    township: str | None


class _Week:
    def __init__(self, d: Directory, spec: LoadSpec) -> None:
        self.d, self.spec = d, spec
        self.rng = random.Random(spec.seed)
        self.seq = 0
        self.next_person = 0
        self.checkpoints = list(d.checkpoints)
        self.cp_weights = _cumulative([CHECKPOINT_WEIGHT[c.kind] for c in self.checkpoints])
        self.stations = [c for c in self.checkpoints if c.kind in ("rail", "airport", "coach")]
        self.regions = [r.id for r in d.regions]
        self.region_weights = _cumulative([3.0 if r == "lizhou" else 1.0 for r in self.regions])
        self.high_risk = sorted(d.high_risk)
        self.townships: dict[str, list[str]] = {
            r: [u.id for u in d.units if u.level == "township" and u.region == r]
            + [f"{r}-grid-{k:02d}" for k in range(EXTRA_TOWNSHIPS)] for r in self.regions}
        self.duty_units = [u.id for u in d.units if u.level in ("city", "county")][:40]
        self.silent_until: dict[str, int] = {}
        self.later: dict[int, list[tuple[int, Record]]] = defaultdict(list)  # minute -> (second, record)
        self.recent_cases: list[_Case] = []
        self.cases = 0

    # ---- one minute of event time ----
    def minute(self, m: int) -> list[Record]:
        spec, rng = self.spec, self.rng
        at = spec.start + timedelta(minutes=m)
        mult = 1.0 if spec.steady else HOURLY[at.hour]
        out: list[tuple[int, int, Record]] = []

        def put(second: int, record: Record) -> None:
            self.seq += 1
            out.append((second, self.seq, record))
            if rng.random() < spec.mix.duplicate:
                self.later[m + rng.randint(1, 10)].append((rng.randrange(60), record))

        if m == 0:
            for day in (0, 1):
                for record in self._roster(day):
                    put(0, record)
        elif at.hour == 17 and at.minute == 0:
            day = (at.date() - spec.start.date()).days + 2
            for record in self._roster(day):
                put(0, record)

        p_heartbeat = min(1.0, spec.per_minute * spec.mix.heartbeat / len(self.checkpoints))
        for cp in self.checkpoints:
            if self.silent_until.get(cp.id, -1) > m:
                continue
            if rng.random() < 1 / 2880:  # about once in two days a point goes quiet for half an hour or more
                self.silent_until[cp.id] = m + rng.randint(31, 50)
                continue
            if rng.random() < p_heartbeat:
                second = rng.randrange(60)
                put(second, self._heartbeat(cp.id, cp.unit, at, second))

        for _ in range(_count(rng, spec.per_minute * spec.mix.alert * mult)):
            cp = self.checkpoints[_pick(rng, self.cp_weights)]
            if self.silent_until.get(cp.id, -1) > m:
                continue
            second = rng.randrange(60)
            put(second, self._alert(cp, at, second, m))
        if self.stations and rng.random() < spec.mix.burst_per_minute:
            cp = self.stations[rng.randrange(len(self.stations))]
            if self.silent_until.get(cp.id, -1) <= m:
                for _ in range(rng.randint(30, 80)):
                    second = rng.randrange(60)
                    put(second, self._alert(cp, at, second, m))

        for _ in range(_count(rng, spec.per_minute * spec.mix.case * mult)):
            second = rng.randrange(60)
            put(second, self._case(at, second))

        for second, record in self.later.pop(m, []):
            self.seq += 1
            out.append((second, self.seq, record))
        out.sort(key=lambda item: (item[0], item[1]))  # reporting order within the minute
        return [record for _, _, record in out]

    # ---- kinds ----
    def _event_id(self, prefix: str) -> str:
        return f"{prefix}-{self.seq + 1:09d}"

    def _heartbeat(self, checkpoint_id: str, unit: str, at: datetime, second: int) -> Record:
        event = {"event_id": self._event_id("hb"), "kind": "checkpoint_heartbeat", "schema_version": 1,
                 "source_unit": unit, "occurred_at": _t(at, second), "checkpoint_id": checkpoint_id,
                 "screened": self.rng.randint(20, 900)}
        return _record(event, checkpoint_id)

    def _person(self) -> str:
        if self.spec.distinct_persons:
            self.next_person += 1
            return f"P{self.next_person:08d}"
        return f"P{self.rng.randrange(self.spec.persons):08d}"

    def _alert(self, cp: Any, at: datetime, second: int, m: int) -> Record:
        rng, mix = self.rng, self.spec.mix
        person = self._person()
        if rng.random() < mix.refused:
            person = f"1{rng.randint(3, 9)}{rng.randrange(10**9):09d}"  # a mobile number: refused, redacted
        roll = rng.random()
        temperature: float | None = None
        if roll < 0.55:
            reason = "fever"
            temperature = max(35.5, min(41.5, round(rng.gauss(36.8, 0.25), 1)))
            origin = rng.choice(self.high_risk) if rng.random() < 0.02 else (
                rng.choice(OTHER_ORIGINS) if rng.random() < 0.4 else None)
        elif roll < 0.90:
            reason = "high_risk_origin"  # flagged on the province's own list; a few are from Hubei
            origin = rng.choice(self.high_risk) if rng.random() < 0.05 else rng.choice(OTHER_ORIGINS)
        else:
            reason = "refused_screening"
            origin = rng.choice(OTHER_ORIGINS) if rng.random() < 0.5 else None
        inbound = rng.random() < 0.8
        destination = self.regions[_pick(rng, self.region_weights)] if rng.random() < 0.85 else None
        fever = temperature is not None and temperature >= FEVER
        if fever:
            action = "referred" if rng.random() < 0.7 else "quarantined"
        else:
            action = "released" if rng.random() < 0.9 else "referred"
        event: dict[str, Any] = {"event_id": self._event_id("al"), "kind": "checkpoint_alert", "schema_version": 1,
                                 "source_unit": cp.unit, "occurred_at": _t(at, second), "checkpoint_id": cp.id,
                                 "person_ref": person, "reason": reason}
        if temperature is not None:
            event["temperature_c"] = temperature
        if origin is not None:
            event["origin_region"] = origin
        if destination is not None:
            event["destination_region"] = destination
        event["direction"] = "inbound" if inbound else "outbound"
        event["action"] = action
        high_risk = origin in self.d.high_risk
        date = (at + timedelta(seconds=second)).astimezone(self.d.zone).date().isoformat()
        if fever:
            self._maybe_ack(m, second, escalation_id("fever_at_checkpoint", {
                "checkpoint_id": cp.id, "person_ref": person, "date": date}), cp.unit)
        elif high_risk and inbound:
            hq = self.d.county_hq_by_region.get(destination or "") or cp.unit
            self._maybe_ack(m, second, escalation_id("high_risk_arrival", {"person_ref": person, "date": date}), hq)
        return _record(event, cp.id)

    def _maybe_ack(self, m: int, second: int, esc_id: str, unit: str) -> None:
        rng = self.rng
        if rng.random() >= 0.7:
            return  # left for the ladder
        delay = rng.randint(2, 25)
        at = self.spec.start + timedelta(minutes=m + delay)
        ack_second = rng.randrange(60)
        event = {"event_id": f"ack-{self.seq:09d}-{delay}", "kind": "escalation_ack", "schema_version": 1,
                 "source_unit": unit, "occurred_at": _t(at, ack_second), "escalation_id": esc_id,
                 "unit_id": unit, "officer_id": f"{unit}-duty", "action": "resolve" if rng.random() < 0.15
                 else "acknowledge"}
        self.later[m + delay].append((ack_second, _record(event, esc_id)))

    def _case(self, at: datetime, second: int) -> Record:
        rng = self.rng
        reported = at + timedelta(seconds=second)
        delay = timedelta(minutes=min(24 * 60, rng.lognormvariate(math.log(30), 0.8)))
        occurred = reported - delay
        roll = rng.random()
        earlier = self.recent_cases[rng.randrange(len(self.recent_cases))] if self.recent_cases else None
        if roll < 0.10 and earlier is not None:
            status, case = ("excluded" if rng.random() < 0.6 else "recovered"), earlier
        else:
            status = _weighted(rng, (("suspected", 45), ("confirmed", 15), ("asymptomatic", 5),
                                     ("close_contact", 35)))
            self.cases += 1
            region = self.regions[_pick(rng, self.region_weights)]
            township = rng.choice(self.townships[region]) if rng.random() < 0.6 else None
            person = f"P{rng.randrange(self.spec.persons):08d}" if rng.random() < 0.5 else f"C{self.cases:08d}"
            case = _Case(f"case-{self.cases:08d}", person, region, township)
            self.recent_cases.append(case)
            if len(self.recent_cases) > 2000:
                self.recent_cases.pop(0)
        event: dict[str, Any] = {"event_id": self._event_id("cr"), "kind": "case_report", "schema_version": 1,
                                 "source_unit": rng.choice(REPORTERS), "occurred_at": _iso(occurred),
                                 "reported_at": _iso(reported), "case_id": case.case_id, "status": status,
                                 "person_ref": case.person, "region": case.region}
        if case.township is not None:
            event["township"] = case.township
        if rng.random() < 0.3:
            event["grid"] = f"网格{rng.randint(1, 400)}"
        if rng.random() < 0.2:
            origin = rng.choice(self.high_risk) if rng.random() < 0.4 else rng.choice(OTHER_ORIGINS)
            event["travel"] = [{"region": origin, "left_at": _iso(occurred - timedelta(hours=rng.randint(6, 480)))}]
        if rng.random() < 0.5:
            event["facility"] = rng.choice(FACILITIES)
        return _record(event, case.region)

    def _roster(self, day: int) -> list[Record]:
        """Every duty unit's three posts in two 12-hour shifts of calendar day `day` (0: the start's day);
        now and then a shift is left unfilled. The first roster goes out the evening before the load
        starts, so every post is covered before anyone watches it."""
        out = []
        midnight = self.spec.start.replace(hour=0, minute=0, second=0)
        base = midnight + timedelta(days=day)
        published = midnight - timedelta(hours=6) if day < 2 else base - timedelta(days=2) + timedelta(hours=17)
        # Day 0 opens with the night shift that began at 20:00 the day before.
        shifts = [(base - timedelta(hours=4), "night")] if day == 0 else []
        shifts += [(base + timedelta(hours=8), "day"), (base + timedelta(hours=20), "night")]
        for unit in self.duty_units:
            for post in ("principal", "in_charge", "duty_officer"):
                for start, half in shifts:
                    if day > 0 and self.rng.random() < 0.01:
                        continue  # nobody put on this shift: a duty gap the bus must catch
                    officer = f"{unit}-{post}-{half}-{day % 3}"
                    self.seq += 1
                    event = {"event_id": f"ds-{self.seq:09d}", "kind": "duty_shift", "schema_version": 1,
                             "source_unit": unit, "occurred_at": _iso(published), "unit_id": unit, "post": post,
                             "officer_id": officer, "officer_name": f"值班员{day % 3}{post[0]}",
                             "phone": "0839-3200000", "shift_start": _iso(start),
                             "shift_end": _iso(start + timedelta(hours=12)), "status": "scheduled"}
                    out.append(_record(event, f"{unit}/{post}/{officer}/{_iso(start)}"))
        return out


def _record(event: dict[str, Any], key: str) -> Record:
    return INPUT_TOPIC_OF_KIND[event["kind"]], key.encode(), orjson.dumps(event)


def _t(at: datetime, second: int) -> str:
    return _iso(at + timedelta(seconds=second))


def _iso(at: datetime) -> str:
    return at.astimezone(CST).isoformat(timespec="seconds")


def _count(rng: random.Random, mean: float) -> int:
    """A whole number of events with the given mean (the fraction decided by a draw)."""
    whole = int(mean)
    return whole + (1 if rng.random() < mean - whole else 0)


def _cumulative(weights: list[float]) -> list[float]:
    total, out = 0.0, []
    for w in weights:
        total += w
        out.append(total)
    return out


def _pick(rng: random.Random, cumulative: list[float]) -> int:
    return min(bisect_right(cumulative, rng.random() * cumulative[-1]), len(cumulative) - 1)


def _weighted(rng: random.Random, options: tuple[tuple[str, int], ...]) -> str:
    total = sum(w for _, w in options)
    roll = rng.random() * total
    for value, weight in options:
        roll -= weight
        if roll < 0:
            return value
    return options[-1][0]
