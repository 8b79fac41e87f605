"""Builders for the core tests: a small directory, events with sensible defaults, and an engine harness.

The small directory is the whole command tree of the tests, so a test reads as the situation it is about:

    hq-office (city, root)
    ├── health (city) ── hospital (city, duty_required: false; files case reports)
    ├── cdc, public-security, transport (city)
    ├── north-hq (county, region north)
    │   └── north-town (township) ── north-village (village)
    └── south-hq (county, region south)

    region lake has no county HQ (for targets that resolve to nothing).
    checkpoints: cp-rail (north, north-hq), cp-road (north, north-town), cp-toll (south, south-hq)
    high_risk_regions: [hubei-wuhan]

Times default to 2020-01-24 18:00 +08:00 (T0); `at(...)` builds offsets from it.
"""

from __future__ import annotations

import copy
import functools
import hashlib
import itertools
import json
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import yaml

from agents.core.engine import Engine, Outcome
from schemas.directory import Directory, load_directory, parse_directory
from schemas.escalation import Escalation, revision_json
from schemas.events import (
    CaseReport,
    CheckpointAlert,
    CheckpointHeartbeat,
    DutyShift,
    EscalationAck,
    InputEvent,
    Travel,
)

CST = timezone(timedelta(hours=8))
T0 = datetime(2020, 1, 24, 18, 0, tzinfo=CST)

SMALL_DIRECTORY: dict[str, Any] = {
    "version": 1,
    "name": "测试市联防联控指挥部",
    "timezone": "Asia/Shanghai",
    "regions": [
        {"id": "north", "name": "北县"},
        {"id": "south", "name": "南县"},
        {"id": "lake", "name": "湖区"},  # no county HQ: $region_hq resolves to nothing here
    ],
    "units": [
        {"id": "hq-office", "name": "市指挥部办公室", "level": "city", "parent": None},
        {"id": "health", "name": "市卫生健康委员会", "level": "city", "parent": "hq-office"},
        {"id": "cdc", "name": "市疾病预防控制中心", "level": "city", "parent": "hq-office"},
        {"id": "public-security", "name": "市公安局", "level": "city", "parent": "hq-office"},
        {"id": "transport", "name": "市交通运输局", "level": "city", "parent": "hq-office"},
        {"id": "hospital", "name": "市第三人民医院", "level": "city", "parent": "health",
         "duty_required": False},
        {"id": "north-hq", "name": "北县指挥部", "level": "county", "parent": "hq-office", "region": "north"},
        {"id": "south-hq", "name": "南县指挥部", "level": "county", "parent": "hq-office", "region": "south"},
        {"id": "north-town", "name": "北城镇", "level": "township", "parent": "north-hq", "region": "north"},
        {"id": "north-village", "name": "北村", "level": "village", "parent": "north-town",
         "region": "north"},
    ],
    "checkpoints": [
        {"id": "cp-rail", "name": "北县站", "kind": "rail", "region": "north", "unit": "north-hq"},
        {"id": "cp-road", "name": "北城检测点", "kind": "road", "region": "north", "unit": "north-town"},
        {"id": "cp-toll", "name": "南县收费站", "kind": "highway", "region": "south", "unit": "south-hq"},
    ],
    "high_risk_regions": ["hubei-wuhan"],
}

UNITS = [u["id"] for u in SMALL_DIRECTORY["units"]]
REGIONS = [r["id"] for r in SMALL_DIRECTORY["regions"]]
CHECKPOINTS = [c["id"] for c in SMALL_DIRECTORY["checkpoints"]]


def small_directory_yaml(*, routes: dict[str, list[str]] | None = None, **rules: Any) -> str:
    data = copy.deepcopy(SMALL_DIRECTORY)
    if routes:
        data["routes"] = routes
    if rules:
        data["rules"] = rules
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def small_directory(*, routes: dict[str, list[str]] | None = None, **rules: Any) -> Directory:
    """The small directory; `routes=` and rule keywords (e.g. duty_grace_minutes=10) override the defaults."""
    return _parsed(small_directory_yaml(routes=routes, **rules))


@functools.lru_cache(maxsize=1)
def guangyuan() -> Directory:
    """The shipped Guangyuan directory (loaded once)."""
    return load_directory(None)


@functools.lru_cache(maxsize=32)
def _parsed(text: str) -> Directory:
    return parse_directory(text)  # a Directory is frozen: sharing one between engines is safe


def at(minutes: float = 0, *, hours: float = 0, days: float = 0, seconds: float = 0) -> datetime:
    return T0 + timedelta(days=days, hours=hours, minutes=minutes, seconds=seconds)


# ---- events -----------------------------------------------------------------------------------------

_ids = itertools.count(1)


def next_event_id(prefix: str = "ev") -> str:
    return f"{prefix}-{next(_ids):06d}"


def case(case_id: str = "c-1", status: str = "confirmed", *, person: str | None = None, region: str = "north",
         township: str | None = None, travel: Iterable[tuple[str, datetime]] | None = None,
         occurred: datetime = T0, reported: datetime | None = None, source: str = "hospital",
         event_id: str | None = None, **extra: Any) -> CaseReport:
    return CaseReport(
        kind="case_report", schema_version=1, event_id=event_id or next_event_id("case"), source_unit=source,
        occurred_at=occurred, reported_at=reported, case_id=case_id, status=status,  # type: ignore[arg-type]
        person_ref=person or f"p-{case_id}", region=region, township=township,
        travel=[Travel(region=r, left_at=t) for r, t in travel] if travel is not None else None, **extra,
    )


