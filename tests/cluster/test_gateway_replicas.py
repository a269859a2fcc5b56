"""Three gateway processes as the replicas of one release: one PostgreSQL index and one S3
bucket (each replica its own scratch folder, as pods have), behind a round-robin balancer
that, like a Service, sends each new connection to the next replica that accepts it.

One replica is SIGKILLed in the middle of shard uploads, another during authorization-code
exchanges: nothing acknowledged is lost, nothing is stored or numbered twice, and no code
buys two tokens."""

from __future__ import annotations

import hashlib
import itertools
import socket
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from assay.api.store import archive_counter
from assay.runner.upload import UploadClient
from tests.cluster.test_clientcredential import create_credential
from tests.cluster.test_ingest import LOADTEST_UID, PROJECT, meta, shard_documents, token_for
from tests.conftest import GatewayProcess
from tests.support.tcp import pipe

pytestmark = [pytest.mark.cluster, pytest.mark.postgresql, pytest.mark.s3]


@pytest.fixture
def replicas(cluster, postgres, s3, tmp_path):
    shared = (postgres.fresh_url(), s3.fresh_url(), s3)
    procs = [
        GatewayProcess(cluster, tmp_path / f"replica-{i}", tmp_path / f"replica-{i}.log", shared=shared)
        for i in range(3)
    ]
    for proc in procs:
        proc.start()
    yield procs
    for proc in procs:
        proc.stop()
        print(proc.log()[-3000:], file=sys.stderr)


class Balancer:
    """A TCP balancer on loopback: each connection goes to the next replica accepting one.
    Request bodies pass in `chunk`-sized pieces `pause` apart, so uploads are in flight long
    enough to be interrupted; `mid_upload[port]` is set once a connection to that replica has
    forwarded `trigger` bytes."""

    def __init__(self, ports: list[int], trigger: int, chunk: int = 64 * 1024, pause: float = 0.01):
        self.ports, self.trigger, self.chunk, self.pause = ports, trigger, chunk, pause
        self.mid_upload = {port: threading.Event() for port in ports}
        self.connections = 0
        self._next = itertools.cycle(range(len(ports)))
        self._lock = threading.Lock()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
                first = next(self._next)
            threading.Thread(target=self._serve, args=(client, first), daemon=True).start()

    def _serve(self, client: socket.socket, first: int) -> None:
        for i in range(len(self.ports)):
            port = self.ports[(first + i) % len(self.ports)]
            try:
                upstream = socket.create_connection(("127.0.0.1", port), timeout=5)
                break
            except OSError:
                continue
        else:
            client.close()
            return
        upstream.settimeout(None)
        threading.Thread(target=pipe, args=(upstream, client, self.chunk), daemon=True).start()
        pipe(client, upstream, self.chunk, lambda sent: self._paced(port, sent))

    def _paced(self, port: int, sent: int) -> None:
        if sent >= self.trigger:
            self.mid_upload[port].set()
        time.sleep(self.pause)

    def close(self) -> None:
        self.listener.close()


def test_a_replica_killed_mid_upload_loses_and_doubles_nothing(replicas):
    runs = {
        f"checkout-{i:02d}bb8888": shard_documents(f"checkout-{i:02d}bb8888", shards=3, seed=i, pad=1 << 20)
        for i in range(4)
    }
    balancer = Balancer([r.port for r in replicas], trigger=512 << 10)
    victim = replicas[0]

    def upload(run_id: str, index: int) -> bool:
        client = UploadClient(balancer.url, run_id, token_for(victim, run_id), retry_for=120)
        answer = client.upload("LoadTest", index, f"shard-{index}.json", runs[run_id][index], meta(3))
        return answer["sha256"] == hashlib.sha256(runs[run_id][index]).hexdigest()

    try:
        with ThreadPoolExecutor(len(runs) * 3) as pool:
            futures = [pool.submit(upload, run_id, i) for run_id in runs for i in range(3)]
            assert balancer.mid_upload[victim.port].wait(60), "no upload reached the first replica"
            victim.kill()  # SIGKILL with half a megabyte or more of a shard received
            answers = [f.result(timeout=180) for f in futures]
    finally:
        balancer.close()
    assert balancer.connections > len(answers), "no upload was retried: the kill interrupted nothing"
    assert all(answers), "an acknowledged upload is not the document sent"
    print(f"{len(answers)} uploads over {balancer.connections} connections")

    with replicas[1].open_store() as store:
        numbers: dict[str, list[int]] = {"report": [], "result": []}
        for run_id, documents in runs.items():
            assert [(d.name, d.sha256) for d in store.list_documents(run_id)] == [
                (f"shard-{i}.json", hashlib.sha256(data).hexdigest()) for i, data in enumerate(documents)
            ]
            run = store.get_run(run_id)
            assert (run.state, run.shards_received) == ("succeeded", 3), run
            archives = store.list_archives(run_id=run_id)
            assert sorted(a.kind for a in archives) == ["report", "result"], archives
            for archive in archives:
                numbers[archive.kind].append(archive.number)
            # Three documents and two archives in the bucket, none twice.
            keys = replicas[1].stored_keys(f"runs/{run_id}/*")
            assert len(keys) == 5, keys
        for kind, seen in numbers.items():
            assert sorted(seen) == [1, 2, 3, 4], (kind, seen)  # gap-free, none twice
            assert store.key_for_number(PROJECT, archive_counter(kind, LOADTEST_UID), 5) is None

    # The killed replica comes back on the shared store and serves what the others stored.
    victim.start()
    run_id = next(iter(runs))
    answer = httpx.get(
        f"{victim.url}/internal/v1/runs/{run_id}", headers={"Authorization": f"Bearer {token_for(victim, run_id)}"}
    )
    assert answer.status_code == 200 and answer.json()["run"]["shardsReceived"] == 3, answer.text


