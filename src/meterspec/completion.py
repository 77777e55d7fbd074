"""Shell completion for `meterspec` (issue 17): `meterspec completion bash|zsh|fish` writes a
script generated from the command's own parser, so every command, option and choice, those
added later included, completes. zsh loads the bash script through bashcompinit."""

from __future__ import annotations

import argparse
import shlex
from dataclasses import dataclass

from meterspec.cli_guide import subcommands, walk

SHELLS = ("bash", "zsh", "fish")
"""The shells `meterspec completion` writes a script for."""


@dataclass(frozen=True)
class Command:
    """What completes after one command path ("conformance run", say)."""

    path: tuple[str, ...]
    """The words after `meterspec` that name the command, e.g. ("conformance", "run")."""
    help: str
    """The command's one-line help, shown beside it by zsh and fish."""
    commands: dict[str, str]
    """Its subcommands, each with its help."""
    options: dict[str, argparse.Action]
    """Its option strings, each with the argparse action (whether it takes a value, its choices)."""
    choices: tuple[str, ...]
    """The choices of its positional arguments (validate's kinds); empty when free."""


def commands(parser: argparse.ArgumentParser) -> list[Command]:
    """Every command of the tree, the root first."""
    found = []
    for path, sub in walk(parser):
        helps = {a.dest: a.help or "" for a in _subparser_action(sub)._choices_actions} \
            if subcommands(sub) else {}
        found.append(Command(
            path, sub.description or "",
            {name: helps.get(name, "") for name in subcommands(sub)},
            {o: a for a in sub._actions for o in a.option_strings},
            tuple(str(c) for a in sub._actions if not a.option_strings and a.choices
                  and not isinstance(a, argparse._SubParsersAction) for c in a.choices)))
    return found


def _subparser_action(parser: argparse.ArgumentParser) -> argparse._SubParsersAction[
        argparse.ArgumentParser]:
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))


def _takes_value(action: argparse.Action) -> bool:
    return action.nargs != 0


def script(shell: str, parser: argparse.ArgumentParser) -> str:
    """The completion script for `shell` (one of SHELLS)."""
    if shell == "fish":
        return _fish(commands(parser))
    text = _bash(commands(parser))
    if shell == "zsh":
        return ("#compdef meterspec\n# meterspec completion for zsh, through bashcompinit.\n"
                "autoload -U +X bashcompinit && bashcompinit\n" + text)
    return text


def _bash(found: list[Command]) -> str:
    paths = " | ".join(f'"{" ".join(c.path)}"' for c in found if c.path)
    words = "\n".join(f'        "{" ".join(c.path)}") words={shlex.quote(" ".join(c.commands))}'
                      f' choices={shlex.quote(" ".join(c.choices))}'
                      f' options={shlex.quote(" ".join(c.options))} ;;' for c in found)
    valued = "\n".join(
        f'        "{" ".join(c.path)}|{option}") COMPREPLY=($(compgen -W '
        f'{shlex.quote(" ".join(map(str, action.choices)))} -- "$cur")); return ;;'
        for c in found for option, action in c.options.items() if action.choices)
    files = " | ".join(f'"{" ".join(c.path)}|{option}"' for c in found
                       for option, action in c.options.items()
                       if _takes_value(action) and not action.choices)
    return f"""# meterspec completion for bash: eval "$(meterspec completion bash)"
_meterspec() {{
    local cur="${{COMP_WORDS[COMP_CWORD]}}" prev="${{COMP_WORDS[COMP_CWORD-1]}}"
    local path="" next i words choices options
    for ((i = 1; i < COMP_CWORD; i++)); do
        next="${{path:+$path }}${{COMP_WORDS[i]}}"
        case "$next" in
            {paths}) path="$next" ;;
        esac
    done
    case "$path|$prev" in
{valued}
        {files or '"|"'}) COMPREPLY=($(compgen -f -- "$cur")); return ;;
    esac
    case "$path" in
{words}
    esac
    if [[ "$cur" == -* ]]; then
        COMPREPLY=($(compgen -W "$options" -- "$cur"))
    elif [[ -n "$words" ]]; then
        COMPREPLY=($(compgen -W "$words" -- "$cur"))
    else
        COMPREPLY=($(compgen -W "$choices" -- "$cur") $(compgen -f -- "$cur"))
    fi
}}
complete -o filenames -F _meterspec meterspec
"""


def _fish(found: list[Command]) -> str:
    groups = [c.path[0] for c in found if len(c.path) == 1 and c.commands]
    lines = ["# meterspec completion for fish: meterspec completion fish | source",
             "complete -c meterspec -e"]
    for command in found:
        condition = _fish_condition(command.path, groups)
        if command.commands:
            inner = " ".join(command.commands)
            below = f"not __fish_seen_subcommand_from {inner}"
            when = f"{condition}; and {below}" if condition else below
            for name, text in command.commands.items():
                lines.append(f"complete -c meterspec -f -n {shlex.quote(when)} -a {name} "
                             f"-d {shlex.quote(_short(text))}")
        for option, action in command.options.items():
            flag = f"-l {option[2:]}" if option.startswith("--") else f"-s {option[1:]}"
            value = (f" -x -a {shlex.quote(' '.join(map(str, action.choices)))}"
                     if action.choices else " -r" if _takes_value(action) else "")
            when = f" -n {shlex.quote(condition)}" if condition else ""
            lines.append(f"complete -c meterspec{when} {flag}{value} "
                         f"-d {shlex.quote(_short(action.help or ''))}")
        if command.choices:
            lines.append(f"complete -c meterspec -n {shlex.quote(condition)} -a "
                         f"{shlex.quote(' '.join(command.choices))}")
    return "\n".join(lines) + "\n"


def _fish_condition(path: tuple[str, ...], groups: list[str]) -> str:
    """fish's test that the command line is at `path` (and not in a group's command of the
    same name: `run` beside `conformance run`)."""
    if not path:
        return ""
    parts = [f"__fish_seen_subcommand_from {word}" for word in path]
    if len(path) == 1 and path[0] not in groups and groups:
        parts.append(f"not __fish_seen_subcommand_from {' '.join(groups)}")
    return "; and ".join(parts)


def _short(text: str) -> str:
    """A description for a completion menu: the first sentence, at most 60 characters."""
    first = text.split(". ")[0].split("; ")[0].rstrip(".")
    return first if len(first) <= 60 else first[:57] + "..."
