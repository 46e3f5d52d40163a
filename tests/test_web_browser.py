"""The web app in a real browser: Debian's Chromium, driven by Playwright (which downloads
nothing), against the processes ``make run`` starts. A second gateway serves the app with an
assistant that asks the scripted OpenAI stand-in (so citations are known in advance), and with
an auth and a mail process whose public address is that gateway's; everything else is the
stack's own. Each page is saved as a screenshot: in a temporary folder, or with
``PAI_SCREENSHOTS_DIR=docs/screenshots`` (``make screenshots``) as the README's pictures."""

import os
import re
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, Page, expect, sync_playwright

from tests.conftest import ADMIN_PASSWORD
from tests.files import PNG, docx_file, pdf
from tests.gmail_stub import mime_plain
from tests.openai_stub import StubServer
from tests.support import free_port, wait_for

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]
# `make screenshots` refreshes the README's pictures; `make test` keeps them out of the tree.
SCREENSHOTS = Path(os.environ.get("PAI_SCREENSHOTS_DIR") or tempfile.mkdtemp(prefix="pai-screenshots-"))
PASSWORD = "browser test password 42"
TIMEOUT_MS = 60_000


@dataclass
class Web:
    url: str
    model: StubServer


@pytest.fixture(scope="module")
def web(start_service) -> Iterator[Web]:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    model = StubServer(free_port()).start()
    auth, _ = start_service("auth", public_url=url)
    mail, _ = start_service(
        "mail", frontend_url=f"{url}/inbox", oauth_redirect_uri=f"{url}/mail/oauth/callback"
    )
    assistant, _ = start_service(
        "assistant", llm_backend="openai", llm_base_url=model.base_url, llm_model="stub-model"
    )
    start_service("gateway", port=port, auth_url=auth, mail_url=mail, assistant_url=assistant)
    yield Web(url, model)
    model.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    assert Path(CHROMIUM).exists(), f"{CHROMIUM} is missing: apt-get install chromium (.ci/run does)"
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_FLAGS)
        yield browser
        browser.close()


@pytest.fixture
def context(browser: Browser) -> Iterator[BrowserContext]:
    context = browser.new_context(viewport={"width": 1280, "height": 860})
    context.set_default_timeout(TIMEOUT_MS)
    yield context
    context.close()


def shot(page: Page, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def register(web: Web, prefix: str) -> tuple[str, str]:
    username = f"{prefix}_{uuid.uuid4().hex[:8]}"
    response = httpx.post(
        f"{web.url}/auth/register",
        json={"email": f"{username}@example.com", "username": username, "password": PASSWORD},
    )
    assert response.status_code == 201, response.text
    return username, f"{username}@example.com"


def sign_in(page: Page, web: Web, username: str, password: str = PASSWORD) -> None:
    page.goto(f"{web.url}/login")
    page.get_by_label("Username or email").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_label("Your question")).to_be_visible()


def test_register_sign_in_and_every_page(web, context):
    page = context.new_page()
    page.goto(web.url)
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    shot(page, "sign-in")
    page.get_by_role("link", name="Register").click()
    username = f"web_{uuid.uuid4().hex[:8]}"
    page.get_by_label("Email").fill(f"{username}@example.com")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Register").click()
    expect(page).to_have_url(re.compile(r"/ask$"))
    shot(page, "ask")
    for link, heading, name in (
        ("Documents", "Documents", "documents"),
        ("Mail", "Mail", "mail"),
        ("History", "History", "history"),
        ("Account", "Account", "account"),
    ):
        page.get_by_role("navigation").get_by_role("link", name=link).click()
        expect(page.get_by_role("heading", name=heading, exact=True)).to_be_visible()
        shot(page, name)

    # A non-admin never sees the admin page, not even by its address.
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)
    page.goto(f"{web.url}/manage")
    expect(page).to_have_url(re.compile(r"/ask$"))

    # The refresh token is an HttpOnly cookie: never in document.cookie or in storage.
    assert "pai_refresh" not in page.evaluate("document.cookie")
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    cookies = [c for c in context.cookies() if c["name"] == "pai_refresh"]
    assert cookies and all(c["httpOnly"] and c["sameSite"] == "Strict" for c in cookies)
    page.reload()  # the cookie brings the session back; the access token was only in memory
    expect(page.get_by_label("Your question")).to_be_visible()

    page.set_viewport_size({"width": 390, "height": 844})  # a phone: one column, nothing cut off
    page.get_by_role("navigation").get_by_role("link", name="Ask").click()
    assert page.evaluate("document.documentElement.scrollWidth") <= 390
    shot(page, "ask-phone")
    page.set_viewport_size({"width": 1280, "height": 860})

    page.get_by_role("button", name="Sign out").first.click()
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    assert not [c for c in context.cookies() if c["name"] == "pai_refresh" and c["value"]]


