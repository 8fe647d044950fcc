package cpu

import (
	"fmt"
	"sync"
	"unsafe"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu/kernels"
	"github.com/marlin-llm/marlin/backend/cpu/vkernels"
	"github.com/marlin-llm/marlin/dtype"
)

// kvCache stores keys and values in float32, or in 16 bits (F16 or BF16)
// when the spec asks, one slab per layer, laid out so that one block of one
// KV head is a pair of small dense matrices:
//
//	keys:   [block][kvHead][slot][KeyDim]     (a block's keys: [BlockSize, KeyDim])
//	values: [block][kvHead][slot][ValueDim]
//
// With those, a group of query heads scores a whole block in one kernel
// call (each key loaded once for all heads of the group) and gathers its
// values in another. A ValueInKey cache (MLA) has no value slab: values
// are the keys' first ValueDim numbers. A 16-bit cache halves the memory
// and the bytes attention reads; each block is widened to float32 in the
// worker's scratch (a SIMD conversion) before the same kernels run.
type kvCache struct {
	spec           backend.KVSpec
	keys, vals     [][]float32 // per layer (float32 cache)
	keys16, vals16 [][]uint16  // per layer (16-bit cache)
	bf             bool        // the 16-bit numbers are bfloat16, not IEEE half
}

func (c *kvCache) Spec() backend.KVSpec { return c.spec }

func (c *kvCache) Bytes() int64 {
	return int64(c.spec.Blocks) * int64(c.spec.BlockSize) * c.spec.TokenBytes()
}

// NewKVCache implements backend.Backend.
func (b *Backend) NewKVCache(s backend.KVSpec) (backend.KVCache, error) {
	if s.Layers <= 0 || s.KVHeads <= 0 || s.KeyDim <= 0 || s.ValueDim <= 0 || s.BlockSize <= 0 || s.Blocks <= 0 {
		return nil, fmt.Errorf("cpu: invalid KV cache shape %+v", s)
	}
	if s.ValueInKey && s.ValueDim > s.KeyDim {
		return nil, fmt.Errorf("cpu: KV cache values (%d) longer than the keys (%d) that hold them", s.ValueDim, s.KeyDim)
	}
	switch s.DType {
	case dtype.Invalid, dtype.F32, dtype.F16, dtype.BF16:
	default:
		return nil, fmt.Errorf("cpu: KV cache type %v not supported (f32, f16, bf16)", s.DType)
	}
	slots := int64(s.Blocks) * int64(s.BlockSize) * int64(s.KVHeads)
	if slots*int64(s.KeyDim+s.ValueDim)*int64(s.Layers) > 1<<40 {
		return nil, fmt.Errorf("cpu: KV cache of %d blocks is too large", s.Blocks)
	}
	c := &kvCache{spec: s, bf: s.DType == dtype.BF16}
	if s.ElemBytes() == 2 {
		c.keys16, c.vals16 = make([][]uint16, s.Layers), make([][]uint16, s.Layers)
	} else {
		c.keys, c.vals = make([][]float32, s.Layers), make([][]float32, s.Layers)
	}
	for l := range s.Layers {
		kn, vn := slots*int64(s.KeyDim), slots*int64(s.ValueDim)
		if s.ValueInKey {
			vn = 0
		}
		if c.keys16 != nil {
			c.keys16[l], c.vals16[l] = make([]uint16, kn), make([]uint16, vn)
		} else {
			c.keys[l], c.vals[l] = make([]float32, kn), make([]float32, vn)
		}
	}
	return c, nil
}

// blockOffset returns where the block of (block, kv head) starts in a
// layer's slab whose rows are dim numbers long.
func (c *kvCache) blockOffset(block int32, head, dim int) int {
	return (int(block)*c.spec.KVHeads + head) * c.spec.BlockSize * dim
}

