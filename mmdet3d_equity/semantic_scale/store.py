"""Bounded per-class FIFO store of object features, with distributed stats.

Each class has a ring buffer of ``capacity`` features (the oldest are
overwritten first). :meth:`ClassFeatureStore.compute` turns the store into
class scales and SSB weights.

The store keeps, next to the float32 features, each class's float64
moments about a per-class shift s_c: sum_k (z_k - s_c) and
sum_k (z_k - s_c)(z_k - s_c)^T over the stored features, updated as
features enter and leave the ring (rank-k updates per push, k = the
features pushed and evicted), after which the shift is moved to the mean
of the stored features (a rank-1 correction). An update therefore never
re-reads the features: it turns the moments into centred scatter matrices
(O(C d^2)) and takes one batched float64 Cholesky over the classes
(O(C d^3)), instead of O(C m d^2) to re-centre and multiply m stored
features. Keeping the shift at the mean keeps the moments those of centred
features (no |mean|^2 cancellation, however far the features drift). The
moments are saved with the store (a resumed run continues bit for bit) and
rebuilt from the features when a checkpoint has none or a smaller capacity
drops features. Memory:
C x d x d x 8 bytes (5 MB for 10 classes x 256 dims).

Under DDP every rank holds its own store; the sufficient statistics are
all-reduced (counts and sums -> global class means; then the float64
scatter matrices sum_k (z_k - mean)(z_k - mean)^T, each rank's computed
from its moments), so every rank computes the scales from the same
numbers, and the resulting weights are finally broadcast from rank 0 so
they are bitwise identical everywhere.
"""
import contextlib
from typing import Dict, Optional

import numpy as np
import torch
from mmengine import dist

from .measures import (
    class_scales_from_stats,
    scale_factors,
    semantic_scales_from_scaled,
)

#: queued rows of rank-k updates (per class, on average) after which the
#: second moments are brought up to date: one GEMM of about this depth per
#: class instead of one small one per push
PENDING_ROWS = 256


