"""Checkpoint rules: fever at a checkpoint, and arrivals from high-risk regions without fever."""

from __future__ import annotations

from agents.core import wording
from agents.core.ladder import Finding
from agents.core.proof import Proof
from agents.core.routing import RouteContext
from schemas.directory import Directory
from schemas.events import CheckpointAlert


def screen(d: Directory, alert: CheckpointAlert, evidence: Proof) -> list[Finding]:
    temperature = alert.temperature_c
    fever = temperature is not None and temperature >= d.rules.fever_celsius
    high_risk = alert.origin_region is not None and alert.origin_region in d.high_risk
    if not fever and not (high_risk and alert.direction == "inbound"):
        return []  # nearly every alert: nothing more to work out
    checkpoint = d.checkpoint_by_id[alert.checkpoint_id]
    date = alert.occurred_at.astimezone(d.zone).date().isoformat()
    ctx = RouteContext(region=checkpoint.region, checkpoint_unit=checkpoint.unit,
                       destination_region=alert.destination_region)
    if temperature is not None and fever:
        title, summary = wording.fever(checkpoint.name, temperature, alert.origin_region, high_risk)
        return [Finding(
            rule="fever_at_checkpoint",
            subject={"checkpoint_id": checkpoint.id, "person_ref": alert.person_ref, "date": date},
            severity="III" if high_risk else "IV",
            region=checkpoint.region, title=title, summary=summary, evidence=[evidence], ctx=ctx,
            extra_targets=("public-security",) if high_risk else (),
        )]
    destination = d.region_name(alert.destination_region)
    dest_region = alert.destination_region if alert.destination_region in d.region_by_id else None
    title, summary = wording.arrival(checkpoint.name, alert.origin_region or "", destination)
    return [Finding(
        rule="high_risk_arrival",
        subject={"person_ref": alert.person_ref, "date": date},
        severity="IV", region=dest_region or checkpoint.region, title=title, summary=summary,
        evidence=[evidence], ctx=ctx,
    )]
