"""`sime run` and `sime train` flags are generated from their config dataclasses: names, types, help, None defaults."""

from __future__ import annotations

import argparse
import dataclasses

import pytest

from sime_policy.cli import _RUN_HANDWRITTEN, build_parser, experiment_config_from_args, pipeline_config_from_args
from sime_policy.pipeline import PipelineConfig, get_pipeline_preset
from sime_policy.pipeline import config as pipeline_config
from sime_policy.policy.config import PolicyConfig, TrainConfig, get_preset
from sime_policy.policy import exploration


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    return next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices[name]


def _run_parser() -> argparse.ArgumentParser:
    return _subparser("run")


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


def test_every_policy_and_training_field_has_a_documented_train_flag() -> None:
    train = _subparser("train")
    options = {s: a for a in train._actions for s in a.option_strings}
    for cls in (PolicyConfig, TrainConfig):
        for f in dataclasses.fields(cls):
            assert f.metadata.get("help"), f"{cls.__name__}.{f.name} has no help in its metadata"
            action = options["--" + f.name.replace("_", "-")]
            assert action.default is None and action.help.replace("%%", "%").startswith(f.metadata["help"])


_TRAIN = ["train", "--store", "s", "--version", "v", "--config", "lift_lowdim_cpu"]


def test_train_flags_change_only_the_fields_given() -> None:
    parser = build_parser()
    preset = get_preset("lift_lowdim_cpu")
    assert experiment_config_from_args(parser.parse_args(_TRAIN)) == preset
    args = parser.parse_args([*_TRAIN, "--batch-size", "7", "--lr", "0.001", "--seed", "3", "--down-dims", "32", "64",
                              "--no-use-ema", "--betas", "0.9", "0.99", "--scheduler", "ddpm", "--epochs", "50"])
    changed = experiment_config_from_args(args)
    assert changed.train == dataclasses.replace(preset.train, batch_size=7, lr=0.001, seed=3, use_ema=False,
                                                betas=(0.9, 0.99), epochs=50.0)
    assert changed.policy == dataclasses.replace(preset.policy, down_dims=(32, 64), scheduler="ddpm")


def test_train_flags_refuse_bad_values_and_a_clash_with_set() -> None:
    parser = build_parser()
    for bad in (["--scheduler", "euler"], ["--betas", "0.9"], ["--batch-size", "many"]):
        with pytest.raises(SystemExit):
            parser.parse_args([*_TRAIN, *bad])
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        experiment_config_from_args(parser.parse_args([*_TRAIN, "--batch-size", "0"]))
    with pytest.raises(ValueError, match="lr given twice"):
        experiment_config_from_args(parser.parse_args([*_TRAIN, "--lr", "0.1", "--set", "lr=0.2"]))
    same = experiment_config_from_args(parser.parse_args([*_TRAIN, "--lr", "0.1", "--set", "lr=0.1"]))
    assert same.train.lr == 0.1


def test_verbose_is_accepted_before_and_after_the_subcommand() -> None:
    parser = build_parser()
    assert parser.parse_args(["-v", "run", "--preset", "quick"]).verbose is True
    assert parser.parse_args(["run", "--preset", "quick", "-v"]).verbose is True
    assert parser.parse_args(["run", "--preset", "quick"]).verbose is False
    assert parser.parse_args([*_TRAIN, "--verbose"]).verbose is True


def test_a_pipeline_progress_line_is_shown_once_with_verbose(capsys) -> None:
    from sime_policy.cli import _setup_logging
    from sime_policy.pipeline.names import Chain
    from sime_policy.pipeline.steps import say

    _setup_logging(True)
    try:
        say(Chain("lift", "quick", 233, "sime"), 1, "train on lift/core_5")
    finally:
        _setup_logging(False)
    shown = capsys.readouterr()
    assert (shown.out + shown.err).count("train on lift/core_5") == 1
    assert "[seed 233 sime round 1] train on lift/core_5" in shown.out
