package cpu

import (
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/dtype"
)

// BenchmarkAttentionDecode times one decode step's attention over all the
// layers of the Llama-3.2-1B shape (32 query heads, 8 KV heads of 64, 16
// layers) at a context of 512 positions: the KV bytes it reads (33.5 MB in
// float32) are larger than this machine's last-level cache, as in a real
// decode step. It reports the KV bytes read per second, for each of the
// cache's number types.
func BenchmarkAttentionDecode(b *testing.B) {
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		b.Run(dt.String(), func(b *testing.B) {
			const layers, heads, kvHeads, dim, ctx, bs = 16, 32, 8, 64, 512, 64
			be := New(0)
			defer be.Close()
			spec := backend.KVSpec{Layers: layers, KVHeads: kvHeads, KeyDim: dim, ValueDim: dim, BlockSize: bs, Blocks: ctx / bs, DType: dt}
			kc, err := be.NewKVCache(spec)
			if err != nil {
				b.Fatal(err)
			}
			rnd := normals(rand.New(rand.NewPCG(1, 2)))
			blocks := make([]int32, ctx/bs)
			for i := range blocks {
				blocks[i] = int32(i)
			}
			// fill the cache: every position of every layer
			pos := make([]int32, ctx)
			toks := make([]int32, ctx)
			for i := range pos {
				pos[i] = int32(i)
			}
			fill := &backend.Batch{Tokens: toks, Pos: pos, Seqs: []backend.Seq{{Start: 0, Len: ctx, Blocks: blocks}}}
			q, k, v, out := be.NewTensor(ctx, heads*dim), be.NewTensor(ctx, kvHeads*dim), be.NewTensor(ctx, kvHeads*dim), be.NewTensor(ctx, heads*dim)
			be.Write(q, rnd(ctx*heads*dim))
			be.Write(k, rnd(ctx*kvHeads*dim))
			be.Write(v, rnd(ctx*kvHeads*dim))
			for l := range layers {
				be.Attention(out, q, k, v, kc, l, fill, 0.125, nil)
			}
			step := &backend.Batch{Tokens: []int32{0}, Pos: []int32{ctx - 1}, Seqs: []backend.Seq{{Start: 0, Len: 1, Blocks: blocks}}}
			q1, k1, v1, o1 := be.View(q, 1), be.View(k, 1), be.View(v, 1), be.View(out, 1)
			b.ResetTimer()
			for range b.N {
				for l := range layers {
					be.Attention(o1, q1, k1, v1, kc, l, step, 0.125, nil)
				}
			}
			bytes := float64(layers * ctx * kvHeads * 2 * dim * spec.ElemBytes())
			b.ReportMetric(bytes*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
		})
	}
}

// BenchmarkAttentionServe times one batched decode step's attention of the
// embedded default model's shape (8 query heads, 4 KV heads of 32, 6
// layers) for 64 sequences at 160 positions each: the server's load test
// at full batch, where many short per-(sequence, head) work items share
// the step.
func BenchmarkAttentionServe(b *testing.B) {
	const layers, heads, kvHeads, dim, ctx, bs, seqs = 6, 8, 4, 32, 160, 64, 64
	be := New(0)
	defer be.Close()
	per := (ctx + bs - 1) / bs
	spec := backend.KVSpec{Layers: layers, KVHeads: kvHeads, KeyDim: dim, ValueDim: dim, BlockSize: bs, Blocks: seqs * per}
	kc, err := be.NewKVCache(spec)
	if err != nil {
		b.Fatal(err)
	}
	rnd := normals(rand.New(rand.NewPCG(3, 4)))
	step := &backend.Batch{Tokens: make([]int32, seqs), Pos: make([]int32, seqs)}
	for s := range seqs {
		blocks := make([]int32, per)
		for i := range blocks {
			blocks[i] = int32(s*per + i)
		}
		step.Seqs = append(step.Seqs, backend.Seq{Start: s, Len: 1, Blocks: blocks})
	}
	q, k, v, out := be.NewTensor(seqs, heads*dim), be.NewTensor(seqs, kvHeads*dim), be.NewTensor(seqs, kvHeads*dim), be.NewTensor(seqs, heads*dim)
	be.Write(q, rnd(seqs*heads*dim))
	be.Write(k, rnd(seqs*kvHeads*dim))
	be.Write(v, rnd(seqs*kvHeads*dim))
	// fill every position (one decode step per position; the values do not matter)
	for p := range ctx {
		for s := range seqs {
			step.Pos[s] = int32(p)
		}
		for l := range layers {
			be.Attention(out, q, k, v, kc, l, step, 0.17, nil)
		}
	}
	b.ResetTimer()
	for range b.N {
		for l := range layers {
			be.Attention(out, q, k, v, kc, l, step, 0.17, nil)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N), "µs/step")
}
