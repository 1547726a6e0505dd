"""Scheduling: cron, interval and one-off schedules stored in the task-queue backend."""

from omniq.scheduling._twins import Scheduler
from omniq.scheduling.scheduler import AsyncScheduler

__all__ = ["AsyncScheduler", "Scheduler"]
