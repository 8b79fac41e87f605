"""`jpc replay` as a person runs it: the installed command, real files, exit codes and bytes."""

from __future__ import annotations

import base64
import json
import subprocess
from pathlib import Path

import orjson
import pytest

from schemas.codec import encode_event
from tests.builders import alert, at, heartbeat, small_directory_yaml

pytestmark = pytest.mark.core

ROOT = Path(__file__).resolve().parent.parent
JPC = str(ROOT / ".venv" / "bin" / "jpc")
SCENARIO = ROOT / "agents" / "scenarios" / "guangyuan-2020-01-24.jsonl"


def jpc(*args: str | Path) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([JPC, "replay", *map(str, args)], capture_output=True, cwd=ROOT, timeout=120,
                          check=False)


def lines(data: bytes) -> list[dict[str, object]]:
    return [json.loads(line) for line in data.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def scenario_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.CompletedProcess[bytes], Path]:
    dead = tmp_path_factory.mktemp("replay") / "dead.jsonl"
    return jpc(SCENARIO, "--dead-letter", dead), dead


def test_scenario_exits_zero_with_revisions(
        scenario_run: tuple[subprocess.CompletedProcess[bytes], Path]) -> None:
    done, _ = scenario_run
    assert done.returncode == 0, done.stderr.decode()
    revisions = lines(done.stdout)
    assert len(revisions) > 10
    rules = {r["rule"] for r in revisions}
    assert rules >= {"fever_at_checkpoint", "high_risk_arrival", "imported_case", "case_cluster",
                     "checkpoint_contact", "late_report", "duty_gap", "checkpoint_silent"}


def test_scenario_is_byte_identical_on_two_runs(scenario_run: tuple[subprocess.CompletedProcess[bytes], Path],
                                                tmp_path: Path) -> None:
    first, _ = scenario_run
    second = jpc(SCENARIO, "--dead-letter", tmp_path / "dead.jsonl")
    assert second.returncode == 0
    assert second.stdout == first.stdout


def test_scenario_phone_number_dead_letter_is_redacted(
        scenario_run: tuple[subprocess.CompletedProcess[bytes], Path]) -> None:
    _, dead = scenario_run
    text = dead.read_bytes()
    assert b"13912345678" not in text
    (letter,) = lines(text)
    assert letter["field"] == "person_ref"
    assert isinstance(letter["line"], int)
    assert letter["line"] >= 1
    assert "[redacted]" in str(letter["raw"])
    # The line number points at the refused line of the file.
    refused_line = SCENARIO.read_bytes().splitlines()[letter["line"] - 1]
    assert b"13912345678" in refused_line


def test_scenario_dead_letters_go_to_stderr_by_default(
        scenario_run: tuple[subprocess.CompletedProcess[bytes], Path]) -> None:
    done = jpc(SCENARIO)
    assert done.returncode == 0
    assert done.stdout == scenario_run[0].stdout
    assert b"13912345678" not in done.stderr
    assert b'"field":"person_ref"' in done.stderr


