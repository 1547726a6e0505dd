"""Scheduling: cron, interval and one-off schedules stored in the task-queue backend."""

from omniq.scheduling.scheduler import AsyncScheduler, Scheduler

__all__ = ["AsyncScheduler", "Scheduler"]
