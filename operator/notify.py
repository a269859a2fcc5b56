"""Notifications after Monitor runs: the environment's webhooks, e-mails and integrations
(Slack, Microsoft Teams, PagerDuty, generic webhooks: integrations.py).

Which runs: a run notifies through the environment it ran in (`lastRun.environment`).
Webhooks and integrations get every finished run. E-mail follows Runscope's `notifyOn`, computed from the
status history (newest first):

* all: every run; failures: every failed run;
* threshold: every failed run once `notifyThreshold` runs in a row have failed;
* switch: the run that makes `notifyThreshold` failures in a row, then the first pass after
  such a streak (the alert and its all-clear).

Recipients are `emails.recipients`; with `notifyAll`, also the team of the namespace: the
comma-separated addresses in its `assay.dev/team-emails` annotation (a namespace is a
Runscope bucket, and the people who own it are its team).

Delivery is at most once per run. Before anything is sent, the worker adds the run id to
`status.notifiedRuns` with a patch checked against the resourceVersion it read (a claim);
a replica, a replayed event or a restarted operator that finds the run listed, or loses the
race for the claim, sends nothing. The price is that an operator killed between its claim
and its sends loses that run's notifications; the alternative, recording after sending,
would send twice in that case and whenever two replicas overlap during a handover, and a
duplicate alert pages people twice. A run whose notifications were never claimed (the
operator died before its worker ran) is picked up when the Monitor is next seen, if it
finished within ASSAY_NOTIFY_CATCH_UP_SECONDS.

The sending happens on a small pool of threads, so no handler waits for a receiver, and a
receiver that fails or hangs changes nothing about the run.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import smtplib
import threading
from concurrent.futures import ThreadPoolExecutor

from kubernetes.client.rest import ApiException
from pydantic import ValidationError

from assay.crds.monitor import DEFAULT_NOTIFY_THRESHOLD, MAX_HISTORY, Emails, Environment, MonitorSpec, runscope_result
from assay.crds.runs import has_finished
from assay.crds.times import epoch
from assay.runner.egress import EgressPolicy

from . import integrations, kube, mail, webhooks
from .names import LABEL_RUN_ID
from .runstatus import terminated_state
from .settings import OperatorSettings, get_settings
from .status import update_status

TEAM_ANNOTATION = "assay.dev/team-emails"
CLAIM_ATTEMPTS = 5
MAX_QUEUED = 1000

log = logging.getLogger("assay.operator.notify")


# --- which runs, which mails (pure) -----------------------------------------------------------


def _finished(history: list[dict]) -> list[dict]:
    return [e for e in history if has_finished(e) and e.get("runId")]


def runs_to_notify(status: dict, *, not_before: str | None = None) -> list[str]:
    """Finished runs in the status history not yet in status.notifiedRuns, oldest first;
    with `not_before` (RFC 3339), only runs that finished at or after it."""
    notified = set(status.get("notifiedRuns") or [])
    pending = [
        e
        for e in _finished(status.get("history") or [])
        if e["runId"] not in notified and (not_before is None or (e.get("completionTime") or "") >= not_before)
    ]
    return [e["runId"] for e in reversed(pending)]


def failure_streaks(history: list[dict], run_id: str) -> tuple[int, int]:
    """(failed runs in a row ending with `run_id`, failed runs in a row just before it), from
    the finished runs of a newest-first history."""
    runs = _finished(history)
    index = next((i for i, e in enumerate(runs) if e["runId"] == run_id), None)
    if index is None:
        return 0, 0

    def streak(start: int) -> int:
        count = 0
        for entry in runs[start:]:
            if entry["result"] == "Passed":
                break
            count += 1
        return count

    before = streak(index + 1)
    return (before + 1 if runs[index]["result"] != "Passed" else 0), before


def wants_mail(emails: Emails | None, history: list[dict], run_id: str) -> bool:
    """Whether `run_id` gets e-mail under the environment's notifyOn rule."""
    if emails is None:
        return False
    streak, before = failure_streaks(history, run_id)
    threshold = emails.notify_threshold or DEFAULT_NOTIFY_THRESHOLD
    if emails.notify_on == "all":
        return True
    if emails.notify_on == "failures":
        return streak > 0
    if emails.notify_on == "threshold":
        return streak >= threshold
    return streak == threshold or (streak == 0 and before >= threshold)  # switch


def has_notifications(spec: dict) -> bool:
    """Whether any environment of a Monitor spec (as a dict) has webhooks, e-mails or
    integrations."""
    return any(
        env.get("webhooks") or env.get("emails") or env.get("integrations") for env in spec.get("environments") or []
    )


def team_addresses(namespace: dict | None) -> list[str]:
    text = (((namespace or {}).get("metadata") or {}).get("annotations") or {}).get(TEAM_ANNOTATION) or ""
    return [a.strip() for a in text.split(",") if "@" in a]


def recipients(emails: Emails, team: list[str]) -> list[str]:
    """Unique addresses, the recipients first."""
    wanted = [r.email for r in emails.recipients] + (team if emails.notify_all else [])
    return list(dict.fromkeys(a for a in wanted if a))


