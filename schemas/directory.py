"""The directory (contract §2): regions, the command tree, checkpoints, routes and thresholds.

Routing is data. A directory is checked whole when it is loaded and every refusal names the path of
the bad entry (`units[4].parent: unknown unit 'lizhuo-hq'`), so a bad file never reaches a worker.
"""

from __future__ import annotations

import re
from collections.abc import Hashable, Iterator, Mapping
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import yaml
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, ValidationError, field_validator

from schemas.escalation import RULES, SEVERITIES, Rule, Severity
from schemas.versions import VersionOne

Id = Annotated[str, StringConstraints(min_length=1, max_length=128)]
Name = Annotated[str, StringConstraints(min_length=1, max_length=256)]
Level = Literal["city", "county", "township", "village"]
CheckpointKind = Literal["airport", "rail", "coach", "dock", "highway", "road"]

PLACEHOLDERS = frozenset({"$root", "$checkpoint_unit", "$region_hq", "$destination_hq", "$parent"})
DEFAULT_ROUTES: dict[Rule, tuple[str, ...]] = {
    "fever_at_checkpoint": ("$checkpoint_unit", "health"),
    "high_risk_arrival": ("$destination_hq",),
    "imported_case": ("health", "cdc", "$region_hq", "public-security"),
    "case_cluster": ("health", "cdc", "$region_hq", "$root"),
    "checkpoint_contact": ("public-security", "transport", "$checkpoint_unit"),
    "late_report": ("health", "cdc"),
    "duty_gap": ("$parent", "$root"),
    "checkpoint_silent": ("$checkpoint_unit", "transport"),
    "unit_not_reading": ("$parent", "$root"),
}
try:  # libyaml's parser when PyYAML was built with it: ten times faster, same documents
    from yaml import CSafeLoader as _SafeLoader
except ImportError:  # pragma: no cover
    from yaml import SafeLoader as _SafeLoader  # type: ignore[assignment]

DEFAULT_ACK_MINUTES: dict[Severity, int] = {"I": 5, "II": 15, "III": 30, "IV": 60}
DEFAULT_PATH = "guangyuan.yaml"
# A mapping key written the way a path names it (`units[4].parent`); any other key is quoted.
_PLAIN_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")


class DirectoryError(ValueError):
    """A directory refused at load; the message starts with the path of the bad entry."""


