"""The node agent's pure parts: scheduling fit, env and `$(VAR)` expansion, path remapping,
volume contents and the pods/status patches a kubelet would send."""

from __future__ import annotations

import importlib.util
import json
import queue
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

REPO = Path(__file__).resolve().parents[2]


def _load_nodeagent():
    name = "hack_nodeagent"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, REPO / "hack" / "nodeagent.py")
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it loads
        spec.loader.exec_module(module)
    return sys.modules[name]


na = _load_nodeagent()

INDEX_ANNOTATION = "batch.kubernetes.io/job-completion-index"


def make_pod(**spec) -> dict:
    return {
        "metadata": {
            "name": "run-0-abcde",
            "namespace": "team",
            "uid": "1234-5678",
            "labels": {"app": "runner"},
            "annotations": {INDEX_ANNOTATION: "3"},
        },
        "spec": {
            "nodeName": "assay-local",
            "serviceAccountName": "default",
            "containers": [{"name": "runner", "image": "assay/runner:test"}],
            **spec,
        },
    }


def lookup_from(objects: dict) -> na.Lookup:
    """A Lookup over {(kind, name): {key: text}}."""

    def lookup(kind, name):
        data = objects.get((kind, name))
        return None if data is None else {key: value.encode() for key, value in data.items()}

    return lookup


NO_OBJECTS = lookup_from({})


# $(VAR) expansion


@pytest.mark.parametrize(
    "text, expected",
    [
        ("$(A)/x", "alpha/x"),
        ("$(A)$(B)", "alphabeta"),
        ("$(UNDEFINED)", "$(UNDEFINED)"),
        ("$$(A)", "$(A)"),
        ("cost $5", "cost $5"),
        ("ends with $", "ends with $"),
        ("$(A", "$(A"),
        ("$()", "$()"),
        ("no variables", "no variables"),
    ],
)
def test_expand_vars_follows_kubernetes_rules(text, expected):
    assert na.expand_vars(text, {"A": "alpha", "B": "beta"}) == expected


# Downward API


@pytest.mark.parametrize(
    "field_path, expected",
    [
        ("metadata.name", "run-0-abcde"),
        ("metadata.namespace", "team"),
        ("metadata.uid", "1234-5678"),
        ("metadata.labels['app']", "runner"),
        (f"metadata.annotations['{INDEX_ANNOTATION}']", "3"),
        ("metadata.annotations['absent']", ""),
        ("spec.nodeName", "assay-local"),
        ("spec.serviceAccountName", "default"),
        ("status.podIP", "127.0.0.1"),
        ("status.hostIP", "127.0.0.1"),
    ],
)
def test_field_ref_resolves_downward_api_paths(field_path, expected):
    assert na.resolve_field_ref(make_pod(), field_path) == expected


def test_field_ref_formats_all_labels_like_a_downward_api_volume():
    pod = make_pod()
    pod["metadata"]["labels"] = {"b": "2", "a": 'say "hi"'}
    assert na.resolve_field_ref(pod, "metadata.labels") == 'a="say \\"hi\\""\nb="2"'


def test_field_ref_rejects_unknown_paths():
    with pytest.raises(na.UnsupportedSpec, match="spec.hostname"):
        na.resolve_field_ref(make_pod(), "spec.hostname")


# Environment


