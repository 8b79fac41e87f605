"""Dead letters (contract §1): what was refused, why, where it came from, and its bytes."""

from __future__ import annotations

import base64

from pydantic import BaseModel, ConfigDict


class DeadLetter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    reason: str  # starts with the field it names, e.g. "occurred_at: ..."
    field: str | None
    topic: str | None = None
    partition: int | None = None
    offset: int | None = None
    line: int | None = None  # replay and publish: 1-based line number of the file
    event_id: str | None = None
    source_unit: str | None = None
    raw: str | None = None
    raw_base64: str | None = None

    @staticmethod
    def carry(raw: bytes) -> dict[str, str]:
        """The original bytes as `raw` when they are UTF-8 text, else as `raw_base64`."""
        try:
            return {"raw": raw.decode("utf-8")}
        except UnicodeDecodeError:
            return {"raw_base64": base64.b64encode(raw).decode("ascii")}
