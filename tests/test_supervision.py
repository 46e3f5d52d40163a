"""Under ``make run`` one crash is not an outage: a process killed with SIGKILL is restarted
by the supervisor and the stack answers again within seconds."""

import time

import httpx
import psutil
import pytest
import redis

from tests.support import wait_for

KINDS = [
    ("gateway serve", "gateway"),
    ("auth serve", "auth"),
    ("documents serve", "documents"),  # with its worker inside
    ("mail serve", "mail"),
]


def find(stack, fragment: str) -> psutil.Process | None:
    supervisor = psutil.Process(stack.process.pid)
    for child in supervisor.children(recursive=True):
        try:
            if fragment in " ".join(child.cmdline()):
                return child
        except psutil.NoSuchProcess:
            continue
    return None


def healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize(("fragment", "http_name"), KINDS)
def test_a_killed_process_is_restarted_and_the_stack_answers_again(stack, fragment, http_name):
    command = "services." + fragment  # e.g. "python -m services.documents serve"
    victim = find(stack, command)
    assert victim is not None, fragment
    old_pid = victim.pid
    victim.kill()  # SIGKILL: no chance to clean up
    victim.wait(timeout=10)
    started = time.monotonic()

    def restarted() -> psutil.Process | None:
        process = find(stack, command)
        return process if process is not None and process.pid != old_pid else None

    assert wait_for(restarted, timeout=30).is_running()
    if http_name is not None:
        wait_for(lambda: healthy(getattr(stack, http_name)), timeout=30)
    wait_for(lambda: httpx.get(f"{stack.gateway}/readyz", timeout=5).status_code == 200, timeout=60)
    assert time.monotonic() - started < 60
    assert stack.process.popen is not None and stack.process.popen.poll() is None  # the rest stayed up
    assert "exited: " in stack.process.log_text()  # the supervisor logged the crash


def test_a_restarted_service_runs_its_worker_again(stack):
    """Under make run a service's worker lives in its API process: after a crash the restarted
    process runs the worker again (ARQ rewrites its health record at start), not only the API."""
    client = redis.Redis.from_url(stack.env["PAI_REDIS_URL"])
    key = "pai:documents:health-check"  # ARQ's record: a timestamp and job counts
    before = wait_for(lambda: client.get(key), timeout=30)
    victim = find(stack, "services.documents serve")
    assert victim is not None
    time.sleep(1.1)  # the record's timestamp has one-second resolution
    victim.kill()
    victim.wait(timeout=10)
    after = wait_for(lambda: (value := client.get(key)) not in (None, before) and value, timeout=60)
    assert after != before
    wait_for(lambda: healthy(stack.documents), timeout=30)


def test_the_supervisor_logs_no_critical_line(stack):
    """Started as ``make run`` starts it (as root on our machines), supervisord has nothing
    critical to say: an operator reading CRIT should find a real problem."""
    log = stack.process.log_path.read_text(errors="replace")
    assert "supervisord started" in log
    assert " CRIT " not in log, [line for line in log.splitlines() if " CRIT " in line]
