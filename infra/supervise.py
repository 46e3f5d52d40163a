"""``make run``'s process manager: every Procfile line, supervised by supervisord.

A process that exits unexpectedly is restarted (supervisord backs off between failed starts:
1 s, 2 s, 3 s, ...) and the event is logged; Ctrl-C (or SIGTERM) stops every process and
their children cleanly. The Procfile stays the one list of processes (docker compose and the
tests check it against the service registry); this script only turns it into supervisord's
configuration, written to a temporary directory, and then becomes supervisord.

Usage: ``python infra/supervise.py [Procfile]``
"""

import os
import re
import shlex
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
_LINE = re.compile(r"^(?P<name>[A-Za-z0-9_-]+):\s*(?P<command>.+)$")


def parse_procfile(path: Path) -> dict[str, str]:
    """``name: command`` lines, in order; blank lines and comments are skipped."""
    programs: dict[str, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        match = _LINE.match(line)
        if match is None:
            raise SystemExit(f"{path}:{number}: not a 'name: command' line")
        programs[match["name"]] = match["command"].strip()
    return programs


def supervisord_config(programs: dict[str, str], state_dir: Path) -> str:
    """One ``[program:x]`` per process; the shell expands ``${VAR:-default}`` as honcho did."""
    sections = [
        "[supervisord]",
        "nodaemon=true",
        # In the foreground supervisord prints its events (spawned, exited, restarted) to stdout,
        # next to the processes' output; no second copy in a log file.
        "logfile=/dev/null",
        "logfile_maxbytes=0",
        f"pidfile={state_dir / 'supervisord.pid'}",
        "loglevel=info",
        # Run as root (a container, a root shell), supervisord logs a CRIT line unless it is told
        # that root is intended; it stays the user who started it either way.
        *(["user=root"] if os.geteuid() == 0 else []),
        "",
    ]
    for name, command in programs.items():
        shell = "exec " + command
        sections += [
            f"[program:{name}]",
            f"command=/bin/bash -c {shlex.quote(shell).replace('%', '%%')}",
            f"directory={ROOT}",
            "autostart=true",
            "autorestart=true",  # restart on any unexpected exit
            "startsecs=2",  # up this long counts as started; faster exits are retried with backoff
            "startretries=20",
            "stopsignal=TERM",
            "stopwaitsecs=15",
            "stopasgroup=true",
            "killasgroup=true",
            "redirect_stderr=true",
            "stdout_logfile=/dev/stdout",
            "stdout_logfile_maxbytes=0",
            "",
        ]
    return "\n".join(sections)


def main() -> None:
    procfile = Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "Procfile"
    state_dir = Path(tempfile.mkdtemp(prefix="pai-supervisor-"))
    config = state_dir / "supervisord.conf"
    config.write_text(supervisord_config(parse_procfile(procfile), state_dir))
    # `python` in the Procfile means this interpreter (the project's venv), whatever PATH says.
    os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    # Become supervisord, so Ctrl-C and SIGTERM reach it directly.
    os.execv(sys.executable, [sys.executable, "-m", "supervisor.supervisord", "-c", str(config)])  # noqa: S606


if __name__ == "__main__":
    main()
