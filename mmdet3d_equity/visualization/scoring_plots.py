"""Figures of an appearance-likelihood scoring run (matplotlib, Agg).

* ``projection.png``   2-D PCA of the (reduced) embeddings, coloured by
                       cluster (singletons/noise in grey crosses)
* ``likelihood_hist.png``  histogram of the likelihoods
* ``weight_curve.png`` W(p) = (eta + (1-p)^gamma) / (eta + 1) with the
                       samples' likelihoods as a rug
* ``rare_clusters.png`` / ``common_clusters.png``  thumbnail grids of the
                       rarest / most common clusters (never the same one in
                       both): camera images, or BEV renderings of the point
                       cloud for LiDAR-only scoring

The caller passes the clusters (ids, sizes, members, camera) and a
thumbnail function in; nothing here reads data.
"""
import os.path as osp
from typing import Callable, Dict, Mapping, Optional, Sequence

import numpy as np

from ..utils.fileio import atomic_savefig, check_output_dir


def _plt():
    import matplotlib
    matplotlib.use('Agg', force=True)
    import matplotlib.pyplot as plt
    return plt


def _save(fig, path, overwrite=True):
    try:
        atomic_savefig(fig, path, overwrite=overwrite, dpi=100,
                       bbox_inches='tight')
    finally:
        _plt().close(fig)


def plot_projection(z: np.ndarray, cluster_id, cluster_size, path: str,
                    title: str = '', overwrite: bool = True) -> str:
    from sklearn.decomposition import PCA
    plt = _plt()
    z = np.asarray(z, np.float64)
    if z.shape[1] > 2:
        z2 = PCA(2, random_state=0).fit_transform(z)
    elif z.shape[1] == 2:
        z2 = z
    else:
        z2 = np.concatenate([z, np.zeros_like(z)], 1)
    cid = np.asarray(cluster_id)
    size = np.asarray(cluster_size)
    fig, ax = plt.subplots(figsize=(6, 5))
    multi = size > 1
    uniq = np.unique(cid[multi])
    cmap = plt.get_cmap('tab20')
    for k, c in enumerate(uniq):
        m = cid == c
        ax.scatter(z2[m, 0], z2[m, 1], s=10, color=cmap(k % 20),
                   label=f'{c} (n={int(m.sum())})' if k < 12 else None)
    if (~multi).any():
        ax.scatter(z2[~multi, 0], z2[~multi, 1], s=18, c='grey',
                   marker='x', label=f'singletons ({int((~multi).sum())})')
    ax.set_xlabel('PC 1')
    ax.set_ylabel('PC 2')
    ax.set_title(title or 'embeddings (2-D PCA), coloured by cluster')
    # outside the axes: it never covers points
    ax.legend(fontsize=6, loc='upper left', bbox_to_anchor=(1.01, 1.0))
    _save(fig, path, overwrite)
    return path


def plot_likelihood_hist(likelihood, path: str, definition: str = '',
                         overwrite: bool = True) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(np.asarray(likelihood), bins=40, range=(0, 1), color='tab:blue')
    ax.set_xlabel(f'likelihood p ({definition})' if definition else
                  'likelihood p')
    ax.set_ylabel('samples')
    ax.set_title('appearance likelihood of the training samples')
    _save(fig, path, overwrite)
    return path


def plot_weight_curve(eta: float, gamma: float, path: str,
                      likelihood=None, overwrite: bool = True) -> str:
    from ..models.losses.equity_weight import equity_weight
    plt = _plt()
    p = np.linspace(0, 1, 201)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(p, equity_weight(p, eta, gamma), color='tab:red',
            label=f'eta={eta:g}, gamma={gamma:g}')
    if likelihood is not None:
        lik = np.asarray(likelihood)
        ax.plot(lik, equity_weight(lik, eta, gamma), '|', color='k',
                alpha=0.4, label='samples')
    ax.set_xlabel('likelihood p')
    ax.set_ylabel('W(p) = (eta + (1-p)^gamma) / (eta + 1)')
    ax.set_ylim(0, 1.05)
    ax.legend()
    ax.set_title('Generalized Focal Loss sample weight')
    _save(fig, path, overwrite)
    return path


def bev_image(points: np.ndarray, size: int = 160,
              extent: Optional[Sequence[float]] = None) -> np.ndarray:
    """Bird's-eye view of a point cloud as an RGB uint8 image (x up, y
    left); log point density in each cell, coloured by max height."""
    xyz = np.asarray(points)[:, :3]
    if extent is None:
        if len(xyz):
            lo = np.percentile(xyz[:, :2], 1, axis=0)
            hi = np.percentile(xyz[:, :2], 99, axis=0)
        else:
            lo, hi = np.array([-1, -1.]), np.array([1, 1.])
        extent = (lo[0], lo[1], hi[0], hi[1])
    x0, y0, x1, y1 = extent
    m = (xyz[:, 0] >= x0) & (xyz[:, 0] < x1) & (xyz[:, 1] >= y0) & \
        (xyz[:, 1] < y1)
    xyz = xyz[m]
    rows = ((x1 - xyz[:, 0]) / max(x1 - x0, 1e-6) * (size - 1)).astype(int)
    cols = ((y1 - xyz[:, 1]) / max(y1 - y0, 1e-6) * (size - 1)).astype(int)
    cnt = np.zeros((size, size), np.float64)
    np.add.at(cnt, (rows, cols), 1.0)
    height = np.full((size, size), -np.inf)
    np.maximum.at(height, (rows, cols), xyz[:, 2])
    dens = np.log1p(cnt)
    dens = dens / max(dens.max(), 1e-6)
    h = np.where(np.isfinite(height), height, 0.0)
    if np.isfinite(height).any():
        hmin, hmax = h[np.isfinite(height)].min(), h[np.isfinite(height)].max()
        hn = (h - hmin) / max(hmax - hmin, 1e-6)
    else:
        hn = h
    img = np.stack([dens * (0.3 + 0.7 * hn), dens, dens * (1 - 0.7 * hn)],
                   axis=-1)
    return (np.clip(img, 0, 1) * 255).astype(np.uint8)