// store writes one token's key (and value) rows for kv head h at slot of
// block: the numbers are rounded to 16 bits in a 16-bit cache.
func (c *kvCache) store(layer int, block int32, h, slot int, key, val []float32) {
	s := c.spec
	ko := c.blockOffset(block, h, s.KeyDim) + slot*s.KeyDim
	vo := c.blockOffset(block, h, s.ValueDim) + slot*s.ValueDim
	if c.keys16 == nil {
		copy(c.keys[layer][ko:ko+s.KeyDim], key)
		if val != nil {
			copy(c.vals[layer][vo:vo+s.ValueDim], val)
		}
		return
	}
	c.round(c.keys16[layer][ko:ko+s.KeyDim], key)
	if val != nil {
		c.round(c.vals16[layer][vo:vo+s.ValueDim], val)
	}
}

func (c *kvCache) round(dst []uint16, src []float32) {
	for i, x := range src {
		if c.bf {
			dst[i] = dtype.F32ToBF16(x)
		} else {
			dst[i] = dtype.F32ToF16(x)
		}
	}
}

// prefetch hints the keys (or values) of KV heads [h0, h1) of block into
// the caches: one contiguous range of the layer's slab.
func (c *kvCache) prefetch(layer int, block int32, h0, h1 int, values bool) {
	s := c.spec
	dim, f32, f16 := s.KeyDim, c.keys, c.keys16
	if values {
		if s.ValueInKey {
			return
		}
		dim, f32, f16 = s.ValueDim, c.vals, c.vals16
	}
	o, n := c.blockOffset(block, h0, dim), (h1-h0)*s.BlockSize*dim
	if f16 != nil {
		vkernels.Prefetch(unsafe.Pointer(&f16[layer][o]), 2*n)
	} else {
		vkernels.Prefetch(unsafe.Pointer(&f32[layer][o]), 4*n)
	}
}

// keyRows returns the first n key rows of (block, kv head) as float32:
// the cache itself, or for a 16-bit cache those rows widened into buf.
func (c *kvCache) keyRows(layer int, block int32, head, n int, buf *[]float32) []float32 {
	return c.rows(c.keys, c.keys16, layer, block, head, n, c.spec.KeyDim, buf)
}

// valueRows is keyRows for the values.
func (c *kvCache) valueRows(layer int, block int32, head, n int, buf *[]float32) []float32 {
	return c.rows(c.vals, c.vals16, layer, block, head, n, c.spec.ValueDim, buf)
}

func (c *kvCache) rows(f32 [][]float32, f16 [][]uint16, layer int, block int32, head, n, dim int, buf *[]float32) []float32 {
	o := c.blockOffset(block, head, dim)
	if f16 == nil {
		return f32[layer][o : o+n*dim]
	}
	if cap(*buf) < n*dim {
		*buf = make([]float32, c.spec.BlockSize*dim)
	}
	b := (*buf)[:n*dim]
	if c.bf {
		kernels.BF16ToF32(b, f16[layer][o:o+n*dim])
	} else {
		kernels.F16ToF32(b, f16[layer][o:o+n*dim])
	}
	return b
}

// headChunk is how many query heads of a group one work item takes: enough
// to use the kernels' multi-row paths, few enough to spread work over cores.
const headChunk = 4

