"""Settings declared on dataclass fields: flags built from them, files checked against them."""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterator

import pytest

from sime_policy.settings import (SettingError, add_flags, check_fields, field_table, flag_values, from_mapping,
                                  setting)


@dataclasses.dataclass(frozen=True)
class _Example:
    """A dataclass with one field of each supported kind."""

    count: int = setting(3, "how many")
    scale: float | None = None
    label: str = setting("a", "which", choices=("a", "b"))
    flag: bool = False
    seeds: tuple[int, ...] = (1,)
    pair: tuple[float, float] = setting((0.5, 1.0), "share in 100% of cases")
    skipped: int = 0


def test_flags_from_a_dataclass() -> None:
    parser = argparse.ArgumentParser()
    assert add_flags(parser, _Example, skip=("skipped",)) == ["count", "scale", "label", "flag", "seeds", "pair"]
    assert vars(parser.parse_args([])) == {"count": None, "scale": None, "label": None, "flag": None, "seeds": None,
                                           "pair": None}
    args = parser.parse_args(["--count", "4", "--scale", "0.5", "--label", "b", "--no-flag", "--seeds", "2", "3",
                              "--pair", "1", "2"])
    assert vars(args) == {"count": 4, "scale": 0.5, "label": "b", "flag": False, "seeds": [2, 3], "pair": [1.0, 2.0]}
    assert flag_values(args, _Example) == {"count": 4, "scale": 0.5, "label": "b", "flag": False, "seeds": (2, 3),
                                           "pair": (1.0, 2.0)}
    assert flag_values(parser.parse_args(["--count", "5"]), _Example) == {"count": 5}
    assert parser.parse_args(["--flag"]).flag is True
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["count"] == "how many" and helps["label"] == "which"
    assert "100% of cases" in parser.format_help()  # a '%' in the help is text, not a format
    for bad in (["--label", "c"], ["--count", "x"], ["--skipped", "1"], ["--pair", "1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_default_note_is_appended_to_the_help() -> None:
    parser = argparse.ArgumentParser()
    add_flags(parser, _Example, default_note="(default: the preset's)")
    assert {a.dest: a.help for a in parser._actions}["count"] == "how many (default: the preset's)"


def test_unsupported_field_type_is_refused() -> None:
    @dataclasses.dataclass
    class Bad:
        """A field no flag can carry."""

        mapping: dict[str, int] = dataclasses.field(default_factory=dict)

    with pytest.raises(TypeError, match="mapping"):
        add_flags(argparse.ArgumentParser(), Bad)


@dataclasses.dataclass(frozen=True)
class _Part:
    """A nested section with a rule across fields."""

    kind: str = setting("a", "kind", choices=("a", "b"))
    size: int = setting(1, "size", positive=True)
    tag: str | None = setting(None, "needed by kind b", parse=lambda v: None if v is None else str(v))

    def cross_checks(self) -> Iterator[tuple[str, str]]:
        """kind b needs a tag."""
        if self.kind == "b" and not self.tag:
            yield "tag", "kind b needs a tag"


@dataclasses.dataclass(frozen=True, kw_only=True)
class _Whole:
    """A file's top level."""

    rate: float = setting(help="rate", positive=True)
    part: _Part = setting(help="one part", factory=_Part)
    parts: tuple[_Part, ...] = setting((), "more parts")
    size: tuple[int, int] | None = setting(None, "w, h", positive=True, expect="[width, height]")
    origin: str | None = setting(None, "not read from files", in_file=False)


def test_a_mapping_builds_nested_dataclasses() -> None:
    whole = from_mapping(_Whole, {"rate": 2, "part": {"kind": "b", "tag": 7}, "parts": [{}, {"size": 3}],
                                  "size": [4, 5]})
    assert whole == _Whole(rate=2.0, part=_Part("b", 1, "7"), parts=(_Part(), _Part(size=3)), size=(4, 5))
    assert isinstance(whole.rate, float)
    assert from_mapping(_Whole, {"rate": 1}) == _Whole(rate=1.0)


@pytest.mark.parametrize("raw, message", [
    ([1], "file: expected a mapping, got list"),
    ({}, "file: missing required field 'rate'"),
    ({"rate": 1, "colour": 2}, "file: unknown field(s) ['colour']; allowed: ['part', 'parts', 'rate', 'size']"),
    ({"rate": 1, "origin": "x"}, "unknown field(s) ['origin']"),
    ({"rate": 0}, "rate: must be > 0, got 0"),
    ({"rate": True}, "rate: expected a number, got True"),
    ({"rate": 1, "part": {"kind": "c"}}, "part.kind: 'c' is not one of ['a', 'b']"),
    ({"rate": 1, "part": {"size": -2}}, "part.size: expected a positive integer, got -2"),
    ({"rate": 1, "part": {"size": 1.5}}, "part.size: expected a positive integer, got 1.5"),
    ({"rate": 1, "part": {"kind": "b"}}, "part.tag: kind b needs a tag"),
    ({"rate": 1, "part": "a"}, "part: expected a mapping, got str"),
    ({"rate": 1, "parts": [{}, {"kind": "z"}]}, "parts[1].kind: 'z' is not one of"),
    ({"rate": 1, "parts": {"kind": "a"}}, "parts: expected a list of"),
    ({"rate": 1, "size": [4]}, "size: expected [width, height], got [4]"),
    ({"rate": 1, "size": [4, 0]}, "size: expected [width, height], got [4, 0]"),
])
def test_file_errors_name_the_field(raw, message) -> None:
    with pytest.raises(SettingError) as info:
        from_mapping(_Whole, raw, label="file")
    assert message in str(info.value)


def test_constructed_instances_are_checked_against_choices_and_bounds() -> None:
    check_fields(_Part())
    with pytest.raises(ValueError, match="kind must be one of a, b, got 'c'"):
        check_fields(_Part(kind="c"))
    with pytest.raises(ValueError, match="size must be a positive integer, got 0"):
        check_fields(_Part(size=0))
    with pytest.raises(ValueError, match="size must be a positive integer, got True"):
        check_fields(_Part(size=True))
    with pytest.raises(ValueError, match=r"size must be a positive integer, got \(4, -1\)"):
        check_fields(_Whole(rate=1.0, size=(4, -1)))
    with pytest.raises(ValueError, match="rate must be positive, got -1"):
        check_fields(_Whole(rate=-1.0))
    with pytest.raises(ValueError, match="rate must be positive, got 'fast'"):
        check_fields(_Whole(rate="fast"))


def test_field_table_expands_nested_sections() -> None:
    rows = {row[0]: row[1:] for row in field_table(_Whole)}
    assert list(rows) == ["rate", "part.kind", "part.size", "part.tag", "parts[].kind", "parts[].size",
                          "parts[].tag", "size"]  # `origin` is not read from files
    assert rows["rate"] == ("float", "(required)", "rate")
    assert rows["part.kind"] == ("str", "'a'", "kind [a, b]")
    assert rows["size"] == ("[width, height]", "None", "w, h")
