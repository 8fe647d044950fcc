#!/usr/bin/env bash
# Low-bit quality, as a markdown table: perplexity of 16-bit weights,
# round-to-nearest and GPTQ at 4 and 3 bits, and EXL3 (trellis) at 2, 3 and
# 4 bits, on two real models:
#   TinyStories-656K on the TinyStories excerpt, and
#   the embedded default model (defaultmodel/source, bf16) on its held-out
#   split of tiny Shakespeare (everything after heldout_split_char).
# GPTQ and EXL3 calibrate on the start of tiny Shakespeare (32 rows of 256
# tokens): text the TinyStories model never saw, and for the default model
# a part of its training split, not its held-out text.
# Groups: 128 for TinyStories-656K; 64 for the default model, whose
# intermediate size 704 is not a multiple of 128 (with g128 its down
# projections would stay 16-bit).
# bits/weight counts every stored byte of the linear layers (codes, scales,
# zero points, g_idx; EXL3: trellis and suh/svh, with the padding of
# dimensions to multiples of 128) per logical weight.
# KL is the mean KL(16-bit ‖ quantized) of the next-token distributions over
# the same windows (nats a token), top-1 how often their argmax agrees:
# unlike the perplexity's change, which moves by ±0.7 points between sign
# seeds of one EXL3 setting on TinyStories-656K (an 8K-token excerpt), the
# KL moves by ±2% of itself (docs/perf.md), so it ranks close methods.
# The last row calibrates on text the model samples itself (--calib
# generate): in the evaluation's domain for TinyStories-656K.
# Usage: scripts/quality_lowbit.sh [SHARED_DATA] > table.md   (from the repo root; ~9 min on 2 cores)
set -euo pipefail
DATA=${1:-../shared/data}
W=$(mktemp -d)
trap 'rm -rf $W' EXIT
go build -o $W/marlin ./cmd/marlin
split=$(python3 -c "import json;print(json.load(open('defaultmodel/source/train_log.json'))['heldout_split_char'])" 2>/dev/null ||
  grep -o '"heldout_split_char": *[0-9]*' defaultmodel/source/train_log.json | grep -o '[0-9]*$')
tail -c +$((split + 1)) "$DATA/text/tinyshakespeare/input.txt" > $W/heldout.txt
CALIB="$DATA/text/tinyshakespeare/input.txt"

ppl() { $W/marlin perplexity "$1" --file "$2" --ctx 256 --json | sed 's/.*"ppl":\([0-9.]*\).*/\1/'; }
# "ppl kl top1" of the quantized model $1 against the source $2 on text $3
score() { $W/marlin perplexity "$1" --kl-base "$2" --file "$3" --ctx 256 --json |
  python3 -c 'import json,sys; d=json.load(sys.stdin); print(d["ppl"], d["kl"], d["top1"])'; }

# bits per logical weight of the linear layers of $2 (quantized) relative to $1 (source)
bpw() {
  python3 - "$1" "$2" <<'EOF'
import json, struct, sys, glob, os
def header(d):
    out = {}
    for f in glob.glob(os.path.join(d, "*.safetensors")):
        with open(f, "rb") as fh:
            n = struct.unpack("<Q", fh.read(8))[0]
            h = json.loads(fh.read(n))
        h.pop("__metadata__", None)
        out.update(h)
    return out
src, q = header(sys.argv[1]), header(sys.argv[2])
lin = {}
for k, v in src.items():
    if k.endswith(".weight") and len(v["shape"]) == 2 and "layers." in k and "norm" not in k and not k.endswith(".gate.weight"):
        lin[k[:-len(".weight")]] = v["shape"][0] * v["shape"][1]
stored = 0
for k, v in q.items():
    if k.rsplit(".", 1)[0] in lin:
        stored += v["data_offsets"][1] - v["data_offsets"][0]
print("%.3f" % (8 * stored / sum(lin.values())))
EOF
}

for m in "tinystories-656k|$DATA/models/tinystories-656k|$DATA/text/tinystories/TinyStories-valid.excerpt.txt|128" \
         "default model|defaultmodel/source|$W/heldout.txt|64"; do
  IFS='|' read -r name dir text group <<< "$m"
  base=$(ppl "$dir" "$text")
  echo "**$name** (ctx 256; perplexity with 16/32-bit weights: $(printf '%.4f' $base))"
  echo
  echo "| method | bits/weight | perplexity | vs 16-bit | KL | top-1 | quantize time |"
  echo "|---|---|---|---|---|---|---|"
  printf '| 16-bit | %s | %.4f | | | | |\n' "$(bpw "$dir" "$dir")" "$base"
  for row in "RTN int4 g$group|--method rtn --format int4 --group $group" \
             "GPTQ int4 g$group|--method gptq --format int4 --group $group --calib $CALIB" \
             "RTN int3 g$group|--method rtn --format int3 --group $group" \
             "GPTQ int3 g$group|--method gptq --format int3 --group $group --calib $CALIB" \
             "GPTQ int3 g$group act-order|--method gptq --format int3 --group $group --act-order --calib $CALIB" \
             "EXL3 2-bit|--method exl3 --bits 2 --calib $CALIB" \
             "EXL3 3-bit|--method exl3 --bits 3 --calib $CALIB" \
             "EXL3 4-bit|--method exl3 --bits 4 --calib $CALIB" \
             "EXL3 4-bit, calibration sampled from the model|--method exl3 --bits 4 --calib generate"; do
    IFS='|' read -r label flags <<< "$row"
    start=$(date +%s.%N)
    $W/marlin quantize "$dir" $W/q $flags --force 2> $W/q.log || { echo "| $label | | (quantize failed: $(tail -1 $W/q.log)) | | | | |"; continue; }
    secs=$(echo "$(date +%s.%N) - $start" | bc -l)
    kept=$(grep -c '^note:' $W/q.log || true)
    [ "$kept" != 0 ] && label="$label ($kept tensors kept 16-bit)"
    read -r p kl top1 <<< "$(score $W/q "$dir" "$text")"
    printf '| %s | %s | %.4f | %+.2f%% | %.4f | %.1f%% | %.1f s |\n' "$label" "$(bpw "$dir" $W/q)" "$p" "$(echo "($p/$base-1)*100" | bc -l)" "$kl" "$(echo "$top1*100" | bc -l)" "$secs"
  done
  echo
done