def test_upload_a_pdf_ask_about_it_and_open_the_cited_page(web, context, tmp_path):
    username, _ = register(web, "reader")
    page = context.new_page()
    sign_in(page, web, username)
    page.get_by_role("navigation").get_by_role("link", name="Documents").click()
    filler = "Quarterly minutes about the garden committee and its bulb orders. " * 6
    lease = tmp_path / "lease.pdf"
    lease.write_bytes(pdf([filler, "The tenant of flat nine pays the rent of 1,240 euros to Marta Olsen."]))
    page.locator('input[type="file"]').set_input_files(str(lease))
    row = page.locator("tr", has_text="lease.pdf")
    expect(row).to_have_attribute("data-status", "ready", timeout=120_000)
    shot(page, "documents-ready")

    words = ["The", "rent", "of", "flat", "nine", "is", "1,240", "euros", ",", "paid", "to", "Marta", "Olsen"]
    web.model.state.chat(*[w + " " for w in words], "[1]", ".", delay=0.25)
    page.get_by_role("navigation").get_by_role("link", name="Ask").click()
    page.get_by_label("Your question").fill("How much rent does the tenant of flat nine pay?")
    page.get_by_role("button", name="Ask").click()
    live = page.locator(".live .answer-text")
    expect(live).to_contain_text("The rent")  # the first words, while the rest is still coming
    partial = live.inner_text()
    expect(page.locator(".live")).to_have_count(0)  # done: the stored answer replaced the live one
    answer = page.locator(".turn .answer-text")
    expect(answer).to_have_count(1)
    final = answer.inner_text()
    assert len(partial) < len(final) and "Marta Olsen" in final, (partial, final)
    citation = answer.locator("a.cite")
    expect(citation).to_have_text("[1]")
    page.get_by_role("button", name="Helpful", exact=True).click()
    expect(page.get_by_role("button", name="Helpful", exact=True)).to_have_attribute("aria-pressed", "true")
    shot(page, "ask-answer")

    citation.click()
    expect(page).to_have_url(re.compile(r"/files/view\?id=[0-9a-f-]+&page=2"))
    viewer = page.locator("iframe.viewer")
    expect(viewer).to_have_attribute("src", re.compile(r"^blob:.*#page=2$"))
    expect(page.get_by_role("heading", name=re.compile(r"lease\.pdf, page 2"))).to_be_visible()
    shot(page, "document-page")


def test_a_cited_docx_opens_as_its_text_with_the_quote_marked(web, context, tmp_path):
    username, _ = register(web, "wordy")
    page = context.new_page()
    sign_in(page, web, username)
    page.get_by_role("navigation").get_by_role("link", name="Documents").click()
    report = tmp_path / "herons.docx"
    report.write_bytes(docx_file("The lighthouse keeper counted forty-two herons on the north pier."))
    page.locator('input[type="file"]').set_input_files(str(report))
    row = page.locator("tr", has_text="herons.docx")
    expect(row).to_have_attribute("data-status", "ready", timeout=120_000)

    web.model.state.chat("The keeper counted forty-two herons ", "[1]", ".")
    page.get_by_role("navigation").get_by_role("link", name="Ask").click()
    page.get_by_label("Your question").fill("How many herons did the lighthouse keeper count?")
    page.get_by_role("button", name="Ask").click()
    citation = page.locator(".turn .answer-text a.cite")
    expect(citation).to_have_text("[1]")
    citation.click()
    expect(page).to_have_url(re.compile(r"/files/view\?id=[0-9a-f-]+&quote="))
    text = page.locator("pre.document-text")
    expect(text.locator("mark")).to_contain_text("herons")
    assert "word/document.xml" not in text.inner_text()  # the words, not the zip's bytes
    shot(page, "document-text")