def result_payload(
    owner: dict, entry: dict, env: Environment | None, counts: dict | None = None, message: str | None = None
) -> dict:
    """The webhook body for one run, with the field names of Runscope's webhook payload (a
    bucket is the namespace). Runscope's per-step `requests` list is not kept by the
    operator; the run's request and assertion counts stand in for it."""
    meta = owner["metadata"]
    regions = list(entry.get("regions") or [])
    counts = counts or {}
    return {
        "test_id": meta.get("uid"),
        "test_name": (owner.get("spec") or {}).get("displayName") or meta["name"],
        "test_run_id": entry["runId"],
        "team_id": None,
        "team_name": None,
        "environment_uuid": env.id if env else None,
        "environment_name": entry.get("environment"),
        "bucket_key": meta["namespace"],
        "bucket_name": meta["namespace"],
        "test_url": None,
        "test_run_url": None,
        "trigger_url": None,
        "result": runscope_result(entry),
        "started_at": epoch(entry.get("startTime")),
        "finished_at": epoch(entry.get("completionTime")),
        "agent": None,
        "agent_name": None,
        "region": regions[0] if regions else None,
        "region_name": regions[0] if regions else None,
        "regions": regions,
        "requests_executed": counts.get("requests_executed"),
        "assertions_passed": counts.get("assertions_passed"),
        "assertions_failed": counts.get("assertions_failed"),
        "response_time_ms": entry.get("responseTimeMs"),
        "assay": {"namespace": meta["namespace"], "monitor": meta["name"], "message": message},
    }


def run_counts(pods: list[dict]) -> dict:
    """Request and assertion counts summed over a run's pods' termination summaries."""
    totals: dict[str, int] = {}
    for pod in pods:
        try:
            summary = json.loads((terminated_state(pod) or {}).get("message") or "")
        except ValueError:
            continue
        if not isinstance(summary, dict):
            continue
        for key in ("requests_executed", "assertions_passed", "assertions_failed"):
            if isinstance(summary.get(key), int):
                totals[key] = totals.get(key, 0) + summary[key]
    return totals


def _environment(owner: dict, name: str | None) -> Environment | None:
    try:
        spec = MonitorSpec.model_validate(owner.get("spec") or {})
    except ValidationError:
        return None
    return next((e for e in spec.environments if e.name == name), None) if name else spec.environment(None)


def has_something_to_send(owner: dict, run_id: str, mail_enabled: bool) -> bool:
    """Whether the run's environment posts webhooks, has integrations to send to or, with
    mail enabled, wants mail for it."""
    status = owner.get("status") or {}
    entry = next((e for e in status.get("history") or [] if e.get("runId") == run_id), None)
    if entry is None or not has_finished(entry):
        return False
    env = _environment(owner, entry.get("environment"))
    if env is None:
        return False
    return (
        bool(env.webhooks)
        or bool(integrations.notifying(env))
        or (mail_enabled and wants_mail(env.emails, status.get("history") or [], run_id))
    )


def _complete_message(status: dict, run_id: str) -> str | None:
    if (status.get("lastRun") or {}).get("runId") != run_id:
        return None
    return next((c.get("message") for c in status.get("conditions") or [] if c.get("type") == "Complete"), None)


# --- sending (threads) --------------------------------------------------------------------------


