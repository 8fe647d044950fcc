package quant

import (
	"math"
	"math/rand/v2"
	"testing"
)

// gaussSolve solves a·x = b for x (a n×n, b n×m, row-major) by Gaussian
// elimination with partial pivoting: a reference that shares nothing with
// the Cholesky route of NewCompensation.
func gaussSolve(a, b []float64, n, m int) []float64 {
	a, b = append([]float64(nil), a...), append([]float64(nil), b...)
	for c := 0; c < n; c++ {
		p := c
		for r := c + 1; r < n; r++ {
			if math.Abs(a[r*n+c]) > math.Abs(a[p*n+c]) {
				p = r
			}
		}
		for k := 0; k < n; k++ {
			a[c*n+k], a[p*n+k] = a[p*n+k], a[c*n+k]
		}
		for k := 0; k < m; k++ {
			b[c*m+k], b[p*m+k] = b[p*m+k], b[c*m+k]
		}
		for r := 0; r < n; r++ {
			if r == c {
				continue
			}
			f := a[r*n+c] / a[c*n+c]
			for k := c; k < n; k++ {
				a[r*n+k] -= f * a[c*n+k]
			}
			for k := 0; k < m; k++ {
				b[r*m+k] -= f * b[c*m+k]
			}
		}
	}
	for r := 0; r < n; r++ {
		for k := 0; k < m; k++ {
			b[r*m+k] /= a[r*n+r]
		}
	}
	return b
}

// TestCompensation: W′ against the normal equations solved another
// way, (H + λI)·W′ᵀ = (X̃ᵀX + λI)ᵀ·Wᵀ, on random data; with almost no
// damping W′ is the least-squares fit (the residual is orthogonal to X's
// columns and no larger than W's); with X̃ = X, W′ = W exactly.
func TestCompensation(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const out, in, rows = 7, 13, 200
	w := make([]float32, out*in)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	xf := make([]float64, rows*in) // X̃
	x := make([]float64, rows*in)  // X = X̃ + noise
	for i := range xf {
		xf[i] = rng.NormFloat64() + 0.3
		x[i] = xf[i] + 0.2*rng.NormFloat64()
	}
	h, d, c := make([]float64, in*in), make([]float64, in*in), make([]float64, in*in)
	for r := 0; r < rows; r++ {
		for i := 0; i < in; i++ {
			for j := 0; j < in; j++ {
				h[i*in+j] += x[r*in+i] * x[r*in+j]
				d[i*in+j] += (xf[r*in+i] - x[r*in+i]) * x[r*in+j]
				c[i*in+j] += x[r*in+i] * xf[r*in+j] // (X̃ᵀX)ᵀ = XᵀX̃
			}
		}
	}
	var mean float64
	for i := 0; i < in; i++ {
		mean += h[i*in+i] / in
	}
	for _, damp := range []float64{0.01, 1e-9} {
		comp, err := NewCompensation(h, d, in, damp)
		if err != nil {
			t.Fatal(err)
		}
		got, err := comp.Target(w, out)
		if err != nil {
			t.Fatal(err)
		}
		a := append([]float64(nil), h...)
		rhs := make([]float64, in*out) // (XᵀX̃ + λI)·Wᵀ
		for i := 0; i < in; i++ {
			a[i*in+i] += damp * mean
			for n := 0; n < out; n++ {
				s := damp * mean * float64(w[n*in+i])
				for k := 0; k < in; k++ {
					s += c[i*in+k] * float64(w[n*in+k])
				}
				rhs[i*out+n] = s
			}
		}
		want := gaussSolve(a, rhs, in, out) // W′ᵀ
		// float32 results of a float64 solve: ~1e-7 relative, 1e-5 allowed
		for n := 0; n < out; n++ {
			for i := 0; i < in; i++ {
				g, wv := float64(got[n*in+i]), want[i*out+n]
				if math.Abs(g-wv) > 1e-5*(1+math.Abs(wv)) {
					t.Fatalf("damp %g: W′[%d, %d] = %g, want %g", damp, n, i, g, wv)
				}
			}
		}
		if damp > 1e-6 {
			continue
		}
		// least squares: Xᵀ·(X̃·Wᵀ − X·W′ᵀ) ≈ 0, and no worse than W
		var resid, base float64
		grad := make([]float64, in*out)
		for r := 0; r < rows; r++ {
			for n := 0; n < out; n++ {
				var yf, yq, y0 float64
				for i := 0; i < in; i++ {
					yf += xf[r*in+i] * float64(w[n*in+i])
					yq += x[r*in+i] * float64(got[n*in+i])
					y0 += x[r*in+i] * float64(w[n*in+i])
				}
				resid += (yf - yq) * (yf - yq)
				base += (yf - y0) * (yf - y0)
				for i := 0; i < in; i++ {
					grad[i*out+n] += x[r*in+i] * (yf - yq)
				}
			}
		}
		if !(resid < base) {
			t.Errorf("residual %g, not below W's %g", resid, base)
		}
		for i, g := range grad {
			if math.Abs(g) > 1e-3*math.Sqrt(resid*mean*rows) {
				t.Fatalf("gradient [%d] = %g: W′ is not the least-squares fit", i, g)
			}
		}
	}
	comp, err := NewCompensation(h, make([]float64, in*in), in, 0.01)
	if err != nil {
		t.Fatal(err)
	}
	same, err := comp.Target(w, out)
	if err != nil {
		t.Fatal(err)
	}
	for i := range w {
		if same[i] != w[i] {
			t.Fatalf("D = 0: W′[%d] = %g, want W's %g", i, same[i], w[i])
		}
	}
	for _, bad := range []struct {
		h, d []float64
		damp float64
	}{{h[:in], d, 0.01}, {h, d[:in], 0.01}, {make([]float64, in*in), d, 0.01}, {h, d, math.NaN()}} {
		if _, err := NewCompensation(bad.h, bad.d, in, bad.damp); err == nil {
			t.Errorf("no error for bad statistics (len %d, %d, damp %g)", len(bad.h), len(bad.d), bad.damp)
		}
	}
}
