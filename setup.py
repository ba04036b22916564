"""Install mmdet3d-equity (``pip install -e .``).

The runtime stack is pinned in ``requirements.txt``; ``tools/setup.sh`` installs
it (torch, then mmcv with ops from a wheel directory or from source) before
installing this package in editable mode.
"""
import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


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


setup(
    name='mmdet3d-equity',
    version=read_version(),
    description='DatasetEquity and semantic-scale-balanced training for '
    'MMDetection3D',
    long_description=open(osp.join(HERE, 'README.md')).read(),
    long_description_content_type='text/markdown',
    packages=find_packages(include=['mmdet3d_equity', 'mmdet3d_equity.*',
                                    'equity_tiny_data']),
    python_requires='>=3.8',
    install_requires=['torch'] + read_requirements(),
    extras_require={'tests': ['pytest']},
    license='Apache-2.0',
)
