"""`sime run`'s PipelineConfig flags are generated from the dataclass: names, types, help, choices, None defaults."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from sime_policy.cli import _RUN_HANDWRITTEN, build_parser, dataclass_flags, pipeline_config_from_args
from sime_policy.pipeline import PipelineConfig, get_pipeline_preset
from sime_policy.pipeline import config as pipeline_config
from sime_policy.policy import exploration


@dataclasses.dataclass(frozen=True)
class _Example:
    """A dataclass with one field of each supported kind."""

    count: int = dataclasses.field(default=3, metadata={"help": "how many"})
    scale: float | None = None
    label: str = dataclasses.field(default="a", metadata={"help": "which", "choices": ("a", "b")})
    flag: bool = False
    seeds: tuple[int, ...] = (1,)
    skipped: int = 0


def test_flags_from_a_dataclass() -> None:
    parser = argparse.ArgumentParser()
    assert dataclass_flags(parser, _Example, skip=("skipped",)) == ["count", "scale", "label", "flag", "seeds"]
    assert vars(parser.parse_args([])) == {"count": None, "scale": None, "label": None, "flag": None, "seeds": None}
    args = parser.parse_args(["--count", "4", "--scale", "0.5", "--label", "b", "--no-flag", "--seeds", "2", "3"])
    assert vars(args) == {"count": 4, "scale": 0.5, "label": "b", "flag": False, "seeds": [2, 3]}
    assert parser.parse_args(["--flag"]).flag is True
    helps = {a.dest: a.help for a in parser._actions}
    assert helps["count"] == "how many" and helps["label"] == "which"
    for bad in (["--label", "c"], ["--count", "x"], ["--skipped", "1"]):
        with pytest.raises(SystemExit):
            parser.parse_args(bad)


def test_unsupported_field_type_is_refused() -> None:
    @dataclasses.dataclass
    class Bad:
        """A field no flag can carry."""

        mapping: dict[str, int] = dataclasses.field(default_factory=dict)

    with pytest.raises(TypeError, match="mapping"):
        dataclass_flags(argparse.ArgumentParser(), Bad)


def _run_parser() -> argparse.ArgumentParser:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices["run"]


def test_every_pipeline_field_has_a_documented_flag() -> None:
    run = _run_parser()
    options = {s: a for a in run._actions for s in a.option_strings}
    for f in dataclasses.fields(PipelineConfig):
        assert f.metadata.get("help"), f"PipelineConfig.{f.name} has no help in its metadata"
        flag = _RUN_HANDWRITTEN.get(f.name, "--" + f.name.replace("_", "-"))
        assert flag in options, (f.name, flag)
        if f.name not in _RUN_HANDWRITTEN:
            assert options[flag].default is None and options[flag].help == f.metadata["help"]
    assert pipeline_config.NOISE_UNITS == exploration.NOISE_UNITS  # the --noise-units choices


def test_a_preset_keeps_its_values_unless_a_flag_is_given() -> None:
    parser = build_parser()
    quick = get_pipeline_preset("quick")
    same = pipeline_config_from_args(parser.parse_args(["run", "--preset", "quick"]))
    assert same == quick
    changed = pipeline_config_from_args(parser.parse_args(["run", "--preset", "quick", "--no-smooth", "--seeds", "1",
                                                           "2", "--noise-units", "normalized", "--lanes", "8"]))
    assert changed == dataclasses.replace(quick, smooth=False, seeds=(1, 2), noise_units="normalized", lanes=8)