// Attention implements backend.Backend: first every row's keys and values
// are stored (rotated first, with rope, as q is), then each (row, KV head,
// chunk of its query heads) attends over the row's sequence block by block
// (see attend).
func (b *Backend) Attention(out, q, k, v backend.Tensor, cache backend.KVCache, layer int, bt *backend.Batch, scale float32, rope *backend.Rope) {
	o, qt, kt := tensor(out), tensor(q), tensor(k)
	c, ok := cache.(*kvCache)
	if !ok {
		panic(fmt.Sprintf("cpu: KV cache of another backend (%T)", cache))
	}
	s := c.spec
	M := len(bt.Tokens)
	heads := qt.cols / s.KeyDim
	vt := &Tensor{rows: M, cols: s.KVHeads * s.ValueDim}
	if v != nil {
		vt = tensor(v)
	}
	checkShape("Attention", (v == nil) == s.ValueInKey, "values given %v for a cache with values in keys %v", v != nil, s.ValueInKey)
	checkShape("Attention", qt.rows == M && kt.rows == M && vt.rows == M && o.rows == M &&
		kt.cols == s.KVHeads*s.KeyDim && vt.cols == s.KVHeads*s.ValueDim &&
		qt.cols == heads*s.KeyDim && o.cols == heads*s.ValueDim && heads%s.KVHeads == 0 &&
		layer >= 0 && layer < s.Layers,
		"q [%d, %d], k [%d, %d], v [%d, %d], out [%d, %d], %d tokens, cache %+v, layer %d",
		qt.rows, qt.cols, kt.rows, kt.cols, vt.rows, vt.cols, o.rows, o.cols, M, s, layer)
	if rope != nil {
		b.RoPE(q, heads, s.KeyDim, 0, rope, bt.Pos)
		b.RoPE(k, s.KVHeads, s.KeyDim, 0, rope, bt.Pos)
	}
	BS := s.BlockSize
	seqOf := make([]int32, M) // row → index into bt.Seqs
	for si, sq := range bt.Seqs {
		checkShape("Attention", sq.Start >= 0 && sq.Start+sq.Len <= M, "sequence %d covers rows [%d, %d) of %d", si, sq.Start, sq.Start+sq.Len, M)
		last := int(bt.Pos[sq.Start]) + sq.Len - 1
		checkShape("Attention", last/BS < len(sq.Blocks), "sequence %d reaches position %d with %d blocks of %d", si, last, len(sq.Blocks), BS)
		for r := sq.Start; r < sq.Start+sq.Len; r++ {
			seqOf[r] = int32(si)
			p := int(bt.Pos[r])
			blk, slot := sq.Blocks[p/BS], p%BS
			checkShape("Attention", blk >= 0 && int(blk) < s.Blocks, "block %d of %d", blk, s.Blocks)
			for h := range s.KVHeads {
				var val []float32
				if !s.ValueInKey {
					val = vt.Row(r)[h*s.ValueDim : (h+1)*s.ValueDim]
				}
				c.store(layer, blk, h, slot, kt.Row(r)[h*s.KeyDim:(h+1)*s.KeyDim], val)
			}
		}
	}
	// the row's heads in parts of up to headChunk that share a KV head
	group := heads / s.KVHeads
	var parts []attnPart
	for kvh := range s.KVHeads {
		for h0 := kvh * group; h0 < (kvh+1)*group; h0 += headChunk {
			parts = append(parts, attnPart{kvh: kvh, h0: h0, g: min(headChunk, (kvh+1)*group-h0)})
		}
	}
	// A work item is one part of a row, or with many rows a whole row: its
	// KV heads then read each block's heads one after the other (one
	// forward stream) rather than each its own strided part. Each part is
	// computed the same way in either case.
	per := 1
	if M >= rowItems*b.workers {
		per = len(parts)
	}
	b.parallel(M*len(parts)/per, 1, func(lo, hi int) {
		w := attnWorks.Get().(*attnWork)
		defer attnWorks.Put(w)
		for item := lo; item < hi; item++ {
			r, p0 := item*per/len(parts), item*per%len(parts)
			ps := parts[p0 : p0+per]
			if next := item + 1; next < hi { // its first keys, while this one runs
				nr, np := next*per/len(parts), parts[next*per%len(parts):][:per]
				c.prefetch(layer, bt.Seqs[seqOf[nr]].Blocks[0], np[0].kvh, np[per-1].kvh+1, false)
			}
			h0, h1 := ps[0].h0, ps[len(ps)-1].h0+ps[len(ps)-1].g
			w.attend(c, layer, bt.Seqs[seqOf[r]].Blocks, int(bt.Pos[r])+1, ps,
				qt.Row(r)[h0*s.KeyDim:h1*s.KeyDim], o.Row(r)[h0*s.ValueDim:h1*s.ValueDim], scale)
		}
	})
}

// rowItems is how many rows per worker a batch needs for Attention to give
// each work item a whole row (BenchmarkAttentionServe, 64 rows of the
// default model: about 6% faster than an item per KV head).
const rowItems = 4

// attnPart is g query heads h0 … h0+g−1 of a row that share KV head kvh.
type attnPart struct{ kvh, h0, g int }

// attnWork holds one worker's scratch buffers.
type attnWork struct {
	scores     []float32
	kbuf, vbuf []float32 // a block widened from a 16-bit cache
}

