"""Consumer lag status in the manner of Burrow: pure rules over a few samples of a group's offsets.

No Kafka here: `streams.lag` takes the samples, this module judges them, so every rule is tested on
synthetic samples. Time is passed in (`now_ms`, `at_s`), never read.

Figures, per partition, from the last sample unless said otherwise:

- **position** is where the group resumes: its committed offset, or the earliest offset the log still
  holds when it never committed there (or committed below it: those records are gone and will never
  be read, so they are not lag).
- **offset lag** = end offset - position, never negative (a committed offset past the end, after a
  topic was truncated, is 0 lag). It is 0 too when no record lies between the position and the end,
  only transaction markers: a transactional producer's commit marker takes an offset (`jpc publish
  --spool` writes in transactions), and a Faust worker commits the offset after its last record,
  before the marker, so its group would otherwise show a lag of 1 that nobody can ever consume.
- **time lag** = now - timestamp of the record at the position (the first unconsumed record), in
  seconds, never negative; 0 when the lag is 0; unknown (None) when that record could not be read.
- **consume rate** = growth of the committed position per second between the first and last sample;
  **produce rate** = growth of the end offset per second over the same span.
- **catch-up time** = lag / (consume rate - produce rate) when the group consumes faster than records
  arrive; 0 when caught up; otherwise the group is *falling behind* (no estimate).

Status of a partition, the first rule that holds (samples s0..sn, at least two):

1. OK    when the lag is 0 in the last sample (caught up, or only transaction markers follow).
2. STOP  when nothing commits for it any more: the group has no member (state Empty or Dead), or the
         group is Stable and no member is assigned the partition.
3. STALL when the group has members, the committed offset is the same in every sample, the lag is
         above 0 in every sample, and the first unconsumed record has waited at least `stall_after_s`
         (or its age is unknown). The wait keeps a healthy consumer between two commits (aiokafka
         auto-commits every 5 s, Faust every few seconds) from being called stalled: in a window of a
         few seconds its offset looks stuck too. For the same reason WARN needs a window longer than
         the group's commit interval to see it commit.
4. WARN  when the committed offset moved forward during the window but the lag never shrank from one
         sample to the next and is larger at the end than at the start: the group commits, yet falls
         behind.
5. OK    otherwise (catching up, steady, or a commit not due yet).

A group's status is the worst of its partitions (OK < WARN < STALL < STOP); a group with no
partitions is OK. The exit status of `jpc lag` is 0 when every group is OK, 1 when the worst is WARN,
2 when any is STALL or STOP (Burrow's ERR).
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import Enum
from itertools import pairwise

TopicPartitionKey = tuple[str, int]
STALL_AFTER_S = 15.0  # longer than the usual auto-commit interval (aiokafka: 5 s)
NO_MEMBER_STATES = frozenset({"Empty", "Dead"})


class Status(Enum):
    OK = "OK"
    WARN = "WARN"
    STALL = "STALL"
    STOP = "STOP"

    @property
    def rank(self) -> int:
        return _RANK[self]

    @property
    def exit_code(self) -> int:
        """0 / 1 / 2 for OK / WARN / ERR, so the command can drive alerts."""
        return min(self.rank, 2)


_RANK = {Status.OK: 0, Status.WARN: 1, Status.STALL: 2, Status.STOP: 3}


def worst(statuses: Iterable[Status]) -> Status:
    return max(statuses, key=lambda s: s.rank, default=Status.OK)


@dataclass(frozen=True, slots=True)
class PartitionOffsets:
    """One partition as seen in one sample."""

    committed: int | None  # None: the group never committed here
    earliest: int  # first offset the log still holds
    end: int  # offset the next record will get (high watermark)
    assigned: bool | None = None  # to a member of the group; None when not known

    @property
    def position(self) -> int:
        return self.earliest if self.committed is None else max(self.committed, self.earliest)

    @property
    def lag(self) -> int:
        return max(0, self.end - self.position)


@dataclass(frozen=True, slots=True)
class GroupSample:
    """A consumer group's offsets at one moment."""

    at_s: float  # a monotonic clock: only differences between samples matter
    state: str  # the coordinator's word: Stable, Empty, Dead, PreparingRebalance, CompletingRebalance
    members: int
    partitions: Mapping[TopicPartitionKey, PartitionOffsets]


@dataclass(frozen=True, slots=True)
class PartitionVerdict:
    topic: str
    partition: int
    committed: int | None
    earliest: int
    end: int
    lag: int
    time_lag_s: float | None
    consume_rate: float  # committed offsets per second over the window
    produce_rate: float  # end offset growth per second over the window
    catch_up_s: float | None  # None: falling behind
    status: Status
    reason: str

    @property
    def falling_behind(self) -> bool:
        return self.catch_up_s is None


@dataclass(frozen=True, slots=True)
class GroupVerdict:
    group: str
    state: str
    members: int
    status: Status
    partitions: list[PartitionVerdict]
    window_s: float
    samples: int

    @property
    def lag(self) -> int:
        return sum(p.lag for p in self.partitions)


