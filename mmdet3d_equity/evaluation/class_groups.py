"""Class-frequency groups Many / Medium / Few (LT3D), for nuScenes.

LT3D (Peri et al., "Towards Long-Tailed 3D Detection", CoRL 2022) reports
the mean AP of three groups of classes ordered by how many training objects
they have. Three ways to define the groups (``groups=`` of SliceMetric):

``'lt3d'``
    LT3D's published lists for its 18 fine-grained nuScenes classes
    (:data:`LT3D_GROUPS`), plus the standard 10-class name ``pedestrian``
    in Many (LT3D's ``adult``, which makes up most pedestrians). On the
    standard 10 classes this gives Many = car, truck, pedestrian,
    traffic_cone, barrier; Medium = trailer, bus, construction_vehicle,
    bicycle, motorcycle; Few = none.
``dict(type='counts', ann_file=..., many=N, few=M)``
    from the training-set object counts of an info file: a class with at
    least ``many`` objects is Many, fewer than ``few`` is Few, the rest
    Medium. Both thresholds are required (no default): choose them for
    your data (e.g. 50000 / 5000 on nuScenes trainval, tens on a tiny
    dataset).
``dict(Many=[...], Medium=[...], Few=[...])``
    explicit lists.

A group's value is the mean, over its classes that have ground truth in
the evaluated samples, of the class's nuScenes AP (mean over the distance
thresholds); a group none of whose classes has ground truth is missing.
"""
from collections import OrderedDict
from typing import Dict, List, Mapping, Optional, Sequence

from .slice_sources import SliceError

GROUP_NAMES = ('Many', 'Medium', 'Few')

#: LT3D's groups of its 18 nuScenes classes (as in the LT3D code release)
LT3D_GROUPS = OrderedDict(
    Many=['car', 'truck', 'adult', 'traffic_cone', 'barrier'],
    Medium=['trailer', 'bus', 'construction_vehicle', 'bicycle',
            'motorcycle', 'construction_worker', 'pushable_pullable'],
    Few=['emergency_vehicle', 'child', 'police_officer', 'stroller',
         'personal_mobility', 'debris'])
#: standard 10-class names not in LT3D's lists, and their LT3D group
LT3D_EXTRA = dict(pedestrian='Many')


def lt3d_groups() -> 'OrderedDict[str, List[str]]':
    groups = OrderedDict((g, list(c)) for g, c in LT3D_GROUPS.items())
    for cls, g in LT3D_EXTRA.items():
        groups[g].append(cls)
    return groups


def count_training_objects(ann_file: str) -> Dict[str, int]:
    """Objects per class name in an mmdet3d (v2) info file."""
    import mmengine
    data = mmengine.load(ann_file)
    if not isinstance(data, Mapping) or 'data_list' not in data:
        raise SliceError(f'{ann_file} is not an mmdet3d info file (no '
                         'data_list)')
    cats = (data.get('metainfo') or {}).get('categories')
    if not cats:
        raise SliceError(f'{ann_file} has no metainfo.categories to name '
                         'the labels')
    names = {int(v): k for k, v in cats.items()}
    counts = {k: 0 for k in cats}
    for info in data['data_list']:
        for inst in info.get('instances', []):
            label = inst.get('bbox_label_3d', inst.get('bbox_label', -1))
            if label is not None and int(label) >= 0:
                counts[names[int(label)]] += 1
    return counts


def groups_from_counts(counts: Mapping[str, int], many: int, few: int
                       ) -> 'OrderedDict[str, List[str]]':
    """Many: count >= many; Few: count < few; Medium: the rest."""
    if not (isinstance(many, int) and isinstance(few, int)) or \
            not 0 < few <= many:
        raise SliceError(f'class groups by counts need integers 0 < few <= '
                         f'many, got many={many!r}, few={few!r}')
    groups = OrderedDict((g, []) for g in GROUP_NAMES)
    for cls, n in counts.items():
        g = 'Many' if n >= many else 'Few' if n < few else 'Medium'
        groups[g].append(cls)
    return groups


def build_class_groups(cfg) -> Optional['OrderedDict[str, List[str]]']:
    """Resolve the ``groups`` setting of SliceMetric (see module doc)."""
    if cfg is None:
        return None
    if cfg == 'lt3d':
        return lt3d_groups()
    if not isinstance(cfg, Mapping):
        raise SliceError(f"groups must be 'lt3d', dict(type='counts', ...) "
                         f'or dict(Many=[...], Medium=[...], Few=[...]); got '
                         f'{cfg!r}')
    cfg = dict(cfg)
    if 'type' in cfg:
        kind = cfg.pop('type')
        if kind != 'counts':
            raise SliceError(f"unknown class-group type {kind!r}; use "
                             "'counts' (or groups='lt3d', or explicit lists)")
        unknown = sorted(set(cfg) - {'ann_file', 'many', 'few'})
        missing = sorted({'ann_file', 'many', 'few'} - set(cfg))
        if unknown or missing:
            # no default thresholds: what makes a class 'Few' depends on
            # the dataset's size, so the config states it
            raise SliceError(
                "groups=dict(type='counts', ann_file=TRAIN_INFOS, many=N, "
                f'few=M) needs all three keys; got keys {sorted(cfg)}'
                + (f' (missing {missing})' if missing else '') +
                '. Choose the thresholds for your data, e.g. many=50000, '
                'few=5000 on nuScenes trainval (tens on a tiny dataset)')
        return groups_from_counts(count_training_objects(cfg['ann_file']),
                                  cfg['many'], cfg['few'])
    groups = OrderedDict()
    for g, classes in cfg.items():
        if not isinstance(classes, (list, tuple)) or not all(
                isinstance(c, str) for c in classes):
            raise SliceError(f'class group {g!r} must be a list of class '
                             f'names, got {classes!r}')
        groups[str(g)] = list(classes)
    seen = {}
    for g, classes in groups.items():
        for c in classes:
            if c in seen:
                raise SliceError(f'class {c!r} is in groups {seen[c]!r} and '
                                 f'{g!r}; each class belongs to one group')
            seen[c] = g
    return groups


def check_groups_cover(groups: Mapping[str, Sequence[str]],
                       classes: Sequence[str]) -> None:
    """Every evaluated class must be in a group."""
    grouped = {c for cs in groups.values() for c in cs}
    missing = [c for c in classes if c not in grouped]
    if missing:
        raise SliceError(f'class(es) {missing} are in no class group '
                         f'({dict(groups)}); give groups explicitly')
