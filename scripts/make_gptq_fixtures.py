#!/usr/bin/env python3
"""GPTQ-format checkpoints written by an independent packer, to check that
marlin reads the layout other tools write.

    python3 scripts/make_gptq_fixtures.py testdata/models/qwen3-gqa-bf16-tied testdata/gptq

Needs only numpy. For each variant it writes OUT/<variant>/ — the source
model with every linear layer replaced by GPTQ tensors (qweight, qzeros,
scales, g_idx) packed the way AutoGPTQ packs them (values along the input
dimension, least significant bits first; 3-bit as a 96-bit stream over three
int32 words; zero points stored minus one, checkpoint_format "gptq") — and
OUT/<variant>-dequant/, the same model with those weights dequantized to
float32 (scale × (q − z)) as a plain checkpoint. marlin must give the same
logits for both (model/gptq_test.go).

Act-order variants assign columns to groups the way GPTQ's desc_act does:
columns are visited in a permuted order and the j-th visited column falls in
group j // group_size, so g_idx is not monotone.
"""
import json
import os
import shutil
import struct
import sys

import numpy as np

SRC, OUT = sys.argv[1], sys.argv[2]

VARIANTS = [
    # name, bits, group, sym, act_order
    ("int4-sym-g32", 4, 32, True, False),
    ("int4-asym-g32-actorder", 4, 32, False, True),
    ("int8-sym-perchannel", 8, -1, True, False),
    ("int3-asym-g32", 3, 32, False, False),
    ("int2-sym-g32-actorder", 2, 32, True, True),
]

DT = {"F32": np.float32, "F16": np.float16, "I32": np.int32, "U8": np.uint8}


def read_safetensors(path):
    b = open(path, "rb").read()
    n = struct.unpack("<Q", b[:8])[0]
    hdr = json.loads(b[8:8 + n])
    out = {}
    for k, v in hdr.items():
        if k == "__metadata__":
            continue
        s, e = v["data_offsets"]
        raw = b[8 + n + s:8 + n + e]
        if v["dtype"] == "BF16":
            a = np.frombuffer(raw, dtype=np.uint16).astype(np.uint32) << 16
            arr = a.view(np.float32).reshape(v["shape"])
        else:
            arr = np.frombuffer(raw, dtype=DT[v["dtype"]]).reshape(v["shape"])
        out[k] = arr
    return out


def write_safetensors(path, tensors):
    names = {np.dtype(np.float32): "F32", np.dtype(np.float16): "F16", np.dtype(np.int32): "I32"}
    hdr, blobs, off = {}, [], 0
    for k in sorted(tensors):
        a = np.ascontiguousarray(tensors[k])
        raw = a.tobytes()
        hdr[k] = {"dtype": names[a.dtype], "shape": list(a.shape), "data_offsets": [off, off + len(raw)]}
        blobs.append(raw)
        off += len(raw)
    h = json.dumps(hdr).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for r in blobs:
            f.write(r)


def pack_rows(vals, bits):
    """Pack an [n, m] array of codes along axis 0 into [n*bits/32, m] uint32."""
    vals = vals.astype(np.uint64)
    n, m = vals.shape
    assert n * bits % 32 == 0
    out = np.zeros((n * bits // 32, m), dtype=np.uint64)
    for i in range(n):
        bit = i * bits
        w, s = bit // 32, bit % 32
        out[w] |= (vals[i] << s) & 0xFFFFFFFF
        if s + bits > 32:  # spills into the next word (3-bit)
            out[w + 1] |= vals[i] >> (32 - s)
    return out.astype(np.uint32).view(np.int32)


def quantize(w, bits, group, sym, act_order, rng):
    """w: [out, in] float32. Returns codes [in, out], zeros [groups, out],
    scales fp16 [groups, out], g_idx [in] and the dequantized weight."""
    out_f, in_f = w.shape
    gs = in_f if group == -1 else group
    groups = in_f // gs
    order = rng.permutation(in_f) if act_order else np.arange(in_f)
    g_idx = np.empty(in_f, dtype=np.int32)
    g_idx[order] = np.arange(in_f) // gs
    maxq = 2 ** bits - 1
    codes = np.zeros((in_f, out_f), dtype=np.int64)
    zeros = np.zeros((groups, out_f), dtype=np.int64)
    scales = np.zeros((groups, out_f), dtype=np.float16)
    deq = np.zeros_like(w)
    for g in range(groups):
        cols = np.where(g_idx == g)[0]
        x = w[:, cols]
        xmin = np.minimum(x.min(axis=1), 0)
        xmax = np.maximum(x.max(axis=1), 0)
        if sym:
            xmax = np.maximum(np.abs(xmin), xmax)
            xmin = -xmax
        tiny = (xmin == 0) & (xmax == 0)
        xmin[tiny], xmax[tiny] = -1, 1
        scale = ((xmax - xmin) / maxq).astype(np.float16)
        s32 = scale.astype(np.float32)
        if sym:
            zero = np.full(out_f, (maxq + 1) // 2)
        else:
            zero = np.clip(np.round(-xmin / s32), 1, maxq).astype(np.int64)  # v1 stores zero-1: keep zero >= 1
        q = np.clip(np.round(x / s32[:, None]) + zero[:, None], 0, maxq).astype(np.int64)
        codes[cols, :] = q.T
        zeros[g], scales[g] = zero, scale
        deq[:, cols] = s32[:, None] * (q - zero[:, None]).astype(np.float32)
    return codes, zeros, scales, g_idx, deq


def main():
    tensors = read_safetensors(os.path.join(SRC, "model.safetensors"))
    cfg = json.load(open(os.path.join(SRC, "config.json")))
    for name, bits, group, sym, act in VARIANTS:
        rng = np.random.default_rng(sum(name.encode()))
        gptq, dense = {}, {}
        for k, v in tensors.items():
            v32 = v.astype(np.float32)
            if v.ndim == 2 and k.endswith("_proj.weight"):
                codes, zeros, scales, g_idx, deq = quantize(v32, bits, group, sym, act, rng)
                p = k[: -len(".weight")]
                gptq[p + ".qweight"] = pack_rows(codes, bits)
                gptq[p + ".qzeros"] = pack_rows((zeros - 1).T, bits).T.copy()  # packed along the output dim
                gptq[p + ".scales"] = scales
                gptq[p + ".g_idx"] = g_idx
                dense[k] = deq
            else:
                gptq[k] = v32
                dense[k] = v32
        for sub, ts, qc in ((name, gptq, True), (name + "-dequant", dense, False)):
            d = os.path.join(OUT, sub)
            shutil.rmtree(d, ignore_errors=True)
            os.makedirs(d)
            c = dict(cfg)
            c["dtype"] = "float32"
            if qc:
                c["quantization_config"] = {"quant_method": "gptq", "bits": bits, "group_size": group,
                                            "desc_act": act, "sym": sym, "checkpoint_format": "gptq"}
            json.dump(c, open(os.path.join(d, "config.json"), "w"), indent=2)
            write_safetensors(os.path.join(d, "model.safetensors"), ts)
        print(name, "ok")


if __name__ == "__main__":
    main()