def test_env_gives_indexed_job_pods_their_completion_index():
    container = {
        "name": "runner",
        "env": [
            {
                "name": "JOB_COMPLETION_INDEX",
                "valueFrom": {"fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}},
            }
        ],
    }
    assert na.resolve_env(make_pod(), container, NO_OBJECTS) == {"JOB_COMPLETION_INDEX": "3"}


def test_env_applies_env_from_first_then_env_in_order():
    lookup = lookup_from(
        {("configmap", "settings"): {"MODE": "load", "LEVEL": "info"}, ("secret", "creds"): {"token": "s3cret"}}
    )
    container = {
        "envFrom": [{"configMapRef": {"name": "settings"}}, {"secretRef": {"name": "creds"}, "prefix": "CREDS_"}],
        "env": [
            {"name": "LEVEL", "value": "debug"},
            {"name": "POD", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
            {"name": "WHO", "value": "$(POD)/$(MODE)/$(LATER)"},
            {"name": "LATER", "value": "too late"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "creds", "key": "token"}}},
            {"name": "GONE", "valueFrom": {"configMapKeyRef": {"name": "settings", "key": "nope", "optional": True}}},
        ],
    }
    env = na.resolve_env(make_pod(), container, lookup)
    assert env == {
        "MODE": "load",
        "LEVEL": "debug",
        "CREDS_token": "s3cret",
        "POD": "run-0-abcde",
        "WHO": "run-0-abcde/load/$(LATER)",
        "LATER": "too late",
        "TOKEN": "s3cret",
    }


def test_env_waits_for_a_missing_config_map_unless_optional():
    needs = {"env": [{"name": "X", "valueFrom": {"configMapKeyRef": {"name": "later", "key": "x"}}}]}
    with pytest.raises(na.MissingSource, match="configmap 'later' not found"):
        na.resolve_env(make_pod(), needs, NO_OBJECTS)
    optional = {"envFrom": [{"secretRef": {"name": "later", "optional": True}}]}
    assert na.resolve_env(make_pod(), optional, NO_OBJECTS) == {}


def test_env_rejects_resource_field_refs():
    container = {"env": [{"name": "CPU", "valueFrom": {"resourceFieldRef": {"resource": "limits.cpu"}}}]}
    with pytest.raises(na.UnsupportedSpec, match="resourceFieldRef"):
        na.resolve_env(make_pod(), container, NO_OBJECTS)


def test_env_values_naming_a_mounted_path_point_to_the_local_copy():
    path_map = {"/dev/termination-log": "/pods/p/termination-log", "/etc/assay/run": "/pods/p/volumes/spec"}
    container = {
        "env": [
            {"name": "LOG", "value": "/dev/termination-log"},
            {"name": "DIR", "value": "/etc/assay/run"},
            {"name": "SPEC", "value": "$(DIR)/manifest.json"},
            {"name": "OTHER", "value": "/etc/assay/runs"},
        ]
    }
    env = na.resolve_env(make_pod(), container, NO_OBJECTS, path_map)
    assert env == {
        "LOG": "/pods/p/termination-log",
        "DIR": "/pods/p/volumes/spec",
        "SPEC": "/pods/p/volumes/spec/manifest.json",
        "OTHER": "/etc/assay/runs",
    }


# Paths


PATHS = {"/data": "/local/data", "/data/inner": "/local/inner", "/dev/termination-log": "/local/tl"}


@pytest.mark.parametrize(
    "value, expected",
    [
        ("/data", "/local/data"),
        ("/data/file.txt", "/local/data/file.txt"),
        ("/data/inner/x", "/local/inner/x"),
        ("/database", "/database"),
        ("/dev/termination-log", "/local/tl"),
        ("--out=/data/x", "--out=/data/x"),
        ("relative/data", "relative/data"),
    ],
)
def test_remap_path_rewrites_whole_leading_mount_paths(value, expected):
    assert na.remap_path(value, PATHS) == expected


def test_path_map_covers_mounts_with_sub_paths_and_the_termination_file(tmp_path):
    container = {
        "terminationMessagePath": "/tmp/message",
        "volumeMounts": [
            {"name": "spec", "mountPath": "/etc/assay/run/"},
            {"name": "cache", "mountPath": "/cache", "subPath": "shard-1"},
        ],
    }
    volume_dirs = {"spec": tmp_path / "volumes/spec", "cache": tmp_path / "volumes/cache"}
    assert na.build_path_map(container, volume_dirs, tmp_path) == {
        "/tmp/message": str(tmp_path / "termination-log"),
        "/etc/assay/run": str(tmp_path / "volumes/spec"),
        "/cache": str(tmp_path / "volumes/cache/shard-1"),
    }
    assert na.build_path_map({}, {}, tmp_path) == {"/dev/termination-log": str(tmp_path / "termination-log")}