@contextlib.contextmanager
def single_thread_on_cpu(device):
    """Run the block with one torch intra-op thread when ``device`` is the
    CPU. The class-scale update is small (C d x d blocks, C Cholesky
    factorisations of d x d): thread start-up and spinning cost more than
    they save, and on a loaded machine (more runnable threads than cores)
    multi-threaded MKL/OpenMP made it 10x slower (measured: 10 classes x
    256 dims, 120 ms with 2 threads vs 8 ms with 1)."""
    if torch.device(device).type != 'cpu':
        yield
        return
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(n)


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
        # float64 moments of the stored features (see the module doc)
        self._shift = self._s1 = self._s2 = self._pending = None
        self.ptr = torch.zeros(self.num_classes, dtype=torch.long)
        self.filled = torch.zeros(self.num_classes, dtype=torch.long)
        self.total_pushed = torch.zeros(self.num_classes, dtype=torch.long)
        if self.dim is not None:
            self._alloc(torch.device('cpu'))

    def _alloc(self, device) -> None:
        self.buffer = torch.zeros(self.num_classes, self.capacity, self.dim,
                                  dtype=torch.float32, device=device)
        self._reset_moments()

    def _reset_moments(self) -> None:
        """Zero float64 moments: shift s_c, sum (z - s_c), and
        sum (z - s_c)(z - s_c)^T of the stored features of each class."""
        kw = dict(dtype=torch.float64, device=self.buffer.device)
        self._shift = torch.zeros(self.num_classes, self.dim, **kw)
        self._s1 = torch.zeros(self.num_classes, self.dim, **kw)
        self._s2 = torch.zeros(self.num_classes, self.dim, self.dim, **kw)
        self._pending, self._pending_rows = [], 0

    def _rebuild_moments(self) -> None:
        """Moments recomputed from the stored features (shift = mean)."""
        self._reset_moments()
        for c in range(self.num_classes):
            z = self.features(c)
            if z.shape[0]:
                z = z.to(torch.float64)
                self._shift[c] = z.mean(0)
                y = z - self._shift[c]
                self._s1[c] = y.sum(0)
                self._s2[c] = y.T @ y

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
        with single_thread_on_cpu(self.buffer.device):
            self._push(features, labels)

    def _push(self, f: torch.Tensor, lab: torch.Tensor) -> None:
        """Ring writes and moment updates of one push, all classes at once
        (a fixed number of tensor operations, whatever the classes)."""
        C, cap, dev = self.num_classes, self.capacity, self.buffer.device
        counts = torch.bincount(lab, minlength=C)
        self.total_pushed += counts.cpu()
        order = torch.argsort(lab, stable=True)  # class-major, in order
        f, lab = f[order], lab[order]
        rank = torch.arange(lab.shape[0], device=dev) - \
            (torch.cumsum(counts, 0) - counts)[lab]
        drop = (counts - cap).clamp(min=0)  # more than capacity: the last
        keep = rank >= drop[lab]
        if not bool(keep.all()):
            f, lab, rank = f[keep], lab[keep], rank[keep]
        rank = rank - drop[lab]
        k = counts - drop
        ptr, filled = self.ptr.to(dev), self.filled.to(dev)
        pos = (ptr[lab] + rank) % cap
        gone = pos < filled[lab]  # rows this push overwrites
        lab_old = lab[gone]
        y_old = self.buffer[lab_old, pos[gone]].to(torch.float64)
        new = f.to(torch.float64)
        zeros = torch.zeros(C, self.dim, dtype=torch.float64, device=dev)
        first = (filled == 0) & (k > 0)  # empty class: shift = batch mean
        if bool(first.any()):
            sums = zeros.index_add(0, lab, new)
            self._shift[first] = sums[first] / k[first, None]
        y_new = new - self._shift[lab]
        y_old -= self._shift[lab_old]
        s1 = self._s1 + zeros.index_add(0, lab, y_new).index_add_(
            0, lab_old, y_old, alpha=-1)
        n = torch.minimum(filled + k, torch.full_like(filled, cap))
        # re-centre the touched classes: shift := mean of the stored
        # features, so that the moments stay those of centred features
        # however far the features drift during training (no cancellation
        # later). The moments move by the shift change actually applied
        # (delta, exact in float64), so they stay consistent with it:
        # sum (y - delta)(y - delta)^T = s2 - u delta^T - delta u^T
        touched = torch.nonzero(k).flatten()
        nt = n[touched, None].to(torch.float64)
        new_shift = self._shift[touched] + s1[touched] / nt
        delta = new_shift - self._shift[touched]
        u = s1[touched] - 0.5 * nt * delta
        s1[touched] -= nt * delta
        self._s1 = s1
        self._shift[touched] = new_shift
        # all of it is one rank-(k + evicted + 2) update of each touched
        # class's s2, queued and applied with the next ones in one GEMM
        self._pending.append((
            torch.cat([lab, lab_old, touched, touched]),
            torch.cat([y_new, y_old, u, delta]),
            torch.cat([y_new, -y_old, -delta, -u])))
        self._pending_rows += int(self._pending[-1][0].shape[0])
        if self._pending_rows >= PENDING_ROWS * C:
            self._flush()
        self.buffer[lab, pos] = f
        self.ptr = ((ptr + k) % cap).to(self.ptr.device)
        self.filled = n.to(self.filled.device)

    def _flush(self) -> None:
        """Apply the queued rank-k updates of the classes' s2: one GEMM per
        class over all queued rows."""
        if not self._pending:
            return
        lab = torch.cat([p[0] for p in self._pending])
        left = torch.cat([p[1] for p in self._pending])
        right = torch.cat([p[2] for p in self._pending])
        self._pending, self._pending_rows = [], 0
        order = torch.argsort(lab, stable=True)
        lab, left, right = lab[order], left[order], right[order]
        counts = torch.bincount(lab, minlength=self.num_classes).tolist()
        start = 0
        for c, m in enumerate(counts):
            if m:
                self._s2[c].addmm_(left[start:start + m].T,
                                   right[start:start + m])
            start += m

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
        On the CPU it runs with one intra-op thread
        (:func:`single_thread_on_cpu`).
        """
        with single_thread_on_cpu(self.device):
            return self._compute(alpha, min_count, scale_floor)

    def _compute(self, alpha, min_count, scale_floor):
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
        filled = self.filled.to(dev, torch.float64)
        if self.buffer is None:  # this rank saw no object yet: zeros
            shift = s1 = torch.zeros(C, dim, dtype=torch.float64, device=dev)
            s2 = torch.zeros(C, dim, dim, dtype=torch.float64, device=dev)
        else:
            self._flush()
            shift, s1, s2 = (t.to(dev) for t in (self._shift, self._s1,
                                                 self._s2))
        counts = filled.clone()
        sums = s1 + filled[:, None] * shift  # sum of the stored z
        dist.all_reduce(counts, op='sum')
        dist.all_reduce(sums, op='sum')
        means = sums / counts.clamp(min=1)[:, None]
        cnt = counts.round().long().cpu().numpy()
        # this rank's share of (d / m_c) x the scatter about the global
        # mean, from its moments in one batched pass:
        # sum (y - e)(y - e)^T = s2 - (u e^T + e u^T), y = z - shift,
        # e = mean - shift, u = s1 - n e / 2
        e = means - shift
        u = s1 - 0.5 * filled[:, None] * e
        a = scale_factors(cnt, dim, dev)
        left = a.view(-1, 1, 1) * torch.stack([u, e], 2)  # (C, d, 2)
        right = torch.stack([e, u], 1)  # (C, 2, d)
        mats = torch.empty_like(s2)
        for c in range(C):  # one pass over each d x d block
            torch.addmm(s2[c], left[c], right[c], beta=float(a[c]),
                        alpha=-1.0, out=mats[c])
        dist.all_reduce(mats, op='sum')
        sp = semantic_scales_from_scaled(mats, cnt)
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
        """The features, ring pointers and the float64 moments (with the
        queued updates as they are), so that a resumed run continues bit
        for bit like an uninterrupted one."""
        moments = None
        if self.buffer is not None:
            lab, left, right = self._pending_tensors()
            moments = dict(shift=self._shift.cpu().clone(),
                           s1=self._s1.cpu().clone(),
                           s2=self._s2.cpu().clone(), pending_labels=lab,
                           pending_left=left, pending_right=right)
        return dict(
            num_classes=self.num_classes, capacity=self.capacity,
            dim=self.dim,
            buffer=None if self.buffer is None else self.buffer.cpu().clone(),
            ptr=self.ptr.clone(), filled=self.filled.clone(),
            total_pushed=self.total_pushed.clone(), moments=moments)

    def _pending_tensors(self):
        """The queued rank-k updates as (labels, left, right) on the CPU."""
        if not self._pending:
            z = torch.zeros(0, self.dim, dtype=torch.float64)
            return torch.zeros(0, dtype=torch.long), z, z.clone()
        return tuple(torch.cat([p[i] for p in self._pending]).cpu()
                     for i in range(3))

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
        self._shift = self._s1 = self._s2 = self._pending = None
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
        saved = state.get('moments')  # absent in older checkpoints
        kept_all = bool((state['filled'] <= self.capacity).all())
        if saved is not None and kept_all:
            # the moments do not depend on the order of the rows: the
            # saved ones describe the re-packed store exactly
            self._shift = saved['shift'].to(dev, torch.float64).clone()
            self._s1 = saved['s1'].to(dev, torch.float64).clone()
            self._s2 = saved['s2'].to(dev, torch.float64).clone()
            lab = saved['pending_labels'].to(dev)
            self._pending = [] if lab.numel() == 0 else [(
                lab, saved['pending_left'].to(dev, torch.float64),
                saved['pending_right'].to(dev, torch.float64))]
            self._pending_rows = int(lab.numel())
        else:  # features dropped by a smaller capacity, or no moments
            self._rebuild_moments()
