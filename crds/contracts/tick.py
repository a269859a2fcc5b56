"""A schedule tick: the members a tick group runs, the run ids of a tick, the group's upload
token, and the outcomes a tick pod reports.

A tick group is every Schedule of a namespace with the same cron schedule and region; the
operator writes its members to a ConfigMap (`members.json.gz`, gzip-compressed JSON) and runs
them from one CronJob whose Jobs are Indexed: pod `i` runs members `[i * chunk, (i + 1) *
chunk)` (`python -m assay.runner batch`).

    {"group": "<cronjob>", "namespace": "<ns>", "chunk": 64, "members": [
        {"schedule": {"name", "uid"}, "kind": "Monitor", "monitor": <manifest>,
         "subtests": [<manifest>, ...], "environment": "<name>" | null,
         "location": "<name>" | null, "locationIndex": 0, "locations": 1},
        {"schedule": {...}, "kind": "TestSuite", "testSuite": <manifest, pools inlined>, ...}]}

Each member's run id is `run_id_for_request(owner, owner uid, "schedule:<schedule
uid>:<tick>")`, the tick being the suffix of the Job's name (the CronJob controller names
its Jobs `<cronjob>-<minutes since the epoch>`). A replayed tick therefore has the same run
ids, and neither the operator nor the result store records it twice.

A tick pod uploads with the group's token (`group_upload_token`), naming the tick in each
upload (X-Assay-Tick). The gateway accepts it only for the run ids `tick_runs` derives from
the group's members ConfigMap and a tick Job of the group's CronJob, so a group token writes
its own members' scheduled runs and nothing else. The termination message is a compact line
per member (`encode_outcomes`), which the operator records into each Monitor's status.
"""

from __future__ import annotations

import base64
import gzip
import json
from dataclasses import dataclass

from ..runrequest import run_id_for_request

from .upload import RunGrant, token_mac

MEMBERS_FILE = "members.json"
MESSAGE_LIMIT = 4096
"""Bytes of a container's termination message the kubelet keeps."""
UID_PREFIX = 8
MAX_FIGURE = 99_999
"""Response times (ms) and durations (s) are capped to keep an outcome's size bounded."""
GROUP_TOKEN_PREFIX = "group:"


def tick_of(job_name: str) -> str:
    """The tick a Job runs: the CronJob controller's `<minutes since epoch>` suffix, or the
    whole name for a Job created by hand (`kubectl create job --from=cronjob/...`)."""
    head, _, tail = job_name.rpartition("-")
    return tail if head and tail.isdigit() else job_name


def tick_job_name(group: str, tick: str) -> str:
    """The Job that runs `tick` of the group's CronJob: the inverse of `tick_of`."""
    return f"{group}-{tick}" if tick.isdigit() else tick


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
    subject = f"{GROUP_TOKEN_PREFIX}{namespace}/{group}"
    return f"{subject}:{token_mac(key, subject)}"


def parse_group_token(token: str) -> tuple[str, str, str] | None:
    """(namespace, group, mac) of a group token; None for any other token."""
    if not token.startswith(GROUP_TOKEN_PREFIX):
        return None
    subject, _, mac = token.rpartition(":")
    namespace, _, group = subject[len(GROUP_TOKEN_PREFIX) :].partition("/")
    if not (namespace and group and mac):
        return None
    return namespace, group, mac


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
        return [
            self.owner_uid,
            self.schedule_uid,
            "p" if self.passed else "f",
            self.response_time_ms if self.response_time_ms is not None else -1,
            self.started_at,
            self.seconds,
        ]

    @classmethod
    def from_json(cls, item) -> Outcome | None:
        try:
            owner_uid, schedule_uid, verdict, ms, started, seconds = item
            return cls(
                str(owner_uid),
                str(schedule_uid),
                verdict == "p",
                None if int(ms) < 0 else int(ms),
                int(started),
                int(seconds),
            )
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
