"""The read-change-write loop: a conflict means read again and recompute, never overwrite."""

import pytest

from assay.crds.contracts import optimistic


class Conflict(Exception):
    status = 409


class Store:
    """An object with a resourceVersion; a write with a stale version fails like the API server's."""

    def __init__(self, value, *, interfere=0):
        self.value, self.version, self.interfere, self.writes = value, 1, interfere, 0

    def read(self):
        return {"value": self.value, "version": self.version}

    def write(self, current, change):
        self.writes += 1
        if self.interfere:  # another writer got in between our read and our write
            self.interfere -= 1
            self.value, self.version = self.value + 100, self.version + 1
        if current["version"] != self.version:
            raise Conflict()
        self.value, self.version = change, self.version + 1
        return self.value


def test_a_conflict_recomputes_the_change_on_the_fresh_object():
    store = Store(1, interfere=2)
    assert optimistic.update(store.read, lambda cur: cur["value"] + 1, store.write) == 202
    assert store.writes == 3


def test_nothing_to_write_writes_nothing():
    store = Store(1)
    assert optimistic.update(store.read, lambda cur: None, store.write) is None
    assert store.writes == 0


def test_persistent_contention_raises_the_last_conflict():
    store = Store(1, interfere=10)
    with pytest.raises(Conflict):
        optimistic.update(store.read, lambda cur: 0, store.write, attempts=3)
    assert store.writes == 3


def test_other_errors_are_not_retried():
    def write(current, change):
        raise ValueError("bad")

    with pytest.raises(ValueError):
        optimistic.update(lambda: {}, lambda cur: 1, write)
