"""What every command-line tool sets up when it starts (imported by the
package ``mmdet3d_equity.cli``, so by ``python -m mmdet3d_equity.cli.<tool>``
and ``tools/<tool>.py`` alike, never by the library).

* The deprecation warning setuptools >= 81 gives when mmengine imports
  ``pkg_resources`` (mmengine's package helpers, once per process, when a
  config is loaded) says nothing a user of the tools can act on; it is
  filtered by its message, so every other warning still shows.
"""
import warnings

warnings.filterwarnings('ignore', message=r'pkg_resources is deprecated',
                        category=UserWarning)
warnings.filterwarnings('ignore', message=r'Deprecated call to '
                        r'`pkg_resources', category=DeprecationWarning)