@pytest.mark.parametrize("program", ["python", "python3", "python3.12", "/usr/local/bin/python3"])
def test_python_commands_run_with_the_agents_python(program):
    container = {"command": [program, "-m", "assay.runner"], "args": ["--spec", "/spec/m.json", "$(RUN)"]}
    argv = na.build_argv(container, {"RUN": "r1"}, {"/spec": "/local/spec"}, "/venv/bin/python")
    assert argv == ["/venv/bin/python", "-m", "assay.runner", "--spec", "/local/spec/m.json", "r1"]


def test_other_commands_are_kept_for_a_path_lookup():
    assert na.build_argv({"command": ["sh", "-c", "echo $(X)"]}, {"X": "1"}, {}, "/py") == ["sh", "-c", "echo 1"]
    assert na.build_argv({"command": ["pythonista"]}, {}, {}, "/py") == ["pythonista"]


def test_a_container_without_command_cannot_start():
    with pytest.raises(na.UnsupportedSpec, match="entrypoint"):
        na.build_argv({"args": ["--help"]}, {}, {}, "/py")


def test_working_dir_is_remapped_or_the_pod_dir(tmp_path):
    assert na.working_dir({"workingDir": "/data/sub"}, PATHS, tmp_path) == "/local/data/sub"
    assert na.working_dir({"workingDir": "/app"}, PATHS, tmp_path) == str(tmp_path)
    assert na.working_dir({}, PATHS, tmp_path) == str(tmp_path)


# Volumes


def test_config_map_volume_holds_all_keys_or_the_listed_items():
    lookup = lookup_from({("configmap", "spec"): {"manifest.json": "{}", "other": "x"}})
    assert na.volume_files({"name": "v", "configMap": {"name": "spec"}}, make_pod(), lookup) == {
        "manifest.json": (b"{}", 0o644),
        "other": (b"x", 0o644),
    }
    items = {
        "name": "v",
        "configMap": {
            "name": "spec",
            "defaultMode": 0o755,
            "items": [{"key": "other", "path": "bin/run", "mode": 0o700}],
        },
    }
    assert na.volume_files(items, make_pod(), lookup) == {"bin/run": (b"x", 0o700)}


def test_secret_volume_reads_the_secret_named_by_secret_name():
    lookup = lookup_from({("secret", "creds"): {"token": "s3cret"}})
    volume = {"name": "v", "secret": {"secretName": "creds", "defaultMode": 0o400}}
    assert na.volume_files(volume, make_pod(), lookup) == {"token": (b"s3cret", 0o400)}


def test_missing_config_map_volume_waits():
    with pytest.raises(na.MissingSource):
        na.volume_files({"name": "v", "configMap": {"name": "later"}}, make_pod(), NO_OBJECTS)
    optional = {"name": "v", "configMap": {"name": "later", "optional": True}}
    assert na.volume_files(optional, make_pod(), NO_OBJECTS) == {}


def test_downward_api_volume_writes_field_values():
    volume = {
        "name": "v",
        "downwardAPI": {
            "items": [
                {"path": "index", "fieldRef": {"fieldPath": f"metadata.annotations['{INDEX_ANNOTATION}']"}},
                {"path": "labels", "fieldRef": {"fieldPath": "metadata.labels"}},
            ]
        },
    }
    assert na.volume_files(volume, make_pod(), NO_OBJECTS) == {
        "index": (b"3", 0o644),
        "labels": (b'app="runner"', 0o644),
    }


def test_projected_service_account_volume_skips_the_token():
    lookup = lookup_from({("configmap", "kube-root-ca.crt"): {"ca.crt": "PEM"}})
    volume = {
        "name": "kube-api-access-x",
        "projected": {
            "defaultMode": 0o644,
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": 3607}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"fieldPath": "metadata.namespace"}}]}},
            ],
        },
    }
    assert na.volume_files(volume, make_pod(), lookup) == {"ca.crt": (b"PEM", 0o644), "namespace": (b"team", 0o644)}


