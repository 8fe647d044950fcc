package vkernels

import (
	"math"
	"math/rand/v2"
	"testing"
)

// Attention kernels against float64 references. Tolerance: a float32 sum
// of k products, however it is split into chains, is within
// (k + 6)·2⁻²⁴·Σ|products| of the exact sum (γ_k ≈ k·2⁻²⁴ for one chain
// in the worst case, one more rounding for the product, a few for
// combining chains); k = dim for scores, n + 1 (the initial out value
// counts) for values. Yet a wrong, missing or doubled term moves a result
// by about Σ|products|/k, more than 40 times the tolerance for every k
// tested here (k ≤ 576), so indexing errors cannot pass.

type attnCase struct{ g, n, dim int }

var (
	attnDims = []int{1, 7, 8, 15, 16, 17, 24, 32, 33, 48, 64, 100, 128, 192, 256, 512, 576}
	attnNs   = []int{1, 2, 3, 4, 5, 7, 8, 9, 15, 16, 17, 20, 31, 33, 64}
	attnGs   = []int{1, 2, 3, 4, 5, 7, 8, 16}
)

func forCases(f func(c attnCase)) {
	for _, dim := range attnDims {
		for _, n := range attnNs {
			for _, g := range attnGs {
				if g*n*dim > 300_000 && g != 16 {
					continue // keep the test fast: the large shapes run for g = 16 (MLA) only
				}
				f(attnCase{g, n, dim})
			}
		}
	}
}

// poisoned returns n poisoned elements.
func poisoned(n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = math.Float32frombits(poison)
	}
	return s
}

// checkRows fails unless m (rows of stride ld, row length cols) holds
// want within the tolerance outside of which only poison may remain.
func checkRows(t *testing.T, c attnCase, what string, m []float32, ld, rows, cols int, want, abs []float64, k int) {
	t.Helper()
	for i, v := range m {
		r, col := i/ld, i%ld
		if r >= rows || col >= cols {
			if math.Float32bits(v) != poison {
				t.Fatalf("%v: %s[%d] (row %d, col %d, outside the %d×%d result) written: %g", c, what, i, r, col, rows, cols, v)
			}
			continue
		}
		j := r*cols + col
		tol := float64(k+6) * 0x1p-24 * abs[j]
		if d := math.Abs(float64(v) - want[j]); !(d <= tol) {
			t.Fatalf("%v: %s[%d][%d] = %g, want %g (err %.3g, tol %.3g)", c, what, r, col, v, want[j], d, tol)
		}
	}
}

func TestBlockScores(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(21, 22))
		forCases(func(c attnCase) {
			q := randSigned(r, c.g*c.dim, 0.1, 2)
			keys := randSigned(r, c.n*c.dim, 0.1, 2)
			want, abs := make([]float64, c.g*c.n), make([]float64, c.g*c.n)
			for h := range c.g {
				for tt := range c.n {
					for d := range c.dim {
						x := float64(q[h*c.dim+d]) * float64(keys[tt*c.dim+d])
						want[h*c.n+tt] += x
						abs[h*c.n+tt] += math.Abs(x)
					}
				}
			}
			lds := c.n + 3
			sc := poisoned(c.g * lds)
			BlockScores(sc, lds, q, c.g, keys, c.n, c.dim)
			checkRows(t, c, "scores", sc, lds, c.g, c.n, want, abs, c.dim)
			// transposed keys, slot stride n and n+5
			for _, ldk := range []int{c.n, c.n + 5} {
				kt := make([]float32, c.dim*ldk)
				for tt := range c.n {
					for d := range c.dim {
						kt[d*ldk+tt] = keys[tt*c.dim+d]
					}
				}
				sc := poisoned(c.g * lds)
				BlockScoresT(sc, lds, q, c.g, kt[:(c.dim-1)*ldk+c.n], ldk, c.n, c.dim)
				checkRows(t, c, "scoresT", sc, lds, c.g, c.n, want, abs, c.dim)
			}
		})
	})
}

