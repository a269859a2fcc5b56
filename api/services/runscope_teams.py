"""A Runscope team's administration: people, invites, groups, roles, e-mail domains, bucket
custom e-mails, and what the cluster says about its agents and integrations.

A team is an organization (namespaces labelled `assay.dev/org=<team id>`); its buckets are those
namespaces. People, invites, groups, roles, e-mail domains and custom e-mails are records in the
store (`Store.put_record`), keyed `<team id>/<uuid>` (custom e-mails `<bucket key>/<uuid>`) with
the team (bucket) as the record's project, so a team's records list without a scan of others.
Agents are the Ready Nodes labelled `assay.dev/agent=<name>` and `assay.dev/org=<team id>`;
integrations are those the team's Monitors declare in their environments.

Rules beyond the records: a person belongs to a team once; a team keeps at least one person; a
custom e-mail's domain must be on the team's whitelist; group members and buckets must be the
team's own. Everything a router needs to answer in Runscope's shape is returned as plain dicts.
"""

from __future__ import annotations

import re
import time
import uuid
from datetime import datetime, timezone
from email.utils import format_datetime
from typing import Any, Iterable, Optional

from assay.crds.runrequest import AGENT_LABEL

from ..errors import ApiError
from ..store import Store
from . import Conflict, InvalidInput, NotFound

PEOPLE, INVITES, GROUPS, ROLES = "runscope-people", "runscope-invites", "runscope-groups", "runscope-roles"
EMAIL_DOMAINS, CUSTOM_EMAILS = "runscope-email-domains", "runscope-custom-emails"
MAX_PEOPLE_PAGE = 200
_EMAIL = re.compile(r"[^@\s,]{1,64}@([A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+)")
_DOMAIN = re.compile(r"[A-Za-z0-9-]{1,63}(?:\.[A-Za-z0-9-]{1,63})+")
_PERMISSION = re.compile(r"[a-z_]+(?::[a-z_]+){1,3}")
PERMISSIONS = (
    "team:billing:view",
    "team:billing:modify",
    "team:people:view",
    "team:people:modify",
    "team:people:invite",
    "team:buckets:modify",
    "team:buckets:add",
    "team:gateway_agent:allow",
    "team:radar_agent:allow",
    "team:connected_services:modify",
    "team:connected_services:delete",
    "team:name:modify",
    "team:usage:view",
    "bucket:tests:view",
    "bucket:tests:execute",
    "bucket:tests:modify",
    "bucket:tests:delete",
    "bucket:tests:share",
    "bucket:tests:schedule",
    "bucket:tests:export",
    "bucket:shared_environment:modify",
    "team:groups:view",
    "team:groups:modify",
    "team:script_library:delete",
    "team:script_library:modify",
    "team:secrets:view",
    "team:secrets:modify",
    "team:file_upload:modify",
)
"""The document's permissions, in its order."""
BUILT_IN_ROLES = {"Administrators": PERMISSIONS}
"""Roles every team has from the start, listed before its own; they cannot be changed or deleted."""


def check_email(value: Any, what: str = "email") -> str:
    if not isinstance(value, str) or not _EMAIL.fullmatch(value.strip()):
        raise InvalidInput(f"{what} {value!r} is not an e-mail address")
    return value.strip().lower()


def email_domain(email: str) -> str:
    return email.rsplit("@", 1)[1].lower()


def parse_domains(text: Any) -> list[str]:
    if not isinstance(text, str) or not text.strip():
        raise InvalidInput("domainNames must be domain names separated by commas")
    domains = [d.strip().lower() for d in text.split(",") if d.strip()]
    bad = [d for d in domains if not _DOMAIN.fullmatch(d)]
    if bad or not domains:
        raise InvalidInput(f"not domain names: {', '.join(bad) or text!r}")
    return domains


def check_permissions(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(p, str) and _PERMISSION.fullmatch(p) for p in value):
        raise InvalidInput("permissions must be a list of permission names such as team:people:view")
    return list(dict.fromkeys(value))


