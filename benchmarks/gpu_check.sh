#!/usr/bin/env bash
# The GPU check, in one go (under 8 minutes on one GPU): install what the GPU run needs, run the tests marked
# `gpu`, build a PRM of SmolLM2-135M's shape (benchmarks/gpu_model.py: no hub here), time every scoring
# backend on it (benchmarks/scoring_throughput.py: fp16 and bf16 behind their gates) and serve it
# (benchmarks/load_test.py: the default backend next to ONNX fp32 and eager PyTorch fp32), then print ONE
# JSON line with what each stage measured. On a machine without an NVIDIA GPU it says so and exits 0.
#
#   bash benchmarks/gpu_check.sh
#
# Environment: PYTHON (default: .venv/bin/python when its torch sees the GPU, else python3), PRM_WHEELS (a
# folder of wheels to install from with no index, for a machine that reaches no package index),
# GPU_CHECK_OUT (where logs and the model go; default a temporary folder), GPU_CHECK_SHAPE (smollm2-135m or
# qwen2.5-0.5b). Every stage runs under its own time limit; a stage that fails is reported, never hidden.
set -uo pipefail
cd "$(dirname "$0")/.."
T0=$(date +%s)
OUT=${GPU_CHECK_OUT:-$(mktemp -d -t prm-gpu-check-XXXX)}
mkdir -p "$OUT"
say() { echo "[gpu_check $(( $(date +%s) - T0 )) s] $*" >&2; }

if ! command -v nvidia-smi >/dev/null 2>&1 || ! nvidia-smi -L 2>/dev/null | grep -q '^GPU '; then
    say "no NVIDIA GPU on this machine (nvidia-smi finds none): the GPU checks did not run; run this on a GPU machine"
    echo '{"gpu": false, "message": "no NVIDIA GPU found (nvidia-smi lists none): the GPU checks did not run"}'
    exit 0
fi
GPU_NAME=$(nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | head -1)
say "GPU: $GPU_NAME; logs in $OUT"

if [ -n "${PYTHON:-}" ]; then PY=$PYTHON
elif [ -x .venv/bin/python ] && .venv/bin/python -c 'import sys, torch; sys.exit(not torch.cuda.is_available())' 2>/dev/null
then PY=.venv/bin/python
else PY=python3
fi
PIP_SRC=()
[ -n "${PRM_WHEELS:-}" ] && PIP_SRC=(--no-index --find-links "$PRM_WHEELS")

# --- install: the project with its serve extras, and ONNX Runtime's GPU build in place of a CPU one -----------
install_status=ok
if ! timeout 180 "$PY" -m pip install -q "${PIP_SRC[@]}" -e '.[gpu]' >"$OUT/install.log" 2>&1; then
    say "pip install '.[gpu]' failed (see $OUT/install.log); trying '.[serve]'"
    timeout 120 "$PY" -m pip install -q "${PIP_SRC[@]}" -e '.[serve]' >>"$OUT/install.log" 2>&1 || install_status=failed
fi
# onnxruntime and onnxruntime-gpu share one package folder: with both installed the CPU one may win.
if "$PY" -m pip show -q onnxruntime >/dev/null 2>&1 && "$PY" -m pip show -q onnxruntime-gpu >/dev/null 2>&1; then
    say "both onnxruntime and onnxruntime-gpu installed: keeping the GPU build"
    ORT_GPU=$("$PY" -m pip show onnxruntime-gpu | sed -n 's/^Version: //p')
    "$PY" -m pip uninstall -y -q onnxruntime onnxruntime-gpu >>"$OUT/install.log" 2>&1
    timeout 120 "$PY" -m pip install -q --no-deps "${PIP_SRC[@]}" "onnxruntime-gpu==$ORT_GPU" >>"$OUT/install.log" 2>&1 \
        || install_status=failed
fi
"$PY" - >"$OUT/env.json" 2>>"$OUT/install.log" <<'EOF'
import json, sys
out = {"python": sys.version.split()[0]}
try:
    import torch
    out.update(torch=torch.__version__, torch_cuda=torch.cuda.is_available(),
               torch_device=torch.cuda.get_device_name(0) if torch.cuda.is_available() else None)
except Exception as exc:
    out["torch_error"] = repr(exc)
