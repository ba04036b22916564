"""The embedder interface: what every entry of :data:`EMBEDDERS` offers.

An embedder turns the samples of a :class:`~..dataset_source.Split` into
one ``(C, D)`` float32 array each (C views, e.g. cameras; 1 otherwise):

* ``split_dataset(split, rows, cameras, img_prefix)``: a torch Dataset of
  those samples, read in DataLoader workers; an item that cannot be read is
  a :class:`~.loaders.LoadFailure` (raised in the main process);
* ``collate(items)``: a batch of items (the first LoadFailure wins);
* ``embed_batch(batch)``: the ``(B, C, D)`` embeddings, a tensor;
* ``config()``: everything that changes the numbers (recorded in the
  likelihood file and the embedding cache key).

``settings_fields`` names the :class:`~..settings.ScoringSettings` fields
an embedder takes (field -> constructor argument); any other option goes
in a config dict, ``embedder=dict(type=NAME, ...)``. Every embedder takes
the run options of :class:`BaseEmbedder`.
"""
from typing import Dict, Optional, Sequence

import numpy as np

from ...utils.errors import ScoringError
from .loaders import InferenceOptions, LoadFailure, check_batch_size


class BaseEmbedder:
    """Run options shared by every embedder.

    Args:
        batch_size: samples per forward (does not change the numbers).
        device, num_workers, amp, amp_dtype, channels_last: see
            :class:`~.loaders.InferenceOptions`.
        seed: seeds any random initialisation.
        logger: an MMLogger or None.
    """
    #: the type recorded in the likelihood file
    kind = 'embedder'
    #: ScoringSettings field -> constructor argument
    settings_fields: Dict[str, str] = {}
    #: whether ``cameras`` / ``camera_aggregation`` apply
    uses_cameras = False

    def __init__(self, batch_size: int = 8, device: str = 'cpu',
                 num_workers: int = 0, amp: bool = False,
                 amp_dtype: Optional[str] = None,
                 channels_last: bool = False, seed: int = 0, logger=None):
        self.options = InferenceOptions(device, num_workers, amp, amp_dtype,
                                        channels_last)
        self.batch_size = check_batch_size(batch_size)
        self.device = self.options.device
        self.seed = int(seed)
        self.logger = logger
        self.dim = None

    def resolve_cameras(self, split, cameras: Optional[Sequence[str]]):
        """The cameras to embed (None for embedders without cameras)."""
        if cameras:
            raise ScoringError(
                f'--cameras applies to the image embedder only; the '
                f'{self.kind} embedder sees what it reads itself')
        return None

    def split_dataset(self, split, rows: Sequence[int], cameras,
                      img_prefix: Optional[str] = None):
        raise NotImplementedError(f'{type(self).__name__}.split_dataset')

    @staticmethod
    def collate(items: Sequence):
        raise NotImplementedError('collate')

    def embed_batch(self, batch):
        raise NotImplementedError(f'{type(self).__name__}.embed_batch')

    def config(self) -> Dict:
        return dict(type=self.kind, **self.options.config())

    def embed_rows(self, split, rows: Sequence[int], cameras,
                   img_prefix: Optional[str] = None) -> np.ndarray:
        """``(len(rows), C, D)`` embeddings of some samples of ``split``,
        in the main process (the same computation as the loader path)."""
        ds = self.split_dataset(split, rows, cameras, img_prefix)
        batch = self.collate([ds[i] for i in range(len(ds))])
        if isinstance(batch, LoadFailure):
            raise batch.error
        return self.embed_batch(batch).cpu().numpy()