def check_name(value: Any, what: str) -> str:
    if not isinstance(value, str) or not value.strip() or len(value) > 128:
        raise InvalidInput(f"{what} must be a name of 1 to 128 characters")
    return value.strip()


def check_uuids(value: Any, what: str) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(f"{what} must be a list of ids")
    return list(dict.fromkeys(value))


def rfc2822(epoch: Optional[float]) -> Optional[str]:
    """'Wed, 14 Aug 2019 19:53:48 -0000', as the people list shows times."""
    if epoch is None:
        return None
    return format_datetime(datetime.fromtimestamp(epoch, timezone.utc), usegmt=False).replace("+0000", "-0000")


# --- access --------------------------------------------------------------------------------------


def team_buckets(principal, namespaces: Iterable, team_id: str, *, write: bool = False) -> list[str]:
    """The buckets (namespaces) of `team_id`, if this principal belongs to that team; 404 alike
    for a team that does not exist and another team's, 403 for a write with a credential of one
    bucket (team administration takes an org-level credential)."""
    buckets = sorted(ns.name for ns in namespaces if ns.organization == team_id)
    if not buckets or principal.organization != team_id:
        raise NotFound(f"team {team_id!r} not found")
    if write and principal.level != "org":
        raise ApiError(403, "changing a team takes an org-level credential of that team", "forbidden")
    return buckets


# --- presentation ------------------------------------------------------------------------------


def person_item(person: dict, role_name: Optional[str], *, with_email: bool) -> dict:
    """An item of Team Members List; the e-mail only for tokens with account:email. People
    join a team here without signing in anywhere, so joining is their last sign-in until a
    record says otherwise (Runscope lists only people who have signed in)."""
    out = {
        "name": person["name"],
        "created_at": rfc2822(person["created_at"]),
        "id": person["id"],
        "last_login_at": rfc2822(person.get("last_login_at") or person["created_at"]),
        "role_name": role_name,
        "uuid": person["id"],
    }
    if with_email:
        out["email"] = person["email"]
    return out


def person_detail(person: dict, role_name: Optional[str]) -> dict:
    return {
        "id": person["id"],
        "uuid": person["id"],
        "name": person["name"],
        "email": person["email"],
        "created_at": int(person["created_at"]),
        "role_name": role_name,
    }


def team_creator(people: Iterable[dict], principal) -> dict:
    """Team Request Count's `creator_*`: the team's first member; while it has none, the
    credential asking, which is the team's own (its members are records, its credentials are
    who acts for it; a test's `created_by` is a credential too). The e-mail, as the people
    list's, only for tokens with account:email."""
    first = min(people, key=lambda p: p["created_at"], default=None)
    if first is not None:
        creator = {"creator_name": first["name"], "creator_email": first["email"], "creator_id": first["id"]}
    else:
        creator = {
            "creator_name": principal.credential,
            "creator_email": principal.email,
            "creator_id": principal.client_id,
        }
    if "account:email" not in principal.scopes:
        creator["creator_email"] = None
    return creator


def group_detail(group: dict, people: dict[str, dict]) -> dict:
    users = [
        {"email": people[u]["email"], "name": people[u]["name"], "uuid": u}
        for u in group.get("user_uuids", [])
        if u in people
    ]
    return {
        "bucket_keys": group.get("bucket_keys") or None,
        "name": group["name"],
        "user_count": len(users),
        "users": users or None,
        "uuid": group["uuid"],
    }


def built_in_roles(team_id: str) -> list[dict]:
    """The team's built-in roles, with uuids that are the same for the team on every replica."""
    return [
        {
            "uuid": str(uuid.uuid5(uuid.NAMESPACE_URL, f"assay:runscope-role:{team_id}:{name}")),
            "name": name,
            "permissions": list(permissions),
        }
        for name, permissions in BUILT_IN_ROLES.items()
    ]


