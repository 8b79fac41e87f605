"""The benchmark's directory: the shipped Guangyuan one with ~60 checkpoints instead of 32.

A province-sized week needs more screening points than the city had on 24 January 2020. The extra
ones are made up (numbered road and highway points in each region, run by the region's HQ), so they
live here, generated from the shipped file, and never in the shipped directory.
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from schemas.directory import Directory, parse_directory

CHECKPOINTS = 60
EXTRA_KINDS = ("road", "highway", "coach")
EXTRA_KIND_CN = {"road": "公路检测点", "highway": "高速检测点", "coach": "客运站检测点"}


def bench_directory_yaml(checkpoints: int = CHECKPOINTS) -> str:
    shipped = resources.files("schemas").joinpath("data", "guangyuan.yaml").read_text(encoding="utf-8")
    data: dict[str, Any] = yaml.safe_load(shipped)
    data["name"] = data["name"] + "（压力测试）"
    regions = data["regions"]
    hq_of = {u["region"]: u["id"] for u in data["units"] if u["level"] == "county" and u.get("region")}
    existing = data["checkpoints"]
    extra = []
    for n in range(checkpoints - len(existing)):
        region = regions[n % len(regions)]
        kind = EXTRA_KINDS[n % len(EXTRA_KINDS)]
        number = n // len(regions) + 1
        name = f"{region['name']}第{number}{EXTRA_KIND_CN[kind]}"
        extra.append({"id": f"{region['id']}-bench-{number:02d}", "name": name, "kind": kind,
                      "region": region["id"], "unit": hq_of[region["id"]]})
    data["checkpoints"] = existing + extra
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def write_bench_directory(path: Path, checkpoints: int = CHECKPOINTS) -> Directory:
    """Write the YAML (for `jpc replay --directory` and the worker) and return it as loaded."""
    text = bench_directory_yaml(checkpoints)
    directory = parse_directory(text)  # refused here, with its path, if the generator ever drifts
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return directory
