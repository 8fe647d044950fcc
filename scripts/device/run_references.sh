#!/usr/bin/env bash
# One call on the GPU machine that produces every reference the tests use:
# tiny transformers fixtures, tokenizer and perplexity references, the
# default model's training. Expects a copy of the needed ../shared/data files
# in devdata/ (see scripts/device/README.md). Results land in $OUT as tarballs.
set -u
export PYTHONUNBUFFERED=1
W=/tmp/refs-out
mkdir -p $W
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee $OUT/gpu.txt
python3 -c "import torch, transformers, tokenizers; print(torch.__version__, transformers.__version__, tokenizers.__version__)" | tee -a $OUT/gpu.txt
train=
if [ "${TRAIN_SECONDS:-240}" != 0 ]; then
  python3 scripts/device/train_default_model.py devdata/text/tinyshakespeare/input.txt $W/default-model ${TRAIN_SECONDS:-240} > $OUT/train.log 2>&1 &
  train=$!
fi
python3 scripts/device/make_fixtures.py $W/fixtures > $OUT/fixtures.log 2>&1
python3 scripts/device/make_references.py devdata $W/refs > $OUT/refs.log 2>&1
python3 scripts/chat_reference.py --engine transformers --data-root devdata --out $W/chat-expected.json \
  --snippets-out $W/chat-snippets-expected.json devdata/chat-templates devdata/tokenizers > $OUT/chat.log 2>&1
[ -n "$train" ] && wait $train
cd $W && tar czf $OUT/fixtures.tgz fixtures && tar czf $OUT/refs.tgz refs
[ -d default-model ] && tar czf $OUT/default-model.tgz default-model
cp chat-expected.json chat-snippets-expected.json $OUT/ 2>/dev/null
ls -la $OUT
grep -E "ok|FAILED|done" $OUT/fixtures.log | cut -c1-200
tail -3 $OUT/refs.log
tail -4 $OUT/train.log 2>/dev/null
tail -5 $OUT/chat.log
