"""A coarse type for each message, for filtering and for what the assistant reads first.

Rules, not a model: deterministic, instant, and explainable to a user who asks why. The first
step that decides wins:

1. Gmail's category labels, since Gmail's classifier sees far more than one message:
   ``CATEGORY_PROMOTIONS`` -> promotional, ``CATEGORY_SOCIAL`` -> personal,
   ``CATEGORY_UPDATES`` -> transactional (support when there are support cues, below),
   ``CATEGORY_FORUMS`` -> generic. ``CATEGORY_PERSONAL`` is Gmail's Primary tab, where work
   mail lands too, so it only decides at step 4.
2. The sender. Support cues first: a support-like sender (support@, help@, helpdesk,
   a "... Support" display name, a Zendesk/Freshdesk domain) or a ticket id in the subject
   ("[#12345]", "Ticket #123", "Case #123") -> support. Then role senders: billing@,
   receipts@, orders@, payments@ ... -> transactional; marketing@, newsletter@, news@,
   offers@ ... -> promotional. A generic robot sender (noreply@, no-reply@, notifications@)
   -> transactional, unless the step-3 scores show more promotional than transactional
   cues: shops send their sales from noreply addresses too.
3. Keywords. Each type scores 3 per distinct cue in the subject plus 1 per distinct cue in
   the body; the highest score wins, ties going to support, transactional, business,
   promotional, personal in that order.
4. No cue at all: personal when Gmail filed it under Primary or the sender writes from a
   consumer mailbox (gmail.com, outlook.com ...); otherwise generic.
"""

import re
from collections.abc import Sequence
from typing import Literal, get_args

from shared.text.mail import ParsedMessage

EmailType = Literal["business", "personal", "promotional", "transactional", "support", "generic"]
EMAIL_TYPES: tuple[str, ...] = get_args(EmailType)

# Tie order of the keyword step: the more specific, actionable type first.
_PRIORITY: tuple[EmailType, ...] = ("support", "transactional", "business", "promotional", "personal")
_SUBJECT_WEIGHT = 3
# Enough for the text and the footer of any real mail; bounds the work on a huge one.
_BODY_CHARS = 20_000

_TICKET = re.compile(
    r"\[#\d+\]|\b(?:ticket|case|request|incident)\s*(?:#|no\.?|number|id)\s*:?\s*[a-z]*-?\d+", re.IGNORECASE
)
_SUPPORT_SENDERS = frozenset(
    {
        "support",
        "help",
        "helpdesk",
        "servicedesk",
        "customerservice",
        "customercare",
        "care",
        "ticket",
        "tickets",
    }
)
_SUPPORT_DOMAINS = re.compile(r"(?:^|\.)(?:zendesk\.com|freshdesk\.com|helpscout\.net)$")
_TRANSACTIONAL_SENDERS = frozenset(
    {
        "billing",
        "receipt",
        "receipts",
        "invoice",
        "invoices",
        "order",
        "orders",
        "payment",
        "payments",
        "statements",
        "booking",
        "bookings",
        "reservations",
        "shipping",
        "shipment",
        "autoconfirm",
        "shipconfirm",
        "accounts",
        "security",
        "verify",
        "mailerdaemon",
        "postmaster",
    }
)
_PROMOTIONAL_SENDERS = frozenset(
    {"marketing", "newsletter", "newsletters", "news", "offers", "deals", "promo", "promotions"}
)
_ROBOT_SENDERS = frozenset(
    {"noreply", "donotreply", "notification", "notifications", "notify", "alerts", "mailer", "automated"}
)
_FREEMAIL = frozenset(
    {
        "gmail.com",
        "googlemail.com",
        "outlook.com",
        "hotmail.com",
        "live.com",
        "yahoo.com",
        "icloud.com",
        "me.com",
        "aol.com",
        "proton.me",
        "protonmail.com",
        "gmx.de",
        "gmx.net",
        "web.de",
    }
)


def _cues(*patterns: str) -> tuple[re.Pattern[str], ...]:
    return tuple(re.compile(rf"(?<!\w){p}(?!\w)", re.IGNORECASE) for p in patterns)


