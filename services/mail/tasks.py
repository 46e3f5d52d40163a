"""ARQ jobs of the mail service (queue ``pai:mail``)."""

from arq import func

from services.mail.settings import get_settings
from shared.logging import configure_logging
from shared.redis import arq_settings
from shared.tasks import PURGE_USER_JOB, QUEUES, report_purge_finished


async def purge_user(ctx: dict, user_id: str) -> None:
    """Remove everything of a deleted user. The service stores no user data yet, so there is
    nothing to delete; it reports the purge done so the auth outbox can close it."""
    await report_purge_finished(ctx["redis"], "mail", user_id)


async def startup(ctx: dict) -> None:
    configure_logging("mail-worker", get_settings().log_level)


class WorkerSettings:
    functions = [func(purge_user, name=PURGE_USER_JOB)]
    health_check_interval = 60  # `arq --check` (compose healthcheck) reads this key
    queue_name = QUEUES["mail"]
    redis_settings = arq_settings(get_settings().redis_url)
    on_startup = startup