def alert(person: str = "p-1", *, checkpoint: str = "cp-rail", temperature: float | None = 36.5,
          origin: str | None = None, destination: str | None = None, direction: str = "inbound",
          reason: str | None = None, action: str = "released", occurred: datetime = T0,
          source: str = "transport", event_id: str | None = None) -> CheckpointAlert:
    if reason is None:
        reason = "fever" if temperature is not None and temperature >= 37.3 else "high_risk_origin"
    return CheckpointAlert(
        kind="checkpoint_alert", schema_version=1, event_id=event_id or next_event_id("alert"),
        source_unit=source, occurred_at=occurred, checkpoint_id=checkpoint, person_ref=person,
        reason=reason, temperature_c=temperature, origin_region=origin,  # type: ignore[arg-type]
        destination_region=destination, direction=direction, action=action,  # type: ignore[arg-type]
    )


def heartbeat(checkpoint: str = "cp-rail", *, occurred: datetime = T0, screened: int = 10,
              source: str = "transport", event_id: str | None = None) -> CheckpointHeartbeat:
    return CheckpointHeartbeat(
        kind="checkpoint_heartbeat", schema_version=1, event_id=event_id or next_event_id("hb"),
        source_unit=source, occurred_at=occurred, checkpoint_id=checkpoint, screened=screened,
    )


def shift(unit: str, post: str = "principal", officer: str | None = None, *, start: datetime = T0,
          end: datetime | None = None, status: str = "scheduled", occurred: datetime | None = None,
          source: str | None = None, event_id: str | None = None) -> DutyShift:
    """A duty shift, 18:00 to 08:00 next morning unless told; published an hour before it starts or, for
    shifts starting after T0, at T0 - 1h (so a roster fed first never moves the engine clock past T0)."""
    return DutyShift(
        kind="duty_shift", schema_version=1, event_id=event_id or next_event_id("shift"),
        source_unit=source or unit, occurred_at=occurred or min(start, T0) - timedelta(hours=1),
        unit_id=unit, post=post, officer_id=officer or f"{unit}-{post}",  # type: ignore[arg-type]
        officer_name="值班员", phone="0839-3200000", shift_start=start,
        shift_end=end or start + timedelta(hours=14), status=status,  # type: ignore[arg-type]
    )


def ack(escalation_id: str, unit: str, officer: str | None = None, *, action: str = "acknowledge",
        occurred: datetime = T0, source: str | None = None, event_id: str | None = None,
        note: str | None = None) -> EscalationAck:
    return EscalationAck(
        kind="escalation_ack", schema_version=1, event_id=event_id or next_event_id("ack"),
        source_unit=source or unit, occurred_at=occurred, escalation_id=escalation_id, unit_id=unit,
        officer_id=officer or f"{unit}-officer", action=action, note=note,  # type: ignore[arg-type]
    )


def staffed(*units: str, start: datetime = T0 - timedelta(hours=6), hours: float = 48,
            occurred: datetime | None = None) -> list[DutyShift]:
    """Principal and in-charge shifts for each unit, long enough that nothing in a test runs out."""
    return [shift(u, post, f"{u}-{post}", start=start, end=start + timedelta(hours=min(hours, 7 * 24)),
                  occurred=occurred or start - timedelta(hours=1))
            for u in units for post in ("principal", "in_charge")]


# ---- ids, computed independently of agents.core.ids ----------------------------------------------------

def expected_id(rule: str, subject: dict[str, str]) -> str:
    canonical = json.dumps([rule, subject], sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return "esc-" + hashlib.sha256(canonical.encode("utf-8")).hexdigest()[:20]


# ---- the engine harness ------------------------------------------------------------------------------

@dataclass
class Run:
    """An engine with a record of everything it said, in order."""

    directory: Directory = field(default_factory=small_directory)
    engine: Engine = field(init=False)
    revisions: list[Escalation] = field(default_factory=list)
    outcomes: list[Outcome] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.engine = Engine(self.directory)

    def feed(self, *events: InputEvent | list[InputEvent] | list[DutyShift]) -> list[Escalation]:
        """Process events in order; the revisions they caused (timers fired on the way included)."""
        out: list[Escalation] = []
        for item in events:
            # Events are pydantic models, which are iterable themselves: tell them from lists by type.
            for event in (item if isinstance(item, list) else [item]):
                outcome = self.engine.process(event)
                self.outcomes.append(outcome)
                out += outcome.revisions
        self.revisions += out
        return out

    def one(self, event: InputEvent) -> Outcome:
        outcome = self.engine.process(event)
        self.outcomes.append(outcome)
        self.revisions += outcome.revisions
        return outcome

    def advance(self, to: datetime) -> list[Escalation]:
        out = self.engine.advance(to)
        self.revisions += out
        return out

    # -- reading what was said --
    def of_rule(self, rule: str) -> list[Escalation]:
        return [r for r in self.revisions if r.rule == rule]

    def escalations(self, rule: str | None = None) -> dict[str, list[Escalation]]:
        grouped: dict[str, list[Escalation]] = defaultdict(list)
        for r in self.revisions:
            if rule is None or r.rule == rule:
                grouped[r.escalation_id].append(r)
        return dict(grouped)

    def latest(self, escalation_id: str) -> Escalation:
        return [r for r in self.revisions if r.escalation_id == escalation_id][-1]

    def only(self, rule: str) -> Escalation:
        """The latest revision of the one escalation of `rule` (fails if there are none or several)."""
        found = self.escalations(rule)
        assert len(found) == 1, f"expected one {rule} escalation, got {sorted(found)}"
        return next(iter(found.values()))[-1]

    def output(self) -> bytes:
        return b"".join(revision_json(r) + b"\n" for r in self.revisions)
