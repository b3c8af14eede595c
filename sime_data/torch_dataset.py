"""Torch wrapper of `SequenceSampler`: a map-style Dataset of tensors and a batched DataLoader builder.

Importing this module imports torch; `sime_data` itself never does.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
from torch.utils.data import BatchSampler, DataLoader, Dataset, RandomSampler, SequentialSampler

from .sampler import SequenceSampler


def to_tensors(sample: Mapping[str, np.ndarray], float_dtype: torch.dtype = torch.float32) -> dict[str, torch.Tensor]:
    """Numpy arrays to tensors: floating data cast to `float_dtype`, integers and bools kept."""
    out: dict[str, torch.Tensor] = {}
    for key, value in sample.items():
        tensor = torch.from_numpy(np.ascontiguousarray(value))
        if tensor.is_floating_point() and tensor.dtype != float_dtype:
            tensor = tensor.to(float_dtype)
        out[key] = tensor
    return out


class TorchWindowDataset(Dataset):
    """Map-style torch Dataset over a SequenceSampler; an int gives one sample, a list of ints a whole batch."""

    def __init__(self, sampler: SequenceSampler, float_dtype: torch.dtype = torch.float32) -> None:
        self.sampler = sampler
        self.float_dtype = float_dtype

    def __len__(self) -> int:
        return len(self.sampler)

    def __getitem__(self, index: int | Sequence[int] | np.ndarray | torch.Tensor) -> dict[str, torch.Tensor]:
        if isinstance(index, torch.Tensor):
            index = index.numpy()
        if isinstance(index, (list, tuple, np.ndarray)):
            return to_tensors(self.sampler.sample_batch(np.asarray(index, dtype=np.int64)), self.float_dtype)
        return to_tensors(self.sampler[int(index)], self.float_dtype)


def _identity(batch: Any) -> Any:
    return batch


def make_dataloader(
    sampler: SequenceSampler | TorchWindowDataset,
    batch_size: int,
    *,
    shuffle: bool = True,
    drop_last: bool = False,
    num_workers: int = 0,
    seed: int | None = None,
    **kwargs: Any,
) -> DataLoader:
    """DataLoader yielding dicts of batched tensors, each batch gathered in one vectorised call."""
    dataset = sampler if isinstance(sampler, TorchWindowDataset) else TorchWindowDataset(sampler)
    generator = None
    if seed is not None:
        generator = torch.Generator()
        generator.manual_seed(seed)
    order = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
    batches = BatchSampler(order, batch_size=batch_size, drop_last=drop_last)
    kwargs.setdefault("persistent_workers", num_workers > 0)
    return DataLoader(dataset, batch_size=None, sampler=batches, num_workers=num_workers, collate_fn=_identity,
                      **kwargs)
