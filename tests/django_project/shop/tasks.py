"""Django tasks run by an OmniQ worker in another process."""

import asyncio

from django.db import connection
from django.tasks import task

from omniq.contrib.django import get_omniq


@task
def add(a, b):
    return a + b


@task(queue_name="emails", priority=-100)
def send_email(to):
    return {"sent": to}


@task
def fail(message):
    raise ValueError(message)


@task
async def async_double(x):
    await asyncio.sleep(0)
    return 2 * x


@task(takes_context=True)
def who_am_i(context):
    return {"id": context.task_result.id, "attempt": context.attempt}


@task
def create_order(item):
    from shop.models import Order

    return Order.objects.create(item=item).pk


@task
def connection_was_open():
    """Whether this thread's database connection survived the previous task (with
    CONN_MAX_AGE=0 it must not: the worker closes it after each task)."""
    was_open = connection.connection is not None
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    return was_open


def multiply(a, b):
    """A plain function for OmniQ's own facade (``get_omniq()``)."""
    return a * b


def enqueue_native(a, b):
    return get_omniq().enqueue(multiply, {"a": a, "b": b})
