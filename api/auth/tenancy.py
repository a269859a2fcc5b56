"""Tenancy: which namespaces a principal may reach (see the package docstring for the mapping
of XTC orgs and projects, Runscope teams and buckets, Loadmill and VNG accounts)."""

from __future__ import annotations

from ..errors import ApiError
from .index import CredentialIndex
from .policy import Principal, project_namespace, reachable_namespaces


class Tenancy:
    def __init__(self, index: CredentialIndex):
        self.index = index

    def project_namespace(self, principal: Principal, org: str, project: str) -> str:
        """The namespace of XTC's `orgs/<org>/projects/<project>` for this principal. 404 alike
        for a project that does not exist, is not in that org, or is out of this principal's
        reach (another project's credential, an org credential the project disabled): a
        caller learns nothing about projects it cannot use."""
        namespace = project_namespace(principal, org, project, self.index.namespace)
        if namespace is None:
            raise ApiError(404, f"no project {project!r} in organization {org!r}", "not_found")
        return namespace

    def namespaces_for(self, principal: Principal) -> list[str]:
        """Every namespace this principal reaches, sorted: for API families without an org or
        project in the path (Loadmill, VNG, Runscope buckets)."""
        return reachable_namespaces(principal, self.index.namespaces())
