"""JSON Schemas for developers of member-unit systems in other languages: one file per kind."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from schemas.dead_letter import DeadLetter
from schemas.escalation import Escalation
from schemas.events import EVENT_MODELS


def schemas() -> dict[str, dict[str, object]]:
    models: dict[str, type[BaseModel]] = {**EVENT_MODELS, "escalation": Escalation, "dead_letter": DeadLetter}
    out: dict[str, dict[str, object]] = {}
    for name, model in models.items():
        schema = model.model_json_schema(mode="validation")
        schema["$schema"] = "https://json-schema.org/draft/2020-12/schema"
        schema["$id"] = f"urn:jpc-bus:schema:v1:{name}"
        out[name] = schema
    return out


def export(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, schema in schemas().items():
        path = directory / f"{name}.schema.json"
        text = json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True)
        path.write_text(text + "\n", encoding="utf-8")
        written.append(path)
    return written
