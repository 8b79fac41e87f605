"""The directory (contract §2): the shipped Guangyuan directory, refusals that name the path, and fuzzing."""

from __future__ import annotations

import copy
import re
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from schemas.directory import (
    DEFAULT_ROUTES,
    Checkpoint,
    Directory,
    DirectoryError,
    Region,
    Unit,
    load_directory,
    parse_directory,
)
from schemas.escalation import RULES

pytestmark = pytest.mark.core

SHIPPED = Path(str(resources.files("schemas").joinpath("data", "guangyuan.yaml")))
MEMBER_UNITS = [
    "health", "cdc", "public-security", "transport", "market-regulation",
    "agriculture", "forestry", "publicity", "development-reform",
]  # fmt: skip
REGIONS = ["lizhou", "zhaohua", "chaotian", "wangcang", "qingchuan", "jiange", "cangxi", "gy-edz"]
CHECKPOINT_KINDS = {"airport", "rail", "coach", "dock", "highway", "road"}
CJK = re.compile(r"[\u4e00-\u9fff]")
# What every refusal starts with: a path into the file, `(file)`, or a line of a YAML syntax error.
PATH_PREFIX = re.compile(
    r"^(\(file\)|line \d+|[A-Za-z_][A-Za-z0-9_-]*(\[\d+\]|\.[A-Za-z_][A-Za-z0-9_-]*)*): \S"
)


