#!/usr/bin/env bash
# A venv in which LeRobot's own LeRobotDataset can read an atomvla export, next to torch 2.13 (which
# `pip install lerobot` with its dependencies refuses: LeRobot pins older torch).
#
#   benchmarks/lerobot_load/setup_venv.sh VENV [LEROBOT_SPEC]
#
# LEROBOT_SPEC: what pip installs (default `lerobot`, the newest PyPI release; or a local checkout).
# The venv sees the project venv's packages (torch, datasets, pyarrow, ...) through a .pth file and
# adds, without dependencies, LeRobot and what its dataset module imports: PyAV < 16 (LeRobot reads
# `av.option`, gone in PyAV 18), einops, draccus (+ its small dependencies), jsonlines.
# No CPU torchvision installs next to torch 2.13, so an import-time stand-in (torchvision_stub/) is
# added; video is decoded with LeRobot's `pyav` backend, which on LeRobot >= 0.6 does not use it.
# LeRobot >= 0.5 requires Python 3.12: on 3.11 its few PEP 695 `type` aliases and generic class
# headers are rewritten to 3.11 syntax (same meaning at run time).
set -euo pipefail
venv=${1:?usage: setup_venv.sh VENV [LEROBOT_SPEC]}
spec=${2:-lerobot}
here=$(cd "$(dirname "$0")" && pwd)
main=$(cd "$here/../.." && pwd)/.venv
python3 -m venv "$venv"
site=$("$venv/bin/python" -c "import site; print(site.getsitepackages()[0])")
"$main/bin/python" -c "import site; print(site.getsitepackages()[0])" > "$site/zz_atomvla_main_venv.pth"
echo "$here/torchvision_stub" > "$site/00_torchvision_stub.pth"
"$venv/bin/pip" install -q --no-deps --ignore-requires-python "$spec" "av>=15,<16" einops draccus mergedeep \
    pyyaml-include toml typing-inspect mypy-extensions jsonlines
py_minor=$("$venv/bin/python" -c "import sys; print(sys.version_info[1])")
if [ "$py_minor" -lt 12 ]; then
    lr="$site/lerobot"
    sed -i -E 's/^type ([A-Za-z_]+) = /\1 = /' "$lr"/motors/motors_bus.py "$lr"/datasets/aggregate.py 2>/dev/null || true
    if grep -q '^class DataProcessorPipeline\[TInput, TOutput\](HubMixin):' "$lr/processor/pipeline.py" 2>/dev/null; then
        sed -i -E 's/^class DataProcessorPipeline\[TInput, TOutput\]\(HubMixin\):/class DataProcessorPipeline(HubMixin, Generic[TInput, TOutput]):/' "$lr/processor/pipeline.py"
        sed -i 's/^from typing import Any, TypedDict, TypeVar, cast$/from typing import Any, Generic, TypedDict, TypeVar, cast/' "$lr/processor/pipeline.py"
    fi
    if grep -q '^class Backtrackable\[T\]:' "$lr/datasets/streaming_dataset.py" 2>/dev/null; then
        sed -i -E 's/^class Backtrackable\[T\]:/class Backtrackable(Generic[T]):/' "$lr/datasets/streaming_dataset.py"
        sed -i 's/^from typing import Literal$/from typing import Generic, Literal, TypeVar\nT = TypeVar("T")/' "$lr/datasets/streaming_dataset.py"
    fi
    if grep -q '^def deserialize_json_into_object\[T: JsonLike\](' "$lr/utils/io_utils.py" 2>/dev/null; then
        sed -i -E 's/^def deserialize_json_into_object\[T: JsonLike\]\(/def deserialize_json_into_object(/' "$lr/utils/io_utils.py"
        sed -i '0,/^from typing import Any$/s//from typing import Any, TypeVar\nT = TypeVar("T")/' "$lr/utils/io_utils.py"
    fi
fi
"$venv/bin/python" -c "import importlib.metadata as m; print('lerobot', m.version('lerobot'), 'ready in $venv')"
