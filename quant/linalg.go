package quant

import (
	"errors"
	"math"

	"github.com/marlin-llm/marlin/internal/dense"
)

// Dense float64 linear algebra for the quantizers: symmetric positive
// definite n×n matrices, row-major.

var errNotPD = errors.New("matrix is not positive definite")

// cholesky overwrites the lower triangle of a with L, a = L·Lᵀ, and zeroes
// the strict upper triangle. It fails when a is not (numerically)
// positive definite.
//
// Blocked (right-looking, cholBlock columns a step): each step factors its
// diagonal block (choleskyPlain's loops), solves the rows below against
// it, and subtracts their Gram matrix from the rest of the lower triangle
// with dgemm on all cores — n³/3 multiply-adds, nearly all in the tile
// kernel. It agrees with choleskyPlain to rounding (TestCholeskyBlocked).
func cholesky(a []float64, n int) error {
	if n <= cholBlock {
		return choleskyPlain(a, n)
	}
	pt := make([]float64, cholBlock*n)
	for k0 := 0; k0 < n; k0 += cholBlock {
		k1 := min(n, k0+cholBlock)
		kb, rest := k1-k0, n-k1
		if err := cholDiag(a, n, k0, k1); err != nil {
			return err
		}
		if rest == 0 {
			break
		}
		// the panel: row i solves L[i, k0:k1]·L11ᵀ = A[i, k0:k1]
		dense.Range(k1, n, 16, func(i0, i1 int) {
			for i := i0; i < i1; i++ {
				row := a[i*n+k0 : i*n+k1]
				for c := 0; c < kb; c++ {
					lc := a[(k0+c)*n+k0 : (k0+c)*n+k0+c]
					row[c] = (row[c] - dot64(lc, row[:c])) / a[(k0+c)*n+k0+c]
				}
			}
		})
		// A[k1:, k1:] −= P·Pᵀ (lower), P the panel, packed k-major
		p := pt[:kb*rest]
		for i := k1; i < n; i++ {
			for c, v := range a[i*n+k0 : i*n+k1] {
				p[c*rest+i-k1] = v
			}
		}
		dgemm(rest, rest, kb, -1, p, rest, p, rest, a[k1*n+k1:], n, true, false, false)
	}
	for i := 0; i < n; i++ {
		clear(a[i*n+i+1 : (i+1)*n])
	}
	return nil
}

// cholBlock is the columns of a step of the blocked factorizations.
const cholBlock = 128

// cholDiag factors the diagonal block [k0, k1) of a (its lower triangle,
// already updated by the steps before) in place.
func cholDiag(a []float64, n, k0, k1 int) error {
	for j := k0; j < k1; j++ {
		rj := a[j*n+k0 : j*n+j]
		d := a[j*n+j] - dot64(rj, rj)
		if !(d > 0) || math.IsInf(d, 0) {
			return errNotPD
		}
		d = math.Sqrt(d)
		a[j*n+j] = d
		inv := 1 / d
		for i := j + 1; i < k1; i++ {
			a[i*n+j] = (a[i*n+j] - dot64(a[i*n+k0:i*n+j], rj)) * inv
		}
	}
	return nil
}

// choleskyPlain is cholesky column by column (the reference of the
// blocked form, and its form for small matrices).
func choleskyPlain(a []float64, n int) error {
	for j := 0; j < n; j++ {
		rj := a[j*n : j*n+j]
		d := a[j*n+j]
		for _, v := range rj {
			d -= v * v
		}
		if !(d > 0) || math.IsInf(d, 0) {
			return errNotPD
		}
		d = math.Sqrt(d)
		a[j*n+j] = d
		inv := 1 / d
		for i := j + 1; i < n; i++ {
			ri := a[i*n : i*n+j]
			s := a[i*n+j]
			for k, v := range ri {
				s -= v * rj[k]
			}
			a[i*n+j] = s * inv
		}
	}
	for i := 0; i < n; i++ {
		for j := i + 1; j < n; j++ {
			a[i*n+j] = 0
		}
	}
	return nil
}