@cache
def _shipped_data() -> dict[str, Any]:
    data = yaml.safe_load(SHIPPED.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def shipped_data() -> dict[str, Any]:
    """A fresh, mutable copy of the shipped directory as plain data."""
    return copy.deepcopy(_shipped_data())


def dump(data: Any) -> str:
    # libyaml's emitter: the fuzz tests dump the whole Guangyuan directory for every example.
    return yaml.dump(data, Dumper=yaml.CSafeDumper, allow_unicode=True, sort_keys=False)


def index_of(data: dict[str, Any], section: str, ident: str) -> int:
    return next(i for i, entry in enumerate(data[section]) if entry["id"] == ident)


@pytest.fixture(scope="module")
def guangyuan() -> Directory:
    return load_directory()


# ---------------------------------------------------------------------------------------------------
# The shipped directory
# ---------------------------------------------------------------------------------------------------


def test_the_default_is_the_shipped_file(guangyuan: Directory) -> None:
    assert load_directory(SHIPPED) == guangyuan
    assert load_directory(str(SHIPPED)) == guangyuan
    assert parse_directory(dump(_shipped_data())) == guangyuan


def test_root_is_the_hq_office(guangyuan: Directory) -> None:
    assert guangyuan.root.id == "hq-office"
    assert guangyuan.root.parent is None
    assert [u.id for u in guangyuan.units if u.parent is None] == ["hq-office"]
    assert "联防联控指挥部" in guangyuan.name


@pytest.mark.parametrize("unit_id", MEMBER_UNITS)
def test_member_unit_reports_to_the_hq_office(guangyuan: Directory, unit_id: str) -> None:
    unit = guangyuan.unit_by_id[unit_id]
    assert unit.parent == "hq-office"
    assert unit.level == "city"


def test_eight_regions_each_with_exactly_one_county_hq(guangyuan: Directory) -> None:
    assert [r.id for r in guangyuan.regions] == REGIONS
    for region in REGIONS:
        hqs = [u for u in guangyuan.units if u.level == "county" and u.region == region]
        assert len(hqs) == 1, region
        assert hqs[0].parent == "hq-office"
        assert guangyuan.county_hq_by_region[region] == hqs[0].id


def test_every_unit_reaches_the_root(guangyuan: Directory) -> None:
    for unit in guangyuan.units:
        chain = guangyuan.ancestors(unit.id)
        assert unit.parent is None or chain[-1] == "hq-office", unit.id
        assert len(chain) == len(set(chain))


def test_checkpoints_cover_every_kind(guangyuan: Directory) -> None:
    assert len(guangyuan.checkpoints) >= 30
    assert {c.kind for c in guangyuan.checkpoints} == CHECKPOINT_KINDS
    for checkpoint in guangyuan.checkpoints:
        assert checkpoint.region in guangyuan.region_by_id
        assert checkpoint.unit in guangyuan.unit_by_id


def test_checkpoints_answer_to_the_hq_of_their_region(guangyuan: Directory) -> None:
    for checkpoint in guangyuan.checkpoints:
        assert checkpoint.unit == guangyuan.county_hq_by_region[checkpoint.region], checkpoint.id


def test_names_are_chinese_and_ids_ascii(guangyuan: Directory) -> None:
    entries: list[Region | Unit | Checkpoint] = [*guangyuan.regions, *guangyuan.units, *guangyuan.checkpoints]
    for entry in entries:
        assert CJK.search(entry.name), entry.id
        assert re.fullmatch(r"[a-z0-9][a-z0-9-]*", entry.id), entry.id
    ids = [e.id for e in guangyuan.units] + [e.id for e in guangyuan.checkpoints]
    assert len(ids) == len(set(ids))


def test_zone_and_high_risk_regions(guangyuan: Directory) -> None:
    assert guangyuan.zone == ZoneInfo("Asia/Shanghai")
    assert "hubei-wuhan" in guangyuan.high_risk
    assert all(r.startswith("hubei-") for r in guangyuan.high_risk_regions)


def test_routes_and_rules_are_the_contract_defaults(guangyuan: Directory) -> None:
    for rule in RULES:
        assert guangyuan.route(rule) == DEFAULT_ROUTES[rule]
    rules = guangyuan.rules
    assert (rules.fever_celsius, rules.cluster_min_cases, rules.cluster_severe_cases) == (37.3, 2, 5)
    assert rules.ack_minutes == {"I": 5, "II": 15, "III": 30, "IV": 60}
    assert rules.report_deadline_minutes == 120


def test_routes_and_rules_may_be_left_out() -> None:
    data = shipped_data()
    del data["routes"], data["rules"]
    directory = parse_directory(dump(data))
    assert directory.route("imported_case") == ("health", "cdc", "$region_hq", "public-security")
    assert directory.rules.ack_minutes == {"I": 5, "II": 15, "III": 30, "IV": 60}
    assert directory.rules.checkpoint_silence_minutes == 30


# ---------------------------------------------------------------------------------------------------
# Refusals, each naming the path of the bad entry
# ---------------------------------------------------------------------------------------------------


def _set(section: str, ident: str, key: str, value: Any) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        d[section][index_of(d, section, ident)][key] = value

    return mutate


def _duplicate(section: str, ident: str) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        d[section].append(copy.deepcopy(d[section][index_of(d, section, ident)]))

    return mutate


def _without_cdc(routes: bool) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        d["units"] = [u for u in d["units"] if u["id"] != "cdc"]
        if not routes:
            del d["routes"]

    return mutate


def _second_root(d: dict[str, Any]) -> None:
    d["units"][index_of(d, "units", "cdc")]["parent"] = None


def _no_root(d: dict[str, Any]) -> None:
    d["units"][0]["parent"] = "health"


def _cycle(d: dict[str, Any]) -> None:
    d["units"][index_of(d, "units", "health")]["parent"] = "central-hospital"


def _self_parent(d: dict[str, Any]) -> None:
    d["units"][index_of(d, "units", "forestry")]["parent"] = "forestry"


def _route(rule: str, targets: Any) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        d["routes"][rule] = targets

    return mutate


def _top(key: Any, value: Any) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        d[key] = value

    return mutate


def _rule(key: str, value: Any) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        d["rules"][key] = value

    return mutate


def _rules(**values: Any) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        d["rules"].update(values)

    return mutate


def _drop_severity(d: dict[str, Any]) -> None:
    del d["rules"]["ack_minutes"]["III"]


def _drop(section: str, key: str) -> Any:
    def mutate(d: dict[str, Any]) -> None:
        del d[section][0][key]

    return mutate


def _second_county_hq(d: dict[str, Any]) -> None:
    d["units"].append({"id": "lizhou-hq-2", "name": "利州区第二指挥部", "level": "county",
                       "parent": "hq-office", "region": "lizhou"})  # fmt: skip


HEALTH, FORESTRY, GY_RAIL = 1, 7, 0  # positions in the shipped file, checked below

MUTATIONS = [
    pytest.param(
        _set("units", "lizhou-dongba", "parent", "lizhuo-hq"),
        "units[32].parent: unknown unit 'lizhuo-hq'",
        id="dangling-parent",
    ),
    pytest.param(_cycle, f"units[{HEALTH}].parent: cycle", id="cycle"),
    pytest.param(_self_parent, f"units[{FORESTRY}].parent: cycle", id="own-parent"),
    pytest.param(_second_root, "units[2].parent: a second root ('cdc')", id="two-roots"),
    pytest.param(_no_root, "units: the command tree has no root", id="no-root"),
    pytest.param(
        _duplicate("units", "transport"), "units[59].id: duplicate id 'transport'", id="duplicate-unit"
    ),
    pytest.param(
        _duplicate("regions", "jiange"), "regions[8].id: duplicate id 'jiange'", id="duplicate-region"
    ),
    pytest.param(
        _duplicate("checkpoints", "gy-airport"),
        "checkpoints[32].id: duplicate id 'gy-airport'",
        id="duplicate-checkpoint",
    ),
    pytest.param(
        _set("checkpoints", "gy-rail", "unit", "lizhou-hq-x"),
        f"checkpoints[{GY_RAIL}].unit: unknown unit 'lizhou-hq-x'",
        id="checkpoint-unknown-unit",
    ),
    pytest.param(
        _set("checkpoints", "gy-rail", "region", "lizhuo"),
        f"checkpoints[{GY_RAIL}].region: unknown region 'lizhuo'",
        id="checkpoint-unknown-region",
    ),
    pytest.param(
        _set("units", "cangxi-hq", "region", "cangxii"),
        "units[30].region: unknown region 'cangxii'",
        id="unit-unknown-region",
    ),
    pytest.param(
        _second_county_hq, "units[59].region: region 'lizhou' already has a county HQ", id="two-county-hqs"
    ),
    pytest.param(
        _route("late_report", ["health", "cdc", "labs"]),
        "routes.late_report[2]: unknown unit 'labs'",
        id="given-route-unknown-unit",
    ),
    pytest.param(
        _without_cdc(routes=False),
        "routes.imported_case[1]: unknown unit 'cdc' (default route)",
        id="default-route-unknown-unit",
    ),
    pytest.param(
        _without_cdc(routes=True),
        "routes.imported_case[1]: unknown unit 'cdc'",
        id="given-route-removed-unit",
    ),
    pytest.param(
        _route("duty_gap", ["$parent", "$hq"]),
        "routes.duty_gap[1]: unknown placeholder '$hq'",
        id="unknown-placeholder",
    ),
    pytest.param(_route("case_clusters", ["health"]), "routes: key 'case_clusters'", id="unknown-rule"),
    pytest.param(_route("late_report", "health"), "routes.late_report: ", id="route-not-a-list"),
    pytest.param(
        _top("timezone", "Asia/Guangyuan"),
        "timezone: unknown time zone 'Asia/Guangyuan'",
        id="unknown-timezone",
    ),
    pytest.param(_top("timezone", "../../etc/passwd"), "timezone: unknown time zone", id="timezone-path"),
    pytest.param(_top("checkpoint", []), "checkpoint: unknown field", id="unknown-top-level-field"),
    pytest.param(
        _top("high risk regions", []),
        "(file): unknown field 'high risk regions'",
        id="unknown-top-level-field-with-space",
    ),
    pytest.param(_top(7, "x"), "(file): key 7: keys must be strings", id="non-string-top-level-key"),
    pytest.param(_top("version", 2), "version: must be the integer 1", id="version-2"),
    pytest.param(_top("version", "1"), "version: must be the integer 1", id="version-string"),
    pytest.param(_top("version", True), "version: must be the integer 1", id="version-true"),
    pytest.param(_top("units", {"hq-office": {}}), "units: ", id="units-not-a-list"),
    pytest.param(_drop("units", "level"), "units[0].level: required field missing", id="unit-missing-level"),
    pytest.param(
        _drop("units", "parent"), "units[0].parent: required field missing", id="unit-missing-parent"
    ),
    pytest.param(
        _set("units", "health", "level", "province"), f"units[{HEALTH}].level: ", id="unit-bad-level"
    ),
    pytest.param(
        _set("checkpoints", "gy-rail", "kind", "port"),
        f"checkpoints[{GY_RAIL}].kind: ",
        id="checkpoint-bad-kind",
    ),
    pytest.param(
        _set("units", "health", "colour", "red"),
        f"units[{HEALTH}].colour: unknown field",
        id="unit-unknown-field",
    ),
    pytest.param(_set("units", "health", "id", 110), f"units[{HEALTH}].id: ", id="unit-id-not-a-string"),
    pytest.param(
        _rules(cluster_min_cases=3, cluster_severe_cases=2),
        "rules.cluster_severe_cases: must be at least cluster_min_cases",
        id="severe-below-min",
    ),
    pytest.param(
        _rule("cluster_min_cases", 6),
        "rules.cluster_severe_cases: must be at least cluster_min_cases",
        id="min-above-severe",
    ),
    pytest.param(
        _drop_severity, "rules.ack_minutes: missing severities III", id="ack-minutes-missing-severity"
    ),
    pytest.param(
        _rule("ack_minutes", {"I": 5, "II": 15, "III": 30, "IV": 60, "V": 90}),
        "rules.ack_minutes: key 'V'",
        id="ack-minutes-unknown-severity",
    ),
    pytest.param(_rule("fever_celsius", float("nan")), "rules.fever_celsius: ", id="fever-nan"),
    pytest.param(_rule("report_deadline_minutes", 0), "rules.report_deadline_minutes: ", id="deadline-zero"),
    pytest.param(
        _rule("fever_threshold", 37.3), "rules.fever_threshold: unknown field", id="unknown-rule-field"
    ),
]


def test_positions_used_by_the_refusal_table() -> None:
    data = shipped_data()
    assert data["units"][HEALTH]["id"] == "health"
    assert data["units"][FORESTRY]["id"] == "forestry"
    assert data["units"][2]["id"] == "cdc"
    assert data["units"][32]["id"] == "lizhou-dongba"
    assert data["units"][30]["id"] == "cangxi-hq"
    assert len(data["units"]) == 59
    assert len(data["regions"]) == 8
    assert len(data["checkpoints"]) == 32
    assert data["checkpoints"][GY_RAIL]["id"] == "gy-rail"


@pytest.mark.parametrize(("mutate", "message"), MUTATIONS)
def test_refused_naming_the_path(mutate: Any, message: str) -> None:
    data = shipped_data()
    mutate(data)
    with pytest.raises(DirectoryError) as caught:
        parse_directory(dump(data))
    assert str(caught.value).startswith(message)
    assert PATH_PREFIX.match(str(caught.value)), str(caught.value)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param("version: 1\nunits: [\n", "line ", id="invalid-yaml"),
        pytest.param("version: 1\n\tname: x\n", "line 2: not valid YAML", id="tab-indent"),
        pytest.param(
            "version: 1\nname: x\nversion: 1\n",
            "line 3: not valid YAML (found duplicate key 'version')",
            id="duplicate-key",
        ),
        pytest.param("- version: 1\n", "(file): a directory is a YAML mapping", id="a-list"),
        pytest.param("广元\n", "(file): a directory is a YAML mapping", id="a-string"),
        pytest.param("", "(file): a directory is a YAML mapping", id="empty-file"),
        pytest.param(
            "# nothing but a comment\n", "(file): a directory is a YAML mapping", id="only-a-comment"
        ),
        pytest.param("? [a, b]\n: 1\n", "line 1: not valid YAML", id="unhashable-key"),
        pytest.param("a: &x [*x]\n", "version: required field missing", id="recursive-alias"),
        pytest.param("version: " + "9" * 5000 + "\n", "(file): not valid YAML", id="huge-integer"),
        # Deep nesting: libyaml parses it, pure-Python PyYAML runs out of stack; either way a refusal.
        pytest.param("[" * 5000 + "]" * 5000, "(file): ", id="deep-nesting"),
        pytest.param("{a: " * 5000 + "1" + "}" * 5000, "", id="deep-mappings"),
        pytest.param("version: 1\nname: \x00\n", "line 2: not valid YAML", id="control-character"),
    ],
)
def test_refused_text(text: str, message: str) -> None:
    with pytest.raises(DirectoryError) as caught:
        parse_directory(text)
    assert str(caught.value).startswith(message)
    assert PATH_PREFIX.match(str(caught.value)), str(caught.value)


