"""`python -m assay.runner`: the program every run Job executes, and a local CLI.

    python -m assay.runner loadtest --spec FILE [--shard-index N] [--shards N] [--out FILE] [--processes N]
        run one shard of a LoadTest (in a Job pod: the index comes from JOB_COMPLETION_INDEX),
        write its metrics JSON (--out, $ASSAY_RESULTS_DIR/shard-<index>.json) and its summary
        to the termination message file ($ASSAY_TERMINATION_LOG); with $ASSAY_GATEWAY_URL,
        $ASSAY_UPLOAD_TOKEN and $ASSAY_RUN_ID set, upload the metrics to the gateway (exit
        status 3 when they could not be stored, after ~2 minutes of retries) and, while it
        runs, push its live progress there every 2 s (progress.py; never failing the run)
    python -m assay.runner testsuite --spec FILE
    python -m assay.runner monitor --spec FILE [--subtests FILE]
        run a TestSuite or a Monitor in a Job pod: the run's options come from
        $ASSAY_RUN_OPTIONS (JSON), a Monitor's region from $ASSAY_REGION ($ASSAY_AGENT); the
        full result (suite-run.json, Loadmill shape; monitor-result.json, Runscope shape) is
        uploaded to $ASSAY_GATEWAY_URL with $ASSAY_UPLOAD_TOKEN when both are set, and a
        summary goes to the termination message (execute.py, the path a tick's members take
        too). Exit status: 0 the run finished (passed or not: the summary says which), 2 it
        could not run
    python -m assay.runner batch --spec FILE|DIR
        run this pod's share of a schedule tick: several Monitors at once (batch.py)
    python -m assay.runner run FILE.yaml [--env NAME] [--junit OUT.xml] [--var k=v ...]
        run a manifest on this machine and print the result as it goes:
        - a LoadTest: all its shards at once, with live progress and a final table; --out
          writes the merged metrics JSON, --processes spreads the load over processes;
        - a Monitor (Runscope API test): its steps in the environment --env (default: the
          monitor's default environment); --var overrides variables. Further Monitors in the
          same file (multi-document YAML) serve as its subtests, by name or metadata.uid;
        - a TestSuite: its CI-enabled flows; --var overrides parameters.
        Exit status: 0 passed, 1 failed, 2 the definition is invalid (the message names the
        field, e.g. spec.steps[2].url).

In a pod, the settings come from the container's ASSAY_* variables
(assay.crds.contracts.runner_settings), read once here; only the folders of secret values and
parameter pools are read where they are used (manifest.py, and the load engine's processes).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import sys
from pathlib import Path

import yaml

from assay.crds.contracts.runner_settings import RunnerSettings
from assay.crds.contracts.summary import ShardSummary
from assay.crds.contracts.upload import SHARD_DOCUMENT

from .execute import CannotRun, DefinitionError, Uploader, execute, log, summary_message, write_termination_message
from .manifest import ManifestError, load_manifest, loadtest_spec, with_run_secrets


def cmd_loadtest(args: argparse.Namespace) -> int:
    settings: RunnerSettings = args.settings
    try:
        spec = loadtest_spec(load_manifest(args.spec), args.spec)
    except ManifestError as exc:
        write_termination_message(settings, ShardSummary(error=str(exc)).to_message())
        print(f"assay-runner: {exc}", file=sys.stderr)
        return 2
    from .load import cli as load_cli
    from .progress import pusher_for

    index = args.shard_index if args.shard_index is not None else settings.job_completion_index or 0
    shards = args.shards or settings.shards or spec.shards
    run_id = settings.run_id or ""
    print(f"assay-runner: shard {index + 1}/{shards}, run {run_id or '-'}", flush=True)
    # With a gateway, live progress goes there too, for the operator to show in the status.
    pusher = pusher_for(settings, index, log=log)
    try:
        with pusher or contextlib.nullcontext():
            metrics = load_cli.run_pod_shard(
                spec,
                index,
                shards,
                run_id=run_id,
                processes=args.processes,
                out=args.out,
                results_dir=settings.results_dir,
                verify_tls=not args.insecure,
                on_progress=pusher.update if pusher else None,
                abort_requested=(lambda: pusher.abort_reason) if pusher else None,
            )
    except load_cli.LoadSpecError as exc:
        write_termination_message(settings, ShardSummary(shard=index, error=str(exc)).to_message())
        print(f"assay-runner: {exc}", file=sys.stderr)
        return 2
    print(load_cli.table(metrics), flush=True)
    summary = metrics.summary()
    uploader = Uploader(
        settings,
        settings.run_id,
        {
            "project": settings.project,
            "owner_name": settings.owner_name,
            "owner_uid": settings.owner_uid,
            "shards": shards,
        },
    )
    upload_error = uploader.upload(
        settings.owner_kind or "LoadTest", index, SHARD_DOCUMENT.format(index=index), metrics.to_json().encode()
    )
    if upload_error:
        # A lost result must not look like success: the shard fails, and says why.
        summary.error = f"result upload failed: {upload_error}"[:500]
        print(f"assay-runner: {summary.error}", file=sys.stderr, flush=True)
    write_termination_message(settings, summary.to_message())
    return 3 if upload_error else 0


def cmd_run(args: argparse.Namespace) -> int:
    try:
        documents = load_documents(args.file)
    except ManifestError as exc:
        print(f"assay-runner: {exc}", file=sys.stderr)
        return 2
    kind = documents[0].get("kind", "LoadTest")
    if kind == "LoadTest":
        return run_loadtest_manifest(args)
    if kind == "Monitor":
        return run_monitor_manifest(
            documents, args.file, environment=args.env, variables=dict(args.var), junit_path=args.junit
        )
    if kind == "TestSuite":
        return run_suite_manifest(documents[0], args.file, parameters=dict(args.var), junit_path=args.junit)
    print(
        f"assay-runner: {args.file}: kind {kind!r} cannot be run here (LoadTest, Monitor, TestSuite)", file=sys.stderr
    )
    return 2


def load_documents(path: str) -> list[dict]:
    """Every document of a (multi-document) YAML or JSON manifest; each must be a resource."""
    try:
        documents = [d for d in yaml.safe_load_all(Path(path).read_text()) if d is not None]
    except (OSError, yaml.YAMLError) as exc:
        raise ManifestError(f"{path}: {exc}") from exc
    if not documents:
        raise ManifestError(f"{path}: no document")
    for index, document in enumerate(documents):
        if not isinstance(document, dict) or "spec" not in document:
            raise ManifestError(f"{path}: document {index + 1} is not a custom resource (no 'spec')")
    return [with_run_secrets(document, path) for document in documents]


def run_loadtest_manifest(args: argparse.Namespace) -> int:
    try:
        spec = loadtest_spec(load_manifest(args.file), args.file)
    except ManifestError as exc:
        print(f"assay-runner: {exc}", file=sys.stderr)
        return 2
    from .load import cli as load_cli

    print(f"LoadTest {args.file}: {spec.shards} shard(s), {args.processes} process(es)", file=sys.stderr, flush=True)
    try:
        metrics, status = load_cli.run_local(spec, processes=args.processes, out=args.out, verify_tls=not args.insecure)
    except load_cli.LoadSpecError as exc:
        print(f"assay-runner: {args.file}: {exc}", file=sys.stderr)
        return 2
    print(load_cli.table(metrics), flush=True)
    return status


# --- API tests (imported on demand: a load-test pod never loads the API-test engine) ---------


def _definition_error(path: str, lines: list[str]) -> int:
    print(f"assay-runner: {path}: invalid definition", file=sys.stderr)
    for line in lines:
        print(f"  {line}", file=sys.stderr)
    return 2


def run_monitor_manifest(
    documents: list[dict], path: str, *, environment: str | None, variables: dict[str, str], junit_path: str | None
) -> int:
    """Run the file's first Monitor; the file's other Monitors are its subtests."""
    from .apitest.monitor import UnknownEnvironment, run_monitor
    from .apitest.report import ProgressPrinter, junit_xml
    from .apitest.validate import parse_monitor, validate_monitor

    monitors, problems = [], []
    for index, document in enumerate(documents):
        if document.get("kind") != "Monitor":
            problems.append(f"document {index + 1}: kind {document.get('kind')!r}: only Monitors can go with a Monitor")
            continue
        name = (document.get("metadata") or {}).get("name") or f"document {index + 1}"
        try:
            monitor = parse_monitor(document)
        except ValueError as exc:
            problems.extend(f"{name}: {line}" for line in str(exc).splitlines())
            continue
        monitors.append(monitor)
        problems.extend(f"{name}: {line}" for line in validate_monitor(monitor))
    by_key = {key: m for m in monitors for key in (m.metadata.name, m.metadata.uid) if key}
    for monitor in monitors:
        problems.extend(f"{monitor.metadata.name}: {line}" for line in _unresolved_subtests(monitor, by_key, path))
    if problems:
        return _definition_error(path, problems)
    main = monitors[0]

    def resolve(target: str):
        if target not in by_key:
            raise LookupError(f"no Monitor {target!r} in {path}")
        return by_key[target]

    try:
        result = asyncio.run(
            run_monitor(
                main, environment=environment, params=variables, resolve_monitor=resolve, on_progress=ProgressPrinter()
            )
        )
    except UnknownEnvironment as exc:
        return _definition_error(path, [f"--env: {exc}"])
    if junit_path:
        Path(junit_path).write_text(junit_xml(result))
    return 0 if result.passed else 1


def _unresolved_subtests(monitor, by_key: dict, path: str) -> list[str]:
    from assay.crds.monitor import ConditionStep, SubtestStep

    problems = []
    for index, step in enumerate(monitor.spec.steps):
        inner = (
            [(f"spec.steps[{index}].steps[{j}]", s) for j, s in enumerate(step.steps)]
            if isinstance(step, ConditionStep)
            else [(f"spec.steps[{index}]", step)]
        )
        for where, candidate in inner:
            if isinstance(candidate, SubtestStep):
                target = candidate.monitor or candidate.test_uuid
                if target not in by_key:
                    field = "monitor" if candidate.monitor else "testUuid"
                    problems.append(f"{where}.{field}: no Monitor {target!r} in {path}")
    return problems


def run_suite_manifest(document: dict, path: str, *, parameters: dict[str, str], junit_path: str | None) -> int:
    import importlib.util

    if importlib.util.find_spec("assay.runner.apitest.suite") is None:
        print(
            "assay-runner: this runner cannot run TestSuites (assay.runner.apitest.suite is missing)", file=sys.stderr
        )
        return 2
    from pydantic import ValidationError

    from assay.crds import TestSuite

    from .apitest import suite as suites
    from .apitest.report import format_suite, suite_junit_xml
    from .apitest.validate import format_validation_error

    try:
        test_suite = TestSuite.model_validate(document)
    except ValidationError as exc:
        return _definition_error(path, format_validation_error(exc, prefix=""))

    def progress(message: dict) -> None:
        if message.get("event") == "flow_finished":
            mark = "✓" if message.get("status") == "PASSED" else "✗"
            print(
                f"{mark} {message.get('description')}  {message.get('status')}  ({message.get('duration')})"
                f"  [{message.get('progress')}]",
                flush=True,
            )
            if message.get("failure"):
                print(f"        {message['failure']}", flush=True)

    print(f"Running TestSuite {test_suite.metadata.name or ''}".rstrip(), flush=True)
    try:
        result = asyncio.run(suites.run_suite(test_suite, override_parameters=parameters, on_progress=progress))
    except ValueError as exc:  # SuiteInputError: nothing selected, an unusable parameter pool
        return _definition_error(path, [str(exc)])
    print("", flush=True)
    print(format_suite(result.to_loadmill(), flows=False), flush=True)
    if junit_path and hasattr(result, "junit_cases"):
        Path(junit_path).write_text(suite_junit_xml(test_suite.metadata.name or "TestSuite", result.junit_cases()))
    return 0 if result.passed else 1


# --- TestSuite and Monitor runs in a Job pod ---------------------------------------------------


def _finish(settings: RunnerSettings, summary: dict, status: int) -> int:
    write_termination_message(settings, summary_message(summary))
    if summary.get("error"):
        print(f"assay-runner: {summary['error']}", file=sys.stderr, flush=True)
    return status


def _requested_uploader(settings: RunnerSettings) -> Uploader:
    return Uploader(
        settings,
        settings.run_id,
        {
            "project": settings.project,
            "owner_name": settings.owner_name,
            "owner_uid": settings.owner_uid,
            "shards": settings.shards or 1,
        },
    )


def cmd_testsuite(args: argparse.Namespace) -> int:
    settings: RunnerSettings = args.settings
    try:
        manifest = load_documents(args.spec)[0]
        options = settings.run_options_object()
    except ValueError as exc:
        return _finish(settings, {"result": "Failed", "error": f"{args.spec}: {exc}"}, 2)
    run_id = settings.run_id

    def progress(message: dict) -> None:
        if message.get("event") == "flow_finished":
            print(
                f"{message.get('status')} {message.get('description')} ({message.get('duration')})"
                f" [{message.get('progress')}]" + (f": {message['failure']}" if message.get("failure") else ""),
                flush=True,
            )

    print(f"assay-runner: TestSuite {(manifest.get('metadata') or {}).get('name')}, run {run_id or '-'}", flush=True)
    try:
        run = asyncio.run(
            execute(
                "TestSuite",
                manifest,
                run_id=run_id,
                settings=settings,
                uploader=_requested_uploader(settings),
                options=options,
                on_progress=progress,
            )
        )
    except DefinitionError as exc:
        return _finish(settings, {"result": "Failed", "error": f"{args.spec}: {exc}"}, 2)
    except CannotRun as exc:
        return _finish(settings, {"result": "Failed", "error": str(exc)}, 2)
    summary = {**run.summary, "upload_error": run.upload_error}
    print(f"assay-runner: {summary['result']}, {summary['passed']}/{summary['flow_runs']} flow runs passed", flush=True)
    return _finish(settings, summary, 0)


def cmd_monitor(args: argparse.Namespace) -> int:
    settings: RunnerSettings = args.settings
    region, agent = settings.region, settings.agent
    base = {"region": region, "agent": agent}
    try:
        manifest = load_documents(args.spec)[0]
        subtests = []
        if args.subtests and Path(args.subtests).exists():
            subtests = [with_run_secrets(d, args.subtests) for d in json.loads(Path(args.subtests).read_text())]
        options = settings.run_options_object()
    except ValueError as exc:
        return _finish(settings, {**base, "result": "Failed", "error": f"{args.spec}: {exc}"}, 2)
    run_id = settings.run_id
    index = settings.shard_index if settings.shard_index is not None else settings.job_completion_index or 0
    where = f" in {region or agent}" if region or agent else ""
    name = (manifest.get("metadata") or {}).get("name")
    print(f"assay-runner: Monitor {name}{where}, run {run_id or '-'}", flush=True)
    try:
        run = asyncio.run(
            execute(
                "Monitor",
                manifest,
                run_id=run_id,
                settings=settings,
                uploader=_requested_uploader(settings),
                options=options,
                subtests=subtests,
                index=index,
                locations=settings.shards or 1,
            )
        )
    except DefinitionError as exc:
        return _finish(settings, {**base, "result": "Failed", "error": f"{args.spec}: {exc}"}, 2)
    except CannotRun as exc:
        return _finish(settings, {**base, "result": "Failed", "error": str(exc)}, 2)
    result = run.result
    print(
        f"assay-runner: {result.result}, {result.assertions_passed}/{result.assertions_defined} assertions passed",
        flush=True,
    )
    return _finish(settings, {**run.summary, "upload_error": run.upload_error}, 0)


def _add_pod_run_commands(sub) -> None:
    p = sub.add_parser("testsuite", help="run a TestSuite (inside a Job pod)")
    p.add_argument("--spec", required=True, help="the TestSuite manifest (YAML or JSON)")
    p.set_defaults(func=cmd_testsuite)
    p = sub.add_parser("monitor", help="run a Monitor in one region (inside a Job pod)")
    p.add_argument("--spec", required=True, help="the Monitor manifest (YAML or JSON)")
    p.add_argument("--subtests", help="a JSON list of the Monitors its subtests name")
    p.set_defaults(func=cmd_monitor)


def _key_value(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    return name, value


def _load_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", metavar="FILE", help="LoadTest: write the metrics JSON here")
    p.add_argument(
        "--processes", type=int, default=1, metavar="N", help="LoadTest: generate the load from N processes (default 1)"
    )
    p.add_argument("--insecure", action="store_true", help="LoadTest: do not verify TLS certificates")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m assay.runner", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("loadtest", help="run one shard of a LoadTest (inside a Job pod)")
    p.add_argument("--spec", required=True, help="the LoadTest manifest (YAML or JSON)")
    p.add_argument("--shard-index", type=int, help="default: $JOB_COMPLETION_INDEX")
    p.add_argument("--shards", type=int, help="default: $ASSAY_SHARDS or spec.shards")
    _load_options(p)
    p.set_defaults(func=cmd_loadtest)
    p = sub.add_parser("run", help="run a manifest on this machine")
    p.add_argument("file")
    p.add_argument("--env", help="Monitor: the environment to run in (default: the monitor's default)")
    p.add_argument("--junit", metavar="OUT.xml", help="Monitor or TestSuite: write a JUnit XML report")
    p.add_argument(
        "--var",
        action="append",
        default=[],
        type=_key_value,
        metavar="NAME=VALUE",
        help="Monitor: a variable, TestSuite: a parameter, overriding the definition (repeatable)",
    )
    _load_options(p)
    p.set_defaults(func=cmd_run)
    _add_pod_run_commands(sub)
    from .batch import add_command as add_batch_command

    add_batch_command(sub)
    args = parser.parse_args(argv)
    args.settings = RunnerSettings.from_env()
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