// invLowerPlain overwrites the lower triangular l (n×n) with its inverse,
// column by column (the reference of invLowerBlocked, and the inverse of
// small blocks).
func invLowerPlain(l []float64, n int) {
	for j := 0; j < n; j++ {
		l[j*n+j] = 1 / l[j*n+j]
		for i := j + 1; i < n; i++ {
			var s float64
			for k := j; k < i; k++ {
				s += l[i*n+k] * l[k*n+j]
			}
			l[i*n+j] = -s / l[i*n+i]
		}
	}
}

// invLowerBlocked returns the inverse X of the lower triangular l (n×n,
// not modified), row-major. Block forward substitution, cholBlock rows a
// step: X's rows r0…r1−1 solve their diagonal block against the right
// side so far (row by row, the columns shared by the cores), then
// dgemm subtracts L[r1:, r0:r1]·X[r0:r1, :r1] from every row below — n³/3
// multiply-adds, nearly all in the tile kernel. It agrees with
// invLowerPlain to rounding (TestCholeskyBlocked).
func invLowerBlocked(l []float64, n int) []float64 {
	x := make([]float64, n*n)
	for i := 0; i < n; i++ {
		x[i*n+i] = 1
	}
	var buf []float64 // L[r1:, r0:r1] k-major
	for r0 := 0; r0 < n; r0 += cholBlock {
		r1 := min(n, r0+cholBlock)
		dense.Range(0, r1, 64, func(j0, j1 int) {
			for i := r0; i < r1; i++ {
				xi := x[i*n : i*n+r1]
				for p := r0; p < i; p++ {
					if v := l[i*n+p]; v != 0 && j0 <= p {
						axpy64(xi[j0:min(j1, p+1)], -v, x[p*n+j0:p*n+min(j1, p+1)])
					}
				}
				inv := 1 / l[i*n+i]
				for j := j0; j < min(j1, i+1); j++ {
					xi[j] *= inv
				}
			}
		})
		if r1 == n {
			break
		}
		if buf == nil {
			buf = make([]float64, (n-r1)*cholBlock)
		}
		at := buf[:(n-r1)*(r1-r0)]
		dense.Transpose(at, l[r1*n+r0:], n-r1, r1-r0, n)
		dgemm(n-r1, r1, r1-r0, -1, at, n-r1, x[r0*n:], n, x[r1*n:], n, false, false, false)
	}
	return x
}

// spdInverse returns a⁻¹ of a symmetric positive definite a through its
// Cholesky factor, which overwrites a: a⁻¹ = L⁻ᵀ·L⁻¹ = XᵀX with X = L⁻¹
// (dgemm of X with itself, the lower triangle, then mirrored).
func spdInverse(a []float64, n int) ([]float64, error) {
	if err := cholesky(a, n); err != nil {
		return nil, err
	}
	x := invLowerBlocked(a, n)
	inv := make([]float64, n*n)
	dgemm(n, n, n, 1, x, n, x, n, inv, n, true, true, true)
	for i := 0; i < n; i++ {
		for j := 0; j < i; j++ {
			inv[j*n+i] = inv[i*n+j]
		}
	}
	return inv, nil
}

// dampedCholesky adds frac·mean(diag a) to the diagonal of a copy of a and
// factors it, multiplying the damping by 10 up to four more times if the
// factorization fails. It returns the factor and the damping fraction
// used.
func dampedCholesky(a []float64, n int, frac float64) ([]float64, float64, error) {
	var mean float64
	for i := 0; i < n; i++ {
		mean += a[i*n+i]
	}
	mean /= float64(n)
	if !(mean > 0) || math.IsInf(mean, 0) {
		return nil, 0, errors.New("Hessian has no positive diagonal")
	}
	for try := 0; try < 5; try++ {
		l := append([]float64(nil), a...)
		for i := 0; i < n; i++ {
			l[i*n+i] += frac * mean
		}
		if err := cholesky(l, n); err == nil {
			return l, frac, nil
		}
		frac *= 10
	}
	return nil, frac, errNotPD
}
