"""`python -m assay.runner batch`: one pod of a schedule tick runs its share of the group's
Monitors (and TestSuites) concurrently, in one process.

A tick group is every Schedule of a namespace with the same cron schedule and region; the
operator writes its members to a ConfigMap (`members.json.gz`, gzip-compressed JSON) and runs them from one CronJob
whose Jobs are Indexed: pod `i` runs members `[i * chunk, (i + 1) * chunk)`, so a tick costs
ceil(members / chunk) pods, not one per Monitor.

    {"group": "<cronjob>", "namespace": "<ns>", "chunk": 64, "members": [
        {"schedule": {"name", "uid"}, "kind": "Monitor", "monitor": <manifest>,
         "subtests": [<manifest>, ...], "environment": "<name>" | null,
         "location": "<name>" | null, "locationIndex": 0, "locations": 1},
        {"schedule": {...}, "kind": "TestSuite", "testSuite": <manifest, pools inlined>, ...}]}

Each member's run id is `run_id_for_request(owner, owner uid, "schedule:<schedule
uid>:<tick>")`, the tick being the suffix of the Job's name (the CronJob controller names
its Jobs `<cronjob>-<minutes since the epoch>`; the pod reads the name from its
`batch.kubernetes.io/job-name` label, $ASSAY_JOB_NAME). A replayed tick therefore has the
same run ids, and neither the operator nor the result store records it twice.

Each member's result is uploaded like a requested run's (a Monitor's Runscope-shaped
`monitor-result.json`, `monitor-result-<i>.json` for region i of several; a TestSuite's
Loadmill-shaped `suite-run.json`) when
$ASSAY_GATEWAY_URL and $ASSAY_UPLOAD_TOKEN are set; the token is the group's
(`group_upload_token`), and each upload names its tick (X-Assay-Tick). The gateway accepts
it only for the run ids `tick_runs` derives from the group's members ConfigMap and a tick
Job of the group's CronJob, so a group token writes its own members' scheduled runs and
nothing else. The termination message
is a compact line per member (`encode_outcomes`), which the operator records into each
Monitor's status.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import hashlib
import hmac
import json
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from assay.crds.runrequest import run_id_for_request

from .manifest import with_run_secrets
from .upload import RunGrant

MEMBERS_FILE = "members.json"
MESSAGE_LIMIT = 4096
"""Bytes of a container's termination message the kubelet keeps."""
UID_PREFIX = 8
MAX_FIGURE = 99_999
"""Response times (ms) and durations (s) are capped to keep an outcome's size bounded."""
UPLOAD_RETRY_SECONDS = 60.0
GROUP_TOKEN_PREFIX = "group:"


def tick_of(job_name: str) -> str:
    """The tick a Job runs: the CronJob controller's `<minutes since epoch>` suffix, or the
    whole name for a Job created by hand (`kubectl create job --from=cronjob/...`)."""
    head, _, tail = job_name.rpartition("-")
    return tail if head and tail.isdigit() else job_name


def owner_of(member: dict) -> dict:
    """The member's Monitor or TestSuite manifest."""
    return member["testSuite"] if member.get("kind") == "TestSuite" else member["monitor"]


def member_run_id(member: dict, tick: str) -> str:
    meta = owner_of(member)["metadata"]
    return run_id_for_request(meta["name"], meta["uid"], f"schedule:{member['schedule']['uid']}:{tick}")


def group_upload_token(key: str | bytes, namespace: str, group: str) -> str:
    """The upload token of a tick group: `group:<namespace>/<group>:<hex HMAC-SHA256 of
    "group:<namespace>/<group>" under the upload key>`. The gateway recomputes the HMAC from
    the readable part and accepts it for the runs of the group's ticks only (`tick_runs`)."""
    if isinstance(key, str):
        key = key.encode()
    if not key:
        raise ValueError("the upload key is empty")
    subject = f"{GROUP_TOKEN_PREFIX}{namespace}/{group}"
    return f"{subject}:{hmac.new(key, subject.encode(), hashlib.sha256).hexdigest()}"


def tick_job_name(group: str, tick: str) -> str:
    """The Job that runs `tick` of the group's CronJob: the inverse of `tick_of`."""
    return f"{group}-{tick}" if tick.isdigit() else tick


def members_of(configmap: dict) -> dict:
    """The members document a tick ConfigMap holds (`members.json.gz`, or plain `members.json`)."""
    packed = (configmap.get("binaryData") or {}).get(f"{MEMBERS_FILE}.gz")
    if packed is not None:
        return json.loads(gzip.decompress(base64.b64decode(packed)))
    return json.loads((configmap.get("data") or {})[MEMBERS_FILE])


def tick_runs(document: dict, tick: str) -> dict[str, RunGrant]:
    """Every run a tick of the group runs, by run id, as the grant an upload of it gets."""
    namespace = str(document.get("namespace") or "")
    runs = {}
    for member in document.get("members") or []:
        meta = owner_of(member)["metadata"]
        run_id = member_run_id(member, tick)
        runs[run_id] = RunGrant(namespace, member.get("kind") or "Monitor", meta["name"], meta["uid"], run_id)
    return runs


