package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/backend"
	"github.com/marlin-llm/marlin/dtype"
)

// refAttention is the plain definition in float64: for each row, each
// query head h against KV head h/(heads/kvHeads), softmax(q·k·scale) over
// the sequence's positions 0..pos, times the values. keys[s][p] and
// vals[s][p] hold sequence s's position p, all heads concatenated.
func refAttention(q [][]float32, keys, vals [][][]float32, seqOf []int, pos []int, heads, kvHeads, dk, dv int, scale float64) [][]float64 {
	out := make([][]float64, len(q))
	group := heads / kvHeads
	for r := range q {
		out[r] = make([]float64, heads*dv)
		s := seqOf[r]
		for h := range heads {
			kvh := h / group
			n := pos[r] + 1
			sc := make([]float64, n)
			m := math.Inf(-1)
			for t := range n {
				var d float64
				for i := range dk {
					d += float64(q[r][h*dk+i]) * float64(keys[s][t][kvh*dk+i])
				}
				sc[t] = d * scale
				m = math.Max(m, sc[t])
			}
			var sum float64
			for t := range sc {
				sc[t] = math.Exp(sc[t] - m)
				sum += sc[t]
			}
			for t := range n {
				for i := range dv {
					out[r][h*dv+i] += sc[t] / sum * float64(vals[s][t][kvh*dv+i])
				}
			}
		}
	}
	return out
}

// TestAttention checks the blocked attention against refAttention on random
// data: several sequences in one batch (prefill chunks and decode rows),
// scrambled block tables, grouped-query and multi-query heads, head groups
// larger than one work chunk, and the latent (values-in-keys) cache.
// Tolerance 2e-5 relative to the output's scale: float32 scores, a float32
// exp within 2 ulp, and float32 sums over at most a few hundred positions.
func TestAttention(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	cases := []struct {
		heads, kvHeads, dk, dv, bs int
		latent                     bool
	}{
		{4, 2, 32, 32, 16, false},
		{6, 1, 8, 8, 4, false},
		{8, 8, 24, 24, 3, false},
		{10, 1, 40, 32, 16, true}, // MLA: values are the keys' first 32 numbers
		{9, 3, 16, 16, 5, false},
		{8, 2, 24, 16, 8, true}, // a latent cache with two KV heads (each widened once a block)
	}
	be := New(2)
	// A 16-bit cache is checked against the reference run on the rounded
	// keys and values, to the same float32 tolerance: the kernels must see
	// exactly the stored numbers.
	round := func(dt dtype.DType, r []float32) []float32 {
		out := append([]float32(nil), r...)
		for i, x := range out {
			switch dt {
			case dtype.F16:
				out[i] = dtype.F16ToF32(dtype.F32ToF16(x))
			case dtype.BF16:
				out[i] = dtype.BF16ToF32(dtype.F32ToBF16(x))
			}
		}
		return out
	}
	for _, dt := range []dtype.DType{dtype.F32, dtype.F16, dtype.BF16} {
		for _, c := range cases {
			t.Run(fmt.Sprintf("%v/%+v", dt, c), func(t *testing.T) {
				spec := backend.KVSpec{Layers: 2, KVHeads: c.kvHeads, KeyDim: c.dk, ValueDim: c.dv, ValueInKey: c.latent, BlockSize: c.bs, Blocks: 200, DType: dt}
				cache, err := be.NewKVCache(spec)
				if err != nil {
					t.Fatal(err)
				}
				// three sequences; blocks handed out in a scrambled order
				perm := rng.Perm(spec.Blocks)
				nseq := 3
				tables := make([][]int32, nseq)
				for s := range tables {
					for i := range 60 / nseq {
						tables[s] = append(tables[s], int32(perm[s*(60/nseq)+i]))
					}
				}
				keys := make([][][]float32, nseq)
				vals := make([][][]float32, nseq)
				done := make([]int, nseq)
				randRow := func(n int) []float32 {
					r := make([]float32, n)
					for i := range r {
						r[i] = float32(rng.NormFloat64())
					}
					return r
				}
				// several steps: prompt chunks of random length, then decodes
				for step := range 4 {
					var bt backend.Batch
					var qs [][]float32
					var seqOf, pos []int
					var kRows, vRows [][]float32
					for s := range nseq {
						n := 1
						if step < 2 {
							n = 1 + rng.IntN(3*c.bs)
						}
						bt.Seqs = append(bt.Seqs, backend.Seq{Start: len(bt.Tokens), Len: n, Blocks: tables[s]})
						for range n {
							p := done[s]
							k := randRow(c.kvHeads * c.dk)
							var v []float32
							if c.latent { // each head's value: the first dv numbers of its key
								for h := range c.kvHeads {
									v = append(v, k[h*c.dk:h*c.dk+c.dv]...)
								}
							} else {
								v = randRow(c.kvHeads * c.dv)
							}
							keys[s] = append(keys[s], round(dt, k))
							vals[s] = append(vals[s], round(dt, v))
							kRows, vRows = append(kRows, k), append(vRows, v)
							qs = append(qs, randRow(c.heads*c.dk))
							bt.Tokens = append(bt.Tokens, 0)
							bt.Pos = append(bt.Pos, int32(p))
							seqOf, pos = append(seqOf, s), append(pos, p)
							done[s]++
						}
					}
					M := len(bt.Tokens)
					flat := func(rows [][]float32, cols int) *Tensor {
						t := &Tensor{rows: M, cols: cols}
						for _, r := range rows {
							t.data = append(t.data, r...)
						}
						return t
					}
					out := &Tensor{rows: M, cols: c.heads * c.dv, data: make([]float32, M*c.heads*c.dv)}
					for i := range out.data {
						out.data[i] = float32(math.NaN())
					}
					var vt backend.Tensor
					if !c.latent {
						vt = flat(vRows, c.kvHeads*c.dv)
					}
					scale := 1 / math.Sqrt(float64(c.dk))
					be.Attention(out, flat(qs, c.heads*c.dk), flat(kRows, c.kvHeads*c.dk), vt, cache, 1, &bt, float32(scale), nil)
					want := refAttention(qs, keys, vals, seqOf, pos, c.heads, c.kvHeads, c.dk, c.dv, scale)
					for r := range M {
						for i, w := range want[r] {
							if g := float64(out.Row(r)[i]); !(math.Abs(g-w) <= 2e-5*(1+math.Abs(w))) {
								t.Fatalf("step %d row %d (seq %d pos %d) value %d: %g, want %g", step, r, seqOf[r], pos[r], i, g, w)
							}
						}
					}
				}
			})
		}
	}
}
