"""The web app in headless Chromium (Debian's, driven by Playwright): its transferred size,
time to interactive of the Ask page, and how long a streamed answer's first text takes to
reach the screen once its bytes reach the browser.

What it measures (each with a baseline from the same run)
    * ``size``   -- bytes of the page, its script and its stylesheet uncompressed, and as
      sent to a browser that accepts Brotli and gzip (the build's precompressed copies);
    * ``ask TTI`` -- a signed-in reload of ``/ask`` until the question box is on screen and
      enabled (the app starts, refreshes its session from the cookie, loads the
      conversations); baseline: the same HTML with JavaScript off, until DOMContentLoaded;
    * ``stream`` -- from the first ``delta`` bytes arriving in the page (a wrapper around
      ``fetch`` tees the answer's body) to the first answer text in the DOM; baseline: the same
      bytes written into a bare element by that wrapper, no React.
The stack is auth, gateway, documents (+ worker), mail and an assistant whose model is the
instant stand-in (``tests/openai_stub.py``), on a throw-away database; one small document is
indexed so every question has a source.

Run from the repository root: ``.venv/bin/python bench/web.py [--runs 20]``.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
from _stack import describe_machine, percentile, stack
from cryptography.fernet import Fernet
from playwright.sync_api import sync_playwright

from tests.support import Process, free_port, python

CHROMIUM = "/usr/bin/chromium"
FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
PASSWORD = "bench web password 42"  # noqa: S105 (a throw-away user of a throw-away database)
# Injected before the app's own scripts (not subject to the page's CSP): tees the answer
# stream, records when its first delta arrives, mirrors it into a bare element (the baseline),
# and records when the app's answer text first appears.
PROBE = """
(() => {
  const marks = (window.__marks = {});
  const original = window.fetch;
  window.fetch = async (input, init) => {
    const response = await original(input, init);
    const url = typeof input === "string" ? input : input.url;
    if (!url.endsWith("/queries") || !response.body) return response;
    const [mine, theirs] = response.body.tee();
    (async () => {
      const reader = mine.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (marks.delta === undefined && decoder.decode(value, { stream: true }).includes("event: delta")) {
          marks.delta = performance.now();
          const bare = document.createElement("div");
          document.body.appendChild(bare);
          const seen = () => { marks.bare ??= performance.now(); };
          new MutationObserver(seen).observe(bare, { childList: true });
          bare.textContent = "x";
        }
      }
    })();
    return new Response(theirs, { status: response.status, headers: response.headers });
  };
  new MutationObserver(() => {
    const live = document.querySelector(".live .answer-text");
    if (marks.screen === undefined && live && live.textContent) marks.screen = performance.now();
  }).observe(document, { childList: true, subtree: true, characterData: true });
})();
"""


def summary(values: list[float]) -> str:
    ordered = sorted(values)
    return f"p50 {percentile(ordered, 50):7.1f} ms, p95 {percentile(ordered, 95):7.1f} ms"


def wait_answering(url: str, process: Process, timeout: float = 30.0) -> None:
    """Until ``url`` answers at all (the stand-in has no health route)."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            httpx.get(url, timeout=1.0)
            return
        except httpx.TransportError:
            if time.monotonic() > deadline or process.popen.poll() is not None:
                raise SystemExit(f"{url} never answered") from None
            time.sleep(0.2)


def wait_marks(page, timeout: float = 60.0) -> dict:
    """The probe's marks once the answer's first text is on screen (polled: the page's CSP
    forbids the string evaluation ``wait_for_function`` would use)."""
    deadline = time.monotonic() + timeout
    while True:
        marks = page.evaluate("() => window.__marks")
        if marks and "screen" in marks and "bare" in marks:
            return marks
        if time.monotonic() > deadline:
            raise SystemExit(f"no answer text on screen: {marks}")
        time.sleep(0.02)


