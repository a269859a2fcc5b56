"""A team's built-in roles: listed first, the same on every replica, assignable, unchangeable."""

from __future__ import annotations

import pytest

from assay.api.services import InvalidInput, NotFound
from assay.api.services.runscope_teams import PERMISSIONS, RunscopeTeams, built_in_roles


@pytest.fixture
def teams(tmp_path, make_store):
    with make_store(tmp_path / "store") as store:
        yield RunscopeTeams(store)


def test_a_new_team_has_the_administrators_role_with_every_permission(teams):
    (admins,) = teams.roles("acme")
    assert (admins["name"], admins["permissions"]) == ("Administrators", list(PERMISSIONS))
    assert built_in_roles("acme") == [admins]
    assert built_in_roles("globex")[0]["uuid"] != admins["uuid"]
    assert teams.role("acme", admins["uuid"]) == admins
    with pytest.raises(NotFound):
        teams.role("globex", admins["uuid"])


def test_own_roles_follow_the_built_in_ones_which_cannot_change(teams):
    admins = built_in_roles("acme")[0]
    viewer = teams.create_role("acme", {"name": "Viewer", "permissions": ["team:people:view"]})
    assert [r["name"] for r in teams.roles("acme")] == ["Administrators", "Viewer"]
    for change in (
        lambda: teams.modify_role("acme", admins["uuid"], {"name": "Mine"}),
        lambda: teams.delete_role("acme", admins["uuid"]),
    ):
        with pytest.raises(InvalidInput):
            change()
    teams.delete_role("acme", viewer["uuid"])
    assert teams.roles("acme") == [admins]


def test_a_built_in_role_is_given_to_people_like_any_other(teams):
    admins = built_in_roles("acme")[0]
    teams.invite("acme", {"emails": ["grace@example.com"], "role_uuid": admins["uuid"]}, "ac_team")
    person = teams.person("acme", "grace@example.com")
    assert person["role_name"] == "Administrators"
    assert teams.assign_role("acme", {"role_uuid": admins["uuid"], "user_uuids": [person["uuid"]]})
    with pytest.raises(InvalidInput):
        teams.invite("acme", {"emails": ["ada@example.com"], "role_uuid": built_in_roles("globex")[0]["uuid"]}, "x")
