"""Settings declared once, on dataclass fields: the help, choices and bounds that build CLI flags and check files.

A field made with `setting(...)` carries its documentation and its rules in ``field.metadata``. These read
them, so no default, choice list or bound is written twice:

- `add_flags` turns a dataclass into ``--kebab-case`` argparse flags (`sime train`, `sime run`);
- `from_mapping` builds a dataclass from parsed YAML/JSON, checking types, bounds and choices and naming the bad
  field (the rig config); nested dataclasses are built the same way, and a class's `cross_checks` method adds the
  rules that involve several fields;
- `field_table` lists every field a file may set, nested ones included, with type, default and help;
- `check_fields` checks a constructed instance's choices and bounds (the policy and training configs).
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

__all__ = ["SettingError", "setting", "add_flags", "flag_values", "from_mapping", "check_fields", "field_help",
           "field_table"]


class SettingError(ValueError):
    """A setting has the wrong type, is out of bounds, unknown or missing; the message names it."""


def setting(default: Any = dataclasses.MISSING, help: str = "", *, factory: Callable[[], Any] | None = None,
            choices: Sequence[str] | None = None, positive: bool = False, length: int | None = None,
            expect: str | None = None, parse: Callable[[Any], Any] | None = None, in_file: bool = True) -> Any:
    """A dataclass field with its help, choices, bounds and parser declared in its metadata.

    `positive` asks for values > 0 (each item of a tuple), `length` for a tuple of that many items, `expect`
    describes a well-formed value in error messages, `parse` replaces the type check for values no annotation
    describes (it raises ValueError), and ``in_file=False`` keeps a field out of `from_mapping`'s input.
    """
    metadata: dict[str, Any] = {"help": help, "positive": positive, "in_file": in_file}
    for key, value in (("choices", tuple(choices) if choices is not None else None), ("length", length),
                       ("expect", expect), ("parse", parse)):
        if value is not None:
            metadata[key] = value
    if factory is not None:
        return dataclasses.field(default_factory=factory, metadata=metadata)
    return dataclasses.field(default=default, metadata=metadata)


def field_help(cls: type) -> dict[str, str]:
    """Field name -> its declared help text, for every field of dataclass `cls`."""
    return {f.name: f.metadata.get("help", "") for f in dataclasses.fields(cls)}


def _type_name(kind: Any) -> str:
    """Short readable name of an annotation (``int | None``, ``tuple[float, ...]``)."""
    if isinstance(kind, type) and not typing.get_args(kind):
        return kind.__name__
    return str(kind).replace("typing.", "").replace("collections.abc.", "").replace("NoneType", "None")


def field_table(cls: type, path: str = "") -> list[tuple[str, str, str, str]]:
    """(field path, type, default, help) of every field a file may set, nested dataclasses expanded."""
    rows: list[tuple[str, str, str, str]] = []
    hints = _hints(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("in_file", True) or not f.init:
            continue
        name = _where(path, f.name)
        kind = _without_none(hints[f.name])[0]
        items = None if "parse" in f.metadata else _tuple_items(kind)
        if dataclasses.is_dataclass(kind) and "parse" not in f.metadata:
            rows.extend(field_table(kind, name))
            continue
        if items is not None and dataclasses.is_dataclass(items[0]):
            rows.extend(field_table(items[0], f"{name}[]"))
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = "(see help)"
        else:
            default = "(required)"
        help_text = f.metadata.get("help", "")
        if "choices" in f.metadata:
            help_text += f" [{', '.join(f.metadata['choices'])}]"
        rows.append((name, f.metadata.get("expect") or _type_name(hints[f.name]), default, help_text))
    return rows


def _hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a dataclass's fields."""
    return typing.get_type_hints(cls)


def _without_none(kind: Any) -> tuple[Any, bool]:
    """(X, True) for ``X | None``, else (kind, False)."""
    args = typing.get_args(kind)
    if type(None) in args:
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0], True
    return kind, False