MERGED = """\
version: 1
name: 测试市联防联控指挥部
timezone: Asia/Shanghai
regions: [{id: north, name: 北县}]
units:
  - &city {id: hq-office, name: 市指挥部办公室, level: city, parent: null}
  - <<: *city
    id: health
    name: 市卫生健康委员会
    parent: hq-office
  - {<<: *city, id: cdc, name: 市疾控中心, parent: hq-office}
  - {<<: *city, id: public-security, name: 市公安局, parent: hq-office}
  - {<<: *city, id: transport, name: 市交通运输局, parent: hq-office}
"""


def test_merge_keys_may_be_overridden_without_counting_as_duplicates() -> None:
    directory = parse_directory(MERGED)
    assert [u.id for u in directory.units] == ["hq-office", "health", "cdc", "public-security", "transport"]
    assert directory.unit_by_id["cdc"].parent == "hq-office"
    assert directory.unit_by_id["cdc"].level == "city"


def test_a_key_given_twice_in_an_entry_is_refused() -> None:
    text = MERGED.replace("{<<: *city, id: cdc,", "{<<: *city, id: cdc, id: cdc2,")
    with pytest.raises(DirectoryError, match=r"^line 11: not valid YAML \(found duplicate key 'id'\)"):
        parse_directory(text)


