"""Generates deploy/CONFIGURATION.md, the configuration reference: every flag of
the services (`cairn frontend|history|matching`), of `cairn migrate`, `cairn
worker`, `cairn health` and the client commands, with the CAIRN_* variable it
falls back to, its default and its help, read from the argparse parsers
themselves; then the variables that have no flag. With --check, fails when the
checked-in file differs from what the code says (tests/unit/test_deploy_files.py
runs the same comparison), so the reference cannot drift.

How a flag's variable is found: the parsers are built in an environment with no
CAIRN_* variable, recording each variable read; the last one read before a flag
is added is the one its default came from (config.env, tls.add_flags, ...).
Flags whose variable is read later, when the command runs (the client flags),
name it in their help. The variables read with no flag are found in the source
(`CAIRN_NAME` literals) and must be described in ENV_ONLY below: a new one fails
the generator until it is."""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
OUTPUT = ROOT / "deploy" / "CONFIGURATION.md"
SOURCES = ("cairn", "cairn_cli", "services", "worker_sdk")
GENERATED = ("cairn/v1", "cairn/internal")
VARIABLE = re.compile(r"\bCAIRN_[A-Z0-9]+(?:_[A-Z0-9]+)*\b(?!_|\{)")

# Variables read with no flag: (default, what it does).
ENV_ONLY: dict[str, tuple[str, str]] = {
    "CAIRN_LOG_LEVEL": (
        "INFO",
        "log level of the services, `cairn migrate` and `cairn worker`: DEBUG, INFO, WARNING or ERROR",
    ),
    "CAIRN_INLINE_WAIT_SECONDS": (
        "5",
        "workers: a wait.for_ this short or shorter sleeps in place (its wake-up time recorded "
        "first) instead of suspending the run",
    ),
    "CAIRN_DEV_DIR": (
        "./.cairn",
        "the data directory of `cairn dev`, where the CLI, `cairn worker` and the SDK find its "
        "admin.key when no key is configured",
    ),
}


@dataclass(frozen=True)
class Flag:
    flag: str
    variable: str
    default: str
    help: str


class _Captured(Exception):
    def __init__(self, parser: argparse.ArgumentParser) -> None:
        self.parser = parser


class _RecordingEnviron(dict[str, str]):
    """os.environ without any CAIRN_* variable, remembering each one read."""

    def __init__(self, base: Mapping[str, str], reads: list[str]) -> None:
        super().__init__({k: v for k, v in base.items() if not k.startswith("CAIRN_")})
        self.reads = reads

    def _note(self, key: object) -> None:
        if isinstance(key, str) and key.startswith("CAIRN_"):
            self.reads.append(key)

    def get(self, key: str, default: Any = None) -> Any:  # type: ignore[override]
        self._note(key)
        return super().get(key, default)

    def __getitem__(self, key: str) -> str:
        self._note(key)
        return super().__getitem__(key)

    def __contains__(self, key: object) -> bool:
        self._note(key)
        return super().__contains__(key)


@contextmanager
def _recording() -> Iterator[dict[int, str]]:
    """While active: no CAIRN_* variable is set, and each argparse action added
    is mapped (by id) to the CAIRN_* variable read last before it was added."""
    reads: list[str] = []
    bound: dict[int, str] = {}
    original_add = argparse._ActionsContainer.add_argument
    original_environ = os.environ

    def add_argument(self: argparse._ActionsContainer, *args: Any, **kwargs: Any) -> argparse.Action:
        action = original_add(self, *args, **kwargs)
        if reads:
            bound[id(action)] = reads[-1]
        reads.clear()
        return action

    argparse._ActionsContainer.add_argument = add_argument  # type: ignore[method-assign]
    # Replaced, not cleared: only this process's readers are to see no CAIRN_* variable.
    os.environ = _RecordingEnviron(original_environ, reads)  # type: ignore[assignment]  # noqa: B003
    try:
        yield bound
    finally:
        os.environ = original_environ  # noqa: B003
        argparse._ActionsContainer.add_argument = original_add  # type: ignore[method-assign]


