"""Min-max normalisation to [-1, 1] of actions and low-dim observations, fitted on loaded version data."""

from __future__ import annotations

from typing import TYPE_CHECKING, Iterable, Mapping

import numpy as np
import torch
from torch import nn

if TYPE_CHECKING:  # pragma: no cover
    from sime_data.sampler import VersionData

RANGE_EPS = 1e-4


class Normalizer(nn.Module):
    """Per-key affine maps x -> x * scale + offset onto [-1, 1]; constant dimensions map to 0."""

    def __init__(self, stats: Mapping[str, Mapping[str, np.ndarray]] | None = None) -> None:
        super().__init__()
        self._keys: list[str] = []
        for key, values in (stats or {}).items():
            self.add_key(key, np.asarray(values["min"]), np.asarray(values["max"]))

    @staticmethod
    def _buffer_name(key: str, part: str) -> str:
        return f"{key.replace('/', '__')}__{part}"

    def add_key(self, key: str, minimum: np.ndarray, maximum: np.ndarray) -> None:
        """Fit the map of one key from its per-dimension min and max."""
        minimum = np.asarray(minimum, dtype=np.float64)
        maximum = np.asarray(maximum, dtype=np.float64)
        span = maximum - minimum
        constant = span < RANGE_EPS
        scale = np.where(constant, 1.0, 2.0 / np.where(constant, 1.0, span))
        offset = np.where(constant, -minimum, -1.0 - minimum * scale)
        self.register_buffer(self._buffer_name(key, "scale"), torch.as_tensor(scale, dtype=torch.float32))
        self.register_buffer(self._buffer_name(key, "offset"), torch.as_tensor(offset, dtype=torch.float32))
        self.register_buffer(self._buffer_name(key, "min"), torch.as_tensor(minimum, dtype=torch.float32))
        self.register_buffer(self._buffer_name(key, "max"), torch.as_tensor(maximum, dtype=torch.float32))
        if key not in self._keys:
            self._keys.append(key)

    @property
    def keys(self) -> list[str]:
        """Keys this normaliser knows."""
        return list(self._keys)

    def _params(self, key: str) -> tuple[torch.Tensor, torch.Tensor]:
        if key not in self._keys:
            raise KeyError(f"normaliser has no key {key!r}; it knows {self._keys}")
        return getattr(self, self._buffer_name(key, "scale")), getattr(self, self._buffer_name(key, "offset"))

    def normalize(self, key: str, x: torch.Tensor) -> torch.Tensor:
        """Map raw values of `key` into [-1, 1]."""
        scale, offset = self._params(key)
        return x * scale + offset

    def unnormalize(self, key: str, y: torch.Tensor) -> torch.Tensor:
        """Map normalised values of `key` back to raw units."""
        scale, offset = self._params(key)
        return (y - offset) / scale

    def stats(self) -> dict[str, dict[str, list[float]]]:
        """The fitted min/max per key (for checkpoints and reports)."""
        return {k: {"min": getattr(self, self._buffer_name(k, "min")).tolist(),
                    "max": getattr(self, self._buffer_name(k, "max")).tolist()} for k in self._keys}


#: the range that maps values onto themselves (x * 1 + 0): a key left in raw units
IDENTITY_RANGE = (-1.0, 1.0)


def condition_range(minimum: np.ndarray, maximum: np.ndarray, mode: str = "minmax",
                    floor: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """The (low, high) a low-dim key is mapped from onto [-1, 1] in the policy's condition.

    ``minmax``: the data's range, each dimension widened about its centre to at least `floor` raw units;
    ``raw``: the identity (the SIME reference feeds the unnormalised observation vector).
    """
    minimum = np.asarray(minimum, dtype=np.float64)
    maximum = np.asarray(maximum, dtype=np.float64)
    if mode == "raw":
        return np.full_like(minimum, IDENTITY_RANGE[0]), np.full_like(maximum, IDENTITY_RANGE[1])
    if mode != "minmax":
        raise ValueError(f"unknown observation condition {mode!r}; choose minmax or raw")
    if floor <= 0:
        return minimum, maximum
    centre, half = (minimum + maximum) / 2.0, np.maximum(maximum - minimum, floor) / 2.0
    return centre - half, centre + half


def fit_normalizer(data: "VersionData", keys: Iterable[str], condition_keys: Iterable[str] = (),
                   mode: str = "minmax", floor: float = 0.0) -> Normalizer:
    """Fit min-max maps on every frame of loaded version data, for the given (non-image) keys.

    `condition_keys` (low-dim observations) get their range through `condition_range(mode, floor)`.
    """
    keys = list(keys)
    conditioned = set(condition_keys)
    stats: dict[str, dict[str, np.ndarray]] = {}
    lazy = [k for k in keys if k not in data.data]
    if lazy:  # image-sized arrays the loader left in Zarr: sime_data's streaming statistics read them
        from sime_data.stats import version_stats

        stats.update(version_stats(data._get_store(), data.version, lazy))
    for key in keys:
        if key not in stats:  # the same float64 reduction as sime_data.stats.version_stats
            values = data.data[key].astype(np.float64, copy=False)
            stats[key] = {"min": values.min(axis=0), "max": values.max(axis=0)}
    for key in conditioned & set(keys):
        low, high = condition_range(stats[key]["min"], stats[key]["max"], mode, floor)
        stats[key] = {"min": low, "max": high}
    return Normalizer({k: stats[k] for k in keys})