def _tuple_items(kind: Any) -> tuple[Any, int | None] | None:
    """(item type, fixed length or None) for ``tuple[T, ...]`` / ``tuple[T, T]``; None if `kind` is no tuple."""
    if typing.get_origin(kind) is not tuple:
        return None
    args = typing.get_args(kind)
    if len(args) == 2 and args[1] is Ellipsis:
        return args[0], None
    if len(set(args)) != 1:
        raise TypeError(f"tuple settings need one item type, got {kind!r}")
    return args[0], len(args)


# ---------------------------------------------------------------------- command-line flags
def add_flags(parser: "argparse._ActionsContainer", cls: type, *, skip: Sequence[str] = (),
              default_note: str | None = None) -> list[str]:
    """Add one ``--kebab-case`` flag per field of dataclass `cls` (except `skip`); returns the field names.

    The type comes from the annotation (``X | None`` as X; tuples as ``nargs``; bool as ``--flag/--no-flag``),
    help and choices from the field's metadata (`default_note` appended to the help), and every default is None
    so that a preset's value stays unless the flag is given.
    """
    hints = _hints(cls)
    added: list[str] = []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        kind, _ = _without_none(hints[f.name])
        text = f.metadata.get("help")
        if text and default_note:
            text = f"{text} {default_note}"
        options: dict[str, Any] = {"default": None, "help": text.replace("%", "%%") if text else text}
        if "choices" in f.metadata:
            options["choices"] = f.metadata["choices"]
        items = _tuple_items(kind)
        if kind is bool:
            options["action"] = argparse.BooleanOptionalAction
        elif items is not None:
            item, size = items
            if item not in (int, float, str):
                raise TypeError(f"{cls.__name__}.{f.name}: no flag for a tuple of {item!r}")
            options.update(type=item, nargs=size or f.metadata.get("length") or "+")
        elif kind in (int, float):
            options["type"] = kind
        elif kind is not str:
            raise TypeError(f"{cls.__name__}.{f.name}: no flag for a field of type {kind!r}")
        parser.add_argument("--" + f.name.replace("_", "-"), **options)
        added.append(f.name)
    return added


def flag_values(args: argparse.Namespace, cls: type, *, skip: Sequence[str] = ()) -> dict[str, Any]:
    """The fields of `cls` given as flags in `args` (the ones left None are absent), tuples as tuples."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        value = getattr(args, f.name, None)
        if f.name in skip or value is None:
            continue
        values[f.name] = tuple(value) if isinstance(value, list) else value
    return values


# ---------------------------------------------------------------------- files
def _where(path: str, name: str) -> str:
    """Dotted path of field `name` below `path`."""
    return f"{path}.{name}" if path else name


def _describe(kind: Any, meta: Mapping[str, Any]) -> str:
    """What a well-formed value of this type looks like, for error messages."""
    if "expect" in meta:
        return meta["expect"]
    items = _tuple_items(kind)
    if items is not None:
        item, size = items
        size = size or meta.get("length")
        return f"a list of {size or 'one or more'} {_describe(item, {}).removeprefix('a ').removeprefix('an ')}s"
    if kind is int:
        return "a positive integer" if meta.get("positive") else "an integer"
    return {float: "a number", bool: "true or false", str: "text"}.get(kind, getattr(kind, "__name__", str(kind)))


def _scalar(kind: Any, value: Any, meta: Mapping[str, Any]) -> Any:
    """`value` as a `kind` (int, float, bool, str) within its bounds; ValueError otherwise."""
    if kind is bool:
        if isinstance(value, bool):
            return value
    elif kind is int:
        if isinstance(value, int) and not isinstance(value, bool) and (value > 0 or not meta.get("positive")):
            return value
    elif kind is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            if meta.get("positive") and not value > 0:
                raise ValueError(f"must be > 0, got {value}")
            return float(value)
    elif kind is str:
        if isinstance(value, str):
            return value
    else:
        raise TypeError(f"no rule reads a setting of type {kind!r}; give the field a parse function")
    raise ValueError(f"expected {_describe(kind, meta)}, got {value!r}")


def _value(kind: Any, value: Any, meta: Mapping[str, Any], path: str) -> Any:
    """One field's value read from a file, checked against its annotation and metadata."""
    if "parse" in meta:
        try:
            return meta["parse"](value)
        except (TypeError, ValueError) as exc:
            raise SettingError(f"{path}: {exc}") from None
    kind, optional = _without_none(kind)
    if value is None:
        if optional:
            return None
        raise SettingError(f"{path}: expected {_describe(kind, meta)}, got None")
    if dataclasses.is_dataclass(kind):
        return from_mapping(kind, value, path)
    items = _tuple_items(kind)
    if items is not None:
        item, size = items
        size = size or meta.get("length")
        if not isinstance(value, (list, tuple)) or (size is not None and len(value) != size):
            raise SettingError(f"{path}: expected {_describe(kind, meta)}, got {value!r}")
        if dataclasses.is_dataclass(item):
            return tuple(from_mapping(item, v, f"{path}[{i}]") for i, v in enumerate(value))
        try:
            return tuple(_scalar(item, v, meta) for v in value)
        except ValueError:
            raise SettingError(f"{path}: expected {_describe(kind, meta)}, got {value!r}") from None
    try:
        out = _scalar(kind, value, meta)
    except ValueError as exc:
        raise SettingError(f"{path}: {exc}") from None
    if "choices" in meta and out not in meta["choices"]:
        raise SettingError(f"{path}: {out!r} is not one of {list(meta['choices'])}")
    return out


