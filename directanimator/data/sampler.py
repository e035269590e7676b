"""Bucket batch sampler: every batch holds samples of one shape (latent frames, height, width), so
clips of different sizes and lengths train together without padding (the paper trains with a
bucket sampler). Deterministic per (seed, epoch); sharded across processes; resumable mid-epoch."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterator, Sequence

import numpy as np


class BucketBatchSampler:
    def __init__(self, shapes: Sequence[Hashable], batch_size: int, seed: int = 0, rank: int = 0,
                 world_size: int = 1, drop_last: bool = False):
        if batch_size < 1:
            raise ValueError("batch_size must be at least 1")
        if not shapes:
            raise ValueError("no samples")
        self.shapes, self.batch_size, self.seed = list(shapes), batch_size, seed
        self.rank, self.world_size, self.drop_last = rank, world_size, drop_last
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Iterate epoch `epoch`, skipping its first `start` batches (of this process)."""
        self.epoch, self.start = epoch, start

    def all_batches(self, epoch: int) -> list[list[int]]:
        """The batches of every process for `epoch`, in the order they are dealt."""
        rng = np.random.default_rng([self.seed, epoch])
        buckets: dict[Hashable, list[int]] = defaultdict(list)
        for i, shape in enumerate(self.shapes):
            buckets[shape].append(i)
        batches = []
        for key in sorted(buckets, key=str):
            idx = np.array(buckets[key])
            rng.shuffle(idx)
            for s in range(0, len(idx), self.batch_size):
                chunk = idx[s:s + self.batch_size].tolist()
                if len(chunk) == self.batch_size or not self.drop_last:
                    batches.append(chunk)
        order = rng.permutation(len(batches))
        batches = [batches[i] for i in order]
        # every process gets the same number of batches (DDP steps in lockstep)
        w = self.world_size
        if len(batches) < w:
            batches = (batches * w)[:w]
        return batches[: len(batches) // w * w]

    def batches(self, epoch: int) -> list[list[int]]:
        return self.all_batches(epoch)[self.rank::self.world_size]

    def __iter__(self) -> Iterator[list[int]]:
        yield from self.batches(self.epoch)[self.start:]

    def __len__(self) -> int:
        return len(self.batches(self.epoch)) - self.start