def test_drop_files_then_rename_and_delete_a_document(web, context):
    """Files dropped on the page upload at once (a refused one says why, beside the others);
    a document is renamed, a too-long title is refused in the alert, and it is deleted."""
    username, _ = register(web, "dropper")
    page = context.new_page()
    sign_in(page, web, username)
    page.get_by_role("navigation").get_by_role("link", name="Documents").click()
    page.evaluate(
        """(png) => {
            const files = new DataTransfer();
            const text = "The ferry to the island leaves at seven.";
            files.items.add(new File([text], "ferry.txt", {type: "text/plain"}));
            files.items.add(new File([new Uint8Array(png)], "photo.png"));
            const zone = document.querySelector(".dropzone");
            const init = {dataTransfer: files, bubbles: true, cancelable: true};
            for (const type of ["dragover", "drop"]) zone.dispatchEvent(new DragEvent(type, init));
        }""",
        list(PNG),  # a real image: refused with 415
    )
    uploads = page.get_by_role("list", name="Uploads")
    expect(uploads.get_by_role("listitem").filter(has_text="photo.png").locator(".error")).to_be_visible()
    row = page.locator("tr", has_text="ferry.txt")
    expect(row).to_have_attribute("data-status", "ready", timeout=120_000)

    page.once("dialog", lambda dialog: dialog.accept("Ferry timetable"))
    row.get_by_role("button", name=re.compile("^Rename")).click()
    renamed = page.locator("tr", has_text="Ferry timetable")
    expect(renamed).to_have_count(1)
    page.once("dialog", lambda dialog: dialog.accept("t" * 301))  # over the 300-character limit
    renamed.get_by_role("button", name="Rename Ferry timetable").click()
    expect(page.get_by_role("alert")).to_be_visible()
    page.once("dialog", lambda dialog: dialog.accept())
    renamed.get_by_role("button", name="Delete Ferry timetable").click()
    expect(page.locator("tr", has_text="Ferry timetable")).to_have_count(0)


def test_rename_and_delete_conversations_and_search_the_history(web, context):
    """Two questions with nothing to answer from (no model is called): two conversations, one
    renamed, one deleted with its answers; the history finds what is left, and a refused
    rename shows its reason instead of failing silently."""
    username, _ = register(web, "historian")
    page = context.new_page()
    sign_in(page, web, username)
    conversations = page.get_by_role("complementary", name="Conversations")
    for question in ("Where did I store the boat trailer papers?", "Which plumber fixed the kitchen tap?"):
        page.get_by_role("button", name="New conversation").click()
        page.get_by_label("Your question").fill(question)
        page.get_by_role("button", name="Ask").click()
        expect(page.locator(".turn .question", has_text=question)).to_be_visible()
        expect(page.locator(".live")).to_have_count(0)
    expect(conversations.get_by_role("listitem")).to_have_count(2)

    boat = conversations.get_by_role("listitem").filter(has_text="boat trailer")
    page.once("dialog", lambda dialog: dialog.accept("Trailer paperwork"))
    boat.get_by_role("button", name=re.compile("^Rename")).click()
    expect(conversations.get_by_role("button", name="Trailer paperwork", exact=True)).to_be_visible()

    page.once("dialog", lambda dialog: dialog.accept("x" * 201))  # over the 200-character limit
    conversations.get_by_role("button", name="Rename Trailer paperwork").click()
    expect(page.get_by_role("alert")).to_be_visible()
    expect(conversations.get_by_role("button", name="Trailer paperwork", exact=True)).to_be_visible()

    page.once("dialog", lambda dialog: dialog.accept())  # "Delete ... and its answers?"
    conversations.get_by_role("listitem").filter(has_text="plumber").get_by_role(
        "button", name=re.compile("^Delete")
    ).click()
    expect(conversations.get_by_role("listitem")).to_have_count(1)

    page.get_by_role("navigation").get_by_role("link", name="History").click()
    expect(page.get_by_text("1 questions")).to_be_visible()
    expect(page.locator(".turn .question")).to_have_text(["Where did I store the boat trailer papers?"])
    page.get_by_role("searchbox", name="Search past questions and answers").fill("plumber")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("0 questions")).to_be_visible()
    page.get_by_role("searchbox", name="Search past questions and answers").fill("trailer")
    page.get_by_role("button", name="Search").click()
    expect(page.get_by_text("1 questions")).to_be_visible()
    shot(page, "history-search")


