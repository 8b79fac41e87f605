"""One settings object for the whole bus, from `JPC_*` environment variables and the command line.

Built once at the entry point and passed down; nothing else reads the environment.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="JPC_", frozen=True, extra="ignore")

    brokers: str = Field("127.0.0.1:9092", description="Kafka bootstrap servers, comma-separated")
    app_id: str = Field("jpc-bus", description="Faust app id: names the worker's consumer group and tables")
    directory: Path | None = Field(None, description="directory YAML (default: the shipped Guangyuan one)")
    clock: Literal["wall", "event"] = Field("wall", description="engine clock of the live worker")
    data_dir: Path = Field(Path(".cache/worker"), description="where the worker keeps local files")
    web_port: int = Field(6066, description="worker's HTTP port (health, metrics)")
    web_enabled: bool = Field(False, description="serve the worker's HTTP endpoints")
    health_stall_s: float = Field(30.0, gt=0, description="unhealthy when records wait and nothing was processed "
                                  "for this long")
    replication_factor: int = Field(1, ge=1, description="replication of provisioned topics")
    input_partitions: int = Field(4, ge=1, description="partitions of the input topics")
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "INFO"
    request_timeout_s: float = Field(30.0, gt=0, description="how long a send or admin call may take")
    reading_every_s: float = Field(5.0, ge=0, description="wall-clock worker: seconds between looks at every "
                                   "unit's duty group (jpc.duty.<unit>) for revisions unread past their deadline; "
                                   "0 turns the look off")
    snapshot_every_s: float = Field(2.0, gt=0, description="the worker snapshots its engine at most this long "
                                    "after applying an intake record (while the snapshot takes under a tenth of the "
                                    "time); offsets are committed only up to the last snapshot")
    snapshot_every_records: int = Field(50_000, ge=1, description="...or once this many events are "
                                        "applied since the last snapshot, whichever comes first")
    snapshot_in_child: bool = Field(True, description="a forked child takes the engine's snapshot while the "
                                    "engine goes on (else the engine stops while it is pickled: seconds at a "
                                    "million persons)")
    uvloop: bool = Field(True, description="run the worker on uvloop when it is installed (less event-loop "
                         "overhead per record)")

    @property
    def bootstrap(self) -> list[str]:
        return [b.strip() for b in self.brokers.split(",") if b.strip()]
