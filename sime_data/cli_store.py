"""`--store` accepted at every level of a command line: before, between or after the subcommands.

`sime-data --store S versions list`, `sime-data versions --store S list` and `sime-data versions list --store S`
all mean the same. Each CLI declares `--store` where it always has (on the subcommands that use a store), then
calls `accept_store_anywhere(parser)` once; after parsing, `resolve_store(parser, args)` applies the declaring
subcommand's default (e.g. ``$SIME_STORE``) or reports a missing required store.

argparse copies a subparser's defaults over values its parent parsed, so every copy of the option is made with
``default=SUPPRESS``: a level that did not see the flag leaves the attribute alone.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Iterator

#: Namespace attribute holding the declaring subcommand's rule (default and whether it is required).
_RULE_DEST = "_store_rule"


@dataclass(frozen=True)
class _StoreRule:
    """What the subcommand that declared `--store` wanted when the flag is absent."""

    default: str | None
    required: bool
    flags: tuple[str, ...]


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    """Direct child parsers of `parser` (one per subcommand name, aliases once)."""
    seen: set[int] = set()
    for action in parser._actions:  # noqa: SLF001 - argparse has no public walk of its tree
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            for child in action.choices.values():
                if id(child) not in seen:
                    seen.add(id(child))
                    yield child


#: Marks the copies this module adds, to tell them from a subcommand's own declaration.
_COPY_MARK = "_sime_store_copy"


def _store_action(parser: argparse.ArgumentParser, *, copies: bool = True) -> argparse.Action | None:
    """The parser's `--store` option (its own declaration, or also a copy when `copies`), if any."""
    for action in parser._actions:  # noqa: SLF001
        if "--store" in action.option_strings and (copies or not getattr(action, _COPY_MARK, False)):
            return action
    return None


def _add_copy(parser: argparse.ArgumentParser, flags: tuple[str, ...], help_text: str | None) -> None:
    """Give `parser` a `--store` that sets the value only when it is given."""
    if _store_action(parser) is not None:
        return
    usable = tuple(f for f in flags if f not in parser._option_string_actions)  # noqa: SLF001
    action = parser.add_argument(*usable, dest="store", default=argparse.SUPPRESS, help=help_text or argparse.SUPPRESS)
    setattr(action, _COPY_MARK, True)


def _spread(parser: argparse.ArgumentParser, inherited: _StoreRule | None, help_text: str | None) -> bool:
    """Make `--store` acceptable on `parser` and its subtree; True when the subtree uses a store."""
    own = _store_action(parser, copies=False)
    rule = inherited
    if own is not None:
        rule = _StoreRule(own.default if own.default is not argparse.SUPPRESS else None, bool(own.required),
                          tuple(own.option_strings))
        help_text = own.help
        own.default, own.required = argparse.SUPPRESS, False
        parser.set_defaults(**{_RULE_DEST: rule})
    elif rule is not None:
        _add_copy(parser, rule.flags, help_text)
    uses_store = own is not None or rule is not None
    for child in _subparsers(parser):
        child_uses = _spread(child, rule, help_text)
        uses_store = uses_store or child_uses
    return uses_store


def _declared_flags(parser: argparse.ArgumentParser) -> tuple[tuple[str, ...], str | None] | None:
    """The first `--store` declaration's option strings and help found in the tree, depth first."""
    own = _store_action(parser, copies=False)
    if own is not None:
        return tuple(own.option_strings), own.help
    for child in _subparsers(parser):
        found = _declared_flags(child)
        if found is not None:
            return found
    return None


def _add_to_ancestors(parser: argparse.ArgumentParser, flags: tuple[str, ...], help_text: str | None) -> bool:
    """Give every parser above a `--store` declaration its own copy; True when `parser`'s subtree declares one."""
    below = False
    for child in _subparsers(parser):
        below = _add_to_ancestors(child, flags, help_text) or below
    if _store_action(parser, copies=False) is not None:
        return True
    if below:
        _add_copy(parser, flags, help_text)
    return below


def accept_store_anywhere(parser: argparse.ArgumentParser) -> None:
    """Let `--store` be given at any level above or below the subcommands that declare it."""
    found = _declared_flags(parser)
    if found is None:
        return
    flags, help_text = found
    # ancestors first (they see no declaration of their own yet), then each declaration spreads downwards
    _add_to_ancestors(parser, flags, help_text)
    _spread(parser, None, help_text)


def resolve_store(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Fill `args.store` from the declaring subcommand's default, or stop with argparse's usage error."""
    rule: _StoreRule | None = getattr(args, _RULE_DEST, None)
    if hasattr(args, _RULE_DEST):
        delattr(args, _RULE_DEST)
    if getattr(args, "store", None) is not None:
        return
    if rule is None:
        # the chosen subcommand does not use a store; a --store given above it is harmless
        return
    if rule.default is not None:
        args.store = rule.default
        return
    if rule.required:
        parser.error("the following arguments are required: --store (or set $SIME_STORE)")
    args.store = None