def test_change_the_password_and_other_sessions_end(web, browser, context):
    username, _ = register(web, "changer")
    other = browser.new_context()  # the same user on another device
    try:
        other_page = other.new_page()
        other_page.set_default_timeout(TIMEOUT_MS)
        sign_in(other_page, web, username)
        page = context.new_page()
        sign_in(page, web, username)
        page.get_by_role("navigation").get_by_role("link", name="Account").click()
        form = page.get_by_role("form", name="Change password")
        form.get_by_label("Current password").fill("not the password at all")
        form.get_by_label("New password").fill("a brand new passphrase 7")
        form.get_by_role("button", name="Change password").click()
        expect(page.get_by_role("alert")).to_be_visible()
        form.get_by_label("Current password").fill(PASSWORD)
        form.get_by_label("New password").fill("a brand new passphrase 7")
        form.get_by_role("button", name="Change password").click()
        expect(page.get_by_text("Password changed.")).to_be_visible()

        other_page.reload()  # its refresh cookie was revoked with the change
        expect(other_page.get_by_role("heading", name="Sign in")).to_be_visible()

        page.get_by_role("button", name="Sign out").first.click()
        page.get_by_label("Username or email").fill(username)
        page.get_by_label("Password").fill(PASSWORD)
        page.get_by_role("button", name="Sign in").click()
        expect(page.get_by_role("alert")).to_be_visible()
        sign_in(page, web, username, "a brand new passphrase 7")
    finally:
        other.close()


def test_connect_gmail_and_see_mail_listed(web, context, gmail):
    username, _ = register(web, "mailer")
    address = f"{username}@gmail.test"
    gmail.add_message(address, mime_plain("Boat club dues", "The boat club dues are 80 euros.\n", to=address))
    gmail.consent(address)
    page = context.new_page()
    sign_in(page, web, username)
    page.get_by_role("navigation").get_by_role("link", name="Mail").click()
    page.get_by_role("button", name="Connect Gmail").click()
    expect(page).to_have_url(re.compile(r"/inbox\?mail_connected="))
    expect(page.get_by_text(f"Connected {address}")).to_be_visible()
    expect(page.get_by_role("button", name=re.compile("Boat club dues"))).to_be_visible(timeout=90_000)
    page.get_by_role("button", name=re.compile("Boat club dues")).click()
    expect(page.get_by_role("article", name="Email")).to_contain_text("80 euros")
    shot(page, "mail")

    # Once the mail worker has embedded it, an answer from mail only cites it, and the citation
    # opens that email in the reader.
    token = httpx.post(f"{web.url}/auth/token", data={"username": username, "password": PASSWORD})
    headers = {"Authorization": f"Bearer {token.json()['access_token']}"}

    def searchable() -> bool:
        found = httpx.get(f"{web.url}/mail/search", params={"q": "boat club dues"}, headers=headers)
        return found.status_code == 200 and bool(found.json()["results"])

    wait_for(searchable, timeout=90, interval=0.5)  # the synced email is embedded by then
    web.model.state.chat("The boat club dues are 80 euros ", "[1]", ".")
    page.get_by_role("navigation").get_by_role("link", name="Ask").click()
    page.get_by_label("Your question").fill("How much are the boat club dues?")
    page.get_by_label("Search").select_option("mail")
    page.get_by_role("button", name="Ask").click()
    citation = page.locator(".turn .answer-text a.cite")
    expect(citation).to_have_text("[1]")
    expect(citation).to_have_attribute("title", re.compile("Boat club dues"))
    citation.click()
    expect(page).to_have_url(re.compile(r"/inbox\?email=[0-9a-f-]+$"))
    expect(page.get_by_role("article", name="Email")).to_contain_text("80 euros")


