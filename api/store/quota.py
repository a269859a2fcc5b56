"""Upload quotas: how much of the shared volume one run and one namespace may fill.

Usage is what the store's index says is stored (the `documents` rows: count and bytes), per
run and per namespace (each row carries its run's namespace), so it survives a restart and
needs no counter of its own. Archives the gateway builds from a load
test's shards are not counted: they follow from documents that were.

A document is checked twice: before its file is written (nothing is written for a refused
upload), and again in the transaction that records it, so uploads racing each other cannot
together pass a limit that each alone would not; the loser's file is removed.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Usage:
    documents: int = 0
    bytes: int = 0


@dataclass(frozen=True)
class Quota:
    """Limits per run and per namespace; 0 means no limit."""

    run_bytes: int = 0
    run_documents: int = 0
    namespace_bytes: int = 0
    namespace_documents: int = 0

    @classmethod
    def of(cls, settings) -> Quota:
        return cls(
            run_bytes=settings.upload_run_max_bytes,
            run_documents=settings.upload_run_max_documents,
            namespace_bytes=settings.upload_namespace_max_bytes,
            namespace_documents=settings.upload_namespace_max_documents,
        )

    def check(self, run_id: str, namespace: str, run: Usage, in_namespace: Usage, size: int) -> None:
        """Raise QuotaExceeded when one more document of `size` bytes passes a limit."""
        for scope, limit, used, adding, unit in (
            (f"run {run_id}", self.run_documents, run.documents, 1, "documents"),
            (f"run {run_id}", self.run_bytes, run.bytes, size, "bytes"),
            (f"namespace {namespace}", self.namespace_documents, in_namespace.documents, 1, "documents"),
            (f"namespace {namespace}", self.namespace_bytes, in_namespace.bytes, size, "bytes"),
        ):
            if limit and used + adding > limit:
                raise QuotaExceeded(scope, unit, limit, used, adding)


class QuotaExceeded(Exception):
    def __init__(self, scope: str, unit: str, limit: int, used: int, adding: int):
        self.scope, self.unit, self.limit, self.used, self.adding = scope, unit, limit, used, adding
        what = "one more document" if unit == "documents" else f"a document of {adding} bytes"
        super().__init__(f"the upload quota of {scope} is {limit} {unit}; {used} are stored and {what} does not fit")

    def details(self) -> dict:
        return {
            "quota": f"{self.scope.split()[0]}_{self.unit}",
            "limit": self.limit,
            "used": self.used,
            "adding": self.adding,
        }
