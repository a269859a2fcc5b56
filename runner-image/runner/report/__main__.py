"""`python -m assay.runner.report`: build a run's archives, or compare two report archives.

python -m assay.runner.report build SHARD.json... --out DIR [--spec LOADTEST.yaml]
                              [--criterion TEXT ...] [--load-test NAME] [--label TEXT]
    merge the per-shard metrics, judge the criteria (the manifest's and --criterion's) on
    the merged whole, and write DIR/result-<run>.zip and DIR/report-<run>.zip
python -m assay.runner.report compare A.zip B.zip --out FILE.zip [--reverse]
    compare two report archives; the run that started first is the baseline unless --reverse
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

from ..manifest import load_manifest, loadtest_spec
from . import ArchiveError, build_comparison_report, build_report_archive, build_result_archive, load_shards


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "-", text).strip("-.") or "run"


def cmd_build(args: argparse.Namespace) -> int:
    criteria, load_test = list(args.criterion), args.load_test
    if args.spec:
        manifest = load_manifest(args.spec)
        criteria = [*loadtest_spec(manifest, str(args.spec)).criteria, *criteria]
        load_test = load_test or (manifest.get("metadata") or {}).get("name")
    merged = load_shards(args.shards, criteria=criteria)
    meta = {"loadTest": load_test, "label": args.label, "runId": args.run_id or merged.run_id}
    meta = {k: v for k, v in meta.items() if v}
    name = _file_part(str(meta.get("runId") or "run"))
    result = build_result_archive(args.shards, args.out / f"result-{name}.zip", meta=meta)
    report = build_report_archive(merged, args.out / f"report-{name}.zip", meta=meta)
    print(result)
    print(report)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    print(build_comparison_report(args.a, args.b, args.out, reverse=args.reverse))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assay.runner.report", description=__doc__.split("\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    build = commands.add_parser("build", help="write the result and report archives of a run's shard metrics")
    build.add_argument("shards", nargs="+", type=Path, metavar="SHARD.json")
    build.add_argument("--out", type=Path, required=True, metavar="DIR")
    build.add_argument(
        "--spec",
        type=Path,
        metavar="LOADTEST.yaml",
        help="the LoadTest manifest: its criteria are judged, its name shown",
    )
    build.add_argument(
        "--criterion",
        action="append",
        default=[],
        metavar="TEXT",
        help="a pass criterion such as 'p95 < 300ms' (repeatable)",
    )
    build.add_argument("--load-test", help="the load test's name, shown in the report (default: the manifest's)")
    build.add_argument("--label", help="a custom report label, shown in comparisons")
    build.add_argument("--run-id", help="the run id (default: the one in the metrics)")
    build.set_defaults(func=cmd_build)
    compare = commands.add_parser("compare", help="compare two report archives")
    compare.add_argument("a", type=Path, metavar="A.zip")
    compare.add_argument("b", type=Path, metavar="B.zip")
    compare.add_argument("--out", type=Path, required=True, metavar="FILE.zip")
    compare.add_argument("--reverse", action="store_true", help="make the newer run the baseline")
    compare.set_defaults(func=cmd_compare)
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (ArchiveError, OSError, ValueError) as exc:
        print(f"assay report: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