def test_an_admin_deactivates_a_user_whose_open_app_signs_out(web, browser, admin_cli):
    admin_name = f"admin_{uuid.uuid4().hex[:8]}"
    assert admin_cli(admin_name, f"{admin_name}@example.com", ADMIN_PASSWORD).returncode == 0
    username, _ = register(web, "victim")
    user_context = browser.new_context()
    admin_context = browser.new_context(viewport={"width": 1280, "height": 860})
    try:
        user_page = user_context.new_page()
        sign_in(user_page, web, username)
        admin_page = admin_context.new_page()
        admin_page.set_default_timeout(TIMEOUT_MS)
        sign_in(admin_page, web, admin_name, ADMIN_PASSWORD)
        admin_page.get_by_role("navigation").get_by_role("link", name="Admin").click()
        admin_page.get_by_role("searchbox", name="Find users").fill(username)
        admin_page.get_by_role("button", name="Search").click()
        admin_page.get_by_role("button", name=f"Deactivate {username}").click()
        expect(admin_page.get_by_role("button", name=f"Activate {username}")).to_be_visible()
        shot(admin_page, "admin")
        expect(user_page.get_by_role("heading", name="Sign in")).to_be_visible(timeout=15_000)
    finally:
        user_context.close()
        admin_context.close()


def test_an_admin_creates_promotes_demotes_and_deletes_a_user_all_audited(web, context, admin_cli):
    admin_name = f"chief_{uuid.uuid4().hex[:8]}"
    assert admin_cli(admin_name, f"{admin_name}@example.com", ADMIN_PASSWORD).returncode == 0
    page = context.new_page()
    sign_in(page, web, admin_name, ADMIN_PASSWORD)
    page.get_by_role("navigation").get_by_role("link", name="Admin").click()
    newcomer = f"newcomer_{uuid.uuid4().hex[:8]}"
    form = page.get_by_role("form", name="Create a user")
    form.get_by_label("Username").fill(newcomer)
    form.get_by_label("Email").fill(f"{newcomer}@example.com")
    form.get_by_label("Password").fill("short")  # refused by the browser: under 8 characters
    form.get_by_role("button", name="Create").click()
    form.get_by_label("Password").fill(PASSWORD)
    form.get_by_role("button", name="Create").click()

    page.get_by_role("searchbox", name="Find users").fill(newcomer)
    page.get_by_role("button", name="Search").click()
    row = page.locator("tr", has_text=newcomer)
    expect(row.get_by_role("cell", name="user", exact=True)).to_be_visible()
    row.get_by_role("button", name=f"Promote {newcomer}").click()
    expect(row.get_by_role("cell", name="admin", exact=True)).to_be_visible()
    row.get_by_role("button", name=f"Demote {newcomer}").click()
    expect(row.get_by_role("cell", name="user", exact=True)).to_be_visible()
    audit = page.locator("ul.audit")
    expect(audit).to_contain_text("user.create")
    expect(audit).to_contain_text('"is_admin":true')
    page.once("dialog", lambda dialog: dialog.accept())  # "Delete ... and everything they stored?"
    row.get_by_role("button", name=f"Delete {newcomer}").click()
    expect(page.locator("tr", has_text=newcomer)).to_have_count(0)
    expect(audit).to_contain_text("user.delete")
    expect(page.get_by_role("alert")).to_have_count(0)

    # The newcomer is gone: signing in as them is refused.
    login = httpx.post(f"{web.url}/auth/token", data={"username": newcomer, "password": PASSWORD})
    assert login.status_code == 401


def test_the_api_docs_render_without_a_cdn(web, context):
    page = context.new_page()
    outside: list[str] = []
    page.on(
        "request",
        lambda request: outside.append(request.url) if not request.url.startswith(web.url) else None,
    )
    page.goto(f"{web.url}/docs")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("Personal AI assistant")
    expect(page.get_by_text("/queries").first).to_be_visible()
    shot(page, "api-docs")
    assert outside == []
