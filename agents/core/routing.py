"""Routing: a rule's route resolved to units, then to the officers on duty there.

A routed unit with nobody on duty is covered by its nearest ancestor with somebody on duty; that
ancestor joins the route and is recorded in `fallback`, so an alert never waits on an empty desk.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from agents.core.roster import DutyRoster
from schemas.directory import Directory
from schemas.escalation import Rule


@dataclass(frozen=True, slots=True)
class RouteContext:
    """What the placeholders of a route refer to for one escalation."""

    region: str | None = None
    checkpoint_unit: str | None = None
    destination_region: str | None = None
    unit: str | None = None  # the unit concerned ($parent)


def resolve_targets(directory: Directory, rule: Rule, ctx: RouteContext,
                    extra: tuple[str, ...] = ()) -> list[str]:
    targets: list[str] = []
    for target in (*directory.route(rule), *extra):
        unit = _resolve(directory, target, ctx)
        if unit is not None and unit in directory.unit_by_id and unit not in targets:
            targets.append(unit)
    return targets or [directory.root.id]


def _resolve(d: Directory, target: str, ctx: RouteContext) -> str | None:
    match target:
        case "$root":
            return d.root.id
        case "$checkpoint_unit":
            return ctx.checkpoint_unit
        case "$region_hq":
            return d.county_hq_by_region.get(ctx.region or "")
        case "$destination_hq":
            dest = ctx.destination_region
            if dest is not None and dest in d.region_by_id:
                return d.county_hq_by_region.get(dest)
            return ctx.checkpoint_unit
        case "$parent":
            return d.parent(ctx.unit) if ctx.unit else None
        case _:
            return target


def staff(directory: Directory, roster: DutyRoster, routed: list[str], fallback: dict[str, str],
          at: datetime) -> dict[str, list[str]]:
    """Assignees per routed unit at `at`; adds covering ancestors to `routed` and `fallback` in place."""
    assignees: dict[str, list[str]] = {}
    i = 0
    while i < len(routed):  # `routed` may grow as fallbacks join
        unit = routed[i]
        officers = roster.on_duty(unit, at)
        assignees[unit] = officers
        if not officers and unit not in fallback:
            for ancestor in directory.ancestors(unit):
                if roster.on_duty(ancestor, at):
                    fallback[unit] = ancestor
                    if ancestor not in routed:
                        routed.append(ancestor)
                    break
        i += 1
    return assignees
