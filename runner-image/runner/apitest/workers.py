"""Worker processes that can be stopped at any point: a pool of them, each answering one
request at a time under a wall-clock deadline.

Some work cannot be interrupted from inside (QuickJS does not check its interrupt handler
while a regular expression backtracks), so the deadline is enforced from outside: a worker
that has not answered in time is killed (SIGKILL) and a fresh one takes its place on the
next request. Nothing of a killed request survives; the caller decides what that means.

A worker is `python -I workers.py <module file> <function> [<prepare>]`: it loads the module
from its file, not through the runner's package, so a start costs the interpreter and the
module's own imports only (not httpx, pydantic, ...). It runs `function(request: bytes) ->
bytes` for each request, and `prepare()`, when given, before the first request and after
each reply, while the runner reads the reply: work the next request then need not wait for.
It gets an empty environment (no tokens, no keys of the runner) and exits when the runner
closes its end of the pipe. Requests and replies are length-prefixed frames
(`multiprocessing.connection`) on the worker's stdin and stdout; whatever the worker itself
prints goes to the runner's stderr.
"""

from __future__ import annotations

import atexit
import os
import subprocess
import sys
import threading
from collections.abc import Callable
from multiprocessing.connection import Connection

__all__ = ["WorkerFailed", "WorkerPool", "WorkerTimeout"]

READY = b"ready"
START_TIMEOUT_S = 30.0
"""A worker that has not loaded its module by then is broken, not slow."""


class WorkerTimeout(Exception):
    """The worker did not answer within the deadline; it has been killed."""


class WorkerFailed(Exception):
    """The worker could not be started or stopped without answering (it crashed, or the
    kernel killed it)."""


class _Worker:
    def __init__(self, argv: list[str]):
        child_in, to_child = os.pipe()
        from_child, child_out = os.pipe()
        try:
            self.process = subprocess.Popen(argv, stdin=child_in, stdout=child_out, env={}, close_fds=True)
        except OSError as exc:
            os.close(to_child)
            os.close(from_child)
            raise WorkerFailed(f"could not start a worker: {exc}") from exc
        finally:
            os.close(child_in)
            os.close(child_out)
        self._requests = Connection(to_child, readable=False)
        self._replies = Connection(from_child, writable=False)
        try:
            ready = self._replies.poll(START_TIMEOUT_S) and self._replies.recv_bytes() == READY
        except (OSError, EOFError):
            ready = False
        if not ready:
            self.kill()
            raise WorkerFailed("the worker did not start")

    def call(self, request: bytes, timeout_s: float) -> bytes:
        try:
            self._requests.send_bytes(request)
            if not self._replies.poll(timeout_s):
                raise WorkerTimeout(f"no answer within {timeout_s:g} s")
            return self._replies.recv_bytes()
        except (OSError, EOFError) as exc:
            raise WorkerFailed(f"the worker stopped ({self._exit_reason()})") from exc

    def _exit_reason(self) -> str:
        try:
            code = self.process.wait(timeout=1)
        except subprocess.TimeoutExpired:
            return "its pipe broke"
        return f"killed by signal {-code}" if code < 0 else f"exit status {code}"

    def kill(self) -> None:
        self.process.kill()
        self.process.wait()
        self._requests.close()
        self._replies.close()


class WorkerPool:
    """Up to `size` workers running `function` of `module_file`; started on first use, kept
    while they behave, replaced after a timeout or a crash. Safe to share between threads: a
    call waits for a free worker (that wait is not part of its deadline)."""

    def __init__(self, module_file: str, function: str, size: int, prepare: str | None = None):
        if size < 1:
            raise ValueError("a pool needs at least one worker")
        self._argv = [
            sys.executable,
            "-I",
            os.path.abspath(__file__),
            os.path.abspath(module_file),
            function,
            *([prepare] if prepare else []),
        ]
        self._size = size
        self._slots = threading.BoundedSemaphore(size)
        self._idle: list[_Worker] = []
        self._lock = threading.Lock()
        atexit.register(self.close)

    def call(self, request: bytes, timeout_s: float) -> bytes:
        """The worker's reply; WorkerTimeout when it has not answered `timeout_s` (wall time)
        after the request was sent, WorkerFailed when it died."""
        with self._slots:
            worker = self._take()
            try:
                reply = worker.call(request, timeout_s)
            except BaseException:
                worker.kill()
                # Started now rather than on the next call, which then need not wait for it.
                threading.Thread(target=self._replace, name="script-worker-start", daemon=True).start()
                raise
            self._give_back(worker)
            return reply

    def _replace(self) -> None:
        try:
            self._give_back(_Worker(self._argv))
        except WorkerFailed:
            pass  # the next call starts one, and reports it if that fails too

    def _give_back(self, worker: _Worker) -> None:
        with self._lock:
            if len(self._idle) < self._size:
                self._idle.append(worker)
                return
        worker.kill()  # a replacement and a call's own start raced: one is enough

    def _take(self) -> _Worker:
        with self._lock:
            while self._idle:
                worker = self._idle.pop()
                if worker.process.poll() is None:
                    return worker
                worker.kill()  # died while idle (the kernel's OOM killer): only its pipes are left
        return _Worker(self._argv)

    def close(self) -> None:
        """Stops the idle workers; busy ones stop when their call ends."""
        with self._lock:
            idle, self._idle = self._idle, []
        for worker in idle:
            worker.kill()


def serve(handle: Callable[[bytes], bytes], prepare: Callable[[], None] | None = None) -> None:
    """The worker's side: answer requests until the runner goes away."""
    requests = Connection(os.dup(0), writable=False)
    replies = Connection(os.dup(1), readable=False)
    os.dup2(2, 1)  # stray output must not corrupt the reply frames
    if prepare:
        prepare()
    replies.send_bytes(READY)
    while True:
        try:
            request = requests.recv_bytes()
        except EOFError:
            return
        replies.send_bytes(handle(request))
        if prepare:
            prepare()


if __name__ == "__main__":
    import runpy

    module = runpy.run_path(sys.argv[1])
    serve(module[sys.argv[2]], module[sys.argv[3]] if len(sys.argv) > 3 else None)
