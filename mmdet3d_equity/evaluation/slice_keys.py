"""The metric-key grammar of :class:`SliceMetric` and its parser.

Every key :class:`SliceMetric` reports is one of::

    <prefix>/<wrapped key>                   whole split, the wrapped metric
                                             (exactly the wrapped metric's key)
    <prefix>/@<slice>/<wrapped key>          the wrapped metric on the slice's
                                             samples only
    <prefix>/@<unit>:<variant>/<name>        an added quantity of a slice, or
                                             of the whole split (unit 'all')

``<prefix>`` is the wrapped metric's prefix (``'Kitti metric'``,
``'NuScenes metric'``) unless the SliceMetric config sets another one.
``<slice>`` is a slice name (letters, digits, ``_ . -``; never ``all``).
Variants:

``dense``  ``<name>`` is a wrapped AP40 key; the dense AP40 of that cell
           (KITTI; see docs/slices.md).
``count``  ``num_samples``; the positive ground-truth objects of a
           ``<Class>_<difficulty>`` cell (KITTI) or of a ``<class>``
           (nuScenes); ``classes_<Group>`` (classes of a group with ground
           truth).
``few``    1.0 where that count is below ``min_gt`` (too few objects for the
           AP to mean much), else 0.0; same names as ``count``.
``group``  ``<Group>_mAP``: mean AP of a class-frequency group (nuScenes).

:func:`parse_metric_key` returns ``(prefix, slice, variant, name)`` with
``slice`` None for the whole split and ``variant`` ``'stock'`` for the
wrapped metric's own values; :func:`format_metric_key` is its inverse.
"""
import re
from typing import NamedTuple, Optional

#: name of the whole split in added keys (``@all:dense/...``)
WHOLE = 'all'
#: 'stock': the wrapped metric's value; the others are added quantities
VARIANTS = ('stock', 'dense', 'count', 'few', 'group')
SLICE_NAME_RE = re.compile(r'^[A-Za-z0-9_.\-]+$')


class MetricKey(NamedTuple):
    """A parsed metric key (see the module docstring)."""
    prefix: str
    slice: Optional[str]
    variant: str
    name: str


def check_slice_name(name, source: str = 'slice') -> str:
    """Return ``name`` if it is a valid slice name, else raise ValueError."""
    if not isinstance(name, str) or not SLICE_NAME_RE.match(name):
        raise ValueError(
            f'{source}: invalid slice name {name!r}; slice names use letters, '
            'digits, "_", "." and "-" only (they become part of metric keys)')
    if name == WHOLE:
        raise ValueError(
            f'{source}: the slice name {WHOLE!r} is reserved for the whole '
            'split; rename the slice')
    return name


def format_metric_key(prefix: str, slice_name: Optional[str], variant: str,
                      name: str) -> str:
    """Inverse of :func:`parse_metric_key`."""
    if variant not in VARIANTS:
        raise ValueError(f'unknown metric-key variant {variant!r}; one of '
                         f'{VARIANTS}')
    if slice_name is not None:
        check_slice_name(slice_name)
    head = f'{prefix}/' if prefix else ''
    if variant == 'stock':
        if slice_name is None:
            return head + name
        return f'{head}@{slice_name}/{name}'
    unit = WHOLE if slice_name is None else slice_name
    return f'{head}@{unit}:{variant}/{name}'


def parse_metric_key(key: str) -> MetricKey:
    """Split a metric key into ``(prefix, slice, variant, name)``.

    A key without an ``@`` component is a whole-split key of the wrapped
    metric: ``prefix`` is its first component (empty for keys without
    ``/`` such as ``'time'``), ``slice`` None, ``variant`` ``'stock'``.
    Raises ValueError for a malformed ``@`` component.
    """
    if not isinstance(key, str):
        raise TypeError(f'metric key must be a str, got {type(key).__name__}')
    parts = key.split('/')
    at = [i for i, p in enumerate(parts) if p.startswith('@')]
    if not at:
        if len(parts) == 1:
            return MetricKey('', None, 'stock', key)
        return MetricKey(parts[0], None, 'stock', '/'.join(parts[1:]))
    i = at[0]
    tag = parts[i][1:]
    name = '/'.join(parts[i + 1:])
    prefix = '/'.join(parts[:i])
    if not name:
        raise ValueError(f'malformed slice metric key {key!r}: nothing after '
                         f'the slice component {parts[i]!r}')
    unit, sep, variant = tag.partition(':')
    if not sep:
        variant = 'stock'
    if variant not in VARIANTS or (sep and variant == 'stock'):
        raise ValueError(f'malformed slice metric key {key!r}: unknown variant'
                         f' {variant!r} (expected one of {VARIANTS[1:]})')
    if not SLICE_NAME_RE.match(unit):
        raise ValueError(f'malformed slice metric key {key!r}: bad slice name '
                         f'{unit!r}')
    if unit == WHOLE:
        if variant == 'stock':
            raise ValueError(f'malformed slice metric key {key!r}: whole-split'
                             ' values of the wrapped metric carry no @all')
        return MetricKey(prefix, None, variant, name)
    return MetricKey(prefix, unit, variant, name)


def whole_split_metrics(metrics):
    """The wrapped metric's own whole-split keys of a metrics dict (what the
    dict would hold without SliceMetric); other keys (e.g. 'time') kept."""
    out = {}
    for k, v in metrics.items():
        try:
            p = parse_metric_key(k)
        except ValueError:
            continue
        if p.slice is None and p.variant == 'stock':
            out[k] = v
    return out


def slice_metrics(metrics, slice_name=None, variant='stock'):
    """``{wrapped key or name: value}`` of one slice (None: the whole split)
    and variant, with the prefix dropped."""
    out = {}
    for k, v in metrics.items():
        try:
            p = parse_metric_key(k)
        except ValueError:
            continue
        if p.slice == slice_name and p.variant == variant and (
                variant != 'stock' or slice_name is not None or p.prefix):
            out[p.name] = v
    return out
