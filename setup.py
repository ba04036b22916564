"""Install mmdet3d-equity (``pip install .``, or ``pip install -e .`` in a
checkout).

The runtime stack is pinned in ``requirements.txt``; ``tools/setup.sh``
installs it (torch, then mmcv with ops from a wheel directory or from
source) before installing this package in editable mode. The configs ship
inside the package as ``mmdet3d_equity/.mim/configs`` (the layout
MMDetection3D uses): a symlink to ``configs/`` for an editable install, a
copy in a wheel.
"""
import os
import os.path as osp
import shutil
import sys

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))
TOOLS = ('train', 'test', 'compute_likelihoods', 'score_split',
         'semantic_scale', 'compare_arms', 'efficacy_study', 'demo',
         'create_tiny_dataset', 'nuscenes_slices',
         'benchmark_embedding', 'benchmark_kitti_eval', 'benchmark_scoring',
         'benchmark_ssb')


def read_requirements():
    reqs = []
    with open(osp.join(HERE, 'requirements.txt')) as f:
        for line in f:
            line = line.split('#', 1)[0].strip()
            if line:
                reqs.append(line)
    return reqs


def read_version():
    ns = {}
    with open(osp.join(HERE, 'mmdet3d_equity', 'version.py')) as f:
        exec(f.read(), ns)
    return ns['__version__']


def add_mim_extension():
    """``configs/`` -> ``mmdet3d_equity/.mim/configs``: a symlink when
    installed in editable mode, a copy otherwise (the wheel carries it)."""
    editable = any(a in sys.argv for a in ('develop', 'editable_wheel'))
    if not any(a in sys.argv for a in ('develop', 'editable_wheel',
                                       'bdist_wheel', 'sdist', 'install',
                                       'build', 'build_py')):
        return
    mim = osp.join(HERE, 'mmdet3d_equity', '.mim')
    os.makedirs(mim, exist_ok=True)
    src, dst = osp.join(HERE, 'configs'), osp.join(mim, 'configs')
    if osp.islink(dst) or osp.isfile(dst):
        os.remove(dst)
    elif osp.isdir(dst):
        shutil.rmtree(dst)
    if editable:
        os.symlink(osp.relpath(src, mim), dst)
    else:
        shutil.copytree(src, dst)


add_mim_extension()
setup(
    name='mmdet3d-equity',
    version=read_version(),
    description='DatasetEquity and semantic-scale-balanced training for '
    'MMDetection3D',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmdet3d_equity', 'mmdet3d_equity.*',
                                    'equity_tiny_data']),
    package_data={'mmdet3d_equity': ['.mim/configs/*/*.py',
                                     '.mim/configs/*/*/*.py']},
    include_package_data=False,
    entry_points={'console_scripts': [
        f'mmdet3d-equity-{t.replace("_", "-")} = mmdet3d_equity.cli.{t}:main'
        for t in TOOLS]},
    python_requires='>=3.8',
    install_requires=['torch'] + read_requirements(),
    extras_require={'tests': ['pytest']},
    license='Apache-2.0',
    zip_safe=False,
)
