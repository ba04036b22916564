"""Per-arm diagnostics of a benchmark: training cost and sample weights.

* Cost: seconds per training iteration, read from the training run's
  MMEngine scalar log (``<train>/<timestamp>/vis_data/scalars.json``, the
  ``time`` of each logged window; the first windows are skipped as warm-up),
  and the ratio to the baseline run of the same seed.
* Weights (arms that use DatasetEquity): the per-sample weights W(p) the arm
  trains with, from its likelihood file and its GeneralizedFocalLoss
  (eta, gamma), summarised by Kish's effective sample size and by each
  training slice's share of the total weight against its share of the
  samples (slices from a slice file, docs/slices.md, such as the tiny
  datasets' ``frame_modes.json``). A global normalisation changes neither.
"""
import glob
import json
import os.path as osp
from typing import Dict, Optional

import numpy as np

from .stats import kish_effective_sample_size, weight_shares

WARMUP_WINDOWS = 2


def seconds_per_iter(train_dir: str) -> Optional[Dict]:
    """Median and mean ``time`` (s/iter) over the logged training windows
    of the newest run in ``train_dir``; None when there is no log."""
    logs = sorted(glob.glob(osp.join(train_dir, '*', 'vis_data',
                                     'scalars.json')))
    if not logs:
        return None
    times = []
    with open(logs[-1]) as f:
        for line in f:
            line = line.strip()
            if not line:
                continue
            rec = json.loads(line)
            if 'time' in rec and 'loss' in rec:  # a training window
                times.append(float(rec['time']))
    if len(times) > WARMUP_WINDOWS:
        times = times[WARMUP_WINDOWS:]
    if not times:
        return None
    return dict(median=float(np.median(times)), mean=float(np.mean(times)),
                windows=len(times), log=logs[-1])


def _walk(obj):
    if isinstance(obj, dict):
        yield obj
        for v in obj.values():
            yield from _walk(v)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _walk(v)


def equity_settings(cfg) -> Optional[Dict]:
    """How an arm's config applies DatasetEquity, or None if it does not:
    ``dict(likelihood_file, eta, gamma, mode)`` with mode 'loss' (EquityHook)
    or 'resample' (EquityWeightedSampler)."""
    d = cfg.to_dict() if hasattr(cfg, 'to_dict') else dict(cfg)
    wrappers = [x for x in _walk(d.get('train_dataloader', {}))
                if x.get('type') == 'EquityDataset']
    if not wrappers:
        return None
    lik = wrappers[0].get('likelihood_file')
    hooks = [h for h in d.get('custom_hooks') or []
             if isinstance(h, dict) and h.get('type') == 'EquityHook']
    samplers = [x for x in _walk(d.get('train_dataloader', {}))
                if x.get('type') == 'EquityWeightedSampler']
    if hooks:
        mode, owner = 'loss', hooks[0]
    elif samplers:
        mode, owner = 'resample', samplers[0]
    else:
        return dict(likelihood_file=lik, eta=None, gamma=None, mode=None)
    gfl = [x for x in _walk(owner) if x.get('type') ==
           'GeneralizedFocalLoss']
    src = gfl[0] if gfl else owner
    return dict(likelihood_file=lik, eta=float(src.get('eta', 1.0)),
                gamma=float(src.get('gamma', 5.0)), mode=mode)


def weight_diagnostics(cfg, train_slices: Optional[str]) -> Optional[Dict]:
    """Kish ESS and slice weight shares of an arm's training weights."""
    from mmdet3d_equity.models.losses.equity_weight import equity_weight

    from ..utils.likelihood_file import load_likelihood_file
    s = equity_settings(cfg)
    if s is None or s['eta'] is None:
        return None
    rec = load_likelihood_file(s['likelihood_file'])
    w = equity_weight(np.asarray(rec['likelihood']), s['eta'], s['gamma'])
    out = dict(s, samples=len(w), weight_min=float(w.min()),
               weight_max=float(w.max()), weight_mean=float(w.mean()),
               kish=kish_effective_sample_size(w))
    if train_slices:
        from ..evaluation.slice_sources import read_slice_file
        members, _ = read_slice_file(train_slices)  # {slice: set of ids}
        of = {}
        for name, ids in members.items():
            for i in ids:
                of.setdefault(i, []).append(name)
        missing = [i for i in rec['sample_ids'] if i not in of]
        if missing:
            raise ValueError(
                f'{train_slices}: {len(missing)} training samples of '
                f"{s['likelihood_file']} have no slice (e.g. {missing[:3]})")
        out['slices'] = weight_shares(w, [of[i] for i in rec['sample_ids']])
    return out
