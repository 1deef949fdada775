#!/usr/bin/env bash
# Prepares .whl/ (repository root, git-ignored) for bench/gpu_check.sh, here, with the network: the
# wheels of every dependency that the GPU machine lacks (it has Python 3.12 with torch, torchvision,
# numpy, pyyaml, matplotlib, tqdm, tensorboard and pytest, and no network), for CPython 3.12 on
# x86-64 Linux, at the versions of the development venv, plus a wheel of this project (for the SCOOP
# start-up hook's .pth; the code itself runs from the working tree). At most 64 MiB in all.
#   bash bench/prepare_gpu_check.sh        then carry [".whl"] with the device tool's run
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python3}"
# deap needs moocore (deap.tools.indicator), moocore needs cffi (pycparser) and platformdirs;
# scoop needs greenlet and pyzmq. tests/test_gpu_check.py checks this list against the metadata.
PACKAGES="deap==1.4.4 moocore==0.3.2 cffi==2.1.1 pycparser==3.12 platformdirs==4.14.9 greenlet==3.5.6 pyzmq==27.3.0"
SDIST_ONLY="scoop==0.7.2.0"  # no wheel on the index: built here (pure Python)
MAX_BYTES=$((64 * 1024 * 1024))

rm -rf .whl && mkdir -p .whl
"$PY" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
    --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
    --platform manylinux2014_x86_64 --platform manylinux1_x86_64 -d .whl $PACKAGES
"$PY" -m pip wheel -q --no-deps -w .whl $SDIST_ONLY
"$PY" -m pip wheel -q --no-deps -w .whl .
rm -rf build learngene_ea.egg-info
bytes=$(du -sb .whl | cut -f1)
{
    echo "prepared $(date -u +%Y-%m-%dT%H:%M:%SZ) from $(git rev-parse --short HEAD 2>/dev/null || echo '?')"
    (cd .whl && sha256sum ./*.whl)
} > .whl/MANIFEST.txt
ls -l .whl
echo "total: $bytes bytes"
if [ "$bytes" -gt "$MAX_BYTES" ]; then
    echo "error: .whl/ holds $bytes bytes, over the 64 MiB a device run carries" >&2
    exit 1
fi
