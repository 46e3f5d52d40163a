"""Reading a legacy Personal AI Agent database (SQLite file or its PostgreSQL copy) for the
import: each service imports its own tables with its own code and role (``python -m
services.<name> import-legacy``); what they agree on lives here.

- :mod:`.source`: the legacy tables, read in batches from either database.
- :mod:`.values`: legacy values made ours (timestamps, booleans, JSON lists, ids).
- :mod:`.report`: what each service reports, and the verification that nothing was lost.
"""

from shared.legacy.report import Problem, ServiceReport, TableReport
from shared.legacy.source import LegacySource, open_source
from shared.legacy.values import BadValue, legacy_uuid

__all__ = [
    "BadValue",
    "LegacySource",
    "Problem",
    "ServiceReport",
    "TableReport",
    "legacy_uuid",
    "open_source",
]