def sizes(gateway: str) -> list[tuple[str, int, int]]:
    """(path, bytes uncompressed, bytes on the wire to a browser accepting br and gzip)."""
    page = httpx.get(gateway + "/").text
    paths = ["/", *re.findall(r'(?:src|href)="(/assets/[^"]+)"', page)]
    rows = []
    for path in paths:
        plain = httpx.get(gateway + path, headers={"Accept-Encoding": "identity"}).content
        with httpx.stream("GET", gateway + path, headers={"Accept-Encoding": "gzip, deflate, br"}) as sent:
            wire = sum(len(chunk) for chunk in sent.iter_raw())
        rows.append((path, len(plain), wire))
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    options = parser.parse_args()
    describe_machine("Web app in headless Chromium")
    stub_port = free_port()
    extra = lambda urls: {  # noqa: E731
        "PAI_PUBLIC_URL": urls["gateway"],
        "PAI_LLM_BACKEND": "openai",
        "PAI_LLM_BASE_URL": f"http://127.0.0.1:{stub_port}/v1",
        "PAI_LLM_MODEL": "instant",
        "PAI_MAX_CONCURRENT_ANSWERS": "1000",
        "PAI_MAIL_TOKEN_KEYS": Fernet.generate_key().decode(),
    }
    with stack(
        with_worker=True, services=("auth", "gateway", "documents", "mail", "assistant"), extra_env=extra
    ) as env:
        stub = Process(
            python("tests/openai_stub.py", str(stub_port)), env.env, env.workdir / "stub.log"
        ).start()
        try:
            wait_answering(f"http://127.0.0.1:{stub_port}/v1/models", stub)
            return measure(env.gateway, options.runs)
        finally:
            stub.stop()


def measure(gateway: str, runs: int) -> int:
    username = f"web_{uuid.uuid4().hex[:8]}"
    httpx.post(
        f"{gateway}/auth/register",
        json={"email": f"{username}@example.com", "username": username, "password": PASSWORD},
    ).raise_for_status()
    token = httpx.post(f"{gateway}/auth/token", data={"username": username, "password": PASSWORD}).json()[
        "access_token"
    ]
    headers = {"Authorization": f"Bearer {token}"}
    note = b"The lighthouse keeper counted forty herons on the northern pier at dawn.\n"
    document = httpx.post(
        f"{gateway}/documents", headers=headers, files={"file": ("herons.txt", note)}
    ).json()
    deadline = time.monotonic() + 120
    while httpx.get(f"{gateway}/documents/{document['id']}", headers=headers).json()["status"] != "ready":
        if time.monotonic() > deadline:
            raise SystemExit("the document was not indexed in time")
        time.sleep(0.5)

    rows = sizes(gateway)
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=FLAGS)
        context = browser.new_context()
        context.add_init_script(PROBE)
        page = context.new_page()
        page.goto(f"{gateway}/login")
        page.get_by_label("Username or email").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        page.get_by_label("Your question").wait_for()

        tti, bare_load = [], []
        plain = browser.new_context(java_script_enabled=False)
        plain_page = plain.new_page()
        for _ in range(runs):
            started = time.perf_counter()
            page.goto(f"{gateway}/ask")
            page.wait_for_selector("textarea[name=question]:enabled")
            tti.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            plain_page.goto(f"{gateway}/ask", wait_until="domcontentloaded")
            bare_load.append((time.perf_counter() - started) * 1000)

        app_delay, bare_delay = [], []
        for run in range(runs):
            page.goto(f"{gateway}/ask")
            page.get_by_label("Your question").fill(f"How many herons did the keeper count? ({run})")
            page.get_by_role("button", name="Ask").click()
            marks = wait_marks(page)
            app_delay.append(marks["screen"] - marks["delta"])
            bare_delay.append(marks["bare"] - marks["delta"])
            page.locator(".live").wait_for(state="detached")
        browser.close()

    print("transferred (uncompressed / as sent, Accept-Encoding: gzip, deflate, br):")
    for path, raw, packed in rows:
        print(f"  {path:<40} {raw:>9,} B / {packed:>8,} B")
    print(f"  {'total':<40} {sum(r[1] for r in rows):>9,} B / {sum(r[2] for r in rows):>8,} B")
    print(f"Ask page, time to interactive ({runs} reloads, signed in):")
    print(f"  app                                      {summary(tti)}")
    print(f"  same HTML, JavaScript off (baseline)     {summary(bare_load)}")
    ratio = percentile(sorted(tti), 50) / percentile(sorted(bare_load), 50)
    print(f"  ratio (p50)                              {ratio:.1f}x")
    print(f"first answer text on screen after its first bytes reach the page ({runs} questions):")
    print(f"  app (React render)                       {summary(app_delay)}")
    print(f"  bare element, no React (baseline)        {summary(bare_delay)}")
    added = percentile(sorted(app_delay), 50) - percentile(sorted(bare_delay), 50)
    print(f"  React adds (p50)                         {added:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
