package vkernels

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/backend/cpu/kernels"
)

// Benchmarks, one goroutine, each kernel at representative sizes, per
// implementation:
//
//	go test -bench . -run '^$' ./backend/cpu/vkernels
//
//   - impl=scalar: the backend's code of today (backend/cpu: exp32, the
//     SiLUMul, RMSNorm and softmax loops, copied below; for attention the
//     per-block kernels.MatMulF32 calls of attention.go with values stored
//     transposed), the baseline;
//   - impl=go, impl=avx2, impl=avx512: this package with level forced.
//
// Metrics: ns/op, and GB/s (bytes read + written, from L1/L2: every
// buffer is small and reused) for the element-wise kernels or GFLOP/s
// (2 flops per multiply-add) for attention.

// ---- the backend's scalar code (backend/cpu/exp.go, ops.go, attention.go) ----

func scalarExp32(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > 88.72284:
		return float32(math.Inf(1))
	case x < -103.97208:
		return 0
	}
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693145751953125
		ln2lo = 1.42860682030941723212e-6
	)
	n := float32(math.Floor(float64(x*log2e + 0.5)))
	r := x - n*ln2hi - n*ln2lo
	p := float32(1.0 / 5040)
	p = p*r + 1.0/720
	p = p*r + 1.0/120
	p = p*r + 1.0/24
	p = p*r + 1.0/6
	p = p*r + 0.5
	p = p*r + 1
	p = p*r + 1
	ni := int32(n)
	if ni < -126 {
		p *= math.Float32frombits(uint32(ni+126+127) << 23)
		return p * math.Float32frombits(1<<23)
	}
	if ni > 127 {
		return p * 2 * math.Float32frombits(uint32(ni-1+127)<<23)
	}
	return p * math.Float32frombits(uint32(ni+127)<<23)
}

func scalarSiLUMul(dst, gate, up []float32) {
	for i, x := range gate {
		dst[i] = x / (1 + scalarExp32(-x)) * up[i]
	}
}

func scalarSoftmax(row []float32, scale float32) {
	m := float32(math.Inf(-1))
	for t := range row {
		row[t] *= scale
		m = max(m, row[t])
	}
	var sum float32
	for t, x := range row {
		e := scalarExp32(x - m)
		row[t] = e
		sum += e
	}
	inv := 1 / sum
	for t := range row {
		row[t] *= inv
	}
}

func scalarRMSNorm(out, in, g []float32, eps float32) {
	var ss float64
	for _, v := range in {
		ss += float64(v) * float64(v)
	}
	r := float32(1 / math.Sqrt(ss/float64(len(in))+float64(eps)))
	for i, v := range in {
		out[i] = v * r * g[i]
	}
}

// ---- harness ----

var benchImpls = []struct {
	name  string
	level int // -1: scalar baseline
}{{"scalar", -1}, {"go", levelGo}, {"avx2", levelAVX2}, {"avx512", levelAVX512}}

// eachImpl runs f under a sub-benchmark per implementation (skipping those
// the CPU lacks), with level forced; scalar reports whether the baseline
// is to run.
func eachImpl(b *testing.B, prefix string, f func(b *testing.B, scalar bool)) {
	best := detectLevel()
	defer func() { level = best }()
	for _, im := range benchImpls {
		if im.level > best {
			continue
		}
		b.Run(prefix+"impl="+im.name, func(b *testing.B) {
			level = max(im.level, levelGo)
			f(b, im.level < 0)
		})
	}
}

