"""Bounded per-class FIFO store of object features, with distributed stats.

Each class has a ring buffer of ``capacity`` features (the oldest are
overwritten first). :meth:`ClassFeatureStore.compute` turns the store into
class scales and SSB weights. Under DDP every rank holds its own store; the
sufficient statistics are all-reduced (counts and sums -> global class means;
then the centred scatter matrices sum_k (z_k - mean)(z_k - mean)^T in
float64), so every rank computes the scales from the same numbers, and the
resulting weights are finally broadcast from rank 0 so they are bitwise
identical everywhere.
"""
from typing import Dict, Optional

import numpy as np
import torch
from mmengine import dist

from .measures import class_scales_from_stats, semantic_scale_from_scatter


class ClassFeatureStore:
    """Per-class FIFO feature store.

    Args:
        num_classes (int): number of classes.
        capacity (int): features kept per class (per rank).
        dim (int, optional): feature dimension; fixed by the first push.
    """

    def __init__(self, num_classes: int, capacity: int,
                 dim: Optional[int] = None) -> None:
        if int(num_classes) < 1:
            raise ValueError(f'num_classes must be >= 1, got {num_classes}')
        if int(capacity) < 2:
            raise ValueError(f'capacity (features kept per class) must be '
                             f'>= 2, got {capacity}')
        self.num_classes = int(num_classes)
        self.capacity = int(capacity)
        self.dim = None if dim is None else int(dim)
        self.buffer: Optional[torch.Tensor] = None
        self.ptr = torch.zeros(self.num_classes, dtype=torch.long)
        self.filled = torch.zeros(self.num_classes, dtype=torch.long)
        self.total_pushed = torch.zeros(self.num_classes, dtype=torch.long)
        if self.dim is not None:
            self._alloc(torch.device('cpu'))

    def _alloc(self, device) -> None:
        self.buffer = torch.zeros(self.num_classes, self.capacity, self.dim,
                                  dtype=torch.float32, device=device)

    @property
    def device(self):
        return self.buffer.device if self.buffer is not None else \
            torch.device('cpu')

    def push(self, features: torch.Tensor, labels: torch.Tensor) -> None:
        """Append ``(K, d)`` features with ``(K,)`` labels in [0, C)."""
        if features.dim() != 2 or labels.dim() != 1 or \
                features.shape[0] != labels.shape[0]:
            raise ValueError(f'push expects (K, d) features and (K,) labels, '
                             f'got {tuple(features.shape)} and '
                             f'{tuple(labels.shape)}')
        if features.shape[0] == 0:
            return
        if self.dim is None:
            self.dim = int(features.shape[1])
        if self.buffer is None:
            self._alloc(features.device)
        if features.shape[1] != self.dim:
            raise ValueError(f'feature dim {features.shape[1]} != store dim '
                             f'{self.dim}')
        if (labels < 0).any() or (labels >= self.num_classes).any():
            raise ValueError(f'labels must lie in [0, {self.num_classes})')
        features = features.detach().to(self.buffer.device, torch.float32)
        labels = labels.to(self.buffer.device)
        for c in torch.unique(labels).tolist():
            f = features[labels == c]
            k = f.shape[0]
            self.total_pushed[c] += k
            if k > self.capacity:
                f = f[-self.capacity:]
                k = self.capacity
            idx = (int(self.ptr[c]) + torch.arange(k)) % self.capacity
            self.buffer[c, idx.to(self.buffer.device)] = f
            self.ptr[c] = (int(self.ptr[c]) + k) % self.capacity
            self.filled[c] = min(self.capacity, int(self.filled[c]) + k)

    def features(self, c: int) -> torch.Tensor:
        """The stored ``(m_c, d)`` features of class ``c`` (any order)."""
        if self.buffer is None:
            return torch.zeros(0, self.dim or 0)
        return self.buffer[c, :int(self.filled[c])]

    def counts(self) -> np.ndarray:
        return self.filled.numpy().copy()

    # ------------------------------------------------------------------
    def compute(self, alpha: float = 2.0, min_count: int = 2,
                scale_floor: float = 0.05) -> Dict[str, np.ndarray]:
        """Class scales and SSB weights from the (global) store contents.

        Collective under DDP: every rank must call it at the same point.
        """
        ws = dist.get_world_size()
        dim = self.dim
        if ws > 1:
            # ranks that saw no object yet do not know d: agree on it
            d_t = torch.tensor([dim or 0], dtype=torch.long)
            d_t = d_t.to(self._comm_device())
            dist.all_reduce(d_t, op='max')
            dim = int(d_t.item()) or None
            if dim is not None and self.dim is None:
                self.dim = dim
        C = self.num_classes
        dev = self._comm_device()
        if dim is None:  # nothing stored anywhere
            counts = np.zeros(C, np.int64)
            res = class_scales_from_stats(counts, np.zeros(C),
                                          torch.zeros(C, 1), alpha,
                                          min_count, scale_floor)
            res['centres'] = np.zeros((C, 0))
            return res
        counts = torch.zeros(C, dtype=torch.float64, device=dev)
        sums = torch.zeros(C, dim, dtype=torch.float64, device=dev)
        for c in range(C):
            z = self.features(c)
            counts[c] = z.shape[0]
            if z.shape[0]:
                sums[c] = z.to(dev, torch.float64).sum(0)
        dist.all_reduce(counts, op='sum')
        dist.all_reduce(sums, op='sum')
        means = sums / counts.clamp(min=1)[:, None]
        scatter = torch.zeros(C, dim, dim, dtype=torch.float64, device=dev)
        for c in range(C):
            z = self.features(c)
            if z.shape[0]:
                zc = z.to(dev, torch.float64) - means[c]
                scatter[c] = zc.T @ zc
        dist.all_reduce(scatter, op='sum')
        cnt = counts.round().long().cpu().numpy()
        sp = np.array([semantic_scale_from_scatter(scatter[c].cpu(),
                                                   int(cnt[c]))
                       for c in range(C)])
        res = class_scales_from_stats(cnt, sp, means.cpu(), alpha, min_count,
                                      scale_floor)
        if ws > 1:
            w = torch.from_numpy(res['weight']).to(dev)
            dist.broadcast(w, src=0)
            res['weight'] = w.cpu().numpy()
        res['centres'] = means.cpu().numpy()
        return res

    def _comm_device(self):
        if dist.get_world_size() > 1 and dist.get_backend() == 'nccl':
            return torch.device('cuda', torch.cuda.current_device())
        return torch.device('cpu')

    # ------------------------------------------------------------------
    def state_dict(self) -> dict:
        return dict(
            num_classes=self.num_classes, capacity=self.capacity,
            dim=self.dim,
            buffer=None if self.buffer is None else self.buffer.cpu().clone(),
            ptr=self.ptr.clone(), filled=self.filled.clone(),
            total_pushed=self.total_pushed.clone())

    def load_state_dict(self, state: dict) -> None:
        """Restore a saved store. A store saved with another capacity is
        re-packed (the newest features kept)."""
        if int(state['num_classes']) != self.num_classes:
            raise ValueError(
                f'saved feature store has {state["num_classes"]} classes, '
                f'this model {self.num_classes}')
        dev = self.device
        self.ptr.zero_()
        self.filled.zero_()
        self.total_pushed = state['total_pushed'].clone()
        self.buffer = None
        self.dim = state['dim']
        if state['buffer'] is None:
            return
        self._alloc(dev)
        buf = state['buffer']
        cap = int(state['capacity'])
        for c in range(self.num_classes):
            n = int(state['filled'][c])
            p = int(state['ptr'][c])
            # oldest -> newest order of the saved ring
            order = [(p + i) % cap for i in range(cap - n, cap)] if n == cap \
                else list(range(n))
            f = buf[c, order]
            if f.shape[0] > self.capacity:
                f = f[-self.capacity:]
            k = f.shape[0]
            self.buffer[c, :k] = f.to(dev)
            self.filled[c] = k
            self.ptr[c] = k % self.capacity