def test_unsupported_volume_types_are_named():
    with pytest.raises(na.UnsupportedSpec, match="persistentVolumeClaim"):
        na.volume_files({"name": "v", "persistentVolumeClaim": {"claimName": "c"}}, make_pod(), NO_OBJECTS)


# Scheduling


REGION = "topology.kubernetes.io/region"
LABELS = {"kubernetes.io/hostname": "us1-node", REGION: "us1"}


def unscheduled(**spec) -> dict:
    pod = make_pod(**{"schedulerName": "default-scheduler", **spec})
    pod["spec"].pop("nodeName")
    return pod


def test_node_fits_when_the_node_selector_matches_its_labels():
    assert na.node_fits(unscheduled(nodeSelector={REGION: "us1"}), LABELS)
    assert na.node_fits(unscheduled(), LABELS)
    assert not na.node_fits(unscheduled(nodeSelector={REGION: "eu1"}), LABELS)


@pytest.mark.parametrize(
    "expressions, fits",
    [
        ([{"key": REGION, "operator": "In", "values": ["us1", "us2"]}], True),
        ([{"key": REGION, "operator": "NotIn", "values": ["us1"]}], False),
        ([{"key": "gpu", "operator": "DoesNotExist"}], True),
        ([{"key": "gpu", "operator": "Exists"}], False),
        ([], False),
    ],
)
def test_node_fits_required_node_affinity(expressions, fits):
    affinity = {
        "nodeAffinity": {
            "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": expressions}]}
        }
    }
    assert na.node_fits(unscheduled(affinity=affinity), LABELS) is fits


def test_only_unbound_live_pods_of_the_default_scheduler_want_scheduling():
    assert na.wants_scheduling(unscheduled())
    assert not na.wants_scheduling(make_pod())
    assert not na.wants_scheduling(unscheduled(schedulerName="volcano"))
    assert not na.wants_scheduling(unscheduled(schedulingGates=[{"name": "wait"}]))
    deleting = unscheduled()
    deleting["metadata"]["deletionTimestamp"] = "2025-01-01T00:00:00Z"
    assert not na.wants_scheduling(deleting)


# Status patches


CONTAINER = {"name": "runner", "image": "assay/runner:test"}


def test_running_status_reports_the_pod_ip_conditions_and_a_running_container():
    patch = na.build_running_status(CONTAINER, start_time="T0", started_at="T1", restart_count=0, pid=42)
    status = patch["status"]
    assert (status["phase"], status["startTime"], status["podIP"], status["hostIP"]) == (
        "Running",
        "T0",
        "127.0.0.1",
        "127.0.0.1",
    )
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "PodScheduled": "True",
        "Initialized": "True",
        "ContainersReady": "True",
        "Ready": "True",
    }
    assert status["containerStatuses"] == [
        {
            "name": "runner",
            "image": "assay/runner:test",
            "imageID": "",
            "containerID": "nodeagent://42",
            "ready": True,
            "started": True,
            "restartCount": 0,
            "state": {"running": {"startedAt": "T1"}},
        }
    ]


@pytest.mark.parametrize("exit_code, phase, reason", [(0, "Succeeded", "Completed"), (3, "Failed", "Error")])
def test_terminated_status_maps_the_exit_code_to_the_phase(exit_code, phase, reason):
    terminated = na.terminated_state(exit_code, "report", "T1", "T2")
    status = na.build_terminated_status(CONTAINER, terminated, restart_count=1)["status"]
    assert status["phase"] == phase
    assert "reason" not in status
    assert status["containerStatuses"][0]["state"] == {
        "terminated": {
            "exitCode": exit_code,
            "reason": reason,
            "message": "report",
            "startedAt": "T1",
            "finishedAt": "T2",
        }
    }
    assert status["containerStatuses"][0]["restartCount"] == 1
    assert {c["type"]: (c["status"], c["reason"]) for c in status["conditions"]} == {
        "ContainersReady": ("False", "PodCompleted"),
        "Ready": ("False", "PodCompleted"),
    }


