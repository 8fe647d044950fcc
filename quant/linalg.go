package quant

import (
	"errors"
	"math"
)

// Dense float64 linear algebra for the quantizers: symmetric positive
// definite n×n matrices, row-major.

var errNotPD = errors.New("matrix is not positive definite")

// cholesky overwrites the lower triangle of a with L, a = L·Lᵀ, and zeroes
// the strict upper triangle. It fails when a is not (numerically)
// positive definite.
func cholesky(a []float64, n int) error {
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

// invLower overwrites the lower triangular l (n×n) with its inverse.
func invLower(l []float64, n int) {
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

// spdInverse returns a⁻¹ of a symmetric positive definite a (not
// modified), through its Cholesky factor: a⁻¹ = L⁻ᵀ·L⁻¹.
func spdInverse(a []float64, n int) ([]float64, error) {
	l := append([]float64(nil), a...)
	if err := cholesky(l, n); err != nil {
		return nil, err
	}
	invLower(l, n)
	inv := make([]float64, n*n)
	for i := 0; i < n; i++ {
		for j := 0; j <= i; j++ {
			var s float64
			for k := i; k < n; k++ { // (L⁻ᵀL⁻¹)_ij = Σ_k L⁻¹_ki·L⁻¹_kj, k ≥ max(i, j)
				s += l[k*n+i] * l[k*n+j]
			}
			inv[i*n+j], inv[j*n+i] = s, s
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

// invLowerT returns the inverse X of the lower triangular l (n×n),
// transposed: t[j·n + i] = X[i][j]. Column j of X solves l·x = e_j by
// forward substitution, with contiguous inner products.
func invLowerT(l []float64, n int) []float64 {
	t := make([]float64, n*n)
	for j := 0; j < n; j++ {
		x := t[j*n : (j+1)*n]
		x[j] = 1 / l[j*n+j]
		for i := j + 1; i < n; i++ {
			x[i] = -dot64(l[i*n+j:i*n+i], x[j:i]) / l[i*n+i]
		}
	}
	return t
}