def test_a_replica_killed_during_code_exchanges_lets_no_code_buy_two_tokens(cluster, namespace, operator, replicas):
    callback = "https://app.example/cb"
    cred, secret = create_credential(
        cluster,
        namespace,
        "webapp",
        scopes=("api:read",),
        grant_types=("authorization_code",),
        redirect_uris=(callback,),
    )
    client_id = cred["status"]["clientId"]
    issuer, victim, third = replicas[1], replicas[2], replicas[0]

    def new_code() -> str:
        answer = httpx.get(
            f"{issuer.url}/signin/oauth/authorize",
            params={"client_id": client_id, "redirect_uri": callback, "response_type": "code", "scope": "api:read"},
            auth=(client_id, secret),
            timeout=10,
        )
        assert answer.status_code == 302, answer.text
        return parse_qs(urlsplit(answer.headers["location"]).query)["code"][0]

    def exchange(replica: GatewayProcess, code: str) -> httpx.Response:
        form = {
            "client_id": client_id,
            "client_secret": secret,
            "code": code,
            "grant_type": "authorization_code",
            "redirect_uri": callback,
        }
        return httpx.post(f"{replica.url}/signin/oauth/access_token", data=form, timeout=10)

    def account(replica: GatewayProcess, token: str) -> int:
        return httpx.get(f"{replica.url}/account", headers={"Authorization": f"Bearer {token}"}, timeout=10).status_code

    for replica in replicas:
        cluster.wait_for(
            "every replica to index the app",
            lambda replica=replica: exchange(replica, "unknown").json().get("error") == "invalid_grant",
            timeout=15,
        )
    codes = [new_code() for _ in range(60)]
    tokens: dict[str, list[str]] = {code: [] for code in codes}
    unanswered: list[str] = []
    answered = threading.Semaphore(0)

    def first_try(code: str) -> None:
        try:
            answer = exchange(victim, code)
        except httpx.TransportError:
            unanswered.append(code)
            return
        answered.release()
        assert answer.status_code == 200, answer.text
        tokens[code].append(answer.json()["access_token"])

    with ThreadPoolExecutor(6) as pool:
        futures = [pool.submit(first_try, code) for code in codes]
        for _ in range(10):
            assert answered.acquire(timeout=30), "the exchanges never got going"
        victim.kill()  # with exchanges in flight on the other threads
        for future in futures:
            future.result(timeout=60)
    assert unanswered, "the kill interrupted no exchange"

    # The client retries what got no answer on another replica: a code the dead replica never
    # redeemed buys its token now; one it redeemed is refused (its answer was lost with it).
    for code in unanswered:
        answer = exchange(third, code)
        if answer.status_code == 200:
            tokens[code].append(answer.json()["access_token"])
        else:
            assert answer.status_code == 400 and answer.json()["error"] == "invalid_grant", answer.text
    assert all(len(issued) <= 1 for issued in tokens.values()), "a code bought two tokens"
    refused = sum(1 for code in unanswered if not tokens[code])
    print(f"{len(unanswered)} exchanges cut off by the kill; {refused} of them had redeemed their code")
    issued = {code: got[0] for code, got in tokens.items() if got}
    assert all(account(issuer, token) == 200 for token in issued.values())

    # A replay on any replica is refused and revokes the code's token on every replica.
    replayed = list(issued)[:5]
    for code in replayed:
        assert exchange(third, code).json()["error"] == "invalid_grant"
    for code in replayed:
        assert account(issuer, issued[code]) == 401 and account(third, issued[code]) == 401
    assert all(account(third, issued[code]) == 200 for code in list(issued)[5:])
