"""`python -m assay.runner batch`: one pod of a schedule tick runs its share of the group's
Monitors (and TestSuites) concurrently, in one process.

The members document, the tick, the members' run ids and the termination message's compact
outcomes are the tick contract (assay.crds.contracts.tick). Pod `i` of the tick's Indexed Job
runs members `[i * chunk, (i + 1) * chunk)`, so a tick costs ceil(members / chunk) pods, not
one per Monitor. The tick is the suffix of the Job's name, which the pod reads from its
`batch.kubernetes.io/job-name` label ($ASSAY_JOB_NAME).

Each member runs as a requested run does (assay.runner.execute), in its own location of the
group's (a Monitor's `locationIndex` of `locations`), and uploads its result with the group's
token, naming its tick. One member's failure (an invalid manifest, an unknown environment)
fails that member only.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import sys
import time
from pathlib import Path

from assay.crds.contracts.runner_settings import RunnerSettings
from assay.crds.runs import verdict
from assay.crds.contracts.tick import (
    MAX_FIGURE,
    MEMBERS_FILE,
    UID_PREFIX,
    Outcome,
    encode_outcomes,
    member_run_id,
    owner_of,
    tick_of,
)

from .execute import Uploader, execute, write_termination_message
from .manifest import with_run_secrets

UPLOAD_RETRY_SECONDS = 60.0


def chunk_of(members: list[dict], index: int, chunk: int) -> list[dict]:
    return members[index * chunk : (index + 1) * chunk]


async def run_member(member: dict, tick: str, namespace: str, settings: RunnerSettings) -> Outcome:
    meta = owner_of(member)["metadata"]
    schedule_uid = member["schedule"]["uid"]
    kind = member.get("kind") or "Monitor"
    run_id = member_run_id(member, tick)
    locations = int(member.get("locations") or 1)
    started = time.time()
    try:
        uploader = Uploader(
            settings,
            run_id,
            {
                "project": namespace,
                "owner_name": meta["name"],
                "owner_uid": meta["uid"],
                "shards": locations,
                "tick": tick,
            },
            retry_for=UPLOAD_RETRY_SECONDS,
        )
        run = await execute(
            kind,
            with_run_secrets(owner_of(member)),
            run_id=run_id,
            settings=settings,
            uploader=uploader,
            options={"environment": member.get("environment")},
            subtests=[with_run_secrets(m) for m in member.get("subtests") or []],
            index=int(member.get("locationIndex") or 0),
            locations=locations,
        )
        if run.upload_error:
            print(f"assay-runner: {run_id}: result upload failed: {run.upload_error}", file=sys.stderr, flush=True)
        passed, ms = run.passed, run.response_time_ms
        started = run.started_at or started
        finished = run.finished_at or time.time()
    except Exception as exc:  # noqa: BLE001  (one member's failure must not cost the others their runs)
        print(f"assay-runner: {meta.get('name')}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        passed, ms, finished = False, None, time.time()
    print(f"assay-runner: {meta.get('name')} run {run_id}: {verdict(passed).lower()}", flush=True)
    return Outcome(
        meta["uid"][:UID_PREFIX],
        schedule_uid[:UID_PREFIX],
        passed,
        None if ms is None else min(ms, MAX_FIGURE),
        int(started),
        min(MAX_FIGURE, max(0, round(finished - started))),
    )


async def run_chunk(
    members: list[dict], tick: str, namespace: str, concurrency: int, settings: RunnerSettings
) -> list[Outcome]:
    gate = asyncio.Semaphore(max(1, concurrency))

    async def bounded(member: dict) -> Outcome:
        async with gate:
            return await run_member(member, tick, namespace, settings)

    return list(await asyncio.gather(*(bounded(m) for m in members)))


def read_members(spec: str) -> dict:
    """The members document: `spec` is the file (`.gz`: gzip-compressed) or the folder
    holding `members.json.gz` or `members.json`."""
    path = Path(spec)
    if path.is_dir():
        packed = path / f"{MEMBERS_FILE}.gz"
        path = packed if packed.exists() else path / MEMBERS_FILE
    data = path.read_bytes()
    return json.loads(gzip.decompress(data) if path.name.endswith(".gz") else data)


def cmd_batch(args) -> int:
    """Exit status: 0 the chunk ran (each member passed or not: the message says which),
    2 the members file cannot be read."""
    settings: RunnerSettings = args.settings
    try:
        document = read_members(args.spec)
        members = list(document["members"])
        chunk = int(document.get("chunk") or len(members) or 1)
        namespace = str(document.get("namespace") or settings.project or "")
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        write_termination_message(settings, encode_outcomes([], f"{args.spec}: {exc}"))
        print(f"assay-runner: {args.spec}: {exc}", file=sys.stderr)
        return 2
    index = settings.job_completion_index or 0
    tick = tick_of(settings.job_name or f"local-{int(time.time() // 60)}")
    mine = chunk_of(members, index, chunk)
    concurrency = args.concurrency or settings.tick_concurrency or 50
    print(
        f"assay-runner: tick {tick} of {document.get('group', '-')}: members {index * chunk}.."
        f"{index * chunk + len(mine) - 1} of {len(members)}",
        flush=True,
    )
    outcomes = asyncio.run(run_chunk(mine, tick, namespace, concurrency, settings))
    write_termination_message(settings, encode_outcomes(outcomes))
    passed = sum(1 for o in outcomes if o.passed)
    print(f"assay-runner: {passed}/{len(outcomes)} passed", flush=True)
    return 0


def add_command(sub) -> None:
    p = sub.add_parser("batch", help="run one pod's share of a schedule tick (inside a tick Job pod)")
    p.add_argument("--spec", required=True, help="the tick's members.json(.gz), or the folder holding it")
    p.add_argument(
        "--concurrency", type=int, default=None, help="members run at once (default: $ASSAY_TICK_CONCURRENCY or 50)"
    )
    p.set_defaults(func=cmd_batch)