class _Entry(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Region(_Entry):
    id: Id
    name: Name


class Unit(_Entry):
    id: Id
    name: Name
    level: Level
    parent: Id | None
    region: Id | None = None
    duty_required: bool = True


class Checkpoint(_Entry):
    id: Id
    name: Name
    kind: CheckpointKind
    region: Id
    unit: Id


PositiveDays = Annotated[int, Field(ge=1, le=365)]
PositiveMinutes = Annotated[int, Field(ge=1, le=7 * 24 * 60)]


class Rules(_Entry):
    fever_celsius: Annotated[float, Field(ge=35.0, le=42.0, allow_inf_nan=False)] = 37.3
    high_risk_window_days: PositiveDays = 14
    contact_window_days: PositiveDays = 14
    cluster_min_cases: Annotated[int, Field(ge=2, le=10_000)] = 2
    cluster_window_days: PositiveDays = 14
    cluster_severe_cases: Annotated[int, Field(ge=2, le=10_000)] = 5
    report_deadline_minutes: PositiveMinutes = 120
    checkpoint_silence_minutes: PositiveMinutes = 30
    duty_grace_minutes: Annotated[int, Field(ge=0, le=24 * 60)] = 0
    ack_minutes: dict[Severity, PositiveMinutes] = Field(default_factory=lambda: dict(DEFAULT_ACK_MINUTES))

    @field_validator("ack_minutes")
    @classmethod
    def _every_severity(cls, value: dict[Severity, int]) -> dict[Severity, int]:
        missing = [s for s in SEVERITIES if s not in value]
        if missing:
            raise ValueError(f"missing severities {', '.join(missing)}")
        return value

    @property
    def longest_window_days(self) -> int:
        return max(self.high_risk_window_days, self.contact_window_days, self.cluster_window_days)


class Directory(_Entry):
    version: VersionOne
    name: Name
    timezone: Name
    regions: list[Region]
    units: list[Unit]
    checkpoints: list[Checkpoint] = Field(default_factory=list)
    high_risk_regions: list[Id] = Field(default_factory=list)
    routes: dict[Rule, list[str]] = Field(default_factory=dict)
    rules: Rules = Field(default_factory=Rules)

    # ---- indexes (the model is frozen, so computing them once is safe) ----
    @cached_property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @cached_property
    def unit_by_id(self) -> dict[str, Unit]:
        return {u.id: u for u in self.units}

    @cached_property
    def region_by_id(self) -> dict[str, Region]:
        return {r.id: r for r in self.regions}

    @cached_property
    def checkpoint_by_id(self) -> dict[str, Checkpoint]:
        return {c.id: c for c in self.checkpoints}

    @cached_property
    def root(self) -> Unit:
        return next(u for u in self.units if u.parent is None)

    @cached_property
    def county_hq_by_region(self) -> dict[str, str]:
        return {u.region: u.id for u in self.units if u.level == "county" and u.region is not None}

    @cached_property
    def high_risk(self) -> frozenset[str]:
        return frozenset(self.high_risk_regions)

    @cached_property
    def _ancestors(self) -> dict[str, tuple[str, ...]]:
        chains: dict[str, tuple[str, ...]] = {}
        for unit in self.units:
            chain: list[str] = []
            parent = unit.parent
            while parent is not None:
                chain.append(parent)
                parent = self.unit_by_id[parent].parent
            chains[unit.id] = tuple(chain)
        return chains

    def route(self, rule: Rule) -> tuple[str, ...]:
        given = self.routes.get(rule)
        return tuple(given) if given is not None else DEFAULT_ROUTES[rule]

    def ancestors(self, unit_id: str) -> tuple[str, ...]:
        """Parent first, root last."""
        return self._ancestors.get(unit_id, ())

    def parent(self, unit_id: str) -> str | None:
        unit = self.unit_by_id.get(unit_id)
        return unit.parent if unit else None

    def covers(self, acker: str, unit_id: str) -> bool:
        """An acknowledgement by a unit or any of its ancestors covers the unit."""
        return acker == unit_id or acker in self.ancestors(unit_id)

    def region_name(self, region_id: str | None) -> str:
        region = self.region_by_id.get(region_id or "")
        return region.name if region else (region_id or "")


def load_directory(source: str | Path | None = None) -> Directory:
    """Load a directory from a path (None: the shipped Guangyuan directory)."""
    if source is None:
        text = resources.files("schemas").joinpath("data", DEFAULT_PATH).read_text(encoding="utf-8")
    else:
        try:
            text = Path(source).read_text(encoding="utf-8")
        except (OSError, ValueError) as exc:  # ValueError: not UTF-8, or a NUL in the path
            problem = f"{exc.__class__.__name__}: {exc}"
            raise DirectoryError(f"{source}: cannot read directory ({problem})") from None
    return parse_directory(text)


def parse_directory(text: str) -> Directory:
    try:
        data = yaml.load(text, Loader=_UniqueKeyLoader)  # a SafeLoader subclass
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow (a NUL, a lone surrogate)
        line = text.count("\n", 0, exc.position) + 1
        char = exc.character if isinstance(exc.character, int) else ord(exc.character)  # libyaml: an int
        raise DirectoryError(f"line {line}: not valid YAML ({exc.reason}: U+{char:04X})") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "(file)"
        raise DirectoryError(f"{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    except (RecursionError, ValueError, TypeError) as exc:
        raise DirectoryError(f"(file): not valid YAML ({exc.__class__.__name__})") from None
    if not isinstance(data, Mapping):
        raise DirectoryError("(file): a directory is a YAML mapping with version, name, regions, units")
    try:
        directory = Directory.model_validate(data)
    except ValidationError as exc:
        raise DirectoryError(_refusal(exc.errors(include_url=False, include_input=False)[0])) from None
    problems = list(_problems(directory))
    if problems:
        raise DirectoryError(problems[0])
    return directory


class _UniqueKeyLoader(_SafeLoader):
    """A SafeLoader that refuses a key given twice in one mapping (PyYAML silently keeps the last,
    so a second `units:` section would quietly replace the first)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: list[Any] = []
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *defaults` may be overridden by the keys written beside it
            key = self.construct_object(key_node, deep=deep)
            if any(key == other and type(key) is type(other) for other in seen):
                raise yaml.constructor.ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.append(key)
        return super().construct_mapping(node, deep=deep)


def _refusal(error: Any) -> str:
    loc: tuple[Any, ...] = tuple(error["loc"])
    kind = error["type"]
    msg = str(error["msg"]).removeprefix("Value error, ")
    if loc and loc[-1] == "[key]":  # a mapping key that is not one of the allowed ones
        return f"{_path(loc[:-2])}: key {loc[-2]!r}: {msg}"
    if kind == "invalid_key":
        return f"{_path(loc[:-1])}: key {loc[-1]!r}: keys must be strings"
    if kind == "extra_forbidden" and not _PLAIN_KEY.fullmatch(str(loc[-1])):
        return f"{_path(loc[:-1])}: unknown field {loc[-1]!r}"
    if kind == "missing":
        msg = "required field missing"
    elif kind == "extra_forbidden":
        msg = "unknown field"
    return f"{_path(loc)}: {msg}"


def _path(loc: tuple[Any, ...]) -> str:
    out = ""
    for step in loc:
        if isinstance(step, int):
            out += f"[{step}]"
        elif _PLAIN_KEY.fullmatch(str(step)):
            out += f".{step}" if out else str(step)
        else:
            out += f"[{str(step)!r}]" if out else f"(file)[{str(step)!r}]"
    return out or "(file)"


def _problems(d: Directory) -> Iterator[str]:
    try:
        ZoneInfo(d.timezone)
    except Exception:  # ZoneInfo raises several types for bad keys; any of them means "unknown"
        yield f"timezone: unknown time zone {d.timezone!r}"
    yield from _duplicates("regions", [r.id for r in d.regions])
    yield from _duplicates("units", [u.id for u in d.units])
    yield from _duplicates("checkpoints", [c.id for c in d.checkpoints])
    units = {u.id for u in d.units}
    regions = {r.id for r in d.regions}
    roots = [i for i, u in enumerate(d.units) if u.parent is None]
    if not roots:
        yield "units: the command tree has no root (a unit with parent: null)"
    for i in roots[1:]:
        yield f"units[{i}].parent: a second root ({d.units[i].id!r}); the command tree has exactly one"
    for i, unit in enumerate(d.units):
        if unit.parent is not None and unit.parent not in units:
            yield f"units[{i}].parent: unknown unit {unit.parent!r}"
        if unit.region is not None and unit.region not in regions:
            yield f"units[{i}].region: unknown region {unit.region!r}"
    yield from _cycles(d)
    hq_seen: dict[str, int] = {}
    for i, unit in enumerate(d.units):
        if unit.level == "county" and unit.region is not None:
            if unit.region in hq_seen:
                first = hq_seen[unit.region]
                yield f"units[{i}].region: region {unit.region!r} already has a county HQ (units[{first}])"
            hq_seen.setdefault(unit.region, i)
    for i, cp in enumerate(d.checkpoints):
        if cp.region not in regions:
            yield f"checkpoints[{i}].region: unknown region {cp.region!r}"
        if cp.unit not in units:
            yield f"checkpoints[{i}].unit: unknown unit {cp.unit!r}"
    for rule in RULES:
        for j, target in enumerate(d.route(rule)):
            if target.startswith("$"):
                if target not in PLACEHOLDERS:
                    yield f"routes.{rule}[{j}]: unknown placeholder {target!r}"
            elif target not in units:
                given = "" if rule in d.routes else " (default route)"
                yield f"routes.{rule}[{j}]: unknown unit {target!r}{given}"
    if d.rules.cluster_severe_cases < d.rules.cluster_min_cases:
        yield "rules.cluster_severe_cases: must be at least cluster_min_cases"


def _duplicates(section: str, ids: list[str]) -> Iterator[str]:
    seen: set[str] = set()
    for i, ident in enumerate(ids):
        if ident in seen:
            yield f"{section}[{i}].id: duplicate id {ident!r}"
        seen.add(ident)


def _cycles(d: Directory) -> Iterator[str]:
    parent = {u.id: u.parent for u in d.units}
    for i, unit in enumerate(d.units):
        seen = {unit.id}
        step = unit.parent
        while step is not None and step in parent:
            if step in seen:
                yield f"units[{i}].parent: cycle in the command tree through {unit.id!r}"
                return
            seen.add(step)
            step = parent[step]
