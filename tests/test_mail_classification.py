"""classify: each type from each kind of evidence, and the precedence between them."""

from email.message import EmailMessage

import pytest

from services.mail.classification import classify
from shared.text.mail import ParsedMessage, parse_message


def mail(sender: str | None, subject: str = "", body: str = "") -> ParsedMessage:
    message = EmailMessage()
    if sender is not None:
        message["From"] = sender
    message["To"] = "me@example.com"
    message["Subject"] = subject
    message["Date"] = "Mon, 01 Jan 2024 12:00:00 +0000"
    message.set_content(body or " ")
    return parse_message(message.as_bytes())


@pytest.mark.parametrize(
    ("message", "labels", "expected"),
    [
        # transactional
        (
            mail("Shop <noreply@shop.example>", "Your order #12345 has shipped", "Track it."),
            (),
            "transactional",
        ),
        (mail("billing@vendor.example", "March statement", "Thanks."), (), "transactional"),
        (mail("Receipts <receipts@cafe.example>", "Thanks for visiting"), (), "transactional"),
        (
            mail("hello@app.example", "Reset your password", "Use this link within an hour."),
            (),
            "transactional",
        ),
        (
            mail("team@app.example", "Weekly digest", "Things happened."),
            ["CATEGORY_UPDATES"],
            "transactional",
        ),
        # support
        (mail("Acme <support@acme.example>", "Re: cannot log in", "We are looking into it."), (), "support"),
        (mail("Dana <dana@acme.zendesk.com>", "Re: printer on fire"), (), "support"),
        (mail("agent@acme.example", "[#48213] Printer on fire", "Any update?"), (), "support"),
        (mail("noreply@desk.example", "Ticket #5521 was updated"), ["CATEGORY_UPDATES"], "support"),
        (mail("Acme Help Desk <it@acme.example>", "Your laptop"), (), "support"),
        # business
        (
            mail("partner@bigcorp.example", "Proposal for a Q3 partnership", "Numbers attached."),
            (),
            "business",
        ),
        (
            mail("lee@bigcorp.example", "Thursday", "Agenda: the client deadline and the budget."),
            (),
            "business",
        ),
        (mail("cfo@bigcorp.example", "Contract review"), ["CATEGORY_PERSONAL", "INBOX"], "business"),
        # promotional
        (mail("Brand <newsletter@brand.example>", "This week's picks"), (), "promotional"),
        (mail("marketing@brand.example", "Hello again"), (), "promotional"),
        (
            mail("noreply@shop.example", "Summer sale: 40% off", "Shop now. Unsubscribe here."),
            (),
            "promotional",
        ),
        (mail("hello@brand.example", "Flash sale", "Use the coupon today. Unsubscribe."), (), "promotional"),
        (mail("friend@gmail.com", "Dinner?"), ["CATEGORY_PROMOTIONS"], "promotional"),
        # personal
        (mail("Mom <mom.smith@gmail.com>", "Dinner this weekend?", "Love you, Mom"), (), "personal"),
        (mail("sam@work.example", "Happy birthday!", "Hope the kids are well."), (), "personal"),
        (mail("notify@social.example", "Sam tagged you"), ["CATEGORY_SOCIAL"], "personal"),
        (mail("old.pal@outlook.com", "Long time", "It has been ages."), (), "personal"),
        (mail("sam@work.example", "Hi", "It has been ages."), ["CATEGORY_PERSONAL"], "personal"),
        # generic
        (mail("list@forum.example", "[rust-users] borrowck question"), ["CATEGORY_FORUMS"], "generic"),
        (mail("info@company.example", "Hello", "Some text."), (), "generic"),
        (mail(None), (), "generic"),
    ],
)
def test_classify(message: ParsedMessage, labels: list[str], expected: str) -> None:
    assert classify(message, labels) == expected


def test_gmail_category_beats_sender_and_keywords() -> None:
    invoice = mail("billing@vendor.example", "Your invoice", "Payment due.")
    meeting = mail("boss@bigcorp.example", "Meeting about the contract", "Client deadline.")

    assert classify(invoice) == "transactional"
    assert classify(invoice, ["INBOX", "CATEGORY_PROMOTIONS"]) == "promotional"
    assert classify(meeting) == "business"
    assert classify(meeting, ["CATEGORY_UPDATES"]) == "transactional"
    assert classify(meeting, ["CATEGORY_SOCIAL"]) == "personal"
    assert classify(meeting, ["CATEGORY_FORUMS"]) == "generic"
    assert classify(meeting, ["category_promotions"]) == "promotional"  # label ids read case-blind


def test_sender_beats_keywords() -> None:
    support = mail("support@acme.example", "Your invoice question", "About the payment receipt.")
    billing = mail("billing@acme.example", "Meeting notes", "Client proposal and contract.")
    newsletter = mail("news@brand.example", "Your order", "Invoice inside.")

    assert classify(support) == "support"
    assert classify(billing) == "transactional"
    assert classify(newsletter) == "promotional"


def test_keywords_weigh_the_subject_and_break_ties_by_priority() -> None:
    footer = "Thanks for shopping. Unsubscribe from our newsletter."
    confirmation = mail("shop@store.example", "Order confirmation", footer)
    tie = mail("shop@store.example", "Invoice and sale", "")
    body_only = mail("lee@corp.example", "Hi", "The meeting moved; see you at dinner.")

    assert classify(confirmation) == "transactional"  # 3 for the subject beats 2 in the footer
    assert classify(tie) == "transactional"  # 3 each: transactional precedes promotional
    assert classify(body_only) == "business"  # 1 each: business precedes personal


def test_robot_sender_is_transactional_unless_the_mail_is_a_sale() -> None:
    assert classify(mail("no-reply@shop.example", "Your payment was received")) == "transactional"
    assert classify(mail("do_not_reply@shop.example", "News from us")) == "transactional"
    assert classify(mail("notifications@shop.example", "Black Friday: 30% off")) == "promotional"


def test_classification_is_deterministic() -> None:
    # business, promotional and personal all score 4 here; the tie order picks business.
    message = mail("x@y.example", "Invoice sale meeting dinner", "unsubscribe client family")

    assert {classify(message, ["INBOX"]) for _ in range(20)} == {"business"}
