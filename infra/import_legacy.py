"""``make import-legacy``: bring a legacy Personal AI Agent database (SQLite file or its
PostgreSQL copy) and its uploads folder into the services, then print the verification report.

Each service imports its own tables with its own code and database role
(``python -m services.<name> import-legacy``): auth (users), documents,
mail and the assistant's query history, at the same time once auth has decided which legacy
users it takes (``--plan``) and told the others which it does not. Every
service derives the same new ids from the legacy ones, so they need to share nothing else, and
a second run finds every row already there. Each prints its part of the report as JSON; this
command merges them, prints the verdict (``verified: N rows, 0 lost``), writes ``--report`` and
exits non-zero if anything was lost or differs without a reason.
"""

import argparse
import getpass
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from shared.legacy.report import ServiceReport, merge, render  # noqa: E402

ORDER = ("auth", "documents", "mail", "assistant")


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--db", default=os.environ.get("LEGACY_DB"), help="legacy SQLite file or postgresql:// URL"
    )
    parser.add_argument(
        "--uploads", default=os.environ.get("LEGACY_UPLOADS"), help="the legacy uploads folder"
    )
    parser.add_argument("--dry-run", action="store_true", help="read, validate and report; write nothing")
    parser.add_argument("--report", type=Path, help="also write the report as JSON to this file")
    parser.add_argument(
        "--timezone",
        default=os.environ.get("LEGACY_TIMEZONE") or "UTC",
        help="the legacy server's time zone, for its naive timestamps (default UTC)",
    )
    args = parser.parse_args()
    if not args.db:
        parser.error("name the legacy database: --db or LEGACY_DB")
    return args


def secret_key() -> str | None:
    """The legacy SECRET_KEY (for the mail tokens): ``LEGACY_SECRET_KEY``, else the file
    ``LEGACY_SECRET_KEY_FILE`` names (docker compose), else a prompt on a terminal."""
    key = os.environ.get("LEGACY_SECRET_KEY")
    if key:
        return key
    key_file = Path(os.environ.get("LEGACY_SECRET_KEY_FILE") or "/nonexistent")
    if key_file.is_file():
        return key_file.read_text(encoding="utf-8").strip() or None
    if sys.stdin.isatty():
        return (
            getpass.getpass("Legacy SECRET_KEY (decrypts the Gmail tokens; empty: reconnect later): ") or None
        )
    print("LEGACY_SECRET_KEY is not set: mail accounts are imported as needs_reauth", file=sys.stderr)
    return None


def service_command(service: str, args: argparse.Namespace, skip_users: list[str], *extra: str) -> list[str]:
    command = [
        sys.executable,
        "-m",
        f"services.{service}",
        "import-legacy",
        args.db,
        "--timezone",
        args.timezone,
    ]
    if args.uploads:
        command += ["--uploads", str(args.uploads)]
    if skip_users:
        command += ["--skip-users", ",".join(skip_users)]
    if args.dry_run:
        command.append("--dry-run")
    return [*command, *extra]


def run_all(commands: dict[str, list[str]], envs: dict[str, dict[str, str]]) -> dict[str, ServiceReport]:
    """Run the services' imports at the same time; each prints its report (JSON) on stdout."""
    with tempfile.TemporaryDirectory(prefix="legacy-import-") as tmp:
        outputs = {
            service: (Path(tmp) / f"{service}.json").open("w+", encoding="utf-8") for service in commands
        }
        processes = {
            service: subprocess.Popen(  # noqa: S603 (our interpreter and modules, arguments as a list)
                command, cwd=ROOT, env=envs[service], stdout=outputs[service], text=True
            )
            for service, command in commands.items()
        }
        failed = [service for service, process in processes.items() if process.wait() != 0]
        if failed:
            raise SystemExit(f"legacy import: the import of {', '.join(failed)} failed (see above)")
        reports = {}
        for service, output in outputs.items():
            output.seek(0)
            reports[service] = ServiceReport.model_validate_json(output.read().strip().splitlines()[-1])
            output.close()
        return reports


def skipped_users(report: ServiceReport) -> list[str]:
    return [str(problem.legacy_id) for problem in report.table("users").skipped]


def main() -> int:
    args = parse_args()
    env = dict(os.environ)
    key = secret_key()
    env.pop("LEGACY_SECRET_KEY", None)
    # Which legacy users auth takes decides what every other service imports: decided first (in
    # seconds, the same code as the import), then all four import at the same time.
    plan = run_all({"auth": service_command("auth", args, [], "--plan")}, {"auth": env})["auth"]
    skip_users = skipped_users(plan)
    commands = {service: service_command(service, args, skip_users) for service in ORDER}
    envs = {
        service: {
            **env,
            "LEGACY_PROGRESS_LINE": str(line),
            **({"LEGACY_SECRET_KEY": key} if service == "mail" and key else {}),
        }
        for line, service in enumerate(ORDER)
    }
    reports = run_all(commands, envs)
    merged = merge([reports[service] for service in ORDER])
    if skipped_users(reports["auth"]) != skip_users:  # accounts changed while importing
        merged["ok"] = False
        print(
            "legacy import: auth took other users than it planned (accounts changed meanwhile); run it again"
        )
    print(render(merged))
    if args.report:
        args.report.write_text(json.dumps(merged, indent=2, default=str), encoding="utf-8")
        print(f"report written to {args.report}")
    return 0 if merged["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
