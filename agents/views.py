"""How an escalation reads to a duty officer on a terminal: severity colour, title, who, why, time left."""

from __future__ import annotations

from datetime import datetime

import click

from agents.core.wording import SEVERITY_CN
from schemas.directory import Directory
from schemas.escalation import Escalation

COLOURS = {"I": "red", "II": "bright_red", "III": "yellow", "IV": "blue"}
STATUS_CN = {"open": "待确认", "acknowledged": "已确认", "resolved": "已办结"}


def unit_name(d: Directory, unit_id: str) -> str:
    unit = d.unit_by_id.get(unit_id)
    return f"{unit.name}({unit_id})" if unit else unit_id


def render(r: Escalation, d: Directory, now: datetime | None = None, colour: bool = True) -> str:
    head = f"[{r.severity}] {r.title}"
    status = f"{STATUS_CN[r.status]} {r.status}"
    lines = [
        click.style(head, fg=COLOURS[r.severity], bold=r.severity in ("I", "II")) if colour else head,
        f"  {r.escalation_id} rev {r.revision} · step {r.step} · {status} · {SEVERITY_CN[r.severity]} · "
        f"{r.rule} · updated {r.updated_at.isoformat()}",
        f"  why: {r.summary}",
    ]
    if r.status == "open":
        left = ""
        if now is not None:
            minutes = int((r.ack_deadline - now).total_seconds() // 60)
            left = f" ({minutes} min left)" if minutes >= 0 else f" ({-minutes} min overdue)"
        lines.append(f"  acknowledge by {r.ack_deadline.isoformat()}{left}")
    for unit in r.routed_to:
        officers = ", ".join(r.assignees.get(unit, [])) or "nobody on duty"
        extra = f" -> covered by {unit_name(d, r.fallback[unit])}" if unit in r.fallback else ""
        acked = f" ✔ acked by {r.acked_by[unit]}" if unit in r.acked_by else ""
        lines.append(f"  to {unit_name(d, unit)}: {officers}{extra}{acked}")
    evidence = ", ".join(f"{e.kind} {e.event_id} from {e.source_unit}"
                         + (f" @{e.topic}/{e.partition}/{e.offset}" if e.topic else "") for e in r.evidence[-5:])
    more = f" (+{len(r.evidence) - 5} earlier)" if len(r.evidence) > 5 else ""
    lines.append(f"  evidence: {evidence}{more}")
    return "\n".join(lines)


BOARD_HEADER = f"{'AGE':<7} {'SEV':<4} {'STATUS':<13} {'STEP':<4} {'DEADLINE':<15} {'ESCALATION':<24}  TITLE"


def board_row(r: Escalation, now: datetime, colour: bool = True) -> str:
    """One escalation in `jpc escalations`: how old, how bad, where on the ladder, who has it.

    Ages count from `opened_at` to `now`; the deadline column says how long is left to acknowledge.
    """
    from agents.officer_time import span

    age = span(now - r.opened_at) if now >= r.opened_at else "-"
    deadline = "-"
    if r.status == "open":
        left = r.ack_deadline - now
        seconds = left.total_seconds()
        deadline = f"{span(left)} left" if seconds > 0 else "due now" if seconds == 0 else f"{span(left)} overdue"
    severity = f"{r.severity:<4}"
    # A space after every column, so that an age of years (the 2020 demo on the wall clock) still reads.
    head = (f"{age:<7} {click.style(severity, fg=COLOURS[r.severity]) if colour else severity} "
            f"{r.status:<13} {r.step:<4} {deadline:<15} {r.escalation_id:<24}  {r.title}")
    routed = ", ".join(u + (f" ✔{r.acked_by[u]}" if u in r.acked_by else "") for u in r.routed_to)
    return f"{head}\n{'':<8}routed to {routed}"
