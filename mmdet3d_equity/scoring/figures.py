"""What the scoring figures show, prepared for :mod:`..visualization.
scoring_plots` (which draws them and imports nothing of scoring): the
clusters by the one definition of :mod:`.cameras`, and a thumbnail per
sample, from the camera whose clustering the shown cluster belongs to
(the camera that made the sample rare), or a BEV rendering of the point
cloud for embedders without cameras."""
from typing import Dict, Optional, Sequence

import numpy as np

from ..visualization.scoring_plots import bev_image, save_scoring_figures
from .outputs import record_clusters


def write_scoring_figures(record, res, split, out_dir: str, settings,
                          cameras: Optional[Sequence[str]]) -> Dict[str, str]:
    """All figures of a scoring run into ``out_dir``."""
    clusters = record_clusters(record)
    per_cam = res.get('per_camera')
    if per_cam is not None:
        # the projection of one camera's embeddings, coloured by that
        # camera's own clusters (the combined ids belong to other cameras)
        cam = cameras[0]
        reduced = res['reduced_by_camera'][cam]
        projection = dict(cluster_id=per_cam[cam]['cluster_id'],
                          cluster_size=per_cam[cam]['cluster_size'],
                          title=f'camera {cam} embeddings (2-D PCA), '
                          "coloured by this camera's clusters")
    else:
        reduced = res['reduced']
        projection = dict(cluster_id=record['cluster_id'],
                          cluster_size=record['cluster_size'], title='')
    thumbnail, kind = None, None
    if split is not None:
        thumbnail, kind = _thumbnails(split, cameras, settings.img_prefix)
    return save_scoring_figures(
        record, reduced, out_dir, clusters=clusters, thumbnail=thumbnail,
        kind=kind, projection=projection, eta=settings.eta,
        gamma=settings.gamma, overwrite=settings.overwrite)


def _thumbnails(split, cameras, img_prefix):
    """``(thumbnail(i, camera) -> RGB uint8, what the thumbnails show)``."""
    if cameras:
        import mmcv

        from .embedders.image_io import read_image
        paths = split.image_paths(cameras, img_prefix)
        index = {c: k for k, c in enumerate(cameras)}

        def thumb(i, camera=None):
            im = read_image(paths[i][index.get(camera, 0)])
            h, w = im.shape[:2]
            s = 200.0 / max(h, w)
            return mmcv.imresize(im, (max(1, int(w * s)),
                                      max(1, int(h * s))))[..., ::-1]
        kind = 'camera ' + cameras[0] if len(cameras) == 1 else \
            "each cluster's camera"
        return thumb, kind

    def bev(i, camera=None):
        return bev_image(np.asarray(split.load_points(i)))
    return bev, 'LiDAR BEV'
