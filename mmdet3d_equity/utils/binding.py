"""A likelihood file bound to the samples it is used for.

:func:`likelihood_table` matches a file to a sample set by id (fingerprint,
coverage, an explicit policy for missing samples); :func:`check_same_data`
makes sure it belongs to the same *data*: KITTI-format data numbers every
dataset's frames from 000000, so equal ids prove nothing. The file's
``dataset`` record (``data_root``, ``ann_file``, ``samples_fingerprint``)
is compared with the dataset's; the same content under another data root is
accepted (logged).
"""
import logging
import os.path as osp
from typing import Dict, Iterable, Mapping

from mmengine.logging import print_log

from .errors import ConfigError, LikelihoodFileError
from .identity import dataset_fingerprint, samples_fingerprint

CLAIM_KINDS = ('loss', 'sampling', 'inspection', 'binding')
WEIGHT_OWNER_HELP = (
    "custom_hooks = [dict(type='EquityHook', loss=dict("
    "type='GeneralizedFocalLoss', eta=1.0, gamma=5.0))] (loss weighting), "
    "or train_dataloader.sampler = dict(type='EquityWeightedSampler', "
    "loss=dict(type='GeneralizedFocalLoss', eta=1.0, gamma=5.0, "
    "normalisation='dataset')) (resampling)")
MISSING_POLICIES = ('error', 'max_weight', 'min_weight')
#: p of an id absent from the file (W(p) decreases with p for eta, gamma>=0)
MISSING_P = {'max_weight': 0.0, 'min_weight': 1.0}


def _refuse_or_log(msg: str, strict: bool) -> None:
    if strict:
        raise LikelihoodFileError(msg)
    print_log(msg + ' Continuing because strict=False.', 'current',
              logging.WARNING)


def likelihood_table(record: Mapping, ids: Iterable[str], path: str,
                     strict: bool = True, missing: str = 'error'
                     ) -> Dict[str, float]:
    """{identity: p} for the sample ids ``ids`` of a train dataset.

    ``strict``: the file's fingerprint must be that of ``ids`` (else a
    logged warning). ``missing``: what ids absent from the file get
    (``'error'``, or the p of :data:`MISSING_P`, logged)."""
    ids = set(ids)
    table = {str(i): float(p) for i, p in zip(record['sample_ids'],
                                              record['likelihood'])}
    absent = sorted(ids - set(table))
    extra = len(set(table) - ids)
    hint = id_form_hint(absent, set(table) - ids) if absent else ''
    if dataset_fingerprint(ids) != record['fingerprint']:
        _refuse_or_log(
            f'likelihood file {path}: its dataset fingerprint does not match '
            f'the train dataset ({len(ids)} samples in the dataset, '
            f'{len(table)} in the file; {len(absent)} dataset samples '
            f'missing from the file (e.g. {absent[:3]}), {extra} file '
            f'samples not in the dataset). The file was computed for '
            f'{record["dataset"]}. Recompute it with '
            'tools/compute_likelihoods.py on this train config, or set '
            'EquityDataset(strict=False) to accept a file for another sample '
            f'set (missing samples then follow `missing`).{hint}', strict)
    if absent and missing == 'error':
        raise LikelihoodFileError(
            f'likelihood file {path}: {len(absent)} of {len(ids)} train '
            f'samples have no likelihood (e.g. {absent[:5]}). Recompute the '
            'file for this dataset, or choose an explicit policy: '
            "EquityDataset(strict=False, missing='max_weight' | "
            f"'min_weight').{hint}")
    if absent:
        p = MISSING_P[missing]
        print_log(f'EquityDataset: {len(absent)} of {len(ids)} train samples '
                  f'have no likelihood in {path}; policy missing={missing!r} '
                  f'gives them p={p}.', 'current', logging.WARNING)
        table.update((a, p) for a in absent)
    return table