def team_detail(team_id: str) -> dict:
    """A team is an organization; its name is its id (`uuid` beside `id`, as clients read either)."""
    return {"id": team_id, "uuid": team_id, "name": team_id}


def role_detail(role: dict) -> dict:
    return {"name": role["name"], "permissions": role["permissions"], "uuid": role["uuid"]}


def agent_item(node: dict, team_id: str) -> dict:
    meta, status = node.get("metadata") or {}, node.get("status") or {}
    addresses = {a.get("type"): a.get("address") for a in status.get("addresses") or []}
    info = status.get("nodeInfo") or {}
    return {
        "version": info.get("kubeletVersion"),
        "agent_id": meta.get("uid"),
        "name": (meta.get("labels") or {}).get(AGENT_LABEL),
        "team_id": team_id,
        "install_dir": (meta.get("annotations") or {}).get("assay.dev/install-dir"),
        "hostname": addresses.get("Hostname") or meta.get("name"),
        "ip_address": addresses.get("InternalIP"),
        "host_os": info.get("osImage"),
    }


def node_ready(node: dict) -> bool:
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (node.get("status") or {}).get("conditions") or []
    )


def monitor_integrations(monitors: Iterable[dict]) -> list[dict]:
    """The integrations the Monitors' environments declare, once each, in order of appearance."""
    found: dict[str, dict] = {}
    for monitor in monitors:
        for env in (monitor.get("spec") or {}).get("environments") or []:
            for integration in env.get("integrations") or []:
                if integration.get("id") and integration["id"] not in found:
                    found[integration["id"]] = {
                        "description": integration.get("description") or "",
                        "id": integration["id"],
                        "type": integration.get("integrationType") or "",
                        "uuid": integration["id"],
                    }
    return list(found.values())


# --- the records -----------------------------------------------------------------------------------


