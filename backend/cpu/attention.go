package cpu

import (
	"fmt"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu/vkernels"
)

// kvCache stores keys and values in float32, one slab per layer, laid out
// so that one block of one KV head is a pair of small dense matrices:
//
//	keys:   [block][kvHead][slot][KeyDim]     (a block's keys: [BlockSize, KeyDim])
//	values: [block][kvHead][slot][ValueDim]
//
// With those, a group of query heads scores a whole block in one kernel
// call (each key loaded once for all heads of the group) and gathers its
// values in another. A ValueInKey cache (MLA) has no value slab: values
// are the keys' first ValueDim numbers.
type kvCache struct {
	spec       backend.KVSpec
	keys, vals [][]float32 // per layer
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
	slots := int64(s.Blocks) * int64(s.BlockSize) * int64(s.KVHeads)
	if slots*int64(s.KeyDim+s.ValueDim)*int64(s.Layers) > 1<<40 {
		return nil, fmt.Errorf("cpu: KV cache of %d blocks is too large", s.Blocks)
	}
	c := &kvCache{spec: s, keys: make([][]float32, s.Layers), vals: make([][]float32, s.Layers)}
	for l := range s.Layers {
		c.keys[l] = make([]float32, slots*int64(s.KeyDim))
		if !s.ValueInKey {
			c.vals[l] = make([]float32, slots*int64(s.ValueDim))
		}
	}
	return c, nil
}

// keyBlock returns the keys of (block, kv head): [BlockSize, KeyDim].
func (c *kvCache) keyBlock(layer int, block int32, head int) []float32 {
	n := c.spec.BlockSize * c.spec.KeyDim
	i := (int(block)*c.spec.KVHeads + head) * n
	return c.keys[layer][i : i+n]
}

// valueBlock returns the values of (block, kv head): [BlockSize, ValueDim].
func (c *kvCache) valueBlock(layer int, block int32, head int) []float32 {
	n := c.spec.BlockSize * c.spec.ValueDim
	i := (int(block)*c.spec.KVHeads + head) * n
	return c.vals[layer][i : i+n]
}

// headChunk is how many query heads of a group one work item takes: enough
// to use the kernels' multi-row paths, few enough to spread work over cores.
const headChunk = 4

// Attention implements backend.Backend: first every row's keys and values
// are stored, then each (row, KV head, chunk of its query heads) attends
// over the row's sequence block by block (see attend).
func (b *Backend) Attention(out, q, k, v backend.Tensor, cache backend.KVCache, layer int, bt *backend.Batch, scale float32) {
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
				copy(c.keyBlock(layer, blk, h)[slot*s.KeyDim:(slot+1)*s.KeyDim], kt.Row(r)[h*s.KeyDim:(h+1)*s.KeyDim])
				if !s.ValueInKey {
					copy(c.valueBlock(layer, blk, h)[slot*s.ValueDim:(slot+1)*s.ValueDim], vt.Row(r)[h*s.ValueDim:(h+1)*s.ValueDim])
				}
			}
		}
	}
	group := heads / s.KVHeads
	chunks := (group + headChunk - 1) / headChunk
	b.parallel(M*s.KVHeads*chunks, 1, func(lo, hi int) {
		var w attnWork
		for item := lo; item < hi; item++ {
			r := item / (s.KVHeads * chunks)
			kvh := item / chunks % s.KVHeads
			h0 := kvh*group + item%chunks*headChunk
			g := min(headChunk, kvh*group+group-h0)
			w.attend(c, layer, bt.Seqs[seqOf[r]].Blocks, int(bt.Pos[r])+1, kvh,
				qt.Row(r)[h0*s.KeyDim:(h0+g)*s.KeyDim], o.Row(r)[h0*s.ValueDim:(h0+g)*s.ValueDim], g, scale)
		}
	})
}

// attnWork holds one worker's scratch buffers.
type attnWork struct {
	scores []float32
}

// attend computes g query heads (q: [g, KeyDim], contiguous) over the first
// n positions of a sequence's KV head kvh, writing out [g, ValueDim]:
// scores block by block, an exact softmax per head over all n positions,
// then the values block by block.
func (w *attnWork) attend(c *kvCache, layer int, blocks []int32, n, kvh int, q, out []float32, g int, scale float32) {
	s := c.spec
	BS, Dk, Dv := s.BlockSize, s.KeyDim, s.ValueDim
	nb := (n + BS - 1) / BS
	if cap(w.scores) < g*n {
		w.scores = make([]float32, g*n)
	}
	sc := w.scores[:g*n] // [g][n]
	for bi := range nb {
		m := min(BS, n-bi*BS)
		vkernels.BlockScores(sc[bi*BS:], n, q, g, c.keyBlock(layer, blocks[bi], kvh), m, Dk)
	}
	for h := range g {
		vkernels.SoftmaxScaled(sc[h*n:(h+1)*n], scale)
	}
	clear(out)
	for bi := range nb {
		m := min(BS, n-bi*BS)
		if s.ValueInKey { // values are the first Dv numbers of each key
			vkernels.BlockValues(out, sc[bi*BS:], n, g, c.keyBlock(layer, blocks[bi], kvh), Dk, m, Dv)
		} else {
			vkernels.BlockValues(out, sc[bi*BS:], n, g, c.valueBlock(layer, blocks[bi], kvh), Dv, m, Dv)
		}
	}
}
