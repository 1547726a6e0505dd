"""Workers: one shared core (:mod:`omniq.workers.base`), one module per way of running tasks."""

from omniq.workers._twins import GeventWorker, ProcessPoolWorker, ThreadPoolWorker
from omniq.workers.async_worker import AsyncWorker
from omniq.workers.base import BaseWorker
from omniq.workers.gevent_pool import AsyncGeventWorker
from omniq.workers.process_pool import AsyncProcessPoolWorker
from omniq.workers.thread_pool import AsyncThreadPoolWorker

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
