package cpu

import (
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/backend/cpu/kernels"
)

// kvCache stores keys and values in float32, one slab per layer:
// slab[block][slot][kvHead][dim], keys and values in separate slabs (no
// value slab when the values are the keys' first dimensions).
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
	c := &kvCache{spec: s, keys: make([][]float32, s.Layers), vals: make([][]float32, s.Layers)}
	slots := s.Blocks * s.BlockSize * s.KVHeads
	if s.ValueInKey && s.ValueDim > s.KeyDim {
		return nil, fmt.Errorf("cpu: KV cache values (%d) longer than the keys (%d) that hold them", s.ValueDim, s.KeyDim)
	}
	for l := range s.Layers {
		c.keys[l] = make([]float32, slots*s.KeyDim)
		if !s.ValueInKey {
			c.vals[l] = make([]float32, slots*s.ValueDim)
		}
	}
	return c, nil
}

// slot returns the index of (position, kv head) in a layer's slab.
func (c *kvCache) slot(blocks []int32, pos, head int) int {
	bs := c.spec.BlockSize
	blk := int(blocks[pos/bs])
	return (blk*bs+pos%bs)*c.spec.KVHeads + head
}

// Attention implements backend.Backend: first every row's keys and values
// are stored, then each (row, head) pair attends over its sequence's
// positions 0..pos with a numerically stable softmax in float32.
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
	keys, vals, vstride := c.keys[layer], c.vals[layer], s.ValueDim
	if s.ValueInKey {
		vals, vstride = keys, s.KeyDim
	}
	seqOf := make([]int32, M) // row → index into bt.Seqs
	for si, sq := range bt.Seqs {
		checkShape("Attention", sq.Start >= 0 && sq.Start+sq.Len <= M, "sequence %d covers rows [%d, %d) of %d", si, sq.Start, sq.Start+sq.Len, M)
		last := int(bt.Pos[sq.Start]) + sq.Len - 1
		checkShape("Attention", last/s.BlockSize < len(sq.Blocks), "sequence %d reaches position %d with %d blocks of %d", si, last, len(sq.Blocks), s.BlockSize)
		for r := sq.Start; r < sq.Start+sq.Len; r++ {
			seqOf[r] = int32(si)
			p := int(bt.Pos[r])
			for h := range s.KVHeads {
				sl := c.slot(sq.Blocks, p, h)
				copy(keys[sl*s.KeyDim:(sl+1)*s.KeyDim], kt.Row(r)[h*s.KeyDim:(h+1)*s.KeyDim])
				if !s.ValueInKey {
					copy(vals[sl*s.ValueDim:(sl+1)*s.ValueDim], vt.Row(r)[h*s.ValueDim:(h+1)*s.ValueDim])
				}
			}
		}
	}
	group := heads / s.KVHeads
	b.parallel(M*heads, 1, func(lo, hi int) {
		var scores []float32
		for item := lo; item < hi; item++ {
			r, h := item/heads, item%heads
			kvh := h / group
			blocks := bt.Seqs[seqOf[r]].Blocks
			n := int(bt.Pos[r]) + 1
			if cap(scores) < n {
				scores = make([]float32, n)
			}
			scores = scores[:n]
			qh := qt.Row(r)[h*s.KeyDim : (h+1)*s.KeyDim]
			maxs := float32(math.Inf(-1))
			for p := range n {
				sl := c.slot(blocks, p, kvh)
				sc := kernels.Dot(qh, keys[sl*s.KeyDim:(sl+1)*s.KeyDim]) * scale
				scores[p] = sc
				maxs = max(maxs, sc)
			}
			var sum float32
			for p, sc := range scores {
				e := float32(math.Exp(float64(sc - maxs)))
				scores[p] = e
				sum += e
			}
			oh := o.Row(r)[h*s.ValueDim : (h+1)*s.ValueDim]
			clear(oh)
			inv := 1 / sum
			for p, e := range scores {
				sl := c.slot(blocks, p, kvh)
				kernels.Axpy(e*inv, vals[sl*vstride:sl*vstride+s.ValueDim], oh)
			}
		}
	})
}
