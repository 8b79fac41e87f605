"""Case clusters: enough infected cases in one township within the window.

Kept in our own state with eviction by event time, not in wall-clock windowed tables, because a
cluster must follow when cases occurred, not when their reports happened to arrive.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from agents.core import wording
from agents.core.cases import INFECTED
from agents.core.ladder import Action, Finding, Resolve
from agents.core.proof import Proof
from agents.core.routing import RouteContext
from schemas.directory import Directory
from schemas.events import CaseReport


@dataclass(slots=True)
class Member:
    case_id: str
    occurred_at: datetime
    evidence: Proof


@dataclass(slots=True)
class Cluster:
    subject: dict[str, str]
    members: dict[str, Member]
    latest: datetime
    evidence: list[Proof] = field(default_factory=list)  # reports that changed it (exclusions too)


@dataclass(slots=True)
class Township:
    cases: dict[str, Member] = field(default_factory=dict)
    cluster: Cluster | None = None


@dataclass(slots=True)
class ClusterWatch:
    townships: dict[tuple[str, str], Township] = field(default_factory=dict)
    where: dict[str, tuple[str, str]] = field(default_factory=dict)  # case id -> (region, township)

    def on_report(self, d: Directory, report: CaseReport, evidence: Proof) -> list[Action]:
        if report.status == "excluded":
            return self._exclude(d, report.case_id, evidence)
        if report.status not in INFECTED or not report.township:
            return []
        key = (report.region, report.township)
        town = self.townships.setdefault(key, Township())
        known = town.cases.get(report.case_id)
        when = min(report.occurred_at, known.occurred_at) if known else report.occurred_at
        member = Member(report.case_id, when, evidence)
        town.cases[report.case_id] = member
        self.where[report.case_id] = key
        window = timedelta(days=d.rules.cluster_window_days)
        cluster = town.cluster
        if cluster is not None and abs(when - cluster.latest) <= window:
            cluster.members[report.case_id] = member
            cluster.latest = max(cluster.latest, when)
            cluster.evidence.append(evidence)
            return self._state(d, key, cluster)
        opening = _densest(list(town.cases.values()), member, window)
        if len(opening) < d.rules.cluster_min_cases:
            return []
        first = min(opening, key=lambda m: (m.occurred_at, m.case_id))
        cluster = Cluster(
            subject={"region": key[0], "township": key[1], "first_case_id": first.case_id},
            members={m.case_id: m for m in opening},
            latest=max(m.occurred_at for m in opening),
        )
        town.cluster = cluster
        return self._state(d, key, cluster)

    def _exclude(self, d: Directory, case_id: str, evidence: Proof) -> list[Action]:
        key = self.where.pop(case_id, None)
        if key is None:
            return []
        town = self.townships[key]
        town.cases.pop(case_id, None)
        cluster = town.cluster
        if cluster is None or cluster.members.pop(case_id, None) is None:
            return []
        cluster.evidence.append(evidence)
        if cluster.members:
            # The window runs from the latest case still in the cluster: an excluded case was never a
            # case, so it must not keep stretching the window (contract §3: "within cluster_window_days
            # of its latest case").
            cluster.latest = max(m.occurred_at for m in cluster.members.values())
        return self._state(d, key, cluster)

    def _state(self, d: Directory, key: tuple[str, str], cluster: Cluster) -> list[Action]:
        count = len(cluster.members)
        finding = _finding(d, key, cluster)
        if count < d.rules.cluster_min_cases:
            return [Resolve(finding.escalation_id, cluster.evidence[-1] if cluster.evidence else None)]
        return [finding]

    def evict(self, before: datetime) -> None:
        for key in list(self.townships):
            town = self.townships[key]
            for case_id in [c for c, m in town.cases.items() if m.occurred_at < before]:
                del town.cases[case_id]
                self.where.pop(case_id, None)
            if town.cluster is not None and town.cluster.latest < before:
                town.cluster = None
            if not town.cases and town.cluster is None:
                del self.townships[key]


def _densest(cases: list[Member], anchor: Member, window: timedelta) -> list[Member]:
    """The largest set of cases spanning at most `window` that contains `anchor` (earliest on ties)."""
    near = sorted((m for m in cases if abs(m.occurred_at - anchor.occurred_at) <= window),
                  key=lambda m: (m.occurred_at, m.case_id))
    best: list[Member] = [anchor]
    for i, start in enumerate(near):
        if start.occurred_at > anchor.occurred_at:
            break
        span = [m for m in near[i:] if m.occurred_at - start.occurred_at <= window]
        if len(span) > len(best):
            best = span
    return best


def _finding(d: Directory, key: tuple[str, str], cluster: Cluster) -> Finding:
    region, township = key
    count = len(cluster.members)
    members = sorted(cluster.members.values(), key=lambda m: (m.occurred_at, m.case_id))
    place = d.unit_by_id[township].name if township in d.unit_by_id else township
    title, summary = wording.cluster(d.region_name(region), place, count)
    return Finding(
        rule="case_cluster", subject=cluster.subject,
        severity="I" if count >= d.rules.cluster_severe_cases else "II",
        region=region, title=title, summary=summary,
        evidence=[m.evidence for m in members] + cluster.evidence,
        ctx=RouteContext(region=region), exact_severity=True,
    )
