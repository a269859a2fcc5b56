"""Load-test result archives, report archives and comparison reports.

    load_shards(shard_files, criteria=())               the load engine's merge, criteria judged
    build_result_archive(shard_files, out, meta=...)   raw per-shard metrics + manifest.json
                                                       (+ xlt/: timer records in XLT's layout, xlt.py)
    build_report_archive(merged, out, meta=...)        index.html, report.json and CSV tables
    read_report(archive)                               a report archive's report.json
    build_comparison_report(a, b, out, reverse=False)  the older run as baseline, or reversed

`meta` names the run: `loadTest`, `label` (a custom report label, shown in comparisons),
`runId`, `shards`, `createdAt`; any other entry is shown as run metadata. The command line is
`python -m assay.runner.report build|compare`.
"""

from .archive import ArchiveError, build_report_archive, build_result_archive, read_report, verify_result_archive
from .compare import build_comparison_report, compare
from .metrics import load_shards
from .summary import summarize

__all__ = [
    "ArchiveError",
    "build_comparison_report",
    "build_report_archive",
    "build_result_archive",
    "compare",
    "load_shards",
    "read_report",
    "summarize",
    "verify_result_archive",
]
