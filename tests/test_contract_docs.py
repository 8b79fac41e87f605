"""docs/contract/ is what the code generates, byte for byte, and a sound AsyncAPI 3.0 document."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from schemas.asyncapi import MESSAGES
from schemas.codec import Refusal, decode_event
from schemas.dead_letter import DeadLetter
from schemas.directory import load_directory
from schemas.events import KINDS
from streams.topics import INPUT_TOPIC_OF_KIND, UNIT_PREFIX, catalogue
from tests.conftest import JPC, ROOT

pytestmark = [pytest.mark.core, pytest.mark.timeout(120)]
CONTRACT = ROOT / "docs" / "contract"


def files(directory: Path) -> dict[str, bytes]:
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def regenerated(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("contract")
    done = subprocess.run([JPC, "schemas", "asyncapi", str(out / "asyncapi.yaml"), "--with-schemas"],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return out


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load((CONTRACT / "asyncapi.yaml").read_text(encoding="utf-8"))
    return loaded


def test_checked_in_documents_are_what_the_code_generates(regenerated: Path) -> None:
    fresh, checked_in = files(regenerated), files(CONTRACT)
    assert sorted(fresh) == sorted(checked_in), "regenerate: jpc schemas asyncapi docs/contract/asyncapi.yaml " \
                                                "--with-schemas"
    drifted = [name for name in fresh if fresh[name] != checked_in[name]]
    assert drifted == [], f"docs/contract/ drifted from the code in {drifted}; regenerate: jpc schemas asyncapi " \
                          "docs/contract/asyncapi.yaml --with-schemas"


def test_schemas_are_those_of_jpc_schemas_export(tmp_path: Path) -> None:
    done = subprocess.run([JPC, "schemas", "export", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert files(tmp_path) == files(CONTRACT / "schemas")


def test_json_and_stdout_give_the_same_document(document: dict[str, Any], tmp_path: Path) -> None:
    out = tmp_path / "asyncapi.json"
    done = subprocess.run([JPC, "schemas", "asyncapi", str(out)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(out.read_text(encoding="utf-8")) == document
    printed = subprocess.run([JPC, "schemas", "asyncapi"], capture_output=True, timeout=60)
    assert printed.stdout == (CONTRACT / "asyncapi.yaml").read_bytes()


def test_asyncapi_3_with_a_message_for_every_input_kind(document: dict[str, Any]) -> None:
    assert document["asyncapi"] == "3.0.0"
    messages = document["components"]["messages"]
    assert set(KINDS) <= set(messages)
    for kind, topic in INPUT_TOPIC_OF_KIND.items():  # each kind on its topic's channel, with the key in words
        [channel] = [c for c in document["channels"].values() if c["address"] == topic]
        assert kind in channel["messages"]
        assert messages[kind]["bindings"]["kafka"]["key"]["type"] == "string"
        assert messages[kind]["bindings"]["kafka"]["key"]["description"]


def test_every_public_topic_has_a_channel_and_units_are_a_parameter(document: dict[str, Any]) -> None:
    unit_ids = sorted(u.id for u in load_directory().units)
    public = {s.name for s in catalogue(unit_ids) if not s.internal and not s.name.startswith(UNIT_PREFIX)}
    addresses = {c["address"] for c in document["channels"].values()}
    assert public | {UNIT_PREFIX + "{unit_id}"} == addresses
    [per_unit] = [c for c in document["channels"].values() if "{unit_id}" in c["address"]]
    assert per_unit["parameters"]["unit_id"]["enum"] == unit_ids
    assert "topic" not in per_unit["bindings"]["kafka"]  # the address is a pattern, not one topic


def _resolve(document: dict[str, Any], pointer: str) -> Any:
    node: Any = document
    for step in pointer.removeprefix("#/").split("/"):
        node = node[step.replace("~1", "/").replace("~0", "~")]
    return node


def _refs(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [node["$ref"]] if "$ref" in node else [r for v in node.values() for r in _refs(v)]
    if isinstance(node, list):
        return [r for v in node for r in _refs(v)]
    return []


def test_every_reference_resolves_and_payloads_are_the_schemas(document: dict[str, Any]) -> None:
    refs = _refs(document)
    assert refs
    for ref in refs:
        if ref.startswith("#/"):
            _resolve(document, ref)  # KeyError if it points nowhere
        else:
            schema = json.loads((CONTRACT / ref).read_text(encoding="utf-8"))  # a file beside the document
            assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    for name, message in document["components"]["messages"].items():
        assert message["payload"] == {"$ref": f"schemas/{name}.schema.json"}
    for operation in document["operations"].values():  # an operation's messages are its channel's
        channel_ref = operation["channel"]["$ref"]
        assert all(m["$ref"].startswith(channel_ref + "/messages/") for m in operation["messages"])


def test_examples_in_the_document_pass_the_contract() -> None:
    assert set(MESSAGES) >= set(KINDS)
    for name, message in MESSAGES.items():
        if message.example is None:
            continue
        raw = json.dumps(message.example, ensure_ascii=False).encode()
        if name == "dead_letter":
            DeadLetter.model_validate(message.example)
            continue
        decoded = decode_event(raw)
        assert not isinstance(decoded, Refusal), (name, decoded)
        assert decoded.kind == name