def test_a_missing_file_is_refused_naming_it() -> None:
    with pytest.raises(DirectoryError, match=r"^/nonexistent\.yaml: cannot read directory"):
        load_directory("/nonexistent.yaml")


def test_a_directory_path_or_a_binary_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="cannot read directory"):
        load_directory(tmp_path)
    binary = tmp_path / "directory.yaml"
    binary.write_bytes(b"version: 1\nname: \xff\xfe\n")
    with pytest.raises(DirectoryError, match="cannot read directory"):
        load_directory(binary)
    with pytest.raises(DirectoryError, match="cannot read directory"):
        load_directory("bad\x00path.yaml")


def test_a_valid_edited_copy_loads(tmp_path: Path) -> None:
    data = shipped_data()
    data["routes"]["late_report"] = ["health", "cdc", "$root"]
    data["rules"]["fever_celsius"] = 37.5
    path = tmp_path / "directory.yaml"
    path.write_text(dump(data), encoding="utf-8")
    directory = load_directory(path)
    assert directory.route("late_report") == ("health", "cdc", "$root")
    assert directory.rules.fever_celsius == 37.5


# ---------------------------------------------------------------------------------------------------
# Fuzzing: the loader returns a Directory or raises DirectoryError naming a path, never anything else
# ---------------------------------------------------------------------------------------------------


