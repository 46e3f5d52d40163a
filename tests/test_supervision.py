"""Under ``make run`` one crash is not an outage: a process killed with SIGKILL is restarted
by the supervisor and the stack answers again within seconds."""

import time

import httpx
import psutil
import pytest

from tests.support import wait_for

KINDS = [
    ("gateway serve", "gateway"),
    ("auth serve", "auth"),
    ("documents worker", None),
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
    command = "services." + fragment  # e.g. "python -m services.documents worker"
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
