//go:build linux && !nocuda

package cuda

import (
	"fmt"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/dtype"
)

// kvCache is the paged KV cache in one device allocation, per layer a key
// slab [block][kvHead][slot][KeyDim] followed (unless ValueInKey) by a
// value slab [block][kvHead][slot][ValueDim] (see attention.cu), of
// float32, binary16 or bfloat16 numbers as the spec's DType asks.
type kvCache struct {
	owner      *Backend
	spec       backend.KVSpec
	buf        *buffer
	typ        int   // the numbers' type: an index into kvSuffixes
	bytes      int64 // the cache's size (buf may be rounded up)
	layerBytes int64 // one layer's keys and values
	keyBytes   int64 // one layer's keys
}

// The cache's number types, as attention.cu's KV_F32, KV_F16 and KV_BF16
// index them; kvSuffixes name their kernels (kv_store_f16, …).
const (
	kvF32 = iota
	kvF16
	kvBF16
	numKV
)

var kvSuffixes = [numKV]string{"", "_f16", "_bf16"}

// Spec implements backend.KVCache.
func (c *kvCache) Spec() backend.KVSpec { return c.spec }

// Bytes implements backend.KVCache.
func (c *kvCache) Bytes() int64 { return c.bytes }

// NewKVCache implements backend.Backend. The cache starts zeroed.
func (b *Backend) NewKVCache(s backend.KVSpec) (backend.KVCache, error) {
	if s.Layers <= 0 || s.KVHeads <= 0 || s.KeyDim <= 0 || s.ValueDim <= 0 || s.BlockSize <= 0 || s.Blocks <= 0 {
		return nil, fmt.Errorf("cuda: invalid KV cache shape %+v", s)
	}
	if s.ValueInKey && s.ValueDim > s.KeyDim {
		return nil, fmt.Errorf("cuda: KV cache values (%d) longer than the keys (%d) that hold them", s.ValueDim, s.KeyDim)
	}
	typ := kvF32
	switch s.DType {
	case dtype.Invalid, dtype.F32:
	case dtype.F16:
		typ = kvF16
	case dtype.BF16:
		typ = kvBF16
	default:
		return nil, fmt.Errorf("cuda: KV cache type %v not supported (f32, f16, bf16)", s.DType)
	}
	slots := int64(s.Blocks) * int64(s.BlockSize) * int64(s.KVHeads)
	per := int64(s.KeyDim + s.ValueDim)
	if s.ValueInKey {
		per = int64(s.KeyDim)
	}
	if slots*per*int64(s.Layers) > 1<<40 {
		return nil, fmt.Errorf("cuda: KV cache of %d blocks is too large", s.Blocks)
	}
	es := int64(s.ElemBytes())
	c := &kvCache{owner: b, spec: s, typ: typ, layerBytes: es * slots * per, keyBytes: es * slots * int64(s.KeyDim)}
	c.bytes = c.layerBytes * int64(s.Layers)
	b.enter()
	defer b.leave()
	buf, err := b.alloc((c.bytes + 15) &^ 15)
	if err != nil {
		return nil, fmt.Errorf("cuda: KV cache: %w", err)
	}
	c.buf = buf
	b.memsetZero(buf.ptr, buf.size/4)
	return c, nil
}

// attnSplitForce (MARLIN_ATTN_P; for measurements) takes that many splits
// of the positions for every decode-sized flash-decoding launch, attn_split,
// attn_mla and attn_mla_tc (at most splitPMax).
var attnSplitForce = envInt("MARLIN_ATTN_P", 0)

// attnWide (MARLIN_ATTN_WIDE=0 turns it off, for measurements): one
// decode row's flash-decoding, with 3 or 4 query heads a KV head, in the
// wide form (attention.cu: 16 warps a block, 16 splits, one round of loads
// in the merge) instead of the narrow one (4 warps, 64 splits).
var attnWide = envInt("MARLIN_ATTN_WIDE", 1) != 0

// attention.cu's warps a block of attn_split: ATT_WARPS, and the wide
// form's.
const attnWarps, attnWideWarps = 4, 16

