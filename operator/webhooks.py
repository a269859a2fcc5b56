"""Posting a Monitor run's result to the environment's webhook URLs, as Runscope does.

Each URL gets one JSON POST with a timeout, retried with backoff on a connection error, a
timeout or a 5xx; a 4xx is the receiver's final word. Failures are logged with the URL's
host only: webhook URLs often carry a token in their path or query.

The URL is the tenant's choice, so the POST obeys the egress policy (assay.runner.egress,
ASSAY_EGRESS_ALLOW/DENY): a receiver on an address the operator may not reach is not sent to,
and that is not retried.
"""

from __future__ import annotations

import logging
import time
from urllib.parse import urlsplit

import httpx

from assay.runner import egress
from assay.runner.egress import EgressDenied, EgressPolicy

RETRY_BASE_SECONDS = 1.0

# httpx logs every request's full URL at INFO, which would put webhook tokens in the log.
logging.getLogger("httpx").setLevel(logging.WARNING)


def url_host(url: str) -> str:
    """What of a webhook URL may appear in a log line: its host and port."""
    try:
        parts = urlsplit(url)
        return parts.hostname + (f":{parts.port}" if parts.port else "") if parts.hostname else "(invalid URL)"
    except ValueError:
        return "(invalid URL)"


def post_result(
    url: str,
    payload: dict,
    *,
    timeout: float,
    attempts: int,
    logger: logging.Logger,
    policy: EgressPolicy,
    sleep=time.sleep,
) -> bool:
    """POST `payload` to `url` through `policy`; True once a receiver answered 2xx or 3xx."""
    host = url_host(url)
    for attempt in range(1, attempts + 1):
        try:
            with egress.client(policy, timeout=timeout, follow_redirects=False) as client:
                response = client.post(url, json=payload, headers={"User-Agent": "assay-operator"})
        except EgressDenied:
            logger.warning(
                f"webhook to {host}: the address is not one the operator may reach (egress policy); not sent"
            )
            return False
        except httpx.HTTPError as exc:
            why = type(exc).__name__
        except ValueError:
            logger.warning(f"webhook to {host}: not a usable URL; not sent")
            return False
        else:
            if response.status_code < 400:
                return True
            why = f"HTTP {response.status_code}"
            if response.status_code < 500:
                logger.warning(f"webhook to {host}: {why}; not retried")
                return False
        if attempt < attempts:
            logger.info(f"webhook to {host}: {why} (attempt {attempt} of {attempts}); retrying")
            sleep(RETRY_BASE_SECONDS * 2 ** (attempt - 1))
        else:
            logger.warning(f"webhook to {host}: {why} after {attempts} attempts; giving up")
    return False