// attnWorks keeps the workers' scratch between calls: a decode step calls
// Attention once a layer, and fresh buffers each time cost the allocator
// and the collector more than a 16-bit cache's attention itself
// (BenchmarkAttentionDecode).
var attnWorks = sync.Pool{New: func() any { return new(attnWork) }}

// attend computes the query heads of parts (consecutive heads of one row,
// q: their [heads, KeyDim] rows, contiguous) over the first n positions of
// a sequence, writing out [heads, ValueDim]: scores block by block, an
// exact softmax per head over all n positions, then the values block by
// block; within a block the parts follow each other. The next block's
// keys (values) are prefetched while a block is scored (summed): the
// blocks of a sequence are a few KB each, apart in the slab, and the
// hardware prefetchers alone left a decode step's attention at about half
// the memory bandwidth (BenchmarkAttentionDecode: 1.2 → 0.73 ms with the
// hints; BenchmarkAttentionServe 2.46 → 1.85 ms).
func (w *attnWork) attend(c *kvCache, layer int, blocks []int32, n int, parts []attnPart, q, out []float32, scale float32) {
	s := c.spec
	BS, Dk, Dv := s.BlockSize, s.KeyDim, s.ValueDim
	nb := (n + BS - 1) / BS
	base := parts[0].h0
	heads := parts[len(parts)-1].h0 + parts[len(parts)-1].g - base
	if cap(w.scores) < heads*n {
		w.scores = make([]float32, heads*n)
	}
	sc := w.scores[:heads*n] // [heads][n]
	// A 16-bit latent cache's keys are also its values: each block of each
	// KV head is widened once, into its own part of w.kbuf (latentAt), and
	// read by every part of that head in both passes.
	latent16 := s.ValueInKey && c.keys16 != nil
	kv0, kvs := parts[0].kvh, parts[len(parts)-1].kvh-parts[0].kvh+1
	latentAt := func(kvh, bi, m int) []float32 {
		o := ((kvh-kv0)*nb + bi) * BS * Dk
		return w.kbuf[o : o+m*Dk]
	}
	if latent16 && cap(w.kbuf) < kvs*nb*BS*Dk {
		w.kbuf = make([]float32, kvs*nb*BS*Dk)
	}
	kv1 := parts[len(parts)-1].kvh + 1
	for bi := range nb {
		m := min(BS, n-bi*BS)
		if bi+1 < nb { // the next block streams in while this one is scored
			c.prefetch(layer, blocks[bi+1], kv0, kv1, false)
		} else {
			c.prefetch(layer, blocks[0], kv0, kv1, true)
		}
		for j, p := range parts {
			var keys []float32
			switch {
			case !latent16:
				keys = c.keyRows(layer, blocks[bi], p.kvh, m, &w.kbuf)
			case j == 0 || parts[j-1].kvh != p.kvh: // first part of its head: widen
				part := latentAt(p.kvh, bi, BS)
				keys = c.keyRows(layer, blocks[bi], p.kvh, m, &part)
			default:
				keys = latentAt(p.kvh, bi, m)
			}
			i := p.h0 - base
			vkernels.BlockScores(sc[i*n+bi*BS:], n, q[i*Dk:], p.g, keys, m, Dk)
		}
	}
	for h := range heads {
		vkernels.SoftmaxScaled(sc[h*n:(h+1)*n], scale)
	}
	clear(out)
	for bi := range nb {
		m := min(BS, n-bi*BS)
		if bi+1 < nb {
			c.prefetch(layer, blocks[bi+1], kv0, kv1, true)
		}
		for _, p := range parts {
			i := p.h0 - base
			o, p0 := out[i*Dv:(i+p.g)*Dv], sc[i*n+bi*BS:]
			switch {
			case latent16:
				vkernels.BlockValues(o, p0, n, p.g, latentAt(p.kvh, bi, m), Dk, m, Dv)
			case s.ValueInKey: // values are the first Dv numbers of each key
				vkernels.BlockValues(o, p0, n, p.g, c.keyRows(layer, blocks[bi], p.kvh, m, &w.kbuf), Dk, m, Dv)
			default:
				vkernels.BlockValues(o, p0, n, p.g, c.valueRows(layer, blocks[bi], p.kvh, m, &w.vbuf), Dv, m, Dv)
			}
		}
	}
}
