#!/usr/bin/env bash
# The GPU check: the whole test suite on the cupy backend, then a short timing of a
# few ops (forward + backward) on NumPy and CuPy. For a machine with an NVIDIA GPU,
# CuPy, numpy and pytest. array-api-compat / array-api-strict / hypothesis are
# installed from wheels in ./wheels when they are missing (see docs or README).
# Finishes in well under 5 minutes.
set -uo pipefail
cd "$(dirname "$0")/.."
for mod in array_api_compat array_api_strict hypothesis; do
  if ! python -c "import $mod" 2>/dev/null; then
    if ls wheels/*.whl >/dev/null 2>&1; then
      python -m pip install --quiet --no-index --find-links wheels "${mod//_/-}" || true
    else
      python -m pip install --quiet "${mod//_/-}" || true
    fi
  fi
done
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>/dev/null || true
python -c "import agrad, cupy; print('agrad backends:', agrad.available_backends(), 'cupy', cupy.__version__)"
status=0
timeout 240 python -m pytest -q --tb=short -rfE --durations=15 --backend cupy tests -p no:cacheprovider || status=$?
timeout 60 python ci/gpu_timing.py || status=$?
timeout 60 python benchmarks/op_overhead.py --backend cupy || status=$?
timeout 150 python benchmarks/mlp_step.py --backend cupy --quick || status=$?
exit $status
