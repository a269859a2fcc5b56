"""`python -m assay.runner`: the program every run Job executes, and a local CLI.

    python -m assay.runner loadtest --spec FILE [--shard-index N] [--shards N]
        run one shard of a LoadTest (in a Job pod: the index comes from JOB_COMPLETION_INDEX)
        and write its summary to the termination message file ($ASSAY_TERMINATION_LOG)
    python -m assay.runner run FILE.yaml
        run a LoadTest manifest on this machine, every shard in turn, and print the result
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
from pathlib import Path

from .loadtest import run_shard
from .manifest import ManifestError, load_manifest, loadtest_spec
from .summary import ShardSummary, merge


def write_termination_message(text: str) -> None:
    path = os.environ.get("ASSAY_TERMINATION_LOG")
    if path:
        Path(path).write_text(text)


def cmd_loadtest(args: argparse.Namespace) -> int:
    try:
        spec = loadtest_spec(load_manifest(args.spec), args.spec)
    except ManifestError as exc:
        write_termination_message(ShardSummary(error=str(exc)).to_message())
        print(f"assay-runner: {exc}", file=sys.stderr)
        return 2
    index = args.shard_index if args.shard_index is not None else int(os.environ.get("JOB_COMPLETION_INDEX", "0"))
    shards = args.shards or int(os.environ.get("ASSAY_SHARDS", spec.shards))
    print(f"assay-runner: shard {index + 1}/{shards}, run {os.environ.get('ASSAY_RUN_ID', '-')}", flush=True)
    summary = asyncio.run(run_shard(spec, index, shards))
    message = summary.to_message()
    write_termination_message(message)
    print(message, flush=True)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        spec = loadtest_spec(load_manifest(args.file), args.file)
    except ManifestError as exc:
        print(f"assay-runner: {exc}", file=sys.stderr)
        return 2
    results = []
    for index in range(spec.shards):
        print(f"shard {index + 1}/{spec.shards} ...", flush=True)
        results.append(asyncio.run(run_shard(spec, index, spec.shards)))
    total = merge(results)
    avg = f"{total.avg_ms:.1f}" if total.avg_ms is not None else "-"
    print(f"requests {total.requests}  failures {total.failures}  "
          f"min {total.min_ms or 0:.1f} ms  avg {avg} ms  max {total.max_ms or 0:.1f} ms")
    return 1 if total.failures or total.requests == 0 else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m assay.runner", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("loadtest", help="run one shard of a LoadTest (inside a Job pod)")
    p.add_argument("--spec", required=True, help="the LoadTest manifest (YAML or JSON)")
    p.add_argument("--shard-index", type=int, help="default: $JOB_COMPLETION_INDEX")
    p.add_argument("--shards", type=int, help="default: $ASSAY_SHARDS or spec.shards")
    p.set_defaults(func=cmd_loadtest)
    p = sub.add_parser("run", help="run a manifest on this machine")
    p.add_argument("file")
    p.set_defaults(func=cmd_run)
    args = parser.parse_args(argv)
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