def pick_clusters(clusters: Mapping[int, Mapping], num: int = 4):
    """(rarest, most common) cluster ids of ``clusters`` (``{id: dict(size,
    mean_likelihood, ...)}``): the rarest by size ascending (ties: lower
    mean likelihood first), the most common by size descending; never the
    same cluster in both (with fewer than ``2 * num`` clusters the rare
    side gets the smaller half, rounded up)."""
    ids = list(clusters)
    order = sorted(ids, key=lambda c: (clusters[c]['size'],
                                       clusters[c]['mean_likelihood'], c))
    rare = order[:min(num, (len(ids) + 1) // 2)]
    common = [c for c in sorted(ids, key=lambda c: (-clusters[c]['size'],
                                                   c))
              if c not in rare][:num]
    return rare, common


def plot_thumbnail_grid(clusters: Mapping[int, Mapping],
                        thumb: Callable[..., np.ndarray], labels,
                        path: str, title: str, per_row: int = 5,
                        overwrite: bool = True) -> str:
    """One row per cluster (``{id: dict(size, members, camera)}``): its
    first ``per_row`` members' thumbnails (``thumb(i, camera)``), labelled
    ``cluster id (camera, n=size)``."""
    plt = _plt()
    keys = list(clusters)
    nrow = max(1, len(keys))
    fig, axes = plt.subplots(nrow, per_row, figsize=(2.2 * per_row,
                                                     1.6 * nrow + 0.4),
                             squeeze=False)
    for r, c in enumerate(keys):
        info = clusters[c]
        members = list(info['members'])[:per_row]
        for k in range(per_row):
            ax = axes[r][k]
            ax.axis('off')
            if k < len(members):
                i = members[k]
                try:
                    ax.imshow(thumb(i, info.get('camera')))
                except Exception as e:  # a figure must not kill the run
                    ax.text(0.5, 0.5, f'unreadable:\n{type(e).__name__}',
                            ha='center', va='center', fontsize=6)
                ax.set_title(labels(i), fontsize=6)
        cam = f'{info["camera"]}, ' if info.get('camera') else ''
        axes[r][0].text(-0.1, 0.5, f'cluster {c}\n({cam}n={info["size"]})',
                        transform=axes[r][0].transAxes, ha='right',
                        va='center', fontsize=7)
    if not keys:
        axes[0][0].text(0.0, 0.5, 'no other cluster (every cluster is '
                        'shown in the other figure)', fontsize=8,
                        transform=axes[0][0].transAxes)
    fig.suptitle(title)
    _save(fig, path, overwrite)
    return path


def save_scoring_figures(record: Mapping, reduced: np.ndarray, out_dir: str,
                         clusters: Mapping[int, Mapping],
                         thumbnail: Optional[Callable[..., np.ndarray]] = None,
                         kind: Optional[str] = None,
                         projection: Optional[Mapping] = None,
                         eta: float = 1.0, gamma: float = 5.0,
                         num_clusters: int = 4,
                         overwrite: bool = False) -> Dict[str, str]:
    """Write all figures of a scoring run into ``out_dir`` (existing
    figures are replaced only with ``overwrite``).

    ``clusters``: ``{cluster id: dict(size, members, camera,
    mean_likelihood)}`` of the samples' clusters (the caller's one
    definition; the figures' ``n`` is ``size``); ``thumbnail(i, camera)``:
    the RGB image shown for sample i (no thumbnail grids without it),
    ``kind`` what it shows; ``projection``: ``dict(cluster_id,
    cluster_size, title)`` to colour the projection by (default the
    record's)."""
    check_output_dir(out_dir, 'figure')
    lik = np.asarray(record['likelihood'])
    proj = dict(cluster_id=record['cluster_id'],
                cluster_size=record['cluster_size'], title='')
    proj.update(projection or {})
    figs = dict(
        projection=plot_projection(reduced, np.asarray(proj['cluster_id']),
                                   np.asarray(proj['cluster_size']),
                                   osp.join(out_dir, 'projection.png'),
                                   title=proj['title'], overwrite=overwrite),
        likelihood_hist=plot_likelihood_hist(
            lik, osp.join(out_dir, 'likelihood_hist.png'),
            record['likelihood_def'], overwrite=overwrite),
        weight_curve=plot_weight_curve(eta, gamma,
                                       osp.join(out_dir, 'weight_curve.png'),
                                       lik, overwrite=overwrite))
    if thumbnail is None:
        return figs
    ids = record['sample_ids']

    def label(i):
        sid = str(ids[i])
        sid = sid if len(sid) <= 10 else sid[:8] + '..'
        return f'{sid} p={lik[i]:.2f}'
    rare, common = pick_clusters(clusters, num_clusters)
    for name, chosen in (('rare_clusters', rare),
                         ('common_clusters', common)):
        figs[name] = plot_thumbnail_grid(
            {c: clusters[c] for c in chosen}, thumbnail, label,
            osp.join(out_dir, name + '.png'),
            f'{name.replace("_", " ")} ({kind})', overwrite=overwrite)
    return figs
