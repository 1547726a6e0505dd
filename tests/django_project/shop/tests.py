"""The Django integration as a project uses it: tasks enqueued through ``django.tasks``, run by
``manage.py omniq_worker`` in another process, read back as Django ``TaskResult``s."""

import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

from django.db import connection
from django.tasks import TaskResultStatus, default_task_backend
from django.tasks.exceptions import InvalidTask, TaskResultDoesNotExist
from django.test import SimpleTestCase, TransactionTestCase
from django.utils import timezone

from omniq.contrib.django import get_omniq
from shop import tasks
from shop.models import Order

PROJECT = Path(__file__).resolve().parent.parent
WORKER = ["manage.py", "omniq_worker", "--max-workers", "1"]


def wait_until(predicate, timeout=20.0, what="condition"):
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} not met within {timeout} s")
        time.sleep(0.02)


def finished(result, timeout=20.0):
    def done():
        result.refresh()
        return result.is_finished

    wait_until(done, timeout, f"task {result.id} finished")
    return result


def manage(*args):
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=PROJECT,
        capture_output=True,
        text=True,
        timeout=60,
    )


class WorkerProcess(TransactionTestCase):
    """A worker process started with the test database for the class's tests."""

    options: list[str] = []

    @classmethod
    def setUpClass(cls):
        super().setUpClass()
        env = {**os.environ, "DJANGO_DB_NAME": connection.settings_dict["NAME"]}
        log_name = f"worker-{cls.__name__}.log"
        cls.log = open(Path(os.environ["DJANGO_DATA_DIR"]) / log_name, "w+")  # noqa: SIM115
        cls.worker = subprocess.Popen(
            [sys.executable, *WORKER, *cls.options],
            cwd=PROJECT,
            env=env,
            stdout=cls.log,
            stderr=subprocess.STDOUT,
        )

    @classmethod
    def tearDownClass(cls):
        cls.worker.send_signal(signal.SIGTERM)
        code = cls.worker.wait(timeout=30)
        cls.log.seek(0)
        output = cls.log.read()
        cls.log.close()
        super().tearDownClass()
        assert code == 0, f"worker exited {code}:\n{output}"


class WorkerTests(WorkerProcess):
    options = ["--worker-type", "thread_pool", "--queues", "default,emails"]

    def test_a_successful_task_maps_status_value_attempts_and_times(self):
        result = finished(tasks.add.enqueue(2, 3))
        self.assertEqual(result.status, TaskResultStatus.SUCCESSFUL)
        self.assertEqual(result.return_value, 5)
        self.assertEqual((result.args, result.kwargs), ([2, 3], {}))
        self.assertEqual(result.attempts, 1)
        self.assertEqual(len(result.worker_ids), 1)
        self.assertEqual(result.errors, [])
        self.assertLessEqual(result.enqueued_at, result.started_at)
        self.assertLessEqual(result.started_at, result.last_attempted_at)
        self.assertLessEqual(result.last_attempted_at, result.finished_at)
        again = tasks.add.get_result(result.id)
        self.assertEqual((again.status, again.return_value), (result.status, 5))

    def test_a_failing_task_records_each_attempt_and_its_error(self):
        result = finished(tasks.fail.enqueue("boom"))
        self.assertEqual(result.status, TaskResultStatus.FAILED)
        self.assertEqual(result.attempts, 2)  # task_options: max_retries=1

        def both_errors():  # earlier attempts' errors come from events, written in batches
            result.refresh()
            return len(result.errors) == 2

        wait_until(both_errors, 5, "an error per attempt")
        for error in result.errors:
            self.assertIs(error.exception_class, ValueError)
            self.assertIn("boom", error.traceback)
        with self.assertRaises(ValueError):
            result.return_value  # noqa: B018

    def test_priority_and_queue_are_omniq_s(self):
        low = tasks.send_email.enqueue("a@example.com")
        high = tasks.send_email.using(priority=100).enqueue("b@example.com")
        stored = [get_omniq().get_task(r.id) for r in (low, high)]
        self.assertEqual([t.priority for t in stored], [-100, 100])
        self.assertEqual({t.queue_name for t in stored}, {"emails"})
        self.assertEqual(finished(high).return_value, {"sent": "b@example.com"})
        self.assertEqual(finished(low).status, TaskResultStatus.SUCCESSFUL)

    def test_run_after_defers_the_task(self):
        run_after = timezone.now() + timedelta(seconds=1.5)
        result = tasks.add.using(run_after=run_after).enqueue(1, 1)
        self.assertEqual(tasks.add.get_result(result.id).status, TaskResultStatus.READY)
        self.assertEqual(get_omniq().get_task(result.id).run_at, run_after)
        self.assertGreaterEqual(finished(result).started_at, run_after)

    def test_async_tasks_run(self):
        self.assertEqual(finished(tasks.async_double.enqueue(21)).return_value, 42)

    def test_a_task_taking_context_gets_its_own_result(self):
        result = finished(tasks.who_am_i.enqueue())
        self.assertEqual(result.return_value, {"id": result.id, "attempt": 1})

    def test_tasks_use_the_orm_on_fresh_connections(self):
        pk = finished(tasks.create_order.enqueue("book")).return_value
        self.assertEqual(Order.objects.get(pk=pk).item, "book")
        for _ in range(2):  # one worker thread: the second run would see the first's connection
            self.assertIs(finished(tasks.connection_was_open.enqueue()).return_value, False)

    def test_omniq_s_own_facade_from_the_settings(self):
        task_id = tasks.enqueue_native(6, 7)
        self.assertEqual(get_omniq().get_result(task_id, wait=True, timeout=20).unwrap(), 42)