def time_lag_s(offsets: PartitionOffsets, first_unconsumed_ms: int | None, now_ms: int) -> float | None:
    """Seconds the first unconsumed record has waited: 0 when caught up, None when it is unknown."""
    if offsets.lag == 0:
        return 0.0
    if first_unconsumed_ms is None:
        return None
    return max(0.0, (now_ms - first_unconsumed_ms) / 1000)


def catch_up_s(lag: int, consume_rate: float, produce_rate: float) -> float | None:
    """Seconds to reach the end at the current rates; None when the group is falling behind."""
    if lag == 0:
        return 0.0
    gaining = consume_rate - produce_rate
    if gaining <= 0:
        return None
    return lag / gaining


def evaluate(group: str, samples: Sequence[GroupSample], first_unconsumed_ms: Mapping[TopicPartitionKey, int],
             now_ms: int, stall_after_s: float = STALL_AFTER_S,
             only_markers: Collection[TopicPartitionKey] = ()) -> GroupVerdict:
    """Judge a group over its samples (oldest first; at least two). `first_unconsumed_ms` holds the
    timestamp of the record at each lagging partition's position in the last sample; `only_markers`
    the lagging partitions where no record lies between that position and the end."""
    if len(samples) < 2:
        raise ValueError("the rules compare samples: give at least two")
    last = samples[-1]
    verdicts = []
    for key in sorted(last.partitions):
        history = [s.partitions[key] for s in samples if key in s.partitions]
        times = [s.at_s for s in samples if key in s.partitions]
        verdicts.append(_judge_partition(key, history, times, last, first_unconsumed_ms.get(key), now_ms,
                                         stall_after_s, key in only_markers))
    return GroupVerdict(group=group, state=last.state, members=last.members,
                        status=worst(v.status for v in verdicts), partitions=verdicts,
                        window_s=samples[-1].at_s - samples[0].at_s, samples=len(samples))


def _judge_partition(key: TopicPartitionKey, history: list[PartitionOffsets], times: list[float],
                     last: GroupSample, first_unconsumed_ms: int | None, now_ms: int,
                     stall_after_s: float, only_markers: bool) -> PartitionVerdict:
    first, now = history[0], history[-1]
    span = times[-1] - times[0]
    consume_rate = max(0.0, (now.position - first.position) / span) if span > 0 else 0.0
    produce_rate = max(0.0, (now.end - first.end) / span) if span > 0 else 0.0
    lag = 0 if only_markers else now.lag
    if lag == 0:
        waited: float | None = 0.0
        status, reason = Status.OK, "caught up" + ("; only transaction markers follow" if now.lag else "")
    else:
        waited = time_lag_s(now, first_unconsumed_ms, now_ms)
        status, reason = _status(history, last, waited, stall_after_s)
    return PartitionVerdict(
        topic=key[0], partition=key[1], committed=now.committed, earliest=now.earliest, end=now.end,
        lag=lag, time_lag_s=waited, consume_rate=consume_rate, produce_rate=produce_rate,
        catch_up_s=catch_up_s(lag, consume_rate, produce_rate), status=status, reason=reason,
    )


def _status(history: list[PartitionOffsets], last: GroupSample, waited: float | None,
            stall_after_s: float) -> tuple[Status, str]:
    now = history[-1]
    lags = [h.lag for h in history]
    if last.members == 0 or last.state in NO_MEMBER_STATES:
        return Status.STOP, f"no member commits (group {last.state}) while {_waiting(now.lag)}"
    if last.state == "Stable" and now.assigned is False:
        return Status.STOP, f"no member is assigned this partition while {_waiting(now.lag)}"
    stuck = len({h.committed for h in history}) == 1
    if stuck and min(lags) > 0:
        if waited is None or waited >= stall_after_s:
            age = "of unknown age" if waited is None else f"waiting {waited:.0f} s"
            stuck_at = "none (never committed)" if now.committed is None else now.committed
            return Status.STALL, f"committed offset stuck at {stuck_at} with {_records(now.lag)} {age}"
        return Status.OK, f"no commit yet; oldest record waiting {waited:.1f} s < {stall_after_s:g} s"
    committing = now.position > history[0].position
    growing = all(b >= a for a, b in pairwise(lags)) and lags[-1] > lags[0]
    if committing and growing:
        return Status.WARN, f"commits but lag grew {lags[0]} -> {lags[-1]}"
    return Status.OK, "catching up" if lags[-1] < lags[0] else "consuming"


def _records(n: int) -> str:
    return f"{n} record{'s' if n != 1 else ''}"


def _waiting(n: int) -> str:
    return "1 record waits" if n == 1 else f"{n} records wait"


def exit_code(verdicts: Iterable[GroupVerdict], units_not_reading: int = 0) -> int:
    return overall(verdicts, units_not_reading).exit_code


def overall(verdicts: Iterable[GroupVerdict], units_not_reading: int = 0) -> Status:
    """The worst of the groups, and WARN when any unit leaves revisions unread past their deadline.

    Not reading is WARN, not ERR: it is about people, and the bus already escalates it to them
    (`unit_not_reading`); a duty group whose consumer is gone is STOP by the rules above anyway."""
    return worst([*(v.status for v in verdicts), Status.WARN if units_not_reading else Status.OK])