def test_pod_failures_carry_their_reason_on_the_pod_and_the_container():
    terminated = na.terminated_state(128, "cannot run 'x': No such file or directory", "T", "T", reason="StartError")
    status = na.build_terminated_status(CONTAINER, terminated, restart_count=0, pod_reason="StartError")["status"]
    assert (status["phase"], status["reason"], status["message"]) == (
        "Failed",
        "StartError",
        "cannot run 'x': No such file or directory",
    )
    assert status["containerStatuses"][0]["state"]["terminated"]["reason"] == "StartError"


def test_waiting_status_keeps_the_last_termination():
    last = na.terminated_state(1, "", "T1", "T2")
    status = na.build_waiting_status(
        CONTAINER,
        phase="Running",
        reason="CrashLoopBackOff",
        message="back-off",
        now="T3",
        restart_count=2,
        last_state=last,
    )["status"]
    container = status["containerStatuses"][0]
    assert status["phase"] == "Running"
    assert container["state"] == {"waiting": {"reason": "CrashLoopBackOff", "message": "back-off"}}
    assert (container["lastState"], container["restartCount"], container["ready"]) == (last, 2, False)
    assert "message" not in last["terminated"]


# Termination messages


def test_termination_message_is_the_files_first_4096_bytes(tmp_path):
    (tmp_path / "tl").write_text("x" * 5000)
    assert na.termination_message({}, 0, tmp_path / "tl", tmp_path / "log") == "x" * 4096


def test_termination_message_falls_back_to_the_log_tail_only_on_failure(tmp_path):
    (tmp_path / "tl").write_text("")
    (tmp_path / "log").write_text("".join(f"line {i}\n" for i in range(200)))
    fallback = {"terminationMessagePolicy": "FallbackToLogsOnError"}
    tail = na.termination_message(fallback, 1, tmp_path / "tl", tmp_path / "log")
    assert tail.splitlines() == [f"line {i}" for i in range(120, 200)]
    assert na.termination_message(fallback, 0, tmp_path / "tl", tmp_path / "log") == ""
    assert na.termination_message({}, 1, tmp_path / "tl", tmp_path / "log") == ""


@pytest.mark.parametrize("returncode, exit_code", [(0, 0), (3, 3), (-15, 143), (-9, 137)])
def test_exit_codes_of_signalled_processes_read_as_in_a_container(returncode, exit_code):
    assert na.exit_code_of(returncode) == exit_code


# The pod watch


class FakeResponse:
    def __init__(self, events):
        self.lines = b"".join(json.dumps(e).encode() + b"\n" for e in events)

    def stream(self, amt=None, decode_content=False):
        yield self.lines

    def close(self):
        pass

    def release_conn(self):
        pass


class FakeCore:
    """Serves a watch that ends, then one whose version has expired, then a fresh one."""

    def __init__(self, stop: threading.Event):
        self.stop, self.asked = stop, []
        self.responses = [
            [{"type": "ADDED", "object": {"metadata": {"name": "a", "resourceVersion": "7"}}}],
            [{"type": "ERROR", "object": {"kind": "Status", "code": 410, "message": "too old"}}],
            [{"type": "ADDED", "object": {"metadata": {"name": "b", "resourceVersion": "9"}}}],
        ]

    def list_pod_for_all_namespaces(self, resource_version=None, **_):
        self.asked.append(resource_version)
        if len(self.asked) == len(self.responses):
            self.stop.set()
        return FakeResponse(self.responses[len(self.asked) - 1])


def test_an_expired_watch_starts_again_from_the_current_state():
    stop = threading.Event()
    cluster = SimpleNamespace(core=FakeCore(stop))
    events = queue.Queue()
    na.watch_pods(cluster, events, stop)
    assert cluster.core.asked == [None, "7", None]
    assert [events.get_nowait()[1]["metadata"]["name"] for _ in range(events.qsize())] == ["a", "b"]