class Notifier:
    """A bounded pool that claims and sends each run's notifications off the handlers' threads."""

    def __init__(self, settings: OperatorSettings, workers: int = 2, senders: int = 8):
        self.settings = settings
        self._egress = EgressPolicy.parse(settings.egress_allow, settings.egress_deny)
        self._claims = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="assay-notify")
        self._sends = ThreadPoolExecutor(max_workers=senders, thread_name_prefix="assay-send")
        self._queued: set[tuple[str, str, str]] = set()
        self._lock = threading.Lock()

    def submit(self, namespace: str, name: str, run_ids: list[str]) -> None:
        for run_id in run_ids:
            key = (namespace, name, run_id)
            with self._lock:
                if key in self._queued:
                    continue
                if len(self._queued) >= MAX_QUEUED:
                    # Not lost: the run stays out of notifiedRuns and is retried on the
                    # Monitor's next event within the catch-up window.
                    log.warning(f"{namespace}/{name}: notification queue full; run {run_id} later")
                    continue
                self._queued.add(key)
            self._claims.submit(self._run, key)

    def _run(self, key: tuple[str, str, str]) -> None:
        try:
            self.notify(*key)
        except Exception:  # noqa: BLE001  (a notification must never take the worker down)
            log.exception(f"{key[0]}/{key[1]}: notifying run {key[2]} failed")
        finally:
            with self._lock:
                self._queued.discard(key)

    def notify(self, namespace: str, name: str, run_id: str) -> None:
        claimed = self._claim(namespace, name, run_id)
        if claimed is None:
            return
        owner, entry, env = claimed
        status = owner.get("status") or {}
        jobs = kube.list_jobs(namespace, {LABEL_RUN_ID: run_id})
        pods = [pod for job in jobs for pod in kube.list_job_pods(namespace, job["metadata"]["name"])]
        payload = result_payload(owner, entry, env, run_counts(pods), _complete_message(status, run_id))
        where = f"{namespace}/{name}"
        for url in env.webhooks:
            self._sends.submit(self._post, where, run_id, url, payload)
        for integration in integrations.notifying(env):
            try:
                sending = integrations.delivery(integration, payload, _secret_reader(namespace))
            except integrations.Unusable as exc:
                log.warning(f"{where}: run {run_id} not sent to {integration.integration_type} {integration.id}: {exc}")
                continue
            self._sends.submit(self._post, where, run_id, sending.url, sending.body)
        if self._mail_wanted(env, status, run_id):
            self._sends.submit(self._mail, where, owner, env.emails, payload)

    def _claim(self, namespace: str, name: str, run_id: str) -> tuple[dict, dict, Environment] | None:
        """Record the run in status.notifiedRuns unless it is there; the Monitor, the run's
        history entry and its environment when this call claimed it and there is anything to
        send, else None."""
        claimed: dict = {}

        def claim(owner: dict) -> dict | None:
            status = owner.get("status") or {}
            notified = list(status.get("notifiedRuns") or [])
            entry = next((e for e in status.get("history") or [] if e.get("runId") == run_id), None)
            if run_id in notified or entry is None or not has_finished(entry):
                return None
            if not has_something_to_send(owner, run_id, bool(self.settings.smtp_host)):
                return None
            claimed["entry"], claimed["env"] = entry, _environment(owner, entry.get("environment"))
            return {"notifiedRuns": (notified + [run_id])[-MAX_HISTORY:]}

        try:
            written = update_status("Monitor", namespace, name, claim, attempts=CLAIM_ATTEMPTS)
        except kube.Conflict:
            log.warning(f"{namespace}/{name}: run {run_id} not notified: the status kept changing")
            return None
        if written is None:
            return None
        owner = {**written.obj, "status": {**written.before, **written.after}}
        return owner, claimed["entry"], claimed["env"]

    def _mail_wanted(self, env: Environment, status: dict, run_id: str) -> bool:
        return bool(self.settings.smtp_host) and wants_mail(env.emails, status.get("history") or [], run_id)

    def _post(self, where: str, run_id: str, url: str, body: dict) -> None:
        delivered = webhooks.post_result(
            url,
            body,
            timeout=self.settings.webhook_timeout_seconds,
            attempts=self.settings.webhook_attempts,
            logger=log,
            policy=self._egress,
        )
        if delivered:
            log.info(f"{where}: run {run_id} posted to {webhooks.url_host(url)}")

    def _mail(self, where: str, owner: dict, emails: Emails, payload: dict) -> None:
        if not self.settings.smtp_host:
            return
        team = namespace_team(owner["metadata"]["namespace"]) if emails.notify_all else []
        to = recipients(emails, team)
        if not to:
            return
        try:
            mail.send(mail.build_message(payload, to, self.settings.smtp_from), self.settings)
        except (OSError, smtplib.SMTPException) as exc:
            log.warning(f"{where}: e-mail about run {payload['test_run_id']} not sent: {type(exc).__name__}: {exc}")
            return
        log.info(f"{where}: run {payload['test_run_id']} e-mailed to {len(to)} recipient(s)")

    def shutdown(self) -> None:
        self._claims.shutdown(wait=False, cancel_futures=True)
        self._sends.shutdown(wait=False, cancel_futures=True)


def _secret_reader(namespace: str) -> integrations.SecretReader:
    def read(name: str, key: str) -> str | None:
        try:
            value = (kube.read_secret_data(namespace, name) or {}).get(key)
            return value.decode() if value is not None else None
        except (ApiException, UnicodeDecodeError):  # unreadable is unavailable: skip, do not fail the run's others
            return None

    return read


def namespace_team(namespace: str) -> list[str]:
    """The team addresses of a namespace (its TEAM_ANNOTATION); none if it cannot be read."""
    try:
        body = kube.read_namespace(namespace)
    except ApiException as exc:
        log.warning(f"{namespace}: team addresses not read (HTTP {exc.status})")
        return []
    return team_addresses(body)


_notifier: Notifier | None = None
_notifier_lock = threading.Lock()


def notifier() -> Notifier:
    global _notifier
    with _notifier_lock:
        if _notifier is None:
            _notifier = Notifier(get_settings())
        return _notifier


def shutdown() -> None:
    """Drop queued notifications (running sends finish within their timeouts)."""
    with _notifier_lock:
        if _notifier is not None:
            _notifier.shutdown()


def catch_up_since(settings: OperatorSettings, now: dt.datetime | None = None) -> str:
    now = now or dt.datetime.now(dt.timezone.utc)
    return (now - dt.timedelta(seconds=settings.notify_catch_up_seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")
