"""Scripted experts that drive SimEnv with absolute 10-D actions."""

from .pick_place import EXPERT_CONFIGS, PickPlaceConfig, PickPlaceExpert, make_expert

__all__ = ["EXPERT_CONFIGS", "PickPlaceConfig", "PickPlaceExpert", "make_expert"]
