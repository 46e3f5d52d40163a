"""``serve --with-worker`` (how ``make run`` starts each service): the service's ARQ worker runs
inside its API process, and a worker that cannot run takes the process down with it, so the
supervisor restarts both rather than leaving an API whose jobs nobody runs."""

import json

from tests.support import Process, free_port, python, wait_for


def test_a_worker_that_cannot_run_stops_its_process(base_env, tmp_path):
    # The API opens Redis lazily and answers; the worker needs Redis at once and gives up.
    env = {**base_env, "PAI_REDIS_URL": f"redis://127.0.0.1:{free_port()}/0"}
    port = free_port()
    args = python("-m", "services.assistant", "serve", "--with-worker", "--port", str(port))
    process = Process(args, env, tmp_path / "assistant.log").start()
    try:
        assert process.popen is not None
        wait_for(lambda: process.popen.poll() is not None, timeout=60)
    finally:
        process.stop()
    events = [json.loads(line)["event"] for line in process.log_text().splitlines() if line.startswith("{")]
    assert "worker_died_stopping_process" in events, events
    # The API had started and then shut down cleanly, the worker with it.
    assert events.index("Application startup complete.") < events.index("Waiting for application shutdown.")
    assert "Application shutdown complete." in events, events
