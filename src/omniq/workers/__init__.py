"""Workers: one shared core (:mod:`omniq.workers.base`), one module per way of running tasks."""

from omniq.workers.async_worker import AsyncWorker
from omniq.workers.base import BaseWorker
from omniq.workers.gevent_pool import AsyncGeventWorker, GeventWorker
from omniq.workers.process_pool import AsyncProcessPoolWorker, ProcessPoolWorker
from omniq.workers.thread_pool import AsyncThreadPoolWorker, ThreadPoolWorker

__all__ = [
    "AsyncGeventWorker",
    "AsyncProcessPoolWorker",
    "AsyncThreadPoolWorker",
    "AsyncWorker",
    "BaseWorker",
    "GeventWorker",
    "ProcessPoolWorker",
    "ThreadPoolWorker",
]
