"""The XLT result layout of a run: what Xceptance XLT's report generator reads.

XLT keeps one `timers.csv` per agent, test case and virtual user
(`<agent>/<TestCaseName>/<userNumber>/timers.csv`). Here the agent is the shard
(`shard-NNNN`), the test case the flow and the user number the virtual user of the closed
model or the worker that ran the iteration in the open model. The lines are XLT 8's data
records (com.xceptance.xlt.api.engine.RequestData / TransactionData):

    R,<request name>,<start ms>,<runtime ms>,<failed>,<bytes sent>,<bytes received>,
      <response code>,<url>,<content type>,<connect>,<send>,<server busy>,<receive>,
      <time to first bytes>,<time to last bytes>,<request id>,<method>,<form encoding>,
      <form data>,<dns time>,<ip addresses>,<response id>,<used ip address>
    T,<flow name>,<start ms>,<runtime ms>,<failed>,<stack trace>,<failed action>,<user>,<dump dir>

Assay measures a request's time as a whole, so the phase columns are 0 and the URL, content
type and ids empty; a request that got no response has code 0, as in XLT. Times are whole
milliseconds as XLT writes them (Assay's microseconds rounded), a transaction is one
iteration of a flow. The records come from the shards' timer logs (`spec.timers`,
assay.runner.load.metrics.TimerLog); a shard that kept none contributes no files.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any

XLT_DIR = "xlt"


def _field(text: str) -> str:
    # XLT's CSV decoder reads RFC 4180 quoting; names rarely need it.
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _ms(us: int) -> int:
    return (us + 500) // 1000


def shard_timer_files(shard: int, timers: Mapping[str, Any]) -> tuple[list[tuple[str, bytes]], dict[str, Any]]:
    """(path, content) of every timers.csv of one shard's timer log (its JSON form), paths
    relative to the archive's root and sorted; and what the log holds: records seen, kept,
    and whether the kept ones are a sample."""
    from assay.runner.load.metrics import TimerLog

    log = TimerLog.from_dict(dict(timers))
    names = [_field(n) for n in log.names]
    flows = log.flows
    files: dict[tuple[int, int], list[tuple[int, str]]] = defaultdict(list)
    for record in log.records:
        if record[0] == "R":
            _, name, flow, user, start, runtime, error, status, sent, received = record
            line = (
                f"R,{names[name]},{start},{_ms(runtime)},{'true' if error >= 0 else 'false'},{sent},{received},"
                f"{status},,,0,0,0,0,0,0,,,,,0,,,\n"
            )
        else:
            _, flow, user, start, runtime, failed = record
            line = f"T,{_field(flows[flow])},{start},{_ms(runtime)},{'true' if failed else 'false'},,,{user},\n"
        files[(flow, user)].append((start, line))
    agent = f"shard-{shard:04d}"
    out = []
    for (flow, user), lines in files.items():
        lines.sort(key=lambda item: item[0])
        path = f"{XLT_DIR}/{agent}/{_path_part(flows[flow])}/{user}/timers.csv"
        out.append((path, "".join(line for _, line in lines).encode()))
    info = {"agent": agent, "seen": log.seen, "kept": len(log.records), "sampled": log.sampled}
    return sorted(out), info


def _path_part(name: str) -> str:
    # A flow name becomes a directory: nothing that climbs out of it or splits it.
    cleaned = "".join(c if c.isalnum() or c in "._-" else "_" for c in name).strip(".")
    return cleaned or "flow"