def assert_loads_or_refuses(text: str) -> Directory | None:
    try:
        return parse_directory(text)
    except DirectoryError as refusal:
        message = str(refusal)
    assert PATH_PREFIX.match(message), message
    return None


FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_SHIPPED = settings(FUZZ, max_examples=100)  # each example loads the whole Guangyuan directory

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(10**6), 10**6)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(
        ["hq-office", "health", "cdc", "lizhou", "$root", "$nope", "UTC", "I", "county", "rail"]
    )
)
keys = st.text(max_size=12) | st.sampled_from(
    ["version", "name", "timezone", "regions", "units", "checkpoints", "high_risk_regions", "routes", "rules",
     "id", "parent", "level", "region", "unit", "kind", "ack_minutes", "late_report", "duty_gap"]
)  # fmt: skip
structures = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=5) | st.dictionaries(keys, children, max_size=6),
    max_leaves=30,
)


@FUZZ
@given(st.text(max_size=300))
def test_fuzz_random_text(text: str) -> None:
    assert_loads_or_refuses(text)


@FUZZ
@given(structures)
def test_fuzz_random_yaml_structures(data: Any) -> None:
    assert_loads_or_refuses(dump(data))


@FUZZ
@given(st.fixed_dictionaries({"version": st.just(1) | scalars, "name": scalars, "timezone": scalars,
                              "regions": structures, "units": structures}, optional={"rules": structures,
                              "routes": structures, "checkpoints": structures}))  # fmt: skip