try:
    import onnxruntime as ort
    out.update(onnxruntime=ort.__version__, ort_providers=ort.get_available_providers())
except Exception as exc:
    out["onnxruntime_error"] = repr(exc)
print(json.dumps(out))
EOF
say "install: $install_status; $(cat "$OUT/env.json")"

# --- the tests marked gpu ----------------------------------------------------------------------------------------
timeout 200 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests/test_gpu_path.py >"$OUT/tests.log" 2>&1
tests_rc=$?
say "tests marked gpu: exit $tests_rc, $(tail -1 "$OUT/tests.log")"

# --- a model of a real backbone's shape, then the scoring and serving throughput ---------------------------------
SHAPE=${GPU_CHECK_SHAPE:-smollm2-135m}
model_rc=1; scoring_rc=skipped; load_rc=skipped
if timeout 150 "$PY" benchmarks/gpu_model.py "$OUT/build" --shape "$SHAPE" >"$OUT/model.log" 2>&1; then
    model_rc=0
    MODEL=$OUT/build/model
    "$PY" -c "import sys; from serving.cli import main; sys.exit(main(['generate', '$OUT/check.jsonl', '--problems', \
'150', '--seed', '1000010', '--max-number', '99']))" >>"$OUT/model.log" 2>&1
    left=$(( 470 - ($(date +%s) - T0) ))
    if [ "$left" -gt 150 ]; then
        timeout $(( left - 120 )) "$PY" benchmarks/scoring_throughput.py --model "$MODEL" --check "$OUT/check.jsonl" \
            --threads "$(nproc)" --solutions 256 --batch-size 64 --repeats 3 --calib-solutions 96 \
            >"$OUT/scoring.log" 2>&1
        scoring_rc=$?
        say "scoring_throughput: exit $scoring_rc"
    fi
    left=$(( 470 - ($(date +%s) - T0) ))
    if [ "$left" -gt 60 ]; then
        timeout $(( left - 10 )) "$PY" benchmarks/load_test.py --model "$MODEL" --threads "$(nproc)" --solutions 256 \
            --concurrency 16,64 --seconds 4 --min-requests 40 --warmup 64 --pairs 1 --overload-seconds 4 \
            --compare-rounds 2 --server-log "$OUT/server.log" >"$OUT/load.log" 2>&1
        load_rc=$?
        say "load_test: exit $load_rc"
    fi
else
    say "building the model failed: see $OUT/model.log"
fi

# --- one JSON line --------------------------------------------------------------------------------------------------
"$PY" - "$OUT" "$GPU_NAME" "$install_status" "$tests_rc" "$model_rc" "$scoring_rc" "$load_rc" "$(( $(date +%s) - T0 ))" <<'EOF'
import json, re, sys
from pathlib import Path

out, gpu, install, tests_rc, model_rc, scoring_rc, load_rc, seconds = sys.argv[1:]
out = Path(out)

def last_json(name):
    path = out / name
    if not path.is_file():
        return None
    for line in reversed(path.read_text(errors="replace").splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line)
            except ValueError:
                return None
    return None

tests_tail = (out / "tests.log").read_text(errors="replace").strip().splitlines()[-1:] if (out / "tests.log").is_file() else []
counts = {k: int(v) for v, k in re.findall(r"(\d+) (passed|failed|skipped|error)", " ".join(tests_tail))}
scoring, load = last_json("scoring.log"), last_json("load.log")
keep = ("backend", "service_vs_inprocess", "default_vs_torch_fp32", "default_vs_onnx_fp32", "served_tokens_per_s",
        "first_request_s", "tenth_request_s", "inprocess_tokens_per_s", "service_tokens_per_s", "p50_s", "p99_s",
        "targets")
print(json.dumps({
    "gpu": True, "device": gpu, "seconds": int(seconds), "install": install, "env": last_json("env.json"),
    "tests": {"exit": int(tests_rc), **counts}, "model_built": model_rc == "0",
    "scoring": {"exit": scoring_rc, **({k: scoring[k] for k in ("best_backend", "tok_s", "speedup_vs_torch_fp32",
                                                               "gate", "devices") if k in scoring} if scoring else {})},
    "serving": {"exit": load_rc, **({k: load.get(k) for k in keep} if load else {})},
    "logs": str(out),
}))
EOF
