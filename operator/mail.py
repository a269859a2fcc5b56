"""E-mail about a Monitor run, through the configured SMTP server (ASSAY_SMTP_*).

Which runs get mail (Runscope's notify_on rules) is decided in notify.py; this module only
writes and sends the message.
"""

from __future__ import annotations

import datetime as dt
import smtplib
from email.message import EmailMessage

from .settings import OperatorSettings


def _verdict(run: dict) -> str:
    return "passed" if run["result"] == "pass" else "failed"


def _where(run: dict) -> str:
    return f" in {run['environment_name']}" if run.get("environment_name") else ""


def headline(run: dict) -> str:
    """One line about a run (`notify.result_payload`): "Health check failed in local"; the
    mail's subject and the chat integrations' message say it so."""
    return f"{run['test_name']} {_verdict(run)}{_where(run)}"


def build_message(run: dict, recipients: list[str], sender: str) -> EmailMessage:
    """The mail for one run, from the webhook payload (`notify.result_payload`)."""
    verdict, where = _verdict(run), _where(run)
    message = EmailMessage()
    message["Subject"] = f"[Assay] {headline(run)}"
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    lines = [
        f"Monitor {run['test_name']} ({run['bucket_key']}/{run['assay']['monitor']}) {verdict}{where}.",
        "",
        f"Run:          {run['test_run_id']}",
        f"Started:      {_time(run.get('started_at'))}",
        f"Finished:     {_time(run.get('finished_at'))}",
    ]
    if run.get("regions"):
        lines.append(f"Regions:      {', '.join(run['regions'])}")
    if run.get("response_time_ms") is not None:
        lines.append(f"Response time: {run['response_time_ms']} ms (mean)")
    if run["assay"].get("message"):
        lines += ["", run["assay"]["message"]]
    message.set_content("\n".join(lines) + "\n")
    return message


def _time(epoch: float | None) -> str:
    if epoch is None:
        return "-"
    return dt.datetime.fromtimestamp(epoch, dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def send(message: EmailMessage, settings: OperatorSettings) -> None:
    """Raises smtplib.SMTPException or OSError when the server does not take it."""
    with smtplib.SMTP(settings.smtp_host, settings.smtp_port, timeout=settings.smtp_timeout_seconds) as smtp:
        if settings.smtp_starttls:
            smtp.starttls()
        if settings.smtp_username:
            password = settings.smtp_password.get_secret_value() if settings.smtp_password else ""
            smtp.login(settings.smtp_username, password)
        smtp.send_message(message)
