"""Several Store instances on one index, as the gateway's replicas share one PostgreSQL (or,
with SQLite, as processes share one volume): numbers, archives and authorization codes."""

from __future__ import annotations

import threading

import pytest

from assay.api.auth.tokens import AuthorizationGrant, StoredAuthorizationCodes
from assay.api.store import ResultIngest, Store, backends
from tests.unit.test_store_ingest import shard_uploads


@pytest.fixture
def replicas(tmp_path, make_store):
    stores = [make_store(tmp_path / "store") for _ in range(3)]
    yield stores
    for store in stores:
        store.close()


def race(n: int, work) -> list:
    """`work(i)` on n threads started together; their results, or the first error raised."""
    barrier = threading.Barrier(n)
    results: list = [None] * n
    errors: list = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = work(i)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    return results


def test_replicas_allocating_numbers_together_get_no_duplicates_and_no_gaps(replicas):
    keys = [f"lt-{i}" for i in range(60)]

    def allocate(i: int) -> dict[str, int]:
        # Every thread asks for every key, from another start: races on one key and on the next number.
        store = replicas[i % len(replicas)]
        return {key: store.number_for("shop", "loadtest", key) for key in keys[i * 10 :] + keys[: i * 10]}

    results = race(6, allocate)
    numbers = {key: {result[key] for result in results} for key in keys}
    assert all(len(seen) == 1 for seen in numbers.values()), "a key got two numbers"
    assert sorted(seen.pop() for seen in numbers.values()) == list(range(1, 61))


@pytest.mark.postgresql
def test_the_last_shard_arriving_at_two_replicas_builds_each_archive_once(tmp_path, postgres, monkeypatch):
    from assay.runner import report

    builds: list[str] = []
    for name in ("build_result_archive", "build_report_archive"):
        real = getattr(report, name)

        def counted(*args, _real=real, _name=name, **kwargs):
            builds.append(_name)
            return _real(*args, **kwargs)

        monkeypatch.setattr(report, name, counted)
    url = postgres.fresh_url()
    stores = [Store(tmp_path / "store", database_url=url) for _ in range(2)]
    try:
        ingests = [ResultIngest(store) for store in stores]
        for attempt in range(3):
            uploads = shard_uploads(f"checkout-{attempt}", shards=3, seed=attempt)
            ingests[0].accept(uploads[0])
            ingests[1].accept(uploads[1])
            builds.clear()
            # Both replicas receive the last shard at once (the runner retried against the other).
            race(4, lambda i, uploads=uploads: ingests[i % 2].accept(uploads[2]))
            assert sorted(builds) == ["build_report_archive", "build_result_archive"]
            archives = stores[1].list_archives(run_id=f"checkout-{attempt}")
            assert [(a.kind, a.number) for a in archives] == [("report", attempt + 1), ("result", attempt + 1)]
            assert stores[0].get_run(f"checkout-{attempt}").state == "succeeded"
    finally:
        for store in stores:
            store.close()


def test_an_authorization_code_exchanged_on_two_replicas_at_once_is_used_once(replicas):
    issuer = StoredAuthorizationCodes(replicas[0], 60)
    for _ in range(5):
        code = issuer.issue("ac_x", "uid", "https://cb", ("api:read",))
        exchanges = [StoredAuthorizationCodes(store, 60) for store in replicas[1:]]
        results = race(8, lambda i, code=code, exchanges=exchanges: exchanges[i % 2].redeem(code, lambda grant: None))
        grants = [grant for grant, _ in results if grant is not None]
        assert len(grants) == 1 and grants[0].scopes == ("api:read",)
        assert isinstance(grants[0], AuthorizationGrant) and grants[0].redirect_uri == "https://cb"


def test_a_replayed_code_reports_its_tokens_on_another_replica_which_revokes_them_everywhere(replicas):
    first, second, third = (StoredAuthorizationCodes(store, 60) for store in replicas)
    code = first.issue("ac_x", "uid", "https://cb", ())
    grant, tokens = first.redeem(code, lambda grant: None)
    assert grant is not None and tokens == []
    first.record_token(code, "jti-1", 4_000_000_000)
    assert second.redeem(code, lambda grant: None) == (None, [("jti-1", 4_000_000_000)])
    replicas[1].revoke_tokens([("jti-1", 4_000_000_000)], now=1_000)
    assert replicas[2].token_revoked("jti-1") and not replicas[2].token_revoked("jti-2")
    assert third.redeem("another code", lambda grant: None) == (None, [])


def test_a_refused_check_leaves_a_stored_code_to_its_own_client(replicas):
    codes = StoredAuthorizationCodes(replicas[0], 60)
    code = codes.issue("ac_x", "uid", "https://cb", ())

    def only_ac_x(grant):
        if grant.client_id != "ac_x":
            raise PermissionError(grant.client_id)

    def never(grant):
        raise PermissionError(grant.client_id)

    with pytest.raises(PermissionError):
        StoredAuthorizationCodes(replicas[1], 60).redeem(code, never)
    grant, _ = StoredAuthorizationCodes(replicas[2], 60).redeem(code, only_ac_x)
    assert grant.client_id == "ac_x"


def test_stored_codes_expire_and_are_bounded(replicas):
    now = [1_000.0]
    codes = StoredAuthorizationCodes(replicas[0], 60, clock=lambda: now[0])
    code = codes.issue("ac_x", "uid", "https://cb", ())
    now[0] += 60
    assert StoredAuthorizationCodes(replicas[1], 60, clock=lambda: now[0]).redeem(code, lambda g: None) == (None, [])
    codes.MAX_OUTSTANDING = 2
    codes.issue("ac_x", "uid", "https://cb", ())
    codes.issue("ac_x", "uid", "https://cb", ())
    with pytest.raises(OverflowError):
        codes.issue("ac_x", "uid", "https://cb", ())
    now[0] += 61  # the outstanding ones expire and make room
    codes.issue("ac_x", "uid", "https://cb", ())


@pytest.mark.postgresql
def test_replicas_starting_together_on_a_new_database_migrate_it_once(tmp_path, postgres):
    url = postgres.fresh_url()
    stores = race(4, lambda i: Store(tmp_path / "store", database_url=url))
    try:
        applied = stores[0]._conn().execute("SELECT COUNT(*) FROM _yoyo_migration").fetchone()[0]
        assert applied == len(list(backends.MIGRATIONS.glob("*.sql")))
        assert [s.number_for("shop", "loadtest", f"k{i}") for i, s in enumerate(stores)] == [1, 2, 3, 4]
    finally:
        for store in stores:
            store.close()