def parse_group_token(token: str) -> tuple[str, str, str] | None:
    """(namespace, group, mac) of a group token; None for any other token."""
    if not token.startswith(GROUP_TOKEN_PREFIX):
        return None
    subject, _, mac = token.rpartition(":")
    namespace, _, group = subject[len(GROUP_TOKEN_PREFIX):].partition("/")
    if not (namespace and group and mac):
        return None
    return namespace, group, mac


# --- per-member outcomes, as the termination message carries them ------------------------


@dataclass(frozen=True)
class Outcome:
    """One member's finished run, small enough for ~90 of them in a termination message."""

    owner_uid: str
    """The Monitor's (TestSuite's) uid prefix (UID_PREFIX characters)."""
    schedule_uid: str
    passed: bool
    response_time_ms: int | None
    started_at: int
    """Epoch seconds."""
    seconds: int
    """Duration, whole seconds."""

    def to_json(self) -> list:
        return [self.owner_uid, self.schedule_uid, "p" if self.passed else "f",
                self.response_time_ms if self.response_time_ms is not None else -1, self.started_at, self.seconds]

    @classmethod
    def from_json(cls, item) -> Outcome | None:
        try:
            owner_uid, schedule_uid, verdict, ms, started, seconds = item
            return cls(str(owner_uid), str(schedule_uid), verdict == "p", None if int(ms) < 0 else int(ms),
                       int(started), int(seconds))
        except (TypeError, ValueError):
            return None


def encode_outcomes(outcomes: list[Outcome], error: str | None = None) -> str:
    """The termination message: `{"r": [outcome, ...], "e": error}`; an error is cut so that
    the message stays within MESSAGE_LIMIT bytes."""
    document: dict = {"r": [o.to_json() for o in outcomes]}
    text = json.dumps(document, separators=(",", ":"))
    if error:
        room = MESSAGE_LIMIT - len(text.encode()) - 16
        if room > 20:
            document["e"] = error[:room]
            text = json.dumps(document, separators=(",", ":"), ensure_ascii=True)
            while len(text.encode()) > MESSAGE_LIMIT:
                document["e"] = document["e"][:-50]
                text = json.dumps(document, separators=(",", ":"), ensure_ascii=True)
    return text


def decode_outcomes(message: str | None) -> tuple[list[Outcome], str | None]:
    try:
        document = json.loads(message or "")
    except ValueError:
        return [], None
    if not isinstance(document, dict) or not isinstance(document.get("r"), list):
        return [], None
    outcomes = [o for o in (Outcome.from_json(item) for item in document["r"]) if o is not None]
    return outcomes, document.get("e") if isinstance(document.get("e"), str) else None


# --- running a chunk ----------------------------------------------------------------------


def chunk_of(members: list[dict], index: int, chunk: int) -> list[dict]:
    return members[index * chunk:(index + 1) * chunk]


def _mean_response_ms(result) -> int | None:
    # As `monitor` reports it: sent requests only, not subtests or pauses.
    times = [step.response_time_ms for step in result.requests
             if step.step_type == "request" and step.detail is not None and step.response_time_ms is not None]
    return round(sum(times) / len(times)) if times else None


def _upload(member: dict, run_id: str, tick: str, documents: list[tuple[str, dict]], namespace: str) -> str | None:
    """Upload the member's documents, in order, when the operator wired a gateway; the errors if
    any failed. `documents` are (base name, document): a Monitor's `monitor-steps` then
    `monitor-result` (suffixed `-<i>` for region i of several: the result finishes the run at
    the gateway, so it goes last), a TestSuite's `suite-run`."""
    url, token = os.environ.get("ASSAY_GATEWAY_URL"), os.environ.get("ASSAY_UPLOAD_TOKEN")
    if not (url and token):
        return None
    from .upload import UploadClient, UploadError

    locations = int(member.get("locations") or 1)
    index = int(member.get("locationIndex") or 0)
    kind = member.get("kind") or "Monitor"
    meta = owner_of(member)["metadata"]
    client = UploadClient(url, run_id, token, retry_for=UPLOAD_RETRY_SECONDS,
                          log=lambda message: print(f"assay-runner: {run_id}: {message}", file=sys.stderr, flush=True))
    errors = []
    for base, document in documents:
        name = f"{base}.json" if kind == "TestSuite" or locations == 1 else f"{base}-{index}.json"
        try:
            client.upload(kind, index, name, json.dumps(document, sort_keys=True).encode(),
                          {"project": namespace, "owner_name": meta["name"], "owner_uid": meta["uid"],
                           "shards": locations, "tick": tick})
        except UploadError as exc:
            errors.append(f"{name}: {exc}")
    return "; ".join(errors) or None