class RunscopeTeams:
    def __init__(self, store: Store):
        self.store = store

    @staticmethod
    def _key(scope: str, item_id: str) -> str:
        return f"{scope}/{item_id}"

    def _get(self, collection: str, team_id: str, item_id: str, what: str) -> dict:
        doc = self.store.get_record(collection, self._key(team_id, item_id)) if "/" not in item_id else None
        if doc is None:
            raise NotFound(f"{what} {item_id!r} not found in team {team_id!r}")
        return doc

    def _referenced(self, collection: str, team_id: str, item_id, field: str) -> dict:
        """A record a request body names: an unknown one makes the body invalid (400), not a 404."""
        doc = (
            self.store.get_record(collection, self._key(team_id, item_id))
            if isinstance(item_id, str) and "/" not in item_id
            else None
        )
        if doc is None:
            raise InvalidInput(f"{field}: {item_id!r} is not in team {team_id!r}")
        return doc

    def _put(self, collection: str, team_id: str, item_id: str, doc: dict) -> dict:
        self.store.put_record(collection, self._key(team_id, item_id), doc, project=team_id)
        return doc

    # people ----------------------------------------------------------------------------------------

    def people(self, team_id: str) -> list[dict]:
        return self.store.list_records(PEOPLE, project=team_id)

    def role_name(self, team_id: str, role_uuid: Optional[str]) -> Optional[str]:
        if not role_uuid:
            return None
        role = self._built_in_role(team_id, role_uuid) or self.store.get_record(ROLES, self._key(team_id, role_uuid))
        return role["name"] if role else None

    @staticmethod
    def _built_in_role(team_id: str, role_uuid: Any) -> Optional[dict]:
        return next((r for r in built_in_roles(team_id) if r["uuid"] == role_uuid), None)

    def _referenced_role(self, team_id: str, role_uuid: Any) -> dict:
        return self._built_in_role(team_id, role_uuid) or self._referenced(ROLES, team_id, role_uuid, "role_uuid")

    def _changeable_role(self, team_id: str, role_id: str) -> dict:
        if self._built_in_role(team_id, role_id):
            raise InvalidInput(f"role {role_id!r} is built in; it cannot be changed or deleted")
        return self._get(ROLES, team_id, role_id, "role")

    def person_by_email(self, team_id: str, email: str) -> dict:
        wanted = email.strip().lower()
        person = next((p for p in self.people(team_id) if p["email"] == wanted), None)
        if person is None:
            raise NotFound(f"{email!r} is not a member of team {team_id!r}")
        return person

    def list_people(self, team_id: str, *, page: int, count: int, with_email: bool) -> list[dict]:
        if not 1 <= count <= MAX_PEOPLE_PAGE:
            raise InvalidInput(f"count must be between 1 and {MAX_PEOPLE_PAGE}, not {count}")
        if page < 1:
            raise InvalidInput(f"page must be 1 or more, not {page}")
        chosen = self.people(team_id)[(page - 1) * count : page * count]
        return [person_item(p, self.role_name(team_id, p.get("role_uuid")), with_email=with_email) for p in chosen]

    def person(self, team_id: str, email: str) -> dict:
        person = self.person_by_email(team_id, email)
        return person_detail(person, self.role_name(team_id, person.get("role_uuid")))

    def person_groups(self, team_id: str, email: str) -> list[dict]:
        person = self.person_by_email(team_id, email)
        return [
            {"uuid": g["uuid"], "name": g["name"], "team_uuid": team_id}
            for g in self.store.list_records(GROUPS, project=team_id)
            if person["id"] in g.get("user_uuids", [])
        ]

    def invite(self, team_id: str, body: dict, invited_by: str) -> dict:
        """Invite (and add) people: each address becomes a member with the role and groups given.
        Unknown roles or groups refuse the whole request; a bad or present address is an error
        of its own and the others go on."""
        emails = body.get("emails")
        if isinstance(emails, str):
            emails = [e for e in emails.split(",") if e.strip()]
        if not isinstance(emails, list) or not emails or not all(isinstance(e, str) for e in emails):
            raise InvalidInput("emails must be a list of e-mail addresses (or one string, separated by commas)")
        role_uuid = body.get("role_uuid") or None
        if role_uuid is not None:
            self._referenced_role(team_id, role_uuid)
        group_uuids = check_uuids(body.get("group_uuids"), "group_uuids")
        groups = [self._referenced(GROUPS, team_id, g, "group_uuids") for g in group_uuids]
        present = {p["email"] for p in self.people(team_id)}
        successes, errors = [], []
        for raw in emails:
            try:
                email = check_email(raw)
            except InvalidInput as exc:
                errors.append({"email": raw, "error": exc.message})
                continue
            if email in present:
                errors.append({"email": email, "error": f"{email} is already a member of the team"})
                continue
            now = time.time()
            person = {
                "id": str(uuid.uuid4()),
                "name": email.split("@", 1)[0],
                "email": email,
                "created_at": now,
                "last_login_at": None,
                "role_uuid": role_uuid,
            }
            self._put(PEOPLE, team_id, person["id"], person)
            invite_id = str(uuid.uuid4())
            self._put(
                INVITES,
                team_id,
                invite_id,
                {
                    "uuid": invite_id,
                    "email": email,
                    "role_uuid": role_uuid,
                    "group_uuids": group_uuids,
                    "invited_by": invited_by,
                    "created_at": now,
                },
            )
            for group in groups:
                group["user_uuids"] = [*group.get("user_uuids", []), person["id"]]
                self._put(GROUPS, team_id, group["uuid"], group)
            present.add(email)
            successes.append(email)
        return {"successes": successes, "errors": errors}

    def assign_role(self, team_id: str, body: dict) -> list[dict]:
        role_uuid = body.get("role_uuid")
        if not isinstance(role_uuid, str) or not role_uuid:
            raise InvalidInput("role_uuid is required")
        role = self._referenced_role(team_id, role_uuid)
        user_uuids = check_uuids(body.get("user_uuids"), "user_uuids")
        if not user_uuids:
            raise InvalidInput("user_uuids must list at least one person")
        people = {p["id"]: p for p in self.people(team_id)}
        unknown = [u for u in user_uuids if u not in people]
        if unknown:
            raise InvalidInput(f"not members of team {team_id!r}: {', '.join(unknown)}")
        for user in user_uuids:
            self._put(PEOPLE, team_id, user, {**people[user], "role_uuid": role_uuid})
        return [person_detail({**people[u], "role_uuid": role_uuid}, role["name"]) for u in user_uuids]

    def remove_person(self, team_id: str, email: str) -> None:
        person = self.person_by_email(team_id, email)
        if len(self.people(team_id)) <= 1:
            raise Conflict(f"{person['email']} is the only member of team {team_id!r} and cannot be removed")
        for group in self.store.list_records(GROUPS, project=team_id):
            if person["id"] in group.get("user_uuids", []):
                group["user_uuids"] = [u for u in group["user_uuids"] if u != person["id"]]
                self._put(GROUPS, team_id, group["uuid"], group)
        self.store.delete_record(PEOPLE, self._key(team_id, person["id"]))

    # groups ----------------------------------------------------------------------------------------

    def groups(self, team_id: str) -> list[dict]:
        return [{"name": g["name"], "uuid": g["uuid"]} for g in self.store.list_records(GROUPS, project=team_id)]

    def _group_view(self, team_id: str, group: dict) -> dict:
        return group_detail(group, {p["id"]: p for p in self.people(team_id)})

    def create_group(self, team_id: str, body: dict) -> dict:
        group = {
            "uuid": str(uuid.uuid4()),
            "name": check_name(body.get("name"), "name"),
            "bucket_keys": [],
            "user_uuids": [],
        }
        return self._group_view(team_id, self._put(GROUPS, team_id, group["uuid"], group))

    def group(self, team_id: str, group_id: str) -> dict:
        return self._group_view(team_id, self._get(GROUPS, team_id, group_id, "group"))

    def modify_group(self, team_id: str, group_id: str, body: dict, team_buckets: list[str]) -> dict:
        group = self._get(GROUPS, team_id, group_id, "group")
        if "name" in body:
            group["name"] = check_name(body["name"], "name")
        if "bucket_keys" in body:
            keys = check_uuids(body["bucket_keys"], "bucket_keys")
            unknown = [k for k in keys if k not in team_buckets]
            if unknown:
                raise InvalidInput(f"not buckets of team {team_id!r}: {', '.join(unknown)}")
            group["bucket_keys"] = keys
        if "user_uuids" in body:
            users = check_uuids(body["user_uuids"], "user_uuids")
            people = {p["id"] for p in self.people(team_id)}
            unknown = [u for u in users if u not in people]
            if unknown:
                raise InvalidInput(f"not members of team {team_id!r}: {', '.join(unknown)}")
            group["user_uuids"] = users
        return self._group_view(team_id, self._put(GROUPS, team_id, group_id, group))

    def delete_group(self, team_id: str, group_id: str) -> None:
        self._get(GROUPS, team_id, group_id, "group")
        self.store.delete_record(GROUPS, self._key(team_id, group_id))

    # roles -----------------------------------------------------------------------------------------

    def roles(self, team_id: str) -> list[dict]:
        stored = self.store.list_records(ROLES, project=team_id)
        return [role_detail(r) for r in [*built_in_roles(team_id), *stored]]

    def create_role(self, team_id: str, body: dict) -> dict:
        role = {
            "uuid": str(uuid.uuid4()),
            "name": check_name(body.get("name"), "name"),
            "permissions": check_permissions(body.get("permissions", [])),
        }
        return role_detail(self._put(ROLES, team_id, role["uuid"], role))

    def role(self, team_id: str, role_id: str) -> dict:
        return role_detail(self._built_in_role(team_id, role_id) or self._get(ROLES, team_id, role_id, "role"))

    def modify_role(self, team_id: str, role_id: str, body: dict) -> dict:
        role = self._changeable_role(team_id, role_id)
        if "name" not in body and "permissions" not in body:
            raise InvalidInput("give permissions (and/or name) to change")
        if "name" in body:
            role["name"] = check_name(body["name"], "name")
        if "permissions" in body:
            role["permissions"] = check_permissions(body["permissions"])
        return role_detail(self._put(ROLES, team_id, role_id, role))

    def delete_role(self, team_id: str, role_id: str) -> None:
        """People who had the role keep their membership, without a role."""
        self._changeable_role(team_id, role_id)
        for person in self.people(team_id):
            if person.get("role_uuid") == role_id:
                self._put(PEOPLE, team_id, person["id"], {**person, "role_uuid": None})
        self.store.delete_record(ROLES, self._key(team_id, role_id))

    # e-mail domains and custom e-mails ------------------------------------------------------------------

    def email_domains(self, team_id: str) -> dict:
        return self.store.get_record(EMAIL_DOMAINS, team_id) or {
            "team_uuid": team_id,
            "email_whitelist_domains": "",
            "updated_by": None,
            "updated_at": None,
        }

    def add_email_domains(self, team_id: str, body: dict, updated_by: str) -> dict:
        added = parse_domains(body.get("domainNames"))
        current = [d for d in self.email_domains(team_id)["email_whitelist_domains"].split(",") if d]
        doc = {
            "team_uuid": team_id,
            "email_whitelist_domains": ",".join(dict.fromkeys([*current, *added])),
            "updated_by": updated_by,
            "updated_at": int(time.time()),
        }
        self.store.put_record(EMAIL_DOMAINS, team_id, doc, project=team_id)
        return doc

    def custom_emails(self, bucket_key: str) -> list[dict]:
        return self.store.list_records(CUSTOM_EMAILS, project=bucket_key)

    def add_custom_email(self, bucket_key: str, bucket_team: Optional[str], body: dict, created_by: str) -> dict:
        team_uuid = body.get("team_uuid")
        if not isinstance(team_uuid, str) or not team_uuid:
            raise InvalidInput("team_uuid is required")
        if team_uuid != bucket_team:
            raise InvalidInput(f"bucket {bucket_key} is not a bucket of team {team_uuid!r}")
        email = check_email(body.get("email"))
        domains = self.email_domains(team_uuid)["email_whitelist_domains"].split(",")
        if email_domain(email) not in domains:
            raise InvalidInput(f"the domain of {email} is not on team {team_uuid}'s e-mail domain whitelist")
        description = body.get("description")
        if description is not None and (not isinstance(description, str) or len(description) > 1024):
            raise InvalidInput("description must be text of at most 1024 characters")
        existing = next((e for e in self.custom_emails(bucket_key) if e["custom_email"] == email), None)
        if existing is not None:
            return existing
        doc = {
            "uuid": str(uuid.uuid4()),
            "custom_email": email,
            "description": description or "",
            "bucket_key": bucket_key,
            "team_uuid": team_uuid,
            "created_by": body.get("created_by") if isinstance(body.get("created_by"), str) else created_by,
            "created_at": int(time.time()),
        }
        self.store.put_record(CUSTOM_EMAILS, self._key(bucket_key, doc["uuid"]), doc, project=bucket_key)
        return doc

    def delete_custom_email(self, bucket_key: str, body: dict) -> None:
        email = body.get("email")
        if not isinstance(email, str) or not email.strip():
            raise InvalidInput("email is required")
        found = next((e for e in self.custom_emails(bucket_key) if e["custom_email"] == email.strip().lower()), None)
        if found is None:
            raise NotFound(f"Email {email} is not part of the bucket {bucket_key}")
        self.store.delete_record(CUSTOM_EMAILS, self._key(bucket_key, found["uuid"]))
