"""The worker's topics hand records over as the bytes on the wire (streams.app.RawRecords), as Faust's raw
codec did, tombstones included."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from faust.types import TP
from faust.types.tuples import Message

from streams.app import RawRecords, make_app
from streams.settings import Settings

pytestmark = pytest.mark.core


@pytest.mark.parametrize(("key", "value"), [(b"lizhou-hq", b'{"kind": "checkpoint_alert"}'), (b"k", None),
                                            (None, b"\xff\xfe not text")])
def test_a_record_is_handed_over_as_its_bytes(tmp_path: Path, key: bytes | None, value: bytes | None) -> None:
    app = make_app(Settings(app_id="raw-test", data_dir=tmp_path))
    tp = TP("jpc.checkpoint-alerts", 2)
    message = Message(tp.topic, tp.partition, 41, 0.0, 0, [("h", b"v")], key, value, None, tp=tp)

    async def decode() -> tuple[object, object, object, object]:
        event = await app.topic(tp.topic, schema=RawRecords()).decode(message)
        faust_event = await app.topic(tp.topic, key_type=bytes, value_type=bytes, key_serializer="raw",
                                      value_serializer="raw", allow_empty=True).decode(message)
        return event.key, event.value, event.message, (faust_event.key, faust_event.value)

    got_key, got_value, got_message, faust_way = asyncio.run(decode())
    assert (got_key, got_value) == (key, value) == faust_way
    assert got_message is message
