"""Date expressions in a question become a date range on sent or upload time.

"What did Alice send me last week?" searches mail sent in last week's Monday to Sunday, and the
standalone question shows the range resolved ("... sent me between 2026-11-23 and
2026-11-29?"). The grammar is small and explicit: a preposition (``in``, ``during``, ``on``,
``since``, ``after``, ``from``, ``before``, ``until``) with a period, or a relative period on
its own (``today``, ``yesterday``, ``this|last week|month|year``, ``in the last 3 days``).
Calendar expressions ("June", "3 March 2025", "2025-02-10") are read by ``dateparser``,
relative to the current date, preferring the past. All ranges are whole UTC days, the end
exclusive.
"""

import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import dateparser

MONTHS = (
    "january|february|march|april|may|june|july|august|september|october|november|december"
    "|jan|feb|mar|apr|jun|jul|aug|sep|sept|oct|nov|dec"
)
_CALENDAR = (
    rf"(?:\d{{4}}-\d{{2}}-\d{{2}}"
    rf"|(?:\d{{1,2}}(?:st|nd|rd|th)?\s+)?(?:{MONTHS})\.?(?:\s+\d{{1,2}}(?:st|nd|rd|th)?)?(?:,?\s+\d{{4}})?"
    rf"|(?:19|20)\d{{2}})"
)
_RELATIVE = r"(?:today|yesterday|(?:this|last|past|previous)\s+(?:week|month|year))"
_COUNTED = r"(?:(?:in\s+)?(?:the\s+)?(?:last|past)\s+(?P<count>\d{1,3})\s+(?P<unit>day|week|month|year)s?)"
_PATTERN = re.compile(
    rf"\b(?:(?P<prep>in|during|on|since|after|from|before|until|till|prior\s+to)\s+)?"
    rf"(?:{_COUNTED}|(?P<relative>{_RELATIVE})|(?P<calendar>{_CALENDAR}))\b",
    re.IGNORECASE,
)
# Short month names are months only after a preposition ("in May", never "you may").
_AMBIGUOUS = {"may", "mar", "jun", "jul", "aug", "sep", "oct", "nov", "dec", "jan", "feb", "apr"}


@dataclass(frozen=True)
class DateRange:
    after: datetime | None = None  # inclusive
    before: datetime | None = None  # exclusive

    def describe(self) -> str:
        first = self.after.date().isoformat() if self.after else None
        last = (self.before - timedelta(days=1)).date().isoformat() if self.before else None
        if first and last:
            return f"on {first}" if first == last else f"between {first} and {last}"
        if first:
            return f"since {first}"
        return f"before {self.before.date().isoformat()}" if self.before else ""


@dataclass(frozen=True)
class DatedQuestion:
    text: str  # the question with its date expression resolved in words
    search_text: str  # the question without it (the range becomes a filter)
    range: DateRange | None


def _day(value: date) -> datetime:
    return datetime(value.year, value.month, value.day, tzinfo=UTC)


def _add_months(value: date, months: int) -> date:
    month = value.month - 1 + months
    return date(value.year + month // 12, month % 12 + 1, 1)


def _period(kind: str, start: date) -> tuple[date, date]:
    if kind == "day":
        return start, start + timedelta(days=1)
    if kind == "week":
        monday = start - timedelta(days=start.weekday())
        return monday, monday + timedelta(days=7)
    if kind == "month":
        first = start.replace(day=1)
        return first, _add_months(first, 1)
    first = date(start.year, 1, 1)
    return first, date(start.year + 1, 1, 1)


def _relative(text: str, today: date) -> tuple[date, date]:
    words = text.lower().split()
    if words == ["today"]:
        return today, today + timedelta(days=1)
    if words == ["yesterday"]:
        return today - timedelta(days=1), today
    which, kind = words[0], words[-1]
    if which == "this":
        start, _ = _period(kind, today)
        return start, today + timedelta(days=1)
    current, _ = _period(kind, today)
    previous = current - timedelta(days=1)
    return _period(kind, previous)


def _counted(count: int, unit: str, today: date) -> tuple[date, date]:
    days = {"day": 1, "week": 7, "month": 30, "year": 365}[unit.lower()] * count
    return today - timedelta(days=days), today + timedelta(days=1)


def _calendar(text: str, now: datetime) -> tuple[date, date] | None:
    cleaned = text.strip().rstrip(".")
    if re.fullmatch(r"(?:19|20)\d{2}", cleaned):
        return _period("year", date(int(cleaned), 1, 1))
    has_day = bool(re.search(r"\d{4}-\d{2}-\d{2}|\b\d{1,2}(?:st|nd|rd|th)?\b(?!\d)", cleaned))
    parsed = dateparser.parse(
        cleaned,
        languages=["en"],
        settings={
            "RELATIVE_BASE": now.replace(tzinfo=None),
            "PREFER_DATES_FROM": "past",
            "PREFER_DAY_OF_MONTH": "first",
        },
    )
    if parsed is None:
        return None
    return _period("day" if has_day else "month", parsed.date())


def extract_dates(question: str, now: datetime) -> DatedQuestion:
    """The first date expression of ``question`` as a range; the question unchanged if none."""
    today = now.astimezone(UTC).date()
    for match in _PATTERN.finditer(question):
        prep = (match.group("prep") or "").lower()
        calendar = match.group("calendar")
        if calendar and not prep and (calendar.lower().rstrip(".") in _AMBIGUOUS or calendar.isdigit()):
            continue  # "you may", "invoice 2024": a month or a year only after a preposition
        if match.group("count"):
            span = _counted(int(match.group("count")), match.group("unit"), today)
        elif match.group("relative"):
            span = _relative(match.group("relative"), today)
        else:
            span = _calendar(calendar, now) if calendar else None
        if span is None:
            continue
        first, end = _day(span[0]), _day(span[1])
        if prep in ("since", "after", "from"):
            date_range = DateRange(after=end if prep == "after" else first)
        elif prep in ("before", "prior to"):
            date_range = DateRange(before=first)
        elif prep in ("until", "till"):
            date_range = DateRange(before=end)
        else:
            date_range = DateRange(after=first, before=end)
        before_text, after_text = question[: match.start()], question[match.end() :]
        resolved = f"{before_text}{date_range.describe()}{after_text}"
        search = re.sub(
            r"\s+([?.!,;:])", r"\1", re.sub(r"\s{2,}", " ", f"{before_text} {after_text}")
        ).strip()
        return DatedQuestion(resolved, search or question, date_range)
    return DatedQuestion(question, question, None)
