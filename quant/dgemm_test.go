package quant

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// dgemmRef is dgemm by its definition: C[i][j] += alpha·Σ_p A[p][i]·B[p][j]
// over every (i, j) (lower: j ≤ i only), in the order of p.
func dgemmRef(m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, c []float64, ldc int, lower bool) {
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			if lower && j > i {
				continue
			}
			var s float64
			for p := 0; p < k; p++ {
				s += a[p*lda+i] * b[p*ldb+j]
			}
			c[i*ldc+j] += alpha * s
		}
	}
}

func randSlice(rng *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	return x
}

// TestDgemm: the blocked, parallel product (assembly tile where the CPU
// has AVX2 + FMA) against dgemmRef on random data, sizes with edges on
// every side, strides wider than the operands, the lower-triangle and
// triangular-operand forms. Tolerance: 1e-12 of Σ_p |A·B| (float64 sums
// in another order: ~k·2⁻⁵³ relative at worst).
func TestDgemm(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sh := range [][3]int{{1, 1, 1}, {4, 8, 1}, {5, 9, 3}, {67, 131, 300}, {130, 70, 513}, {257, 257, 257}} {
		for _, form := range []string{"full", "lower", "tri"} {
			m, n, k := sh[0], sh[1], sh[2]
			lower, tri := form == "lower", form == "tri"
			if tri {
				k = max(m, n) // A[p][i] = 0 for p < i, B[p][j] = 0 for p < j
			}
			lda, ldb, ldc := m+3, n+5, n+2
			a, b := randSlice(rng, k*lda), randSlice(rng, k*ldb)
			if tri {
				for p := 0; p < k; p++ {
					for i := p + 1; i < lda; i++ {
						a[p*lda+i] = 0
					}
					for j := p + 1; j < ldb; j++ {
						b[p*ldb+j] = 0
					}
				}
			}
			c := randSlice(rng, m*ldc)
			want := append([]float64(nil), c...)
			alpha := -0.75
			dgemm(m, n, k, alpha, a, lda, b, ldb, c, ldc, lower, tri, tri)
			dgemmRef(m, n, k, alpha, a, lda, b, ldb, want, ldc, lower)
			for i := 0; i < m; i++ {
				for j := 0; j < ldc; j++ {
					if j >= n || (lower && j > i) {
						// outside C, or above the diagonal: tiles that cross it
						// may change it, past the row never
						if j >= n && c[i*ldc+j] != want[i*ldc+j] {
							t.Fatalf("%v %s: C[%d][%d] past the columns changed", sh, form, i, j)
						}
						continue
					}
					var mag float64
					for p := 0; p < k; p++ {
						mag += math.Abs(a[p*lda+i] * b[p*ldb+j])
					}
					if d := math.Abs(c[i*ldc+j] - want[i*ldc+j]); d > 1e-12*(mag+1) {
						t.Fatalf("%v %s: C[%d][%d] = %g, want %g", sh, form, i, j, c[i*ldc+j], want[i*ldc+j])
					}
				}
			}
		}
	}
}

// TestDgemmTile: the tile kernel in use (assembly or Go) against the Go
// one on the same tile, apart from fused rounding: within 1e-14·k of
// Σ|a·b|.
func TestDgemmTile(t *testing.T) {
	tr, tc := dgemmTileDims()
	rng := rand.New(rand.NewPCG(5, 6))
	for _, k := range []int{1, 2, 7, 64, 301} {
		lda, ldb, ldc := tr+5, tc+3, tc+5
		a, b := randSlice(rng, k*lda), randSlice(rng, k*ldb)
		c := randSlice(rng, tr*ldc)
		want := append([]float64(nil), c...)
		dgemmTile(c, ldc, a, lda, b, ldb, k, 1.5)
		dgemmTileGo(want, ldc, a, lda, b, ldb, k, 1.5, tr, tc)
		for i := range c {
			if i%ldc >= tc {
				if c[i] != want[i] {
					t.Fatalf("k %d: c[%d] outside the tile changed", k, i)
				}
				continue
			}
			if d := math.Abs(c[i] - want[i]); d > 1e-14*float64(k)*4+1e-14 {
				t.Fatalf("k %d: c[%d] = %g, want %g", k, i, c[i], want[i])
			}
		}
	}
}

// spdRandom returns a random symmetric positive definite n×n matrix, a
// Gram matrix of 2n correlated random rows (like a layer's Hessian).
func spdRandom(rng *rand.Rand, n int) []float64 {
	x := randSlice(rng, 2*n*n)
	for r := 0; r < 2*n; r++ {
		c := rng.NormFloat64()
		for i := 0; i < n; i++ {
			x[r*n+i] += c
		}
	}
	h := make([]float64, n*n)
	dgemmRef(n, n, 2*n, 1, x, n, x, n, h, n, false)
	return h
}

// TestCholeskyBlocked: the blocked factorization against the plain one
// (choleskyPlain) and the blocked inverse of the factor against the plain
// one, on random SPD matrices around the block size; relative error in
// the Frobenius norm ≤ 1e-10 (both are backward stable; the matrices'
// condition numbers are ~10³).
func TestCholeskyBlocked(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, n := range []int{1, 5, 127, 128, 129, 300} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			h := spdRandom(rng, n)
			l, want := append([]float64(nil), h...), append([]float64(nil), h...)
			if err := cholesky(l, n); err != nil {
				t.Fatal(err)
			}
			if err := choleskyPlain(want, n); err != nil {
				t.Fatal(err)
			}
			if e := relDiff(l, want); e > 1e-10 {
				t.Errorf("cholesky: relative difference %.3g", e)
			}
			x := invLowerBlocked(want, n)
			wx := append([]float64(nil), want...)
			invLowerPlain(wx, n)
			if e := relDiff(x, wx); e > 1e-10 {
				t.Errorf("lower inverse: relative difference %.3g", e)
			}
			// not positive definite: an error, not a factor
			bad := append([]float64(nil), h...)
			bad[(n-1)*n+n-1] = -1
			if err := cholesky(bad, n); err == nil {
				t.Error("a matrix with a negative diagonal entry factored")
			}
		})
	}
}

func relDiff(a, b []float64) float64 {
	var d, s float64
	for i := range a {
		d += (a[i] - b[i]) * (a[i] - b[i])
		s += b[i] * b[i]
	}
	return math.Sqrt(d / s)
}

// TestHadamardRowsBlocks: the row-wise butterflies give every column
// exactly what HadamardBlocks64 gives it (the same operations), on random
// data, rows a few blocks long.
func TestHadamardRowsBlocks(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	const rows, cols, b = 3 * 128, 37, 128
	a := randSlice(rng, rows*cols)
	want := append([]float64(nil), a...)
	hadamardRowsBlocks(a, rows, cols, b)
	col := make([]float64, rows)
	for c := 0; c < cols; c++ {
		for r := 0; r < rows; r++ {
			col[r] = want[r*cols+c]
		}
		HadamardBlocks64(col, b)
		for r := 0; r < rows; r++ {
			if a[r*cols+c] != col[r] {
				t.Fatalf("[%d][%d] = %g, HadamardBlocks64 of the column %g", r, c, a[r*cols+c], col[r])
			}
		}
	}
}