def test_bad_lines_become_dead_letters_with_line_numbers(tmp_path: Path) -> None:
    good_first = encode_event(alert("p-1", temperature=38.0, occurred=at(0), event_id="good-1"))
    good_last = encode_event(alert("p-2", temperature=38.5, occurred=at(5), event_id="good-2"))
    unknown_kind = orjson.dumps({"event_id": "k-1", "kind": "weather_report", "schema_version": 1,
                                 "source_unit": "health", "occurred_at": "2020-01-24T18:01:00+08:00"})
    non_utf8 = b'{"event_id":"u-1","kind":"case_report","person_ref":"\xff\xfe"}'
    unknown_unit = encode_event(heartbeat("cp-rail", occurred=at(2), source="nobody", event_id="h-1"))
    events = tmp_path / "events.jsonl"
    events.write_bytes(b"\n".join([
        good_first,                    # 1
        b'{"event_id": "broken", ',    # 2: not JSON
        non_utf8,                      # 3: not UTF-8
        b"",                           # 4: blank, skipped but counted
        unknown_kind,                  # 5: unknown kind
        unknown_unit,                  # 6: valid JSON, refused by the core
        good_last,                     # 7
    ]) + b"\n")
    directory = tmp_path / "small.yaml"
    directory.write_text(small_directory_yaml(), encoding="utf-8")
    dead = tmp_path / "dead.jsonl"
    done = jpc("--directory", directory, events, "--dead-letter", dead)
    assert done.returncode == 0, done.stderr.decode()
    letters = lines(dead.read_bytes())
    assert [(d["line"], d["field"]) for d in letters] == [
        (2, "(event)"), (3, "(event)"), (5, "kind"), (6, "source_unit")]
    assert "raw" in letters[0]
    assert "raw_base64" not in letters[0]
    assert base64.b64decode(str(letters[1]["raw_base64"])) == non_utf8
    assert "raw" not in letters[1]
    assert letters[3]["raw"] == unknown_unit.decode()
    # The good lines on either side of the bad ones were processed.
    fevers = [r for r in lines(done.stdout) if r["rule"] == "fever_at_checkpoint"]
    assert sorted(e["event_id"] for r in fevers for e in r["evidence"]) == ["good-1", "good-2"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("what", ["missing", "a-directory"])
def test_unreadable_events_file_exits_two_with_one_line(tmp_path: Path, what: str) -> None:
    path = tmp_path / "nothing-here.jsonl"
    if what == "a-directory":
        path.mkdir()
    done = jpc(path)
    assert done.returncode == 2
    assert done.stdout == b""
    message = done.stderr.decode()
    assert message.count("\n") == 1
    assert message.endswith("\n")
    assert str(path) in message
    assert "Traceback" not in message


@pytest.mark.parametrize(
    ("text", "entry"),
    [
        pytest.param(small_directory_yaml().replace("parent: north-hq", "parent: north-hqq"),
                     "units[8].parent", id="dangling-parent"),
        pytest.param(small_directory_yaml(routes={"late_report": ["health", "nobody"]}),
                     "routes.late_report[1]", id="route-to-unknown-unit"),
        pytest.param("version: 1\nname: [unclosed\n", "line", id="not-yaml"),
    ],
)
def test_refused_directory_exits_two_with_one_line_naming_the_entry(tmp_path: Path, text: str,
                                                                    entry: str) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(text, encoding="utf-8")
    done = jpc("--directory", bad, SCENARIO)
    assert done.returncode == 2
    assert done.stdout == b""
    message = done.stderr.decode()
    assert message.count("\n") == 1, message
    assert entry in message
    assert "Traceback" not in message


def test_unreadable_directory_file_exits_two_naming_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-directory.yaml"
    done = jpc("--directory", missing, SCENARIO)
    assert done.returncode == 2
    message = done.stderr.decode()
    assert message.count("\n") == 1
    assert str(missing) in message


def test_until_fires_pending_timers_and_drops_nothing(
        scenario_run: tuple[subprocess.CompletedProcess[bytes], Path], tmp_path: Path) -> None:
    plain = scenario_run[0].stdout
    done = jpc(SCENARIO, "--until", "2020-01-25T08:00:00+08:00", "--dead-letter", tmp_path / "dead.jsonl")
    assert done.returncode == 0, done.stderr.decode()
    assert done.stdout.startswith(plain)
    extra = lines(done.stdout[len(plain):])
    assert extra, "timers pending at the end of the file fire by --until"
    assert all(str(r["updated_at"]) > "2020-01-24T22:40" for r in extra)
    assert all(str(r["updated_at"]) <= "2020-01-25T08:00:00+08:00" for r in extra)


def test_until_without_offset_is_refused(tmp_path: Path) -> None:
    done = jpc(SCENARIO, "--until", "2020-01-25T08:00:00")
    assert done.returncode == 2
    assert done.stderr.decode().count("\n") == 1
