"""The SIME self-improvement pipeline: rounds of training, evaluation, exploration and selection."""

from .config import BRANCHES, PIPELINE_PRESETS, PipelineConfig, get_pipeline_preset
from .names import Chain, parse_rollout_name
from .report import RunReport, build_report, write_report
from .runner import run_pipeline
from .steps import PipelineStateError

__all__ = ["BRANCHES", "PIPELINE_PRESETS", "PipelineConfig", "get_pipeline_preset", "Chain", "parse_rollout_name",
           "RunReport", "build_report", "write_report", "run_pipeline", "PipelineStateError"]