def test_fuzz_directory_shaped_structures(data: dict[str, Any]) -> None:
    assert_loads_or_refuses(dump(data))


def _containers(node: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    """Paths of every list and mapping inside `node` (the root included)."""
    found = [path] if isinstance(node, dict | list) else []
    items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else []
    for key, child in items:
        found += _containers(child, (*path, key))
    return found


def _at(data: Any, path: tuple[Any, ...]) -> Any:
    for step in path:
        data = data[step]
    return data


@st.composite
def mutated_directories(draw: st.DrawFn) -> dict[str, Any]:
    data = shipped_data()
    for _ in range(draw(st.integers(1, 3))):
        container = _at(data, draw(st.sampled_from(_containers(data))))
        keys_here = list(container) if isinstance(container, dict) else list(range(len(container)))
        if not keys_here:
            continue
        key = draw(st.sampled_from(keys_here))
        operation = draw(
            st.sampled_from(["drop", "scalar", "random-parent", "duplicate", "structure", "swap"])
        )
        if operation == "drop":
            del container[key]
        elif operation == "scalar":
            container[key] = draw(scalars)
        elif operation == "structure":
            container[key] = draw(structures)
        elif operation == "random-parent":
            units = data.get("units")
            if isinstance(units, list) and units and isinstance(units[-1], dict):
                unit = units[draw(st.integers(0, len(units) - 1))]
                if isinstance(unit, dict):
                    unit["parent"] = draw(
                        st.text(max_size=20)
                        | st.sampled_from([u.get("id") for u in units if isinstance(u, dict)])
                    )
        elif operation == "duplicate" and isinstance(container, list):
            container.insert(draw(st.integers(0, len(container))), copy.deepcopy(container[key]))
        elif operation == "swap" and isinstance(container, dict):
            other = draw(st.sampled_from(keys_here))
            container[key], container[other] = container[other], container[key]
    return data


@FUZZ_SHIPPED
@given(mutated_directories())
def test_fuzz_mutations_of_the_shipped_directory(data: dict[str, Any]) -> None:
    directory = assert_loads_or_refuses(dump(data))
    if directory is not None:  # whatever got through is a directory the engine can use
        assert directory.root.parent is None
        for unit in directory.units:
            assert directory.ancestors(unit.id)[-1:] in ((), (directory.root.id,))
        for rule in RULES:
            for target in directory.route(rule):
                assert target.startswith("$") or target in directory.unit_by_id
        assert directory.zone is not None


@FUZZ_SHIPPED
@given(
    mutated_directories(),
    st.integers(0, 10_000),
    st.sampled_from(["", "\n", ":", "- ", "[", "{", "&a", "*a"]),
)
def test_fuzz_text_edits_of_the_shipped_directory(data: dict[str, Any], at: int, insert: str) -> None:
    text = dump(data)
    at %= len(text) + 1
    assert_loads_or_refuses(text[:at] + insert + text[at:])
