#!/usr/bin/env bash
# One-command setup for mmdet3d-equity.
#
#   bash tools/setup.sh                 # install everything, then run the demo
#   bash tools/setup.sh --install-only  # install only (what .ci/run uses)
#   bash tools/setup.sh --rerun-demo    # run the demo again even if it is done
#
# Environment variables:
#   EQUITY_VENV     virtual environment to create or reuse (default: <repo>/.venv)
#   EQUITY_WHEELS   directory of prebuilt wheels, used through pip --find-links
#                   (default: <repo>/../shared/wheels when it exists). Without
#                   one, mmcv 2.1.0 is built from source with its ops (~12 min
#                   on 2 cores).
#   PYTHON          interpreter used to create the environment (default: python3)
#
# Idempotent: a stamp in the environment records what was installed; a second
# run checks it and the imports, installs nothing and finishes in seconds.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${EQUITY_VENV:-$ROOT/.venv}"
PYTHON="${PYTHON:-python3}"
TORCH_SPEC="torch==2.13.0"
INSTALL_ONLY=0
RERUN_DEMO=0
for arg in "$@"; do
  case "$arg" in
    --install-only) INSTALL_ONLY=1 ;;
    --rerun-demo) RERUN_DEMO=1 ;;
    -h|--help) sed -n '2,19p' "${BASH_SOURCE[0]}"; exit 0 ;;
    *) echo "setup.sh: unknown argument '$arg' (see --help)" >&2; exit 2 ;;
  esac
done

if [ -z "${EQUITY_WHEELS:-}" ] && [ -d "$ROOT/../shared/wheels" ]; then
  EQUITY_WHEELS="$(cd "$ROOT/../shared/wheels" && pwd)"
fi
if [ -n "${EQUITY_WHEELS:-}" ] && [ ! -d "$EQUITY_WHEELS" ]; then
  echo "setup.sh: EQUITY_WHEELS=$EQUITY_WHEELS is not a directory" >&2; exit 2
fi

log() { printf '[setup] %s\n' "$*"; }

# ---- 1. environment ---------------------------------------------------------
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtual environment at $VENV"
  "$PYTHON" -m venv "$VENV"
fi
PY="$VENV/bin/python"
PIP=("$PY" -m pip --disable-pip-version-check)

# What an install consists of; any change to it triggers a (re)install.
STAMP="$VENV/.mmdet3d_equity_stamp"
WANT="$( { echo "root=$ROOT"; echo "torch=$TORCH_SPEC"; cat "$ROOT/requirements.txt" "$ROOT/requirements-tests.txt" "$ROOT/setup.py"; } | sha256sum | cut -d' ' -f1)"

# Imports the stack and the plugin and prints their versions; fails (quietly
# unless asked) when anything is missing.
check_imports() {
  "$PY" - <<'PY'
import torch, mmcv, mmengine, mmdet, mmdet3d, sklearn, matplotlib
import pkg_resources  # mmengine's mmdet3d:: config inheritance needs it
import pytest, xdist, hypothesis  # the test suite (requirements-tests.txt)
from mmcv.ops import nms_rotated, Voxelization  # compiled ops present
import mmdet3d_equity
print(f'[setup] torch {torch.__version__}, mmcv {mmcv.__version__}, '
      f'mmengine {mmengine.__version__}, mmdet {mmdet.__version__}, '
      f'mmdet3d {mmdet3d.__version__}, '
      f'mmdet3d-equity {mmdet3d_equity.__version__}')
PY
}

if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ] && \
   VERSIONS="$(check_imports 2>/dev/null | grep '^\[setup\]')"; then
  log "environment is up to date (nothing to install)"
else
  log "installing the stack into $VENV"
  "${PIP[@]}" install -q "setuptools>=77.0.3,<82" wheel
  # torch: keep a torch that is already there (GPU users bring their own).
  if ! "$PY" -c "import torch" >/dev/null 2>&1; then
    "${PIP[@]}" install -q "$TORCH_SPEC"
  fi
  TORCH_VER="$("$PY" -c 'import torch; print(torch.__version__.split("+")[0])')"
  CONSTRAINTS="$(mktemp)"; trap 'rm -f "$CONSTRAINTS"' EXIT
  echo "torch==$TORCH_VER" > "$CONSTRAINTS"

  # mmcv 2.1.0 with ops: from the wheel directory if it has a usable wheel,
  # else from source.
  if ! "$PY" -c "import mmcv, mmcv.ops; assert mmcv.__version__ == '2.1.0'" >/dev/null 2>&1; then
    # A wheel only fits the torch it was built against (the one in
    # ../shared/wheels: torch 2.13.0+cpu): keep it only if its ops import.
    if [ -n "${EQUITY_WHEELS:-}" ] && \
       "${PIP[@]}" install -q --find-links "$EQUITY_WHEELS" --only-binary mmcv \
         -c "$CONSTRAINTS" -c "$ROOT/requirements.txt" mmcv==2.1.0 2>/dev/null && \
       "$PY" -c "import mmcv.ops" >/dev/null 2>&1; then
      log "mmcv 2.1.0 installed from wheel directory $EQUITY_WHEELS"
    else
      "${PIP[@]}" uninstall -y -q mmcv >/dev/null 2>&1 || true
      log "no usable mmcv wheel: building mmcv 2.1.0 from source with ops (about 12 minutes on 2 cores)"
      # mmcv 2.1.0's setup.py needs an old setuptools (pkg_resources APIs);
      # requirements.txt brings the runtime one back afterwards.
      "${PIP[@]}" install -q "setuptools<70" ninja psutil
      MMCV_WITH_OPS=1 FORCE_CUDA="${FORCE_CUDA:-0}" "${PIP[@]}" install --no-build-isolation \
        -c "$CONSTRAINTS" --no-binary mmcv mmcv==2.1.0
    fi
  fi
  FIND_LINKS=()
  [ -n "${EQUITY_WHEELS:-}" ] && FIND_LINKS=(--find-links "$EQUITY_WHEELS")
  "${PIP[@]}" install -q "${FIND_LINKS[@]}" -c "$CONSTRAINTS" -r "$ROOT/requirements.txt" \
    -r "$ROOT/requirements-tests.txt"
  "${PIP[@]}" install -q --no-deps --no-build-isolation -e "$ROOT"
  if ! VERSIONS="$(check_imports | grep '^\[setup\]')"; then
    echo "setup.sh: the stack installed but does not import; run" >&2
    echo "  $PY -c 'import mmdet3d, mmcv.ops, mmdet3d_equity'  to see why" >&2
    exit 1
  fi
  echo "$WANT" > "$STAMP"
  log "stack installed"
fi

echo "$VERSIONS"
log "environment: $VENV"
log "activate it with:  source $VENV/bin/activate"

# ---- 2. the main job on the embedded tiny dataset -------------------------------
if [ "$INSTALL_ONLY" = 1 ]; then
  exit 0
fi
DEMO_ARGS=()
[ "$RERUN_DEMO" = 1 ] && DEMO_ARGS=(--force)
cd "$ROOT"
"$PY" tools/demo.py "${DEMO_ARGS[@]}"
