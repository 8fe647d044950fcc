package cpu

import (
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu/kernels"
)

// kvCache stores keys and values in float32, one slab per layer, laid out
// so that one block of one KV head is a pair of small dense matrices:
//
//	keys:   [block][kvHead][slot][KeyDim]     (a block's keys: [BlockSize, KeyDim])
//	values: [block][kvHead][ValueDim][slot]   (transposed: [ValueDim, BlockSize])
//
// With those, a group of query heads scores a whole block with one matrix
// product (q·Kᵀ) and gathers its values with another (P·V, V stored
// transposed for the row-major "x·Wᵀ" kernels). A ValueInKey cache (MLA)
// has no value slab: values are the keys' first ValueDim numbers.
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

// valueBlock returns the transposed values of (block, kv head): [ValueDim, BlockSize].
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
// over the row's sequence block by block: scores by one matrix product per
// block, an exact softmax over all positions up to the row's own, then the
// values by one matrix product per block.
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
					vb, src := c.valueBlock(layer, blk, h), vt.Row(r)[h*s.ValueDim:(h+1)*s.ValueDim]
					for d, x := range src {
						vb[d*BS+slot] = x
					}
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
	scores, p, tmp []float32
}

func grow(buf []float32, n int) []float32 {
	if cap(buf) < n {
		return make([]float32, n)
	}
	return buf[:n]
}

// attend computes g query heads (q: [g, KeyDim], contiguous) over the first
// n positions of a sequence's KV head kvh, writing out [g, ValueDim].
func (w *attnWork) attend(c *kvCache, layer int, blocks []int32, n, kvh int, q, out []float32, g int, scale float32) {
	s := c.spec
	BS, Dk, Dv := s.BlockSize, s.KeyDim, s.ValueDim
	nb := (n + BS - 1) / BS
	stride := nb * BS
	w.scores = grow(w.scores, g*stride)
	// scores[h][t] = q_h · k_t, one [g, BS] product per block
	w.tmp = grow(w.tmp, g*max(BS, Dv))
	for bi := range nb {
		kernels.MatMulF32(w.tmp, BS, q, g, Dk, c.keyBlock(layer, blocks[bi], kvh), 0, BS)
		for h := range g {
			copy(w.scores[h*stride+bi*BS:h*stride+(bi+1)*BS], w.tmp[h*BS:(h+1)*BS])
		}
	}
	// softmax over positions [0, n) of each head, in float32 with a fast exp
	for h := range g {
		row := w.scores[h*stride : h*stride+n]
		m := float32(math.Inf(-1))
		for t := range row {
			row[t] *= scale
			m = max(m, row[t])
		}
		var sum float32
		for t, x := range row {
			e := exp32(x - m)
			row[t] = e
			sum += e
		}
		inv := 1 / sum
		for t := range row {
			row[t] *= inv
		}
		clear(w.scores[h*stride+n : (h+1)*stride]) // positions past the row's own weigh nothing
	}
	clear(out)
	if s.ValueInKey {
		// values are the keys' first Dv numbers: accumulate position by
		// position (Dv is large for latent attention, so each call is long)
		for bi := range nb {
			kb := c.keyBlock(layer, blocks[bi], kvh)
			for t := range min(BS, n-bi*BS) {
				val := kb[t*Dk : t*Dk+Dv]
				for h := range g {
					kernels.Axpy(w.scores[h*stride+bi*BS+t], val, out[h*Dv:(h+1)*Dv])
				}
			}
		}
		return
	}
	// out[h] += P[h, block] · V[block], one [g, Dv] product per block
	w.p = grow(w.p, g*BS)
	for bi := range nb {
		for h := range g {
			copy(w.p[h*BS:(h+1)*BS], w.scores[h*stride+bi*BS:h*stride+(bi+1)*BS])
		}
		kernels.MatMulF32(w.tmp, Dv, w.p, g, BS, c.valueBlock(layer, blocks[bi], kvh), 0, Dv)
		for i, x := range w.tmp[:g*Dv] {
			out[i] += x
		}
	}
}