func TestBlockValues(t *testing.T) {
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(23, 24))
		forCases(func(c attnCase) {
			ldp := c.n + 2
			p := randSigned(r, c.g*ldp, 0.01, 1)
			for _, ldv := range []int{c.dim, c.dim + 3} {
				vals := randSigned(r, (c.n-1)*ldv+c.dim, 0.1, 2)
				out0 := randSigned(r, c.g*c.dim, 0.1, 1)
				want, abs := make([]float64, c.g*c.dim), make([]float64, c.g*c.dim)
				for h := range c.g {
					for d := range c.dim {
						s, a := float64(out0[h*c.dim+d]), math.Abs(float64(out0[h*c.dim+d]))
						for tt := range c.n {
							x := float64(p[h*ldp+tt]) * float64(vals[tt*ldv+d])
							s += x
							a += math.Abs(x)
						}
						want[h*c.dim+d], abs[h*c.dim+d] = s, a
					}
				}
				// out inside a poisoned buffer: 5 guard elements each side
				buf := poisoned(c.g*c.dim + 10)
				out := buf[5 : 5+c.g*c.dim]
				copy(out, out0)
				BlockValues(out, p, ldp, c.g, vals, ldv, c.n, c.dim)
				for i := range 5 {
					if math.Float32bits(buf[i]) != poison || math.Float32bits(buf[len(buf)-1-i]) != poison {
						t.Fatalf("%v: guard around out written", c)
					}
				}
				checkRows(t, c, "out", out, c.dim, c.g, c.dim, want, abs, c.n+1)
			}
		})
	})
}

// TestAttentionBlocks runs the documented decode pattern (scores block by
// block into one row per head, softmax, values block by block) over a
// sequence spread across blocks of 16 slots, against float64 attention.
func TestAttentionBlocks(t *testing.T) {
	const BS = 16
	eachLevel(t, func(t *testing.T) {
		r := rand.New(rand.NewPCG(25, 26))
		for _, c := range []attnCase{{1, 1, 64}, {4, 37, 64}, {7, 16, 32}, {2, 100, 128}, {8, 65, 576}} {
			g, n, dim := c.g, c.n, c.dim
			nb := (n + BS - 1) / BS
			q := randSigned(r, g*dim, 0.05, 1)
			keys := randSigned(r, nb*BS*dim, 0.05, 1) // [block][slot][dim]
			vals := randSigned(r, nb*BS*dim, 0.05, 1)
			scale := float32(1 / math.Sqrt(float64(dim)))
			S := nb * BS
			sc := make([]float32, g*S)
			for b := range nb {
				m := min(BS, n-b*BS)
				BlockScores(sc[b*BS:], S, q, g, keys[b*BS*dim:], m, dim)
			}
			for h := range g {
				SoftmaxScaled(sc[h*S:h*S+n], scale)
			}
			out := make([]float32, g*dim)
			for b := range nb {
				m := min(BS, n-b*BS)
				BlockValues(out, sc[b*BS:], S, g, vals[b*BS*dim:], dim, m, dim)
			}
			for h := range g {
				s := make([]float64, n)
				mx := math.Inf(-1)
				for tt := range n {
					for d := range dim {
						s[tt] += float64(q[h*dim+d]) * float64(keys[tt*dim+d])
					}
					s[tt] *= float64(scale)
					mx = max(mx, s[tt])
				}
				var sum float64
				for tt := range s {
					s[tt] = math.Exp(s[tt] - mx)
					sum += s[tt]
				}
				for d := range dim {
					var o float64
					for tt := range n {
						o += s[tt] / sum * float64(vals[tt*dim+d])
					}
					if e := math.Abs(float64(out[h*dim+d]) - o); e > 2e-6 {
						t.Fatalf("%v: out[%d][%d] = %g, want %g", c, h, d, out[h*dim+d], o)
					}
				}
			}
		}
	})
}