class ProcessPoolWorkerTests(WorkerProcess):
    """Tasks in a spawned child process, which runs Django's setup itself."""

    options = ["--worker-type", "process_pool", "--queues", "children"]

    def test_a_task_in_a_child_process_uses_the_orm(self):
        result = finished(tasks.create_order.using(queue_name="children").enqueue("pen"))
        self.assertEqual(Order.objects.get(pk=result.return_value).item, "pen")


class BackendTests(SimpleTestCase):
    def test_flags_say_what_the_backend_does(self):
        backend = default_task_backend
        for flag in ("defer", "async_task", "get_result", "priority"):
            self.assertIs(getattr(backend, f"supports_{flag}"), True, flag)

    def test_unknown_ids_and_invalid_tasks_are_django_s_errors(self):
        with self.assertRaises(TaskResultDoesNotExist):
            default_task_backend.get_result("no-such-task")
        not_django = get_omniq().enqueue(tasks.multiply, {"a": 1, "b": 2}, queue_name="elsewhere")
        with self.assertRaises(TaskResultDoesNotExist):
            default_task_backend.get_result(not_django)
        with self.assertRaises(InvalidTask):
            tasks.add.using(queue_name="nowhere")
        with self.assertRaises(TypeError):  # Django's JSON check, before anything is stored
            tasks.add.enqueue(object(), 1)


class CommandTests(SimpleTestCase):
    def test_the_worker_command_takes_omniq_worker_s_options(self):
        shown = manage("omniq_worker", "--help")
        self.assertEqual(shown.returncode, 0, shown.stderr)
        for option in ("--backend", "--worker-type", "--max-workers", "--queues", "--stop-timeout"):
            self.assertIn(option, shown.stdout)

    def test_a_wrong_alias_or_flag_is_one_line(self):
        wrong = manage("omniq_worker", "--backend", "nope")
        self.assertEqual(wrong.returncode, 1)
        self.assertIn("TASKS has no backend 'nope'", wrong.stderr)
        self.assertEqual(len(wrong.stderr.strip().splitlines()), 1, wrong.stderr)
        bad_flag = manage("omniq_worker", "--max-workers", "0")
        self.assertEqual(bad_flag.returncode, 2, bad_flag.stderr)