class Claims(dict):
    """{kind: owner} of what applies a wrapper's likelihoods: ``'loss'``
    (EquityHook), ``'sampling'`` (a sampler), ``'inspection'`` (reading
    samples outside training); ``'binding'``: EquitySamplingHook, which a
    sampler needs in training. W applied twice -- loss weighting with
    resampling, or two loss owners -- is refused."""

    def claim(self, kind: str, owner: str) -> None:
        if kind not in CLAIM_KINDS:
            raise ValueError(f'EquityDataset.claim: kind must be one of '
                             f'{CLAIM_KINDS}, got {kind!r}')
        if {kind, *self} >= {'loss', 'sampling'}:
            raise ConfigError(
                f"EquityDataset: {self.get('loss', owner)} (loss weighting) "
                f"and the {self.get('sampling', owner)} (resampling) would "
                'both apply W, i.e. twice. Use one: remove the EquityHook '
                '(resampling mode) or the sampler (loss weighting mode).')
        if kind == 'loss' and self.get(kind, owner) != owner:
            raise ConfigError(
                f'EquityDataset: two loss owners ({self[kind]} and {owner}) '
                'would each weight the loss by W; configure one EquityHook.')
        self[kind] = str(owner)

    def release(self, kind: str, owner: str) -> None:
        if self.get(kind) == str(owner):
            del self[kind]

    def require(self) -> None:
        """Refuse to serve samples that nothing applies, or that a sampler
        applies without EquitySamplingHook binding it to the checkpoints."""
        if 'sampling' in self and not {'binding', 'inspection'} & set(self):
            raise ConfigError(
                f"EquityDataset: the {self['sampling']} resamples without "
                'EquitySamplingHook, so the checkpoints would not record the '
                "sampler's settings and the likelihood file's content, and a "
                'resume with a re-scored file would go unnoticed. Add '
                "custom_hooks = [dict(type='EquitySamplingHook')] (the "
                "plugin's tools/train.py adds it).")
        if not {'loss', 'sampling', 'inspection'} & set(self):
            raise RuntimeError(
                'EquityDataset: nothing applies the likelihoods this wrapper '
                'attaches, so training would silently be the stock baseline. '
                f'Add what applies them: {WEIGHT_OWNER_HELP}. (To read '
                "samples outside training, call dataset.claim('inspection', "
                "'<your name>') first.)")


def _where(meta: Mapping) -> str:
    return (f"data_root {meta.get('data_root') or '?'!r}, info file "
            f"{meta.get('ann_file') or '?'!r}")


def check_same_data(record: Mapping, dataset, here: Mapping, path: str,
                    strict: bool = True) -> None:
    """Refuse (``strict``) or log a file computed for other data than
    ``dataset``, whose data root and info file are ``here``."""
    rec = record.get('dataset') or {}
    moved = [k for k in ('data_root', 'ann_file') if rec.get(k)
             and here.get(k) and osp.abspath(rec[k]) != osp.abspath(here[k])]
    if rec.get('samples_fingerprint'):
        if rec['samples_fingerprint'] == samples_fingerprint(dataset):
            if moved:
                print_log(f'EquityDataset: likelihood file {path} was '
                          f'computed for {_where(rec)}; the train dataset '
                          f'reads {_where(here)}, with the same samples and '
                          'point-cloud files (samples_fingerprint).',
                          'current')
            return
        why = "the samples' point-cloud files differ (samples_fingerprint)"
    elif moved and record.get('id_key') == 'sample_idx':
        why = f'the {" and ".join(moved)} differ'
    else:
        return
    _refuse_or_log(
        f'likelihood file {path} belongs to other data: it was computed for '
        f'{_where(rec)}, the train dataset reads {_where(here)}, and {why}; '
        'KITTI-format data numbers frames from 000000, so equal sample ids '
        'prove nothing. Recompute it for this data (python '
        'tools/compute_likelihoods.py CONFIG --out FILE) and point '
        'likelihood_file at it, or set EquityDataset(strict=False).', strict)


def id_form_hint(dataset_ids, file_ids) -> str:
    """A sentence when ids differ only in form ('000007' vs '7')."""
    def canon(s):
        return str(int(s)) if s.isdigit() else s

    by_canon = {canon(f): f for f in file_ids}
    for d in sorted(dataset_ids):
        f = by_canon.get(canon(d))
        if f is not None and f != d:
            return (f' The ids differ only in form (dataset {d!r}, file '
                    f'{f!r}): ids are the strings of the dataset\'s own '
                    "identity (str(sample_idx) or str(token)), so 7 and "
                    "'7' are one sample but '000007' is another; write the "
                    'file with tools/compute_likelihoods.py, which records '
                    'the dataset\'s own ids.')
    return ''