def _parser_of_main(main: Callable[[list[str]], None]) -> argparse.ArgumentParser:
    """The parser a service's main() builds, taken when it parses (nothing runs)."""
    original_parse = argparse.ArgumentParser.parse_args

    def capture(self: argparse.ArgumentParser, *args: Any, **kwargs: Any) -> Any:
        raise _Captured(self)

    argparse.ArgumentParser.parse_args = capture  # type: ignore[method-assign,assignment]
    try:
        main([])
    except _Captured as captured:
        return captured.parser
    finally:
        argparse.ArgumentParser.parse_args = original_parse  # type: ignore[method-assign]
    raise RuntimeError(f"{main.__module__}.main() did not parse its arguments")


def _subparsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def _leaves(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    children = _subparsers(parser)
    if not children:
        yield parser
    for child in children.values():
        yield from _leaves(child)


def _default(action: argparse.Action) -> str:
    if isinstance(action, argparse._StoreTrueAction):
        return "off" if action.default is False else "on"
    if action.default is None or action.default == argparse.SUPPRESS:
        return "—"
    if action.default == "":
        return '""'
    return str(action.default)


def _help(action: argparse.Action, prog: str) -> str:
    text = action.help or ""
    try:
        text = text % dict(vars(action), prog=prog)
    except (KeyError, TypeError, ValueError):
        pass
    return " ".join(text.split())


def _variable(action: argparse.Action, bound: dict[int, str], where: str) -> str:
    named = VARIABLE.findall(action.help or "")
    read = bound.get(id(action))
    if read is not None:
        if named and read not in named:
            raise RuntimeError(
                f"{where} {action.option_strings[0]}: its default comes from {read}, but its help "
                f"names {', '.join(named)}"
            )
        return read
    return named[0] if named else ""


def _flags(
    parser: argparse.ArgumentParser, bound: dict[int, str], only: Callable[[argparse.Action], bool] = bool
) -> list[Flag]:
    rows = []
    for action in parser._actions:
        if isinstance(action, (argparse._HelpAction, argparse._VersionAction, argparse._SubParsersAction)):
            continue
        if not only(action):
            continue
        name = ", ".join(action.option_strings) if action.option_strings else action.dest.upper()
        rows.append(
            Flag(name, _variable(action, bound, parser.prog), _default(action), _help(action, parser.prog))
        )
    return rows


def sections() -> list[tuple[str, str, list[Flag]]]:
    """(title, what it is, flags) of every command the deployments run."""
    with _recording() as bound:
        from cairn_cli import health, migrate
        from cairn_cli import main as cli_main  # first: it imports the CLI's modules in their order
        from services.frontend import main as frontend
        from services.history import main as history
        from services.matching import main as matching

        services = [
            (
                "cairn frontend",
                "the public gRPC API, the HTTP API and dashboard",
                _parser_of_main(frontend.main),
            ),
            ("cairn history", "run state", _parser_of_main(history.main)),
            ("cairn matching", "workers, tasks, queues and API keys", _parser_of_main(matching.main)),
        ]
        cli = cli_main._parser()
        migrate_parser = migrate.build_parser()
        health_parser = health.build_parser()
    commands = _subparsers(cli)
    not_client = ("worker", *_service_names(commands))
    client_leaves = [
        leaf for name, sub in commands.items() if name not in not_client for leaf in _leaves(sub)
    ]
    common = set.intersection(
        *({o for a in leaf._actions for o in a.option_strings} for leaf in client_leaves)
    )
    common -= {"-h", "--help", "--json"}
    example = client_leaves[0]
    out = [(title, what, _flags(p, bound)) for title, what, p in services]
    out.append(
        ("cairn migrate", "applies the database migrations, then exits", _flags(migrate_parser, bound))
    )
    out.append(
        ("cairn worker MODULE", "serves the tasks of a Python module", _flags(commands["worker"], bound))
    )
    out.append(
        (
            "client commands",
            "the connection flags every client command takes (`cairn trigger`, `cairn runs ...`, "
            "`cairn keys ...`, ...); the SDK's Client and Worker read the same variables",
            _flags(example, bound, lambda a: bool(set(a.option_strings) & common)),
        )
    )
    out.append(
        ("cairn health [ADDRESS]", "checks a service's gRPC health service", _flags(health_parser, bound))
    )
    return out


def _service_names(commands: dict[str, argparse.ArgumentParser]) -> list[str]:
    """The commands that are not client commands: they have their own parsers."""
    return [n for n in commands if n in ("dev", "frontend", "history", "matching", "migrate", "health")]


def variables_in_source() -> set[str]:
    """Every CAIRN_* name written in the packages' source (not the generated protocol code)."""
    found: set[str] = set()
    for top in SOURCES:
        for path in (ROOT / top).rglob("*.py"):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(GENERATED):
                continue
            found.update(VARIABLE.findall(path.read_text(encoding="utf-8")))
    return found


def variables_read() -> set[str]:
    """Every CAIRN_* variable the code reads: those of the flags, and ENV_ONLY's."""
    return {f.variable for _, _, flags in sections() for f in flags if f.variable} | set(ENV_ONLY)


def _cell(text: str) -> str:
    return text.replace("|", "\\|") if text else "—"


def render() -> str:
    parts = sections()
    with_flag = {f.variable for _, _, flags in parts for f in flags if f.variable}
    in_source = variables_in_source()
    undescribed = sorted(in_source - with_flag - set(ENV_ONLY))
    if undescribed:
        raise RuntimeError(
            f"the code reads {', '.join(undescribed)} with no flag: describe each in ENV_ONLY in {__file__}"
        )
    stale = sorted(set(ENV_ONLY) - in_source)
    if stale:
        raise RuntimeError(f"ENV_ONLY in {__file__} describes {', '.join(stale)}, which no code reads")
    lines = [
        "# Configuration reference",
        "",
        "Generated from the code by `python tools/config_reference.py` (tests/unit/test_deploy_files.py",
        "fails when this file and the code differ): every flag, the `CAIRN_*` variable it falls back",
        "to when not given, and its default. Deployments set the variables (the environment keeps",
        "secrets out of the process list). — means no default value: the description says what",
        "happens without one.",
        "",
    ]
    for title, what, flags in parts:
        heading = f"`{title}`" if title.startswith("cairn") else title[0].upper() + title[1:]
        lines += [f"## {heading}", "", f"{what[0].upper()}{what[1:]}.", ""]
        lines += ["| flag | variable | default | description |", "|---|---|---|---|"]
        for f in flags:
            variable = f"`{f.variable}`" if f.variable else "—"
            default = f"`{f.default}`" if f.default not in ("—", "off", "on") else f.default
            lines.append(f"| `{f.flag}` | {variable} | {_cell(default)} | {_cell(f.help)} |")
        lines.append("")
    lines += [
        "## Variables without a flag",
        "",
        "| variable | default | description |",
        "|---|---|---|",
    ]
    for name, (default, text) in sorted(ENV_ONLY.items()):
        lines.append(f"| `{name}` | `{default}` | {_cell(text)} |")
    lines += [
        "",
        "Traces: the services and `cairn worker` export OpenTelemetry spans over OTLP when",
        "`OTEL_EXPORTER_OTLP_ENDPOINT` is set and the `otel` extra is installed (the image has it); the",
        "exporter reads the standard `OTEL_*` variables.",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--check", action="store_true", help="fail when deploy/CONFIGURATION.md is stale")
    args = p.parse_args(argv)
    text = render()
    if args.check:
        if not OUTPUT.exists() or OUTPUT.read_text(encoding="utf-8") != text:
            sys.exit(f"{OUTPUT.relative_to(ROOT)} is stale: run python tools/config_reference.py")
        return
    OUTPUT.write_text(text, encoding="utf-8")
    print(f"wrote {OUTPUT.relative_to(ROOT)}")


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT))
    main()