_KEYWORDS: dict[EmailType, tuple[re.Pattern[str], ...]] = {
    "support": _cues(
        r"support (?:request|ticket|team|case)",
        r"ticket",
        r"case number",
        r"help ?desk",
        r"(?:customer|technical) support",
        r"(?:has been|was) resolved",
    ),
    "transactional": _cues(
        r"invoice",
        r"receipt",
        r"order confirmation",
        r"your order",
        r"order #?\d+",
        r"payment",
        r"(?:has )?shipped",
        r"tracking number",
        r"out for delivery",
        r"password reset",
        r"reset your password",
        r"verification code",
        r"verify your (?:email|account)",
        r"one-time (?:code|password)",
        r"security alert",
        r"refund",
        r"booking confirmation",
        r"statement is (?:now )?available",
    ),
    "business": _cues(
        r"meeting",
        r"proposal",
        r"contract",
        r"quarterly",
        r"q[1-4]",
        r"clients?",
        r"deadline",
        r"agenda",
        r"stakeholders?",
        r"budget",
        r"partnership",
        r"kick-?off",
        r"roadmap",
        r"nda",
        r"rfp",
        r"statement of work",
    ),
    "promotional": _cues(
        r"sale",
        r"\d+ ?% off",
        r"discount",
        r"unsubscribe",
        r"newsletter",
        r"coupon",
        r"promo code",
        r"limited time",
        r"free shipping",
        r"shop now",
        r"exclusive offer",
        r"black friday",
        r"cyber monday",
        r"view (?:this email )?in (?:your )?browser",
    ),
    "personal": _cues(
        r"family",
        r"friends?",
        r"mom",
        r"mum",
        r"dad",
        r"grandma",
        r"grandpa",
        r"sis",
        r"bro",
        r"kids",
        r"birthday",
        r"wedding",
        r"dinner",
        r"this weekend",
        r"vacation",
        r"love you",
        r"miss you",
        r"hugs",
        r"xoxo",
        r"catch up",
    ),
}


def classify(message: ParsedMessage, label_ids: Sequence[str] = ()) -> EmailType:
    """The message's type by the precedence in the module docstring."""
    labels = {label.upper() for label in label_ids}
    address = message.sender.email.lower() if message.sender else ""
    local, _, domain = address.rpartition("@") if "@" in address else (address, "", "")
    senders = _sender_words(local)
    display = (message.sender.name or "").lower() if message.sender else ""
    support = bool(
        senders & _SUPPORT_SENDERS
        or "support" in local
        or "helpdesk" in local
        or re.search(r"\b(?:support|help ?desk)\b", display)
        or _SUPPORT_DOMAINS.search(domain)
        or _TICKET.search(message.subject)
    )

    if "CATEGORY_PROMOTIONS" in labels:
        return "promotional"
    if "CATEGORY_SOCIAL" in labels:
        return "personal"
    if "CATEGORY_UPDATES" in labels:
        return "support" if support else "transactional"
    if "CATEGORY_FORUMS" in labels:
        return "generic"

    if support:
        return "support"
    if senders & _TRANSACTIONAL_SENDERS:
        return "transactional"
    if senders & _PROMOTIONAL_SENDERS:
        return "promotional"
    scores = _scores(message.subject, message.body_text[:_BODY_CHARS])
    if senders & _ROBOT_SENDERS:
        return "promotional" if scores["promotional"] > scores["transactional"] else "transactional"

    best = max(_PRIORITY, key=lambda kind: scores[kind])  # max keeps the first of equals
    if scores[best] > 0:
        return best
    if "CATEGORY_PERSONAL" in labels or domain in _FREEMAIL:
        return "personal"
    return "generic"


def _sender_words(local: str) -> set[str]:
    """The local part whole, squashed ("no-reply" -> "noreply") and split on separators, so
    "billing-eu" and "do_not_reply" are recognised like "billing" and "donotreply"."""
    words = {word for word in re.split(r"[-_.+]+", local) if word}
    return words | {local, re.sub(r"[-_.+]", "", local)}


def _scores(subject: str, body: str) -> dict[EmailType, int]:
    return {
        kind: sum(
            _SUBJECT_WEIGHT * bool(cue.search(subject)) + bool(cue.search(body)) for cue in _KEYWORDS[kind]
        )
        for kind in _PRIORITY
    }
