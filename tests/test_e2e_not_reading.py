"""A unit whose duty group leaves revisions unread past their deadline is escalated, live, and the
escalation is resolved once its officers read (issue 4: `unit_not_reading`)."""

from __future__ import annotations

import json
import signal
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from tests.builders import small_directory_yaml
from tests.conftest import JPC, Broker
from tests.test_e2e_worker import escalations

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(420)]
APP_ID = "jpc-nr"


def latest_not_reading(bootstrap: str, topic: str, unit: str) -> dict[str, Any] | None:
    mine = [r for r in escalations(bootstrap, topic)
            if r["rule"] == "unit_not_reading" and r["subject"]["unit_id"] == unit]
    return max(mine, key=lambda r: r["revision"]) if mine else None


def wait_until(probe: Any, timeout_s: float, what: str, log: Path) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        found = probe()
        if found:
            return found
        time.sleep(1.0)
    pytest.fail(f"timed out after {timeout_s}s waiting for {what}; worker log: {log.read_text()[-3000:]}")


def lag_json(broker: Broker, directory: Path) -> tuple[int, dict[str, Any]]:
    done = subprocess.run([JPC, "lag", "--json", "--brokers", broker.bootstrap, "--directory", str(directory),
                           "--app-id", APP_ID, "--window", "0.5", "--samples", "2"],
                          capture_output=True, text=True, timeout=120)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def test_a_unit_not_reading_is_escalated_and_resolved_once_it_reads(fresh_broker: Broker, tmp_path: Path) -> None:
    bootstrap = fresh_broker.bootstrap
    # The test directory: checkpoint cp-road belongs to the township north-town, whose parent is north-hq.
    directory = tmp_path / "directory.yaml"
    directory.write_text(small_directory_yaml(), encoding="utf-8")
    created = subprocess.run([JPC, "topics", "create", "--brokers", bootstrap, "--directory", str(directory),
                              "--app-id", APP_ID], capture_output=True, text=True)
    assert created.returncode == 0, created.stderr
    log = tmp_path / "worker.log"
    env = {**fresh_broker.env, "JPC_READING_EVERY_S": "2"}
    worker = subprocess.Popen([JPC, "worker", "--brokers", bootstrap, "--clock", "wall", "--directory", str(directory),
                               "--app-id", APP_ID, "--data-dir", str(tmp_path)],
                              stdout=log.open("ab"), stderr=subprocess.STDOUT, env=env)
    try:
        # A heartbeat that reaches the bus two hours late (a checkpoint on a poor link forwarding its spool):
        # its silence timer is long past due, so checkpoint_silent is routed at that past time and its
        # acknowledgement deadline has already gone by when the revision reaches north-town's topic.
        spoken = datetime.now(UTC) - timedelta(hours=2)
        events = tmp_path / "late.jsonl"
        events.write_text(json.dumps({
            "event_id": "hb-late-1", "kind": "checkpoint_heartbeat", "schema_version": 1, "source_unit": "north-town",
            "occurred_at": spoken.isoformat(timespec="seconds"), "checkpoint_id": "cp-road", "screened": 3}) + "\n")
        published = subprocess.run([JPC, "publish", "--brokers", bootstrap, str(events)],
                                   capture_output=True, text=True, timeout=120)
        assert published.returncode == 0, published.stderr
        silent = wait_until(lambda: [r for r in escalations(bootstrap, "jpc.escalations.north-town")
                                     if r["rule"] == "checkpoint_silent"], 90, "checkpoint_silent on north-town", log)
        assert datetime.fromisoformat(silent[0]["ack_deadline"]) < datetime.now(UTC)
        written_at = datetime.now(UTC)

        # Nobody reads as jpc.duty.north-town: once the revisions are past due (a minute's grace after they
        # were written, their deadline being already past), north-town is escalated to its parent and the HQ
        # office.
        opened = wait_until(lambda: latest_not_reading(bootstrap, "jpc.escalations.north-hq", "north-town"), 150,
                            "unit_not_reading for north-town on north-hq's topic", log)
        assert datetime.now(UTC) - written_at >= timedelta(seconds=50)  # not before the grace was up
        assert (opened["revision"], opened["status"], opened["severity"], opened["step"]) == (1, "open", "III", 0)
        assert opened["routed_to"] == ["north-hq", "hq-office"]
        assert opened["subject"]["unit_id"] == "north-town"
        assert [e["kind"] for e in opened["evidence"]] == ["reading_report"]
        assert opened["evidence"][0]["topic"] == "jpc.intake"
        on_hq = latest_not_reading(bootstrap, "jpc.escalations.hq-office", "north-town")
        assert on_hq is not None
        assert on_hq["escalation_id"] == opened["escalation_id"]

        # The ops view lists it while it is behind.
        code, report = lag_json(fresh_broker, directory)
        behind = {r["unit_id"]: r for r in report["not_reading"]}
        assert "north-town" in behind, report["not_reading"]
        seen = behind["north-town"]
        assert (seen["group"], seen["topic"], seen["committed"], seen["status"]) == (
            "jpc.duty.north-town", "jpc.escalations.north-town", None, "WARN")
        assert seen["unread"] == seen["end"] >= 1
        assert seen["overdue"] >= 1
        assert datetime.fromisoformat(seen["unread_since"]) <= datetime.now(UTC)
        assert report["status"] in ("WARN", "STALL", "STOP")  # at least WARN: a unit is not reading
        assert code == report["exit_code"] >= 1

        # A duty officer of north-town reads everything under the unit's group (auto-commit, committed on exit).
        watched = subprocess.run([JPC, "watch", "--brokers", bootstrap, "--directory", str(directory), "--unit",
                                  "north-town", "--json", "--from-beginning", "--exit-at-end"],
                                 capture_output=True, text=True, timeout=120)
        assert watched.returncode == 0, watched.stderr
        assert len(watched.stdout.splitlines()) == seen["end"]

        resolved = wait_until(lambda: (r := latest_not_reading(bootstrap, "jpc.escalations.north-hq", "north-town"))
                              and r["status"] == "resolved" and r, 60, "the unit_not_reading escalation resolved", log)
        assert (resolved["escalation_id"], resolved["revision"]) == (opened["escalation_id"], 2)
        assert [e["kind"] for e in resolved["evidence"]] == ["reading_report", "reading_report"]
        on_hq = latest_not_reading(bootstrap, "jpc.escalations.hq-office", "north-town")
        assert on_hq is not None
        assert (on_hq["revision"], on_hq["status"]) == (2, "resolved")
        # Exactly one escalation for the episode, two revisions, everywhere.
        every = [(r["escalation_id"], r["revision"]) for r in escalations(bootstrap)
                 if r["rule"] == "unit_not_reading" and r["subject"]["unit_id"] == "north-town"]
        assert sorted(set(every)) == [(opened["escalation_id"], 1), (opened["escalation_id"], 2)]

        _, after = lag_json(fresh_broker, directory)
        assert "north-town" not in {r["unit_id"] for r in after["not_reading"]}
    finally:
        worker.send_signal(signal.SIGTERM)
        code = worker.wait(timeout=60)
        assert code == 0, f"worker exited {code}: " + log.read_text()[-3000:]