// Attention implements backend.Backend. The host builds, per row, the
// number of positions it sees, its sequence's block table and the cache
// cell that receives its key and value; kv_store writes every row's keys
// and values, then an attention kernel reads them back through the block
// tables (see attention.cu): the split (flash-decoding) kernel for heads
// of 64 and 128, attn_mla_tc or attn_mla for a latent cache (mlaKernelFor),
// else one block per row and query head.
//
// Decode (every row the one new token of its sequence) runs as one launch
// where the split or MLA kernel applies: it stores the keys and values
// itself, and the split kernel also rotates q and the new keys (rope).
// Otherwise rope runs first as two RoPE launches, and kv_store stores the
// keys and values.
func (b *Backend) Attention(out, q, k, v backend.Tensor, cache backend.KVCache, layer int, bt *backend.Batch, scale float32, rope *backend.Rope) {
	o, qt, kt := b.tensor(out), b.tensor(q), b.tensor(k)
	c, ok := cache.(*kvCache)
	if !ok || c.owner != b {
		panic(fmt.Sprintf("cuda: KV cache of another backend (%T)", cache))
	}
	s := c.spec
	M := len(bt.Tokens)
	heads := qt.cols / s.KeyDim
	var vt *tensor
	vrows, vcols := M, s.KVHeads*s.ValueDim
	if v != nil {
		vt = b.tensor(v)
		vrows, vcols = vt.rows, vt.cols
	}
	checkShape("Attention", (v == nil) == s.ValueInKey, "values given %v for a cache with values in keys %v", v != nil, s.ValueInKey)
	checkShape("Attention", qt.rows == M && kt.rows == M && vrows == M && o.rows == M && len(bt.Pos) == M &&
		kt.cols == s.KVHeads*s.KeyDim && vcols == s.KVHeads*s.ValueDim &&
		qt.cols == heads*s.KeyDim && o.cols == heads*s.ValueDim && heads > 0 && heads%s.KVHeads == 0 &&
		layer >= 0 && layer < s.Layers,
		"q [%d, %d], k [%d, %d], v [%d, %d], out [%d, %d], %d tokens, cache %+v, layer %d",
		qt.rows, qt.cols, kt.rows, kt.cols, vrows, vcols, o.rows, o.cols, M, s, layer)
	BS := s.BlockSize
	// meta = rowN [M] | rowTab [M] | stBlk [M] | stSlot [M] | tables
	tabLen := 0
	for _, sq := range bt.Seqs {
		tabLen += len(sq.Blocks)
	}
	meta := make([]int32, 4*M, 4*M+tabLen) // appending the tables never reallocates
	rowN, rowTab, stBlk, stSlot := meta[:M], meta[M:2*M], meta[2*M:3*M], meta[3*M:4*M]
	for r := range M {
		stBlk[r] = -1
		rowN[r] = bt.Pos[r] + 1
		checkShape("Attention", bt.Pos[r] >= 0, "negative position %d", bt.Pos[r])
	}
	for si, sq := range bt.Seqs {
		checkShape("Attention", sq.Start >= 0 && sq.Len >= 0 && sq.Start+sq.Len <= M, "sequence %d covers rows [%d, %d) of %d", si, sq.Start, sq.Start+sq.Len, M)
		off := int32(len(meta) - 4*M)
		meta = append(meta, sq.Blocks...)
		if sq.Len == 0 {
			continue
		}
		last := int(bt.Pos[sq.Start]) + sq.Len - 1
		checkShape("Attention", last/BS < len(sq.Blocks), "sequence %d reaches position %d with %d blocks of %d", si, last, len(sq.Blocks), BS)
		for r := sq.Start; r < sq.Start+sq.Len; r++ {
			checkShape("Attention", int(bt.Pos[r])/BS < len(sq.Blocks), "sequence %d: row %d at position %d beyond its %d blocks", si, r, bt.Pos[r], len(sq.Blocks))
			rowTab[r] = off
			p := int(bt.Pos[r])
			stBlk[r], stSlot[r] = sq.Blocks[p/BS], int32(p%BS)
		}
		for _, blk := range sq.Blocks[:min(len(sq.Blocks), (last+BS)/BS)] {
			checkShape("Attention", blk >= 0 && int(blk) < s.Blocks, "block %d of %d", blk, s.Blocks)
		}
	}
	// rows outside every sequence read sequence 0's table (as the CPU's do)
	if len(bt.Seqs) > 0 {
		covered := make([]bool, M)
		for _, sq := range bt.Seqs {
			for r := sq.Start; r < sq.Start+sq.Len; r++ {
				covered[r] = true
			}
		}
		for r := range M {
			if !covered[r] {
				sq := bt.Seqs[0]
				checkShape("Attention", int(bt.Pos[r])/BS < len(sq.Blocks), "row %d at position %d outside every sequence", r, bt.Pos[r])
				for _, blk := range sq.Blocks[:int(bt.Pos[r])/BS+1] {
					checkShape("Attention", blk >= 0 && int(blk) < s.Blocks, "block %d of %d", blk, s.Blocks)
				}
			}
		}
	} else {
		checkShape("Attention", M == 0, "%d rows and no sequences", M)
	}
	smem := 4 * (s.KeyDim + 4*s.ValueDim + 8)

	// the latent cache of MLA (one KV head, values in the keys) has its
	// own kernel (mla.cu); the others the split kernel where it has the
	// head size
	var mla mlaLaunch
	if s.ValueInKey && s.KVHeads == 1 {
		mla = b.mlaKernelFor(s.KeyDim, s.ValueDim, heads, M, c.typ)
	}
	f, wide := uintptr(0), false
	if mla.f == 0 {
		f, wide = b.splitAttention(heads, s, c.typ, M == 1 && attnWide)
	}
	// decode (each row the one new token of its sequence): the split and
	// MLA kernels store the keys and values themselves (one launch less),
	// and the split kernel rotates q and the new keys (two less)
	fuseStore := (f != 0 || mla.f != 0) && M <= 16 && len(bt.Seqs) == M
	for _, sq := range bt.Seqs {
		fuseStore = fuseStore && sq.Len == 1
	}
	for r := range M { // then every row is its sequence's
		fuseStore = fuseStore && stBlk[r] >= 0
	}
	half := 0
	if rope != nil {
		half = len(rope.InvFreq)
		checkShape("Attention", 2*half <= s.KeyDim, "%d rotary pairs in heads of %d", half, s.KeyDim)
	}
	fuseRope := half > 0 && fuseStore && f != 0
	var maxPos int32
	if fuseRope {
		maxPos = maxPosition("Attention", bt.Pos)
	}
	if half > 0 && !fuseRope {
		b.RoPE(q, heads, s.KeyDim, 0, rope, bt.Pos)
		b.RoPE(k, s.KVHeads, s.KeyDim, 0, rope, bt.Pos)
	}

	b.enter()
	defer b.leave()
	if M == 0 || !b.usable(o, qt, kt, vt) {
		return
	}
	if smem > max(b.smemOptin, 48<<10) {
		b.fail(fmt.Errorf("cuda: Attention: heads of %d+%d values need %d bytes of shared memory (device limit %d)", s.KeyDim, s.ValueDim, smem, b.smemOptin))
		return
	}
	mp := b.stageInts(meta)
	if mp == 0 {
		return
	}
	kc := c.buf.ptr + uint64(int64(layer)*c.layerBytes)
	vc, ldv := kc+uint64(c.keyBytes), s.ValueDim
	var vp uint64
	if s.ValueInKey {
		vc, ldv = kc, s.KeyDim
	} else {
		vp = vt.ptr()
	}
	var tab *ropeTab
	if fuseRope {
		if tab = b.ropeTable(rope, int(maxPos)+1); tab == nil {
			return // the sticky error is set
		}
	}
	if !fuseStore {
		a := b.newArgs()
		a.ptr(kc)
		a.ptr(vc)
		a.ptr(kt.ptr())
		a.ptr(vp)
		a.ptr(mp + uint64(4*2*M))
		a.ptr(mp + uint64(4*3*M))
		a.i32(s.KVHeads)
		a.i32(s.KeyDim)
		a.i32(s.ValueDim)
		a.i32(BS)
		b.launch(b.k.kvStore[c.typ], M, 1, threadsFor(s.KVHeads*max(s.KeyDim, s.ValueDim)), 0, a)
	}

	if mla.f != 0 {
		b.mlaAttention(mla, o, qt, kt, kc, mp, M, heads, s, scale, fuseStore)
		return
	}
	if f != 0 {
		// flash-decoding: P splits of the positions per (row, KV head) for
		// decode-sized batches, 4 for prefill (merged in the kernel)
		P := 1
		var ws uint64
		switch {
		case M <= 16 && M*s.KVHeads <= counterCap:
			// short dependent chains: ~16 positions a block at 512 tokens,
			// 8 for one row (Llama-3-8B INT4 decode, H100: P = 8, 16, 32,
			// 64 gave 272, 298, 307, 312 tok/s; docs/cuda-kernels.md,
			// eleventh session)
			P = 32
			if M == 1 {
				P = 64
			}
			if wide {
				// the same 256 warps a (row, KV head) as the narrow form's
				// 64 splits of 4 warps (2026-11-29, H200: 16 splits of 16
				// warps 368–374 tok/s against 356–365 for the narrow
				// form, 8 splits 365; docs/cuda-kernels.md)
				P = 64 * attnWarps / attnWideWarps
			}
			if attnSplitForce > 0 {
				P = min(attnSplitForce, splitPMax)
			}
		case M*s.KVHeads <= counterCap:
			P = 4 // prefill: 4× the blocks, a quarter of each one's sequential positions
		}
		if P > 1 {
			if ws = b.scratchBuf("attnws", 4*int64(M)*int64(heads)*int64(P)*int64(splitPitch(s.KeyDim))); ws == 0 {
				return
			}
		}
		a := b.newArgs()
		a.ptr(o.ptr())
		a.ptr(qt.ptr())
		a.ptr(kc)
		a.ptr(vc)
		a.rowMeta(mp, M)
		a.i32(heads)
		a.i32(s.KVHeads)
		a.i32(ldv)
		a.i32(BS)
		a.f32(scale)
		a.ptr(ws)
		a.ptr(b.counters.ptr)
		a.ptrsIf(fuseStore, kt.ptr(), vp, mp+uint64(4*2*M), mp+uint64(4*3*M))
		if tab != nil {
			inter := 0
			if rope.Interleaved {
				inter = 1
			}
			a.ptr(tab.buf.ptr)
			a.ptr(tab.buf.ptr + uint64(4*tab.n*half))
			a.i32(half)
			a.i32(inter)
		} else {
			a.ptr(0)
			a.ptr(0)
			a.i32(0)
			a.i32(0)
		}
		threads := 32 * attnWarps
		if wide {
			threads = 32 * attnWideWarps
		}
		b.launchOpt(f, s.KVHeads, M, P, threads, 0, a, b.pdlOps)
		return
	}
	a := b.newArgs()
	a.ptr(o.ptr())
	a.ptr(qt.ptr())
	a.ptr(kc)
	a.ptr(vc)
	a.rowMeta(mp, M)
	a.i32(heads)
	a.i32(s.KVHeads)
	a.i32(s.KeyDim)
	a.i32(s.ValueDim)
	a.i32(ldv)
	a.i32(BS)
	a.f32(scale)
	b.launch(b.k.attention[c.typ], M, heads, 128, smem, a)
}

