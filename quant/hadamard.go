package quant

import (
	"fmt"
	"math"
	"math/rand/v2"

	"github.com/marlin-llm/marlin/internal/dense"
)

// The Walsh–Hadamard transform of Sylvester (natural) order:
// H_1 = [1], H_2n = [[H_n, H_n], [H_n, −H_n]], so H[i][j] = (−1)^popcount(i&j).
// H is symmetric and H·H = n·I; H/√n is orthonormal and its own inverse.

// FWHT replaces x (length a power of two) by x·H, unnormalized: n·log2(n)
// additions. It panics when len(x) is not a power of two.
func FWHT(x []float32) {
	n := len(x)
	if n&(n-1) != 0 {
		panic(fmt.Sprintf("quant: FWHT of length %d (not a power of two)", n))
	}
	for h := 1; h < n; h <<= 1 {
		for i := 0; i < n; i += 2 * h {
			a, b := x[i:i+h], x[i+h:i+2*h]
			for j := range a {
				u, v := a[j], b[j]
				a[j], b[j] = u+v, u-v
			}
		}
	}
}

// FWHT64 is FWHT in float64.
func FWHT64(x []float64) {
	n := len(x)
	if n&(n-1) != 0 {
		panic(fmt.Sprintf("quant: FWHT64 of length %d (not a power of two)", n))
	}
	for h := 1; h < n; h <<= 1 {
		for i := 0; i < n; i += 2 * h {
			a, b := x[i:i+h], x[i+h:i+2*h]
			for j := range a {
				u, v := a[j], b[j]
				a[j], b[j] = u+v, u-v
			}
		}
	}
}

// HadamardBlocks applies the orthonormal transform H_b/√b to each
// consecutive block of b values of x (b a power of two dividing len(x)):
// the block-diagonal Hadamard rotation EXL3 uses with b = 128.
func HadamardBlocks(x []float32, b int) {
	if b <= 0 || b&(b-1) != 0 || len(x)%b != 0 {
		panic(fmt.Sprintf("quant: HadamardBlocks of %d values in blocks of %d", len(x), b))
	}
	s := float32(1 / math.Sqrt(float64(b)))
	for i := 0; i < len(x); i += b {
		blk := x[i : i+b]
		FWHT(blk)
		for j := range blk {
			blk[j] *= s
		}
	}
}

// HadamardBlocks64 is HadamardBlocks in float64.
func HadamardBlocks64(x []float64, b int) {
	if b <= 0 || b&(b-1) != 0 || len(x)%b != 0 {
		panic(fmt.Sprintf("quant: HadamardBlocks64 of %d values in blocks of %d", len(x), b))
	}
	s := 1 / math.Sqrt(float64(b))
	for i := 0; i < len(x); i += b {
		blk := x[i : i+b]
		FWHT64(blk)
		for j := range blk {
			blk[j] *= s
		}
	}
}

// RandomSigns returns n values ±1 drawn from a generator seeded with seed
// (the same seed always gives the same signs).
func RandomSigns(n int, seed uint64) []float64 {
	r := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	s := make([]float64, n)
	for i := range s {
		if r.Uint64()&1 == 0 {
			s[i] = 1
		} else {
			s[i] = -1
		}
	}
	return s
}

// hadamardRowsBlocks applies H_b/√b along the rows of the row-major
// [rows, cols] matrix a: for each column, each block of b consecutive rows
// is rotated (a ← (I⊗H)·a, b dividing rows). FWHT64's butterflies run on
// whole rows (the same operations on each column, so the same values as
// HadamardBlocks64 on every column), the blocks on every core.
func hadamardRowsBlocks(a []float64, rows, cols, b int) {
	if b <= 0 || b&(b-1) != 0 || rows%b != 0 {
		panic(fmt.Sprintf("quant: hadamardRowsBlocks of %d rows in blocks of %d", rows, b))
	}
	s := 1 / math.Sqrt(float64(b))
	dense.Range(0, rows/b, 1, func(b0, b1 int) {
		for r0 := b0 * b; r0 < b1*b; r0 += b {
			for h := 1; h < b; h <<= 1 {
				for i := r0; i < r0+b; i += 2 * h {
					for j := i; j < i+h; j++ {
						x, y := a[j*cols:(j+1)*cols], a[(j+h)*cols:(j+h+1)*cols]
						for c, u := range x {
							v := y[c]
							x[c], y[c] = u+v, u-v
						}
					}
				}
			}
			blk := a[r0*cols : (r0+b)*cols]
			for i := range blk {
				blk[i] *= s
			}
		}
	})
}

// hadamardColsBlocks applies H_b/√b along each row of the row-major
// [rows, cols] matrix a (a ← a·(I⊗H), b dividing cols), the rows on every
// core.
func hadamardColsBlocks(a []float64, rows, cols, b int) {
	dense.Range(0, rows, 16, func(r0, r1 int) {
		for r := r0; r < r1; r++ {
			HadamardBlocks64(a[r*cols:(r+1)*cols], b)
		}
	})
}
