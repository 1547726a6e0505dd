"""The sync twins are derived from their async classes: same methods, same signatures."""

from __future__ import annotations

import inspect
import os
import threading

import pytest
import taskfns

import omniq
import omniq.queue
import omniq.storage
import omniq.workers
from omniq._sync import SyncTwin, portal
from omniq.errors import LoopThreadError


def _twins() -> list[type[SyncTwin]]:
    found = []
    for module in (omniq, omniq.queue, omniq.storage, omniq.workers):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, type) and issubclass(obj, SyncTwin) and obj is not SyncTwin:
                found.append(obj)
    return found


@pytest.mark.parametrize("twin", _twins(), ids=lambda c: c.__name__)
def test_every_async_method_has_a_sync_twin_with_the_same_signature(twin: type[SyncTwin]) -> None:
    source = twin._async_class
    for name, member in inspect.getmembers(source):
        if name.startswith("_") or not inspect.iscoroutinefunction(member):
            continue
        sync = getattr(twin, name)
        assert not inspect.iscoroutinefunction(sync), name
        assert inspect.signature(sync) == inspect.signature(member), name
        if name not in twin.__dict__ or getattr(sync, "__wrapped__", None) is not None:
            assert sync.__doc__ == member.__doc__, name
    assert inspect.signature(twin.__init__) == inspect.signature(source.__init__)


def test_async_classes_and_sync_twins_are_paired_by_name() -> None:
    for twin in _twins():
        assert twin._async_class.__name__ in (f"Async{twin.__name__}", "AsyncOmniQ")


def test_sync_calls_from_many_threads_share_one_loop() -> None:
    queue = omniq.queue.MemoryTaskQueue()
    ids: list[str] = []

    def enqueue() -> None:
        for _ in range(50):
            ids.append(queue.enqueue(taskfns.noop))

    threads = [threading.Thread(target=enqueue) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert queue.count() == 200 == len(set(ids))
    queue.close()


def test_sync_call_from_the_loop_thread_is_refused() -> None:
    queue = omniq.queue.MemoryTaskQueue()

    async def inside() -> None:
        queue.count()

    with pytest.raises(LoopThreadError, match="Async"):
        portal().run(inside())


def test_twin_is_recreated_in_a_forked_child() -> None:
    queue = omniq.queue.MemoryTaskQueue()
    queue.enqueue(taskfns.noop)
    pid = os.fork()
    if pid == 0:  # child: a fresh loop thread and a fresh (empty) memory queue
        ok = queue.count() == 0 and queue.enqueue(taskfns.noop) and queue.count() == 1
        os._exit(0 if ok else 1)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert queue.count() == 1