async def _run_monitor(member: dict, run_id: str) -> tuple[bool, int | None, float | None, float | None, list]:
    from .apitest.monitor import run_monitor
    from .apitest.validate import parse_monitor

    monitor = parse_monitor(with_run_secrets(member["monitor"]))
    subtests = [parse_monitor(with_run_secrets(m)) for m in member.get("subtests") or []]
    by_key = {key: m for m in [monitor, *subtests] for key in (m.metadata.name, m.metadata.uid) if key}

    def resolve(target: str):
        if target not in by_key:
            raise LookupError(f"no Monitor {target!r} in this namespace")
        return by_key[target]

    result = await run_monitor(monitor, environment=member.get("environment"), resolve_monitor=resolve,
                               run_id=run_id)
    result.region, result.agent = os.environ.get("ASSAY_REGION") or None, os.environ.get("ASSAY_AGENT") or None
    return (result.passed and not result.error, _mean_response_ms(result), result.started_at, result.finished_at,
            [("monitor-steps", result.step_details()), ("monitor-result", result.to_runscope())])


async def _run_suite(member: dict, run_id: str) -> tuple[bool, int | None, float | None, float | None, list]:
    from assay.crds import TestSuite

    from .apitest.suite import run_suite

    result = await run_suite(TestSuite.model_validate(with_run_secrets(member["testSuite"])), run_id=run_id)
    started = result.start_time / 1000 if result.start_time is not None else None
    finished = result.end_time / 1000 if result.end_time is not None else None
    return result.passed, None, started, finished, [("suite-run", result.to_loadmill())]


async def run_member(member: dict, tick: str, namespace: str) -> Outcome:
    """Run one member as `python -m assay.runner monitor` (`testsuite`) runs a requested one;
    any failure of its own (an invalid manifest, an unknown environment) fails this member
    only."""
    meta = owner_of(member)["metadata"]
    schedule_uid = member["schedule"]["uid"]
    run_id = member_run_id(member, tick)
    started = time.time()
    try:
        run = _run_suite if member.get("kind") == "TestSuite" else _run_monitor
        passed, ms, run_started, run_finished, documents = await run(member, run_id)
        upload_error = await asyncio.to_thread(_upload, member, run_id, tick, documents, namespace)
        if upload_error:
            print(f"assay-runner: {run_id}: result upload failed: {upload_error}", file=sys.stderr, flush=True)
        started = run_started or started
        finished = run_finished or time.time()
    except Exception as exc:  # noqa: BLE001  (one member's failure must not cost the others their runs)
        print(f"assay-runner: {meta.get('name')}: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        passed, ms, finished = False, None, time.time()
    print(f"assay-runner: {meta.get('name')} run {run_id}: {'pass' if passed else 'fail'}", flush=True)
    return Outcome(meta["uid"][:UID_PREFIX], schedule_uid[:UID_PREFIX], passed,
                   None if ms is None else min(ms, MAX_FIGURE), int(started),
                   min(MAX_FIGURE, max(0, round(finished - started))))


async def run_chunk(members: list[dict], tick: str, namespace: str, concurrency: int) -> list[Outcome]:
    gate = asyncio.Semaphore(max(1, concurrency))

    async def bounded(member: dict) -> Outcome:
        async with gate:
            return await run_member(member, tick, namespace)

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


def write_termination_message(text: str) -> None:
    path = os.environ.get("ASSAY_TERMINATION_LOG")
    if path:
        Path(path).write_text(text)


def cmd_batch(args) -> int:
    """Exit status: 0 the chunk ran (each member passed or not: the message says which),
    2 the members file cannot be read."""
    try:
        document = read_members(args.spec)
        members = list(document["members"])
        chunk = int(document.get("chunk") or len(members) or 1)
        namespace = str(document.get("namespace") or os.environ.get("ASSAY_PROJECT") or "")
    except (OSError, ValueError, KeyError, TypeError, EOFError) as exc:
        write_termination_message(encode_outcomes([], f"{args.spec}: {exc}"))
        print(f"assay-runner: {args.spec}: {exc}", file=sys.stderr)
        return 2
    index = int(os.environ.get("JOB_COMPLETION_INDEX") or 0)
    tick = tick_of(os.environ.get("ASSAY_JOB_NAME") or f"local-{int(time.time() // 60)}")
    mine = chunk_of(members, index, chunk)
    concurrency = args.concurrency or int(os.environ.get("ASSAY_TICK_CONCURRENCY") or 50)
    print(f"assay-runner: tick {tick} of {document.get('group', '-')}: members {index * chunk}.."
          f"{index * chunk + len(mine) - 1} of {len(members)}", flush=True)
    outcomes = asyncio.run(run_chunk(mine, tick, namespace, concurrency))
    write_termination_message(encode_outcomes(outcomes))
    passed = sum(1 for o in outcomes if o.passed)
    print(f"assay-runner: {passed}/{len(outcomes)} passed", flush=True)
    return 0


def add_command(sub) -> None:
    p = sub.add_parser("batch", help="run one pod's share of a schedule tick (inside a tick Job pod)")
    p.add_argument("--spec", required=True, help="the tick's members.json(.gz), or the folder holding it")
    p.add_argument("--concurrency", type=int, default=None,
                   help="members run at once (default: $ASSAY_TICK_CONCURRENCY or 50)")
    p.set_defaults(func=cmd_batch)
