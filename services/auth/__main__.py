"""``python -m services.auth serve|worker|keygen|create-admin|import-legacy``."""

import asyncio
import getpass
import os
import sys

from zxcvbn import zxcvbn

from services.auth.legacy import importer
from services.auth.service import AdminService
from services.auth.settings import AuthSettings, get_settings
from services.auth.tokens import generate_private_key_file
from shared.auth import RevocationList
from shared.cli import run_common, service_parser
from shared.db import create_engine, session_factory, transaction
from shared.legacy.cli import add_import_command, run_import
from shared.redis import create_arq_pool, create_redis

MIN_ADMIN_PASSWORD_LENGTH = 12


def weak_password_reason(password: str, username: str, email: str) -> str | None:
    if len(password) < MIN_ADMIN_PASSWORD_LENGTH:
        return f"it is shorter than {MIN_ADMIN_PASSWORD_LENGTH} characters"
    verdict = zxcvbn(password, user_inputs=[username, email])
    if verdict["score"] < 3:
        return verdict["feedback"]["warning"] or "it is too easy to guess"
    return None


async def create_or_promote_admin(settings: AuthSettings, username: str, email: str, password: str) -> str:
    """Through the service layer, like the admin API, so the change is audited the same way."""
    engine = create_engine(settings.service_database_url, pool_size=1)
    redis = create_redis(settings.redis_url)
    arq = await create_arq_pool(settings.redis_url)
    try:
        sessions = session_factory(engine)
        revocations = RevocationList(redis, settings.access_token_ttl_seconds)
        service = AdminService(revocations, arq, sessions)
        async with transaction(sessions) as tx:
            return await service.create_or_promote_admin(tx, username, email, password)
    finally:
        await arq.aclose()
        await redis.aclose()
        await engine.dispose()


def create_admin(username: str, email: str) -> int:
    password = os.environ.get("ADMIN_PASSWORD")
    if password is None:
        if not sys.stdin.isatty():
            print("set ADMIN_PASSWORD or run in a terminal to be prompted", file=sys.stderr)
            return 2
        password = getpass.getpass("Admin password: ")
        if getpass.getpass("Repeat: ") != password:
            print("passwords differ", file=sys.stderr)
            return 2
    reason = weak_password_reason(password, username, email)
    if reason:
        print(f"refusing a weak admin password: {reason}", file=sys.stderr)
        return 2
    print(asyncio.run(create_or_promote_admin(get_settings(), username, email, password)))
    return 0


def main() -> int:
    parser, commands = service_parser("auth", 8001)
    commands.add_parser("keygen", help="create the dev signing key if missing")
    admin_cmd = commands.add_parser("create-admin", help="create or promote an admin")
    admin_cmd.add_argument("--username", required=True)
    admin_cmd.add_argument("--email", required=True)
    import_cmd = add_import_command(commands)
    import_cmd.add_argument("--plan", action="store_true", help="only decide which users are taken (fast)")
    args = parser.parse_args()

    settings = get_settings()
    if run_common("auth", args, settings):
        return 0
    if args.command == "keygen":
        written = generate_private_key_file(settings.jwt_private_key_file)
        print(("created " if written else "kept existing ") + str(settings.jwt_private_key_file))
        return 0
    if args.command == "import-legacy":
        return run_import(importer(settings, plan_only=args.plan), args)
    return create_admin(args.username, args.email)


if __name__ == "__main__":
    sys.exit(main())
