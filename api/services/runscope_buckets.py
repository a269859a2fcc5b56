"""Runscope buckets, the account and regions, on namespaces and nodes.

A bucket is a namespace (key = name) of a team (the org label); its display name is the
annotation BUCKET_NAME_ANNOTATION and a team's default bucket carries DEFAULT_BUCKET_ANNOTATION,
which makes it undeletable. Only org credentials create and delete buckets, and only in their
own team: a project credential is one bucket. The namespace holding the credential itself is
never deleted through the API, whatever its annotations say.

Regions are the values of the nodes' `topology.kubernetes.io/region` label: where Monitor
environments can run (operator/monitor.py turns a region into a node selector). A location's
utilization is the share of the bucket's tests running there now: there is no per-location
concurrency limit to measure against, so a bucket's tests are its capacity.
"""

from __future__ import annotations

import secrets
import string
from typing import Callable, Optional

from kubernetes.client.rest import ApiException

from assay.crds.runrequest import REGION_LABEL
from assay.crds.times import epoch

from ..auth import Principal
from ..errors import ApiError
from . import InvalidInput
from .runscope_tests import PLURAL as MONITOR_PLURAL

BUCKET_NAME_ANNOTATION = "assay.dev/bucket-name"
DEFAULT_BUCKET_ANNOTATION = "assay.dev/default-bucket"
LOCATION_ANNOTATION = "assay.dev/region-location"
MAX_BUCKET_NAME = 256
IN_PROGRESS = ("Pending", "Running")
REMOTE_LOCATION = "remote"
UTILIZATION_THRESHOLD = 85
"""list_utilizations_gt when the request names none, as the document says."""
KEY_LENGTH = 12


def new_bucket_key() -> str:
    """12 lowercase alphanumerics starting with a letter, as Runscope bucket keys look."""
    alphabet = string.ascii_lowercase + string.digits
    return secrets.choice(string.ascii_lowercase) + "".join(secrets.choice(alphabet) for _ in range(KEY_LENGTH - 1))


def bucket_of(namespace: dict, org_label: str, public_url: str, trigger_url: str) -> dict:
    """A bucket as Runscope shows it; `id` beside `uuid` and the URLs are what API clients read."""
    meta = namespace["metadata"]
    annotations, team = meta.get("annotations") or {}, (meta.get("labels") or {}).get(org_label)
    url = f"{public_url}/buckets/{meta['name']}"
    return {
        "auth_token": None,
        "collections_url": f"{url}/collections",
        "created_at": int(epoch(meta.get("creationTimestamp")) or 0),
        "default": annotations.get(DEFAULT_BUCKET_ANNOTATION) == "true",
        "is_private": False,
        "key": meta["name"],
        "messages_url": f"{url}/messages",
        "name": annotations.get(BUCKET_NAME_ANNOTATION) or meta["name"],
        "team": {"id": team, "name": team, "uuid": team} if team else None,
        "tests_url": f"{url}/tests",
        "trigger_url": trigger_url,
        "verify_ssl": True,
    }


class RunscopeBuckets:
    def __init__(self, kube, tenancy, settings, trigger_url: Callable[[dict], str]):
        """`trigger_url(namespace)` is the bucket's trigger URL (services/runscope_tests.py)."""
        self.kube, self.tenancy, self.org_label = kube, tenancy, settings.org_label
        self.public_url, self.trigger_url = settings.public_url.rstrip("/"), trigger_url

    def _bucket(self, namespace: dict) -> dict:
        return bucket_of(namespace, self.org_label, self.public_url, self.trigger_url(namespace))

    def buckets(self, principal: Principal) -> list[dict]:
        reachable = set(self.tenancy.namespaces_for(principal))
        namespaces = sorted(self.kube.namespaces(), key=lambda n: n["metadata"]["name"])
        return [
            self._bucket(ns)
            for ns in namespaces
            if ns["metadata"]["name"] in reachable and not ns["metadata"].get("deletionTimestamp")
        ]

    def bucket(self, namespace: str) -> dict:
        return self._bucket(self.kube.namespace(namespace))

    def create(self, principal: Principal, name: Optional[str], team_uuid: Optional[str]) -> dict:
        if not name or not name.strip() or len(name) > MAX_BUCKET_NAME:
            raise InvalidInput(f"name: required, at most {MAX_BUCKET_NAME} characters")
        if not team_uuid:
            raise InvalidInput("team_uuid: required")
        if principal.level != "org" or principal.organization != team_uuid:
            raise ApiError(403, f"this token cannot create buckets in team {team_uuid!r}", "forbidden")
        for _ in range(3):
            try:
                created = self.kube.create_namespace(
                    new_bucket_key(), {self.org_label: team_uuid}, {BUCKET_NAME_ANNOTATION: name}
                )
                # Usable at once from here, before the index's watch reports it.
                self.tenancy.index.put_namespace(created)
                return self._bucket(created)
            except ApiException as exc:
                if exc.status != 409:  # 409: the generated key exists; draw another
                    raise
        raise ApiError(503, "could not allocate a bucket key; try again", "temporarily_unavailable")

    def delete(self, principal: Principal, namespace: str) -> None:
        ns = self.kube.namespace(namespace)
        if (ns["metadata"].get("annotations") or {}).get(DEFAULT_BUCKET_ANNOTATION) == "true":
            raise InvalidInput("the default bucket of a team cannot be deleted")
        if principal.level != "org":
            raise ApiError(403, "only team (organization) tokens delete buckets", "forbidden")
        if namespace == principal.namespace:
            raise InvalidInput("the bucket holding this token's credential cannot be deleted through the API")
        self.kube.delete_namespace(namespace)
        self.tenancy.index.drop_namespace(ns)

    @staticmethod
    def account(principal: Principal, with_email: bool) -> dict:
        account = {
            "id": principal.credential_uid,
            "name": principal.credential,
            "uuid": principal.credential_uid,
            "teams": [{"id": principal.organization, "uuid": principal.organization, "name": principal.organization}]
            if principal.organization
            else [],
        }
        if with_email:
            account["email"] = principal.email
        return account

    def locations_utilization(self, namespace: str, at_least: int = UTILIZATION_THRESHOLD) -> dict[str, int]:
        """The v1 bucket detail's `locations_utilization_%`: per location (a region's location
        name, `remote` for remote agents), the percent of the bucket's tests with a run in
        progress there now; only locations at or over `at_least` (list_utilizations_gt)."""
        monitors = self.kube.list(MONITOR_PLURAL, namespace)
        names = {r["region_code"]: r["location"] for r in self.regions()}
        busy: dict[str, int] = {}
        for monitor in monitors:
            last = (monitor.get("status") or {}).get("lastRun") or {}
            if last.get("phase") not in IN_PROGRESS:
                continue
            for where in {names.get(region, REMOTE_LOCATION) for region in last.get("regions") or []}:
                busy[where] = busy.get(where, 0) + 1
        percents = {where: round(100 * n / len(monitors)) for where, n in busy.items()}
        return {where: pct for where, pct in sorted(percents.items()) if pct >= at_least}

    def regions(self) -> list[dict]:
        regions: dict[str, dict] = {}
        for node in self.kube.nodes():
            meta = node["metadata"]
            code = (meta.get("labels") or {}).get(REGION_LABEL)
            if code and code not in regions:
                regions[code] = {
                    "region_code": code,
                    "location": (meta.get("annotations") or {}).get(LOCATION_ANNOTATION) or code,
                    "service_provider": "Kubernetes",
                    "hostname": meta["name"],
                }
        return [regions[code] for code in sorted(regions)]