func gbps(b *testing.B, bytes int) {
	b.ReportMetric(float64(bytes)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GB/s")
}

func gflops(b *testing.B, flops int) {
	b.ReportMetric(float64(flops)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
}

// ---- element-wise ----

func BenchmarkExp(b *testing.B) {
	r := rand.New(rand.NewPCG(1, 1))
	for _, n := range []int{64, 1024, 8192} {
		src, dst := randSigned(r, n, 0, 20), make([]float32, n)
		eachImpl(b, fmt.Sprintf("n=%d/", n), func(b *testing.B, scalar bool) {
			for b.Loop() {
				if scalar {
					for i, x := range src {
						dst[i] = scalarExp32(x)
					}
				} else {
					Exp(dst, src)
				}
			}
			gbps(b, 8*n)
		})
	}
}

func BenchmarkSiLUMul(b *testing.B) {
	r := rand.New(rand.NewPCG(2, 2))
	for _, n := range []int{896, 4864, 8960} { // Qwen2.5-0.5B's intermediate size 4864; hidden sizes
		gate, up, dst := randSigned(r, n, 0, 8), randSigned(r, n, 0, 2), make([]float32, n)
		eachImpl(b, fmt.Sprintf("n=%d/", n), func(b *testing.B, scalar bool) {
			for b.Loop() {
				if scalar {
					scalarSiLUMul(dst, gate, up)
				} else {
					SiLUMul(dst, gate, up)
				}
			}
			gbps(b, 12*n)
		})
	}
}

func BenchmarkSoftmax(b *testing.B) {
	r := rand.New(rand.NewPCG(3, 3))
	for _, n := range []int{17, 64, 256, 1024, 4096} {
		src, x := randSigned(r, n, 0, 10), make([]float32, n)
		eachImpl(b, fmt.Sprintf("n=%d/", n), func(b *testing.B, scalar bool) {
			for b.Loop() {
				copy(x, src)
				if scalar {
					scalarSoftmax(x, 0.125)
				} else {
					SoftmaxScaled(x, 0.125)
				}
			}
			gbps(b, 8*n)
		})
	}
}

func BenchmarkRMSNorm(b *testing.B) {
	r := rand.New(rand.NewPCG(4, 4))
	for _, n := range []int{256, 896, 2048, 4096} {
		x, w, dst := randSigned(r, n, 0, 3), randSigned(r, n, 0.5, 1.5), make([]float32, n)
		eachImpl(b, fmt.Sprintf("n=%d/", n), func(b *testing.B, scalar bool) {
			for b.Loop() {
				if scalar {
					scalarRMSNorm(dst, x, w, 1e-6)
				} else {
					RMSNorm(dst, x, w, 1e-6)
				}
			}
			gbps(b, 12*n)
		})
	}
}

// ---- attention ----

// attnShapes are (g, n, dim): query heads per KV head, positions in the
// block (the backend's BlockSize is 16), head dim.
var attnShapes = []attnCase{
	{1, 16, 64}, {4, 16, 64}, {7, 16, 64}, {8, 16, 64},
	{1, 16, 32}, {4, 16, 32}, {8, 16, 32},
	{2, 16, 128}, {4, 16, 128}, {8, 16, 128},
	{4, 16, 192}, {4, 16, 256}, {8, 16, 512}, {16, 16, 576},
	{4, 64, 64}, {4, 64, 128}, {2, 64, 32},
}

func BenchmarkBlockScores(b *testing.B) {
	r := rand.New(rand.NewPCG(5, 5))
	for _, c := range attnShapes {
		g, n, dim := c.g, c.n, c.dim
		q, keys := randSigned(r, g*dim, 0, 1), randSigned(r, n*dim, 0, 1)
		kt := make([]float32, dim*n)
		for t := range n {
			for d := range dim {
				kt[d*n+t] = keys[t*dim+d]
			}
		}
		const S = 256 // score row stride, as for a sequence of ≤ 256 positions
		sc, tmp := make([]float32, g*S), make([]float32, g*n)
		eachImpl(b, fmt.Sprintf("g=%d/n=%d/dim=%d/", g, n, dim), func(b *testing.B, scalar bool) {
			for b.Loop() {
				if scalar { // attention.go: one MatMulF32 per block, then copy rows
					kernels.MatMulF32(tmp, n, q, g, dim, keys, 0, n)
					for h := range g {
						copy(sc[h*S:h*S+n], tmp[h*n:(h+1)*n])
					}
				} else {
					BlockScores(sc, S, q, g, keys, n, dim)
				}
			}
			gflops(b, 2*g*n*dim)
		})
		eachImpl(b, fmt.Sprintf("T/g=%d/n=%d/dim=%d/", g, n, dim), func(b *testing.B, scalar bool) {
			if scalar {
				b.Skip("same baseline as above")
			}
			for b.Loop() {
				BlockScoresT(sc, S, q, g, kt, n, n, dim)
			}
			gflops(b, 2*g*n*dim)
		})
	}
}

func BenchmarkBlockValues(b *testing.B) {
	r := rand.New(rand.NewPCG(6, 6))
	for _, c := range attnShapes {
		g, n, dim := c.g, c.n, c.dim
		const S = 256
		p, vals := randSigned(r, g*S, 0, 1), randSigned(r, n*dim, 0, 1)
		vt := make([]float32, dim*n) // the backend's layout: [dim][slot]
		for t := range n {
			for d := range dim {
				vt[d*n+t] = vals[t*dim+d]
			}
		}
		out, pb, tmp := make([]float32, g*dim), make([]float32, g*n), make([]float32, g*dim)
		eachImpl(b, fmt.Sprintf("g=%d/n=%d/dim=%d/", g, n, dim), func(b *testing.B, scalar bool) {
			for b.Loop() {
				if scalar { // attention.go: gather p, one MatMulF32 per block, add
					for h := range g {
						copy(pb[h*n:(h+1)*n], p[h*S:h*S+n])
					}
					kernels.MatMulF32(tmp, dim, pb, g, n, vt, 0, dim)
					for i, x := range tmp {
						out[i] += x
					}
				} else {
					BlockValues(out, p, S, g, vals, dim, n, dim)
				}
			}
			gflops(b, 2*g*n*dim)
		})
	}
}

// BenchmarkAttendDecode is one decode row's attention for one KV head and
// its g query heads over n cached positions in blocks of 16 slots (a
// shuffled block table over a cache of 4·n slots, so blocks are not
// adjacent): impl=scalar is attention.go's attend of today (keys
// [slot][dim], values [dim][slot], MatMulF32 per block, scalar softmax);
// the others run BlockScores, SoftmaxScaled and BlockValues (values
// [slot][dim]). GFLOP/s counts 4·g·n·dim (scores and values).
func BenchmarkAttendDecode(b *testing.B) {
	const BS = 16
	r := rand.New(rand.NewPCG(7, 7))
	for _, c := range []attnCase{{1, 512, 64}, {4, 64, 64}, {4, 512, 64}, {7, 512, 64}, {2, 512, 128}, {4, 2048, 128}, {8, 512, 256}} {
		g, n, dim := c.g, c.n, c.dim
		nb := (n + BS - 1) / BS
		cacheBlocks := 4 * nb
		keys := randSigned(r, cacheBlocks*BS*dim, 0, 1)
		vals := randSigned(r, cacheBlocks*BS*dim, 0, 1) // [block][slot][dim]
		valsT := make([]float32, len(vals))             // [block][dim][slot]
		for blk := range cacheBlocks {
			for s := range BS {
				for d := range dim {
					valsT[blk*BS*dim+d*BS+s] = vals[blk*BS*dim+s*dim+d]
				}
			}
		}
		table := r.Perm(cacheBlocks)[:nb]
		q := randSigned(r, g*dim, 0, 1)
		stride := nb * BS
		scores, out := make([]float32, g*stride), make([]float32, g*dim)
		tmp, pb := make([]float32, g*max(BS, dim)), make([]float32, g*BS)
		scale := float32(1 / math.Sqrt(float64(dim)))
		eachImpl(b, fmt.Sprintf("g=%d/n=%d/dim=%d/", g, n, dim), func(b *testing.B, scalar bool) {
			for b.Loop() {
				if scalar {
					for bi, blk := range table {
						kernels.MatMulF32(tmp, BS, q, g, dim, keys[blk*BS*dim:(blk+1)*BS*dim], 0, BS)
						for h := range g {
							copy(scores[h*stride+bi*BS:h*stride+(bi+1)*BS], tmp[h*BS:(h+1)*BS])
						}
					}
					for h := range g {
						scalarSoftmax(scores[h*stride:h*stride+n], scale)
						clear(scores[h*stride+n : (h+1)*stride])
					}
					clear(out)
					for bi, blk := range table {
						for h := range g {
							copy(pb[h*BS:(h+1)*BS], scores[h*stride+bi*BS:h*stride+(bi+1)*BS])
						}
						kernels.MatMulF32(tmp, dim, pb, g, BS, valsT[blk*BS*dim:(blk+1)*BS*dim], 0, dim)
						for i, x := range tmp[:g*dim] {
							out[i] += x
						}
					}
					continue
				}
				for bi, blk := range table {
					m := min(BS, n-bi*BS)
					BlockScores(scores[bi*BS:], stride, q, g, keys[blk*BS*dim:], m, dim)
				}
				for h := range g {
					SoftmaxScaled(scores[h*stride:h*stride+n], scale)
				}
				clear(out)
				for bi, blk := range table {
					m := min(BS, n-bi*BS)
					BlockValues(out, scores[bi*BS:], stride, g, vals[blk*BS*dim:], dim, m, dim)
				}
			}
			gflops(b, 4*g*n*dim)
		})
	}
}