def from_mapping(cls: type, raw: Any, path: str = "", *, label: str | None = None) -> Any:
    """Build dataclass `cls` from a parsed mapping, checking every field; SettingError names the bad one.

    Absent fields keep their defaults (an absent nested dataclass is built from an empty mapping, so its rules
    still apply); `label` names the mapping itself in messages (default: `path`).
    """
    label = label or path or cls.__name__
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise SettingError(f"{label}: expected a mapping, got {type(raw).__name__}")
    fields = [f for f in dataclasses.fields(cls) if f.metadata.get("in_file", True) and f.init]
    allowed = {f.name for f in fields}
    unknown = sorted(set(map(str, raw)) - allowed)
    if unknown:
        raise SettingError(f"{label}: unknown field(s) {unknown}; allowed: {sorted(allowed)}")
    hints = _hints(cls)
    values: dict[str, Any] = {}
    for f in fields:
        kind = _without_none(hints[f.name])[0]
        if f.name in raw:
            values[f.name] = _value(hints[f.name], raw[f.name], f.metadata, _where(path, f.name))
        elif f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            raise SettingError(f"{label}: missing required field {f.name!r}")
        elif dataclasses.is_dataclass(kind) and "parse" not in f.metadata:
            values[f.name] = from_mapping(kind, {}, _where(path, f.name))
    try:
        built = cls(**values)
    except (TypeError, ValueError) as exc:
        raise SettingError(f"{label}: {exc}") from None
    checks: Callable[[], Iterator[tuple[str, str]]] | None = getattr(built, "cross_checks", None)
    for name, message in (checks() if checks else ()):
        raise SettingError(f"{_where(path, name) if name else label}: {message}")
    return built


def check_fields(obj: Any) -> None:
    """Raise ValueError naming the first field of dataclass instance `obj` off its type, choices or bounds.

    Checks int, float and bool fields (and tuples of them) against their annotations, ``positive`` bounds and
    ``choices``; other fields are left to the class's own rules.
    """
    hints = _hints(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        kind, optional = _without_none(hints[f.name])
        if value is None and optional:
            continue
        choices = f.metadata.get("choices")
        if choices is not None and value not in choices:
            raise ValueError(f"{f.name} must be one of {', '.join(map(str, choices))}, got {value!r}")
        items = _tuple_items(kind)
        item_kind = items[0] if items is not None else kind
        if item_kind not in (int, float, bool):
            continue
        values = value if items is not None and isinstance(value, (tuple, list)) else (value,)
        for v in values:
            try:
                _scalar(item_kind, v, f.metadata)
            except ValueError:
                what = "a positive integer" if item_kind is int and f.metadata.get("positive") else \
                    "positive" if f.metadata.get("positive") else _describe(item_kind, {})
                raise ValueError(f"{f.name} must be {what}, got {value!r}") from None