// rowMeta adds the attention kernels' row arguments from the metadata
// Attention stages at meta for M rows (rowN | rowTab | stBlk | stSlot |
// tables): each row's length, its block-table offset, and the tables.
func (a *launchArgs) rowMeta(meta uint64, M int) {
	a.ptr(meta)
	a.ptr(meta + uint64(4*M))
	a.ptr(meta + uint64(4*4*M))
}

// splitAttention returns the flash-decoding kernel for heads of 64 or 128
// key and value dims with at most 8 query heads per KV head (separate
// values) over a cache of numbers of type typ, or 0 (the generic kernel);
// wide is true where it is the wide form, which is asked for with
// wantWide and exists for 3 or 4 query heads a KV head (attention.cu).
func (b *Backend) splitAttention(heads int, s backend.KVSpec, typ int, wantWide bool) (f uintptr, wide bool) {
	if s.ValueInKey || s.KeyDim != s.ValueDim || (s.KeyDim != 64 && s.KeyDim != 128) {
		return 0, false
	}
	d := 0
	if s.KeyDim == 128 {
		d = 1
	}
	switch g := heads / s.KVHeads; {
	case g <= 1:
		return b.k.attnSplit[typ][d][0], false
	case g <= 2:
		return b.k.attnSplit[typ][d][1], false
	case g <= 4:
		if wantWide {
			return b.k.attnSplitWide[typ][d], true
		}
		return b.k.attnSplit[typ][d][2], false
	case g <= 8:
		return b.k.attnSplit[typ][d][3], false
	}
	return 0, false
}
