"""`python -m assay.operator`: run the Kopf operator for every namespace.

Configuration comes from ASSAY_* environment variables (see settings.py); the cluster from
the in-cluster service account or $KUBECONFIG.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import zlib

import kopf

from . import clientcredential, loadtest, monitor, schedule, testsuite, ticks  # noqa: F401  (register the handlers)
from . import kube, metrics, peering
from .diffbase import SecretFreeDiffBaseStorage, diffbase_key
from .settings import get_settings


class RoutineSuccessFilter(logging.Filter):
    """Drops Kopf's "Handler/Timer '…' succeeded." lines: with a Job mirror per event and a
    progress timer every 3 s per running LoadTest they drown what matters. Failures, retries
    and our own messages pass; --verbose keeps everything."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not (message.endswith("' succeeded.") and message.startswith(("Handler '", "Timer '")))


@kopf.on.startup()
def startup(settings: kopf.OperatorSettings, logger, **_):
    kube.configure()
    # Kopf posts k8s Events for handler outcomes; errors are worth an Event, chatter is not.
    settings.posting.level = logging.WARNING
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.persistence.finalizer = "assay.dev/operator"
    ours = get_settings()
    settings.persistence.diffbase_storage = SecretFreeDiffBaseStorage(diffbase_key(ours))
    # Kopf's default (60 s) would leave the runs of a killed leader unwatched for a minute.
    settings.peering.lifetime = ours.peering_lifetime_seconds
    uploads = (
        f"results upload to {ours.gateway_url}"
        if ours.uploads_enabled
        else "no result uploads (no gateway URL or upload key)"
    )
    logger.info(f"runner image {ours.runner_image}, {uploads}")


def peering_priority(pod_name: str) -> int:
    """A priority that differs between replicas: Kopf freezes every peer when two share one,
    and a Deployment gives its pods distinct names, so the name decides which one works."""
    return zlib.crc32(pod_name.encode()) % 1_000_000 if pod_name else 0


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m assay.operator", description=__doc__)
    parser.add_argument("--namespace", "-n", action="append", help="watch only these namespaces (default: all)")
    parser.add_argument("--verbose", "-v", action="store_true")
    parser.add_argument(
        "--log-format",
        choices=["full", "plain", "json"],
        default="full",
        help="json suits log collectors (default: full)",
    )
    parser.add_argument("--liveness", default=None, help="serve a liveness endpoint, e.g. http://0.0.0.0:8080/healthz")
    parser.add_argument(
        "--peering", default=None, help="peering object name for several replicas (default: standalone)"
    )
    parser.add_argument(
        "--priority", type=int, default=None, help="peering priority (default: derived from $POD_ID, the pod's name)"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        help="serve Prometheus metrics on /metrics at this port (default: $ASSAY_METRICS_PORT)",
    )
    args = parser.parse_args(argv)
    # Kopf's own configuration prefixes object messages with their namespace/name.
    kopf.configure(verbose=args.verbose, log_format=kopf.LogFormat[args.log_format.upper()], log_prefix=True)
    if not args.verbose:
        for handler in logging.getLogger().handlers:
            handler.addFilter(RoutineSuccessFilter())
    logging.getLogger().addHandler(metrics.HandlerErrorCounter())
    metrics_port = args.metrics_port if args.metrics_port is not None else get_settings().metrics_port
    if metrics_port is not None:
        metrics.serve(metrics_port)
    if args.peering is not None:
        kube.configure()
        peering.ensure_peering_objects(args.peering, args.namespace, logging.getLogger("assay.operator"))
    kopf.run(
        clusterwide=not args.namespace,
        namespaces=args.namespace or (),
        liveness_endpoint=args.liveness,
        standalone=args.peering is None,
        peering_name=args.peering,
        priority=args.priority
        if args.priority is not None
        else peering_priority(os.environ.get("POD_ID") or f"{socket.gethostname()}/{os.getpid()}"),
    )


if __name__ == "__main__":
    main()
