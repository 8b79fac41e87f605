"""The demo scenario: New Year's Eve, 24 January 2020, Guangyuan (from the seed document).

Sichuan has just started its level-I response. Arrivals from Hubei are screened at the station and
the highway exits; a traveller runs a fever at the airport; the infectious-disease hospital reports an
imported case; cases gather in one street of Lizhou; a street office has no in-charge leader on duty
over the holiday; a toll-station screening point falls silent; some acknowledgements come late and
some never come. Deterministic: the same file every time.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any

import orjson

from agents.core.ids import escalation_id

CST = timezone(timedelta(hours=8))
DAY = datetime(2020, 1, 24, tzinfo=CST)
WATCHED_CHECKPOINTS = ("gy-rail", "gy-airport", "gy-east-toll", "qipanguan-g5", "cangxi-toll", "lingjiang-toll")

# unit -> [(post, officer id, officer name)]; names are invented, phones are office lines.
ROSTER: dict[str, list[tuple[str, str, str]]] = {
    "hq-office": [
        ("principal", "hq-01", "赵国华"), ("in_charge", "hq-02", "钱卫东"), ("duty_officer", "hq-03", "孙晓梅"),
    ],
    "health": [("principal", "wjw-01", "李明"), ("in_charge", "wjw-02", "周静"), ("duty_officer", "wjw-03", "吴磊")],
    "cdc": [("principal", "cdc-01", "郑宏"), ("in_charge", "cdc-02", "王芳")],
    "public-security": [("principal", "gaj-01", "冯军"), ("in_charge", "gaj-02", "陈刚")],
    "lizhou-hq": [("principal", "lz-01", "褚建平"), ("in_charge", "lz-02", "卫兰")],
    "gy-edz-hq": [("principal", "kfq-01", "蒋涛"), ("in_charge", "kfq-02", "沈丽")],
    "cangxi-hq": [("principal", "cx-01", "韩勇"), ("in_charge", "cx-02", "杨帆")],
    # Dongba street: a principal on duty, but nobody in charge over the holiday night.
    "lizhou-dongba": [("principal", "db-01", "朱红")],
}


def _t(hour: int, minute: int = 0) -> datetime:
    return DAY + timedelta(hours=hour, minutes=minute)


def _iso(at: datetime) -> str:
    return at.isoformat()


def events() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    seq = iter(range(1, 10_000))

    def add(kind: str, source: str, at: datetime, **fields: Any) -> dict[str, Any]:
        event = {"event_id": f"demo-{next(seq):04d}", "kind": kind, "schema_version": 1, "source_unit": source,
                 "occurred_at": _iso(at), **fields}
        out.append(event)
        return event

    # Duty rosters for the night (18:00 to 08:00 next morning).
    for unit, posts in ROSTER.items():
        for post, officer, name in posts:
            add("duty_shift", unit, _t(17, 30), unit_id=unit, post=post, officer_id=officer, officer_name=name,
                phone="0839-3200000", shift_start=_iso(_t(18)), shift_end=_iso(_t(32)), status="scheduled")

    # Every screening point says it is there, every ten minutes; Lingjiang toll goes quiet at 20:10.
    for minutes in range(0, 6 * 60, 10):
        at = _t(18, minutes)
        for cp in WATCHED_CHECKPOINTS:
            if cp == "lingjiang-toll" and _t(20, 10) < at < _t(21, 30):
                continue
            unit = "railway" if cp == "gy-rail" else "airport" if cp == "gy-airport" else "transport"
            add("checkpoint_heartbeat", unit, at + timedelta(seconds=30), checkpoint_id=cp, screened=40)

    # 19:12, Guangyuan station: three travellers from Wuhan, no fever, bound for Lizhou.
    for n in (1, 2, 3):
        add("checkpoint_alert", "railway", _t(19, 12 + n), checkpoint_id="gy-rail", person_ref=f"p-wh-{n:03d}",
            reason="high_risk_origin", temperature_c=36.5, origin_region="hubei-wuhan",
            destination_region="lizhou", direction="inbound", action="released")
    # 19:40, Qipanguan on the G5 from Shaanxi: a car from Xiaogan bound for Cangxi.
    add("checkpoint_alert", "transport", _t(19, 40), checkpoint_id="qipanguan-g5", person_ref="p-xg-001",
        reason="high_risk_origin", temperature_c=36.8, origin_region="hubei-xiaogan",
        destination_region="cangxi", direction="inbound", action="released")
    # 20:05, Panlong airport: 38.2 °C, from Wuhan. 20:30, Dongba toll: 37.2 °C is under the line.
    add("checkpoint_alert", "airport", _t(20, 5), checkpoint_id="gy-airport", person_ref="p-wh-101",
        reason="fever", temperature_c=38.2, origin_region="hubei-wuhan", destination_region="gy-edz",
        direction="inbound", action="referred")
    add("checkpoint_alert", "transport", _t(20, 30), checkpoint_id="gy-east-toll", person_ref="p-gy-201",
        reason="fever", temperature_c=37.2, origin_region="sichuan-chengdu", direction="inbound", action="released")
    # A screening app that put a phone number where a pseudonym belongs: refused, redacted, nothing stops.
    add("checkpoint_alert", "transport", _t(20, 31), checkpoint_id="gy-east-toll", person_ref="13912345678",
        reason="refused_screening", direction="inbound", action="referred")
    # 21:00, the infectious-disease hospital: a suspected case back from Wuhan on the 20th.
    add("case_report", "third-hospital", _t(20, 40), reported_at=_iso(_t(21)), case_id="gy-2020-001",
        status="suspected", person_ref="p-wh-201", region="lizhou", township="lizhou-jialing",
        travel=[{"region": "hubei-wuhan", "left_at": _iso(_t(-96))}], facility="third-hospital-fever-clinic")
    # 21:30, confirmed: one of the 19:12 travellers, living in Dongba street.
    add("case_report", "third-hospital", _t(21, 30), case_id="gy-2020-002", status="confirmed",
        person_ref="p-wh-003", region="lizhou", township="lizhou-dongba",
        travel=[{"region": "hubei-wuhan", "left_at": _iso(_t(8))}])
    # 22:10, a second case in Dongba street with no travel: a cluster opens.
    add("case_report", "central-hospital", _t(22, 10), case_id="gy-2020-003", status="confirmed",
        person_ref="p-gy-301", region="lizhou", township="lizhou-dongba")
    # 22:20, an asymptomatic case in Dongba found at 19:00 but reported only now: late, and the cluster grows.
    add("case_report", "central-hospital", _t(19), reported_at=_iso(_t(22, 20)), case_id="gy-2020-004",
        status="asymptomatic", person_ref="p-gy-302", region="lizhou", township="lizhou-dongba")

    # Duty officers answer; ids are known in advance because they are computed from the subjects.
    def ack(unit: str, officer: str, at: datetime, rule: str, subject: dict[str, str],
            action: str = "acknowledge") -> None:
        add("escalation_ack", unit, at, escalation_id=escalation_id(rule, subject), unit_id=unit,
            officer_id=officer, action=action)

    date = "2020-01-24"
    ack("lizhou-hq", "lz-02", _t(18, 25), "duty_gap",
        {"unit_id": "lizhou-dongba", "post": "in_charge", "gap_start": _iso(_t(18))})
    ack("lizhou-hq", "lz-02", _t(19, 20), "high_risk_arrival", {"person_ref": "p-wh-001", "date": date})
    ack("cangxi-hq", "cx-02", _t(20, 15), "high_risk_arrival", {"person_ref": "p-xg-001", "date": date})
    fever = {"checkpoint_id": "gy-airport", "person_ref": "p-wh-101", "date": date}
    ack("gy-edz-hq", "kfq-02", _t(20, 10), "fever_at_checkpoint", fever)
    ack("health", "wjw-03", _t(20, 20), "fever_at_checkpoint", fever)
    # public-security never answers; after the deadline the HQ office is added and answers for it.
    ack("hq-office", "hq-03", _t(20, 50), "fever_at_checkpoint", fever)
    ack("health", "wjw-03", _t(21, 5), "imported_case", {"case_id": "gy-2020-001"})
    ack("health", "wjw-01", _t(22, 40), "late_report", {"case_id": "gy-2020-004"}, action="resolve")
    ack("lizhou-hq", "lz-01", _t(22, 30), "case_cluster",
        {"region": "lizhou", "township": "lizhou-dongba", "first_case_id": "gy-2020-002"})
    return out


def sent_at(event: dict[str, Any]) -> str:
    """Sources send when they report, which may be long after the thing happened."""
    return str(event.get("reported_at", event["occurred_at"]))


def lines() -> Iterator[bytes]:
    for event in sorted(events(), key=lambda e: (sent_at(e), e["event_id"])):
        yield orjson.dumps(event)


def write(path: str) -> int:
    with open(path, "wb") as out:
        return sum(out.write(line + b"\n") > 0 for line in lines())
