"""Format versions (`schema_version` of events, `version` of the directory)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BeforeValidator


def _exactly_one(value: object) -> object:
    # Literal[1] alone lets `true` and `1.0` through (they compare equal to 1); the format means the integer.
    if type(value) is not int or value != 1:
        raise ValueError("must be the integer 1")
    return value


VersionOne = Annotated[Literal[1], BeforeValidator(_exactly_one)]
