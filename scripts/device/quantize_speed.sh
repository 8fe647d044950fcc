#!/usr/bin/env bash
# quantize_speed.sh — calibrated quantization at a real size on the GPU
# machine: a Llama-3.2-1B-shaped model with random weights (made by
# `marlin bench --synthetic`), quantized by GPTQ int4 g128 (every CPU core)
# and by EXL3 at 4 bits (the trellis search on the GPU), each with the
# default calibration (32 × 256 tokens of the built-in text, the Llama-3
# tokenizer); wall time, CPU time and peak RSS of each, and the per-layer
# report, in $OUT/quantize_speed.md and $OUT/*.log.
#
# Here, before the call:
#   mkdir -p gpubin && CGO_ENABLED=0 go build -ldflags='-s -w' -o gpubin/marlin ./cmd/marlin &&
#   xz -9 -T1 -f gpubin/marlin && xz -9 -T1 -c ../shared/data/tokenizers/llama3/tokenizer.json >gpubin/llama3-tokenizer.json.xz
# then on the GPU machine (carry gpubin): OUT=$OUT bash scripts/device/quantize_speed.sh
# LAYERS=N: a model of N layers instead of 16 (quicker); PROFILE=1: a CPU
# profile of each run in $OUT/NAME.prof; RUNS='gptq exl3': which runs.
set -euo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:?set OUT}
W=$(mktemp -d)
xz -dc gpubin/marlin.xz >$W/marlin && chmod +x $W/marlin
LAYERS=${LAYERS:-}
$W/marlin bench --synthetic llama3.2-1b ${LAYERS:+--layers $LAYERS} --format bf16 --prompt 8 --gen 2 --device cpu --membw=false >$OUT/synthetic.log 2>&1
SRC=$HOME/.cache/marlin/synthetic/llama3.2-1b${LAYERS:+-${LAYERS}l}-bf16
xz -dc gpubin/llama3-tokenizer.json.xz >$SRC/tokenizer.json
nproc >$OUT/nproc
# run NAME ARGS...: one quantization, timed (wall, user + sys, peak RSS of
# the child) by python's resource module
run() {
	local name=$1
	shift
	python3 - "$W/marlin" quantize "$SRC" "$W/$name" --force --v ${PROFILE:+--cpuprofile $OUT/$name.prof} "$@" >"$OUT/$name.log" 2>&1 <<'EOF'
import resource, subprocess, sys, time
t = time.time()
rc = subprocess.run(sys.argv[1:]).returncode
ru = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"rc {rc} wall {time.time() - t:.1f} s cpu {ru.ru_utime + ru.ru_stime:.1f} s maxrss {ru.ru_maxrss / 1024:.0f} MB", file=sys.stderr)
EOF
	echo "| $name | $* | $(tail -1 "$OUT/$name.log") |" >>$OUT/quantize_speed.md
	rm -rf "${W:?}/$name"
}
echo "| run | flags | result |" >$OUT/quantize_speed.md
echo "|---|---|---|" >>$OUT/quantize_speed.md
for r in ${RUNS:-gptq exl3}; do
	case $r in
	gptq) run gptq --method gptq --format int4 --group 128 ;;
	exl3) run exl3 --method exl3 --bits 4 --device cuda ;;
	esac
done
cat $OUT/quantize_speed.md
