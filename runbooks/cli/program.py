"""The command line as a whole: what `tasks.py` sets up when Invoke imports it.

:func:`start` makes a closed pipe end quietly, shows history warnings on stderr, and turns
Invoke's own parse errors (and empty values) into one `error:` line and exit code 2.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import sys
from types import TracebackType
from typing import Any

from invoke import Collection

from celery_app.inputs import shown
from runbooks.cli.errors import refuse

ROOT: list[Collection] = []  # the command line's collection, once start() has run


def start(ns: Collection) -> None:
    """Set up the process for the commands of `ns`; called once, by tasks.py."""
    ROOT[:] = [ns]
    tokens_from_config()
    quiet_broken_pipe()
    history_warnings_on_stderr()
    refuse_a_bad_command_line(ns)


def tokens_from_config() -> None:
    """The access gate reads this user's token (MAQSAFY_TOKEN, else `invoke login`'s file)."""
    from runbooks.access import context, token_file

    context.use_token(lambda: token_file.load(os.environ))


def command_name(task: Any) -> str:
    """A task's name as typed (`failed.flush`, `deploy` for deploy.deploy)."""
    if ROOT:
        names = [  # Invoke keeps copies of the tasks it was given: the same body
            n for n in (*ROOT[0].task_names, *_aliases(ROOT[0])) if ROOT[0][n].body is task.body
        ]
        if names:
            return min(names, key=len)
    return str(task.name)


def _aliases(ns: Collection) -> list[str]:
    return [alias for aliases in ns.task_names.values() for alias in aliases]


def task_named(name: str) -> Any:
    """The task `invoke NAME` runs (for `approvals.run`); KeyError when there is none."""
    if not ROOT:
        raise KeyError(name)
    return ROOT[0][name]


def quiet_broken_pipe() -> None:
    """Let `invoke status | head -3` end quietly (exit 1) when the reader goes away.

    Not by SIGPIPE's default action: Python's signal docs warn that it would also kill the
    process without a word whenever a socket (Redis, SSH, a metrics scrape) closes mid-write.
    """

    def to_devnull() -> None:  # the final flush at exit then has nowhere to fail
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())

    def flush() -> None:
        try:
            sys.stdout.flush()
        except BrokenPipeError:
            to_devnull()

    previous = sys.excepthook

    def hook(kind: type[BaseException], value: BaseException, tb: TracebackType | None) -> None:
        if issubclass(kind, BrokenPipeError):
            to_devnull()
        else:
            previous(kind, value, tb)

    sys.excepthook = hook
    atexit.register(flush)


def history_warnings_on_stderr() -> None:
    """A history row that could not be closed: one `warning:` line on stderr
    (runbooks.engine.history logs it; the command's own outcome and exit code stay as they were)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("warning: %(message)s"))
    logging.getLogger("runbooks.engine.history").addHandler(handler)
    logging.getLogger("runbooks.access").addHandler(handler)  # an approval skipped: no accounts


PARSE_ERRORS = (
    (re.compile(r"No idea what '(.*)' is!", re.S), "unknown"),
    (re.compile(r"Flag <Argument: (\w+).*> needed value", re.S), "no value"),
    (re.compile(r"did not receive required positional arguments: (.*)", re.S), "positional"),
    (re.compile(r"Flag <Argument: (\w+).*> doesn't take any value", re.S), "takes none"),
)


def parse_error_line(message: str, task_name: str | None) -> str:
    """Invoke's ParseError `message` as an operator reads it: what is wrong, what to do."""
    help_for = f"invoke --help {task_name}" if task_name else "invoke --list"
    for pattern, kind in PARSE_ERRORS:
        match = pattern.search(message)
        if match is None:
            continue
        what = match.group(1)
        flag = "--" + what.replace("_", "-")
        if kind == "unknown" and not task_name and what.startswith("-"):
            return f"unknown flag {shown(what)} (invoke --help shows the core flags)"
        if kind == "unknown" and not task_name:
            return f"no task {shown(what)} (invoke --list shows them)"
        if kind == "unknown":
            if what.startswith("-"):
                return f"{task_name}: unknown flag {shown(what)} ({help_for} shows its flags)"
            return f"{task_name}: {shown(what)} is neither a task nor a value it takes ({help_for})"
        if kind == "no value":
            return f"{task_name}: {flag} needs a value ({help_for})"
        if kind == "positional":
            names = " ".join(n.strip("' ").upper() for n in what.split(","))
            return f"{task_name}: give {names} ({help_for})"
        return f"{task_name}: {flag} takes no value ({help_for})"
    return f"{shown(message, 200)[1:-1]} ({help_for})"


def typed(context: Any) -> str | None:
    """A task's name as typed: `deploy` rather than `deploy.deploy` (None: no task)."""
    names = [n for n in (context.name, *context.aliases) if n]
    return min(names, key=len) if names else None


def show_help_instead(context: Any) -> None:
    """`invoke run --help` (help where a positional goes): run `invoke --help run` instead.

    Invoke would take the flag as the value of BOOK; an operator asked for help. The same
    program is started again with the core flags typed before the task, and the task's help.
    """
    argv = sys.argv[1:]
    names = {context.name, *context.aliases}
    at = next(i for i, word in enumerate(argv) if word in names)
    sys.stdout.flush()
    os.execv(sys.executable, [sys.executable, "-m", "invoke", *argv[:at], "--help", argv[at]])


def refuse_a_bad_command_line(ns: Collection) -> None:
    """Every refusal, Invoke's own included, is one `error:` line and exit code 2.

    Stock Invoke prints its parse errors (an unknown flag, a flag without its value, a
    missing positional) its own way and exits 1, and offers a tasks file no hook for them.
    It imports tasks.py after parsing its own flags and before parsing the tasks', so the
    tasks' parse is run here first, with Invoke's parser on what the running program left
    unparsed; a ParseError becomes `error: ...` (Exit, which Invoke prints and exits with).
    The same pass refuses an empty value for any flag or positional ("" would silently mean
    the default) and shows the task's help for a `-h` taken as a positional value
    (`history.show -h`). Imported any
    other way (tests, Fabric), this does nothing.
    """
    from invoke.exceptions import ParseError
    from invoke.main import program
    from invoke.parser import Parser

    core = getattr(program, "core", None)
    if core is None or program.args.complete.value:  # not run by `invoke`, or completing
        return
    contexts = ns.to_contexts(ignore_unknown_help=program.config.tasks.ignore_unknown_help)
    try:
        parser = Parser(contexts=contexts, initial=program.initial_context)
        parsed = parser.parse_argv(core.unparsed)
    except ParseError as exc:
        name = typed(exc.context) if exc.context is not None else None
        refuse(parse_error_line(str(exc), name))
    for context in parsed[1:]:  # [0]: core flags given among the tasks'
        name = typed(context)
        for arg in context.args.values():
            given = arg.value if arg.got_value else None
            shown_as = arg.names[0].upper() if arg.positional else f"--{arg.names[0]}"
            if isinstance(given, str) and not given.strip():
                leave = "" if arg.positional else " or leave the flag out"
                refuse(f"{name}: {shown_as} is empty; give a value{leave} (invoke --help {name})")
            if arg.positional and given in ("-h", "--help"):
                show_help_instead(context)
