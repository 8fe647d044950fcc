#!/usr/bin/env bash
# Perplexity of every weight format on two real models, as a markdown table:
#   TinyStories-656K on the TinyStories excerpt (../shared/data), and
#   the embedded default model (defaultmodel/source, bf16) on its held-out
#   split of tiny Shakespeare (everything after heldout_split_char).
# Each format is quantized twice: with the default scale search and with
# plain max-scaling round-to-nearest (--rtn-search=false).
# Usage: scripts/quality_table.sh [SHARED_DATA] > table.md   (from the repo root)
set -euo pipefail
DATA=${1:-../shared/data}
W=$(mktemp -d)
trap 'rm -rf $W' EXIT
go build -o $W/marlin ./cmd/marlin
split=$(python3 -c "import json;print(json.load(open('defaultmodel/source/train_log.json'))['heldout_split_char'])" 2>/dev/null ||
  grep -o '"heldout_split_char": *[0-9]*' defaultmodel/source/train_log.json | grep -o '[0-9]*$')
tail -c +$((split + 1)) "$DATA/text/tinyshakespeare/input.txt" > $W/heldout.txt
formats=("int8 128 sym" "int8 0 sym" "int4 32 sym" "int4 32 asym" "int4 64 sym" "int4 128 sym" "int4 128 asym" "int3 32 sym"
  "int3 128 asym" "int2 32 asym" "fp8 0 sym" "fp4 32 sym" "fp4 128 sym" "mxfp4 0 sym" "nvfp4 0 sym")
ppl() { $W/marlin perplexity "$1" --file "$2" --ctx 256 --json | sed 's/.*"ppl":\([0-9.]*\).*/\1/'; }
pct() { echo "($1/$2-1)*100" | bc -l; }
for m in "tinystories-656k|$DATA/models/tinystories-656k|$DATA/text/tinystories/TinyStories-valid.excerpt.txt" \
         "default model|defaultmodel/source|$W/heldout.txt"; do
  IFS='|' read -r name dir text <<< "$m"
  base=$(ppl "$dir" "$text")
  echo "**$name** (ctx 256; 16-bit/32-bit weights: ppl $(printf '%.4f' $base))"
  echo
  echo "| format | perplexity | vs 16-bit | plain RTN | vs 16-bit |"
  echo "|---|---|---|---|---|"
  for f in "${formats[@]}"; do
    set -- $f
    flags="--format $1 --group $2"; [ "$3" = asym ] && flags="$flags --asym"
    label="$1"; [ "$2" != 0 ] && label="$label g$2"; [ "$2" = 0 ] && [ "${1#int}" != "$1" ] && label="$label per-channel"
    [ "$3" = asym ] && label="$label asym"
    $W/marlin quantize "$dir" $W/q $flags --force 2> $W/q.log || { echo "| $label | (quantize failed: $(tail -1 $W/q.log)) | | | |"; continue; }
    kept=$(grep -c '^note:' $W/q.log || true)
    [ "$kept" != 0 ] && label="$label ($kept tensors kept 16-bit)"
    p=$(ppl $W/q "$text")
    $W/marlin quantize "$dir" $W/q $flags --rtn-search=false --force 2> $W/q.log
    pp=$(ppl $W/q "$text")
    printf '| %s | %.4f | %+.2f%% | %.4f | %+.2f%% |\n' "$label" "$p" "$(pct $p $base)" "$pp" "$(pct $pp $base)"
  done
  echo
done
