"""The result store: documents and archives, indexed by a database.

    Store(root, retention_days=90,      runs, per-project numbers, documents, archives, records,
          database_url=None,            authorization codes and revoked tokens; the index in
          objects_url=None)             SQLite under root or in PostgreSQL (backends.py), the
                                        documents as files under root or in S3 (objects.py)
    RunRecord, ArchiveRecord, DocumentRecord
    ResultIngest(store)                 what an upload from a runner does (results.py)
    Invalid, DocumentConflict,          why an upload is refused: the store's own errors, which
    RunConflict, QuotaExceeded          the ingest router maps to HTTP answers
    MonitorResultRecord                 a Monitor result's row in the index lists read (monitor_results.py)
    ProgressRecord, merge_progress      a running load test's live figures (progress.py)
    Quota, QuotaExceeded                upload quotas per run and namespace (quota.py)

See store.py for the layout on disk and the durability rules.
"""

from .monitor_results import MonitorResultRecord
from .progress import merge_progress, shard_view
from .quota import Quota, QuotaExceeded, Usage
from .results import Accepted, ResultIngest, Upload, run_summary
from .store import (
    ARCHIVE_KINDS,
    FINISHED_STATES,
    ArchiveRecord,
    DocumentConflict,
    DocumentRecord,
    Invalid,
    ProgressRecord,
    RunConflict,
    RunRecord,
    Store,
    StoreError,
    archive_counter,
)

__all__ = [
    "ARCHIVE_KINDS",
    "FINISHED_STATES",
    "Accepted",
    "ArchiveRecord",
    "DocumentConflict",
    "DocumentRecord",
    "Invalid",
    "MonitorResultRecord",
    "ProgressRecord",
    "Quota",
    "QuotaExceeded",
    "ResultIngest",
    "RunConflict",
    "RunRecord",
    "Store",
    "StoreError",
    "Upload",
    "Usage",
    "archive_counter",
    "merge_progress",
    "run_summary",
    "shard_view",
]
