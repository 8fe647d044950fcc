package quant

import (
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/internal/dense"
)

// Compensation gives the weights of one layer group the targets that
// reproduce the full-precision model's outputs best from the quantized
// model's inputs. With W [out, in] a weight of the group, X the inputs the
// quantized model gives the group and X̃ the ones the full-precision model
// gives it (rows are tokens), the least-squares solution of
// min ‖X̃·Wᵀ − X·W′ᵀ‖ is
//
//	W′ = W + W·M,   M = D·(H + λI)⁻¹,   H = XᵀX,  D = (X̃ − X)ᵀX,
//
// λ = damp·mean(diag H) keeping the solve well posed. Since X·W′ᵀ is the
// projection of X̃·Wᵀ onto the span of X, quantizing W′ in the metric of H
// (GPTQ, LDLQ) minimizes the error against the full-precision outputs,
// the error the layers before left in X included: asymmetric calibration,
// as in GPTAQ (Li et al., 2025). When X̃ = X, D = 0 and W′ = W. M depends
// only on the inputs, so it is computed once for all the group's weights.
type Compensation struct {
	in int
	m  []float64 // M, row-major [in, in]
}

// NewCompensation computes M from h and d, H and D up to one common
// factor (row-major [in, in]).
func NewCompensation(h, d []float64, in int, damp float64) (*Compensation, error) {
	if in <= 0 || len(h) != in*in || len(d) != in*in {
		return nil, fmt.Errorf("quant: NewCompensation: %d and %d statistics for %d inputs", len(h), len(d), in)
	}
	if !(damp >= 0) {
		return nil, fmt.Errorf("quant: NewCompensation: damping %g", damp)
	}
	var mean float64
	for i := 0; i < in; i++ {
		mean += h[i*in+i]
	}
	mean /= float64(in)
	if !(mean > 0) || math.IsInf(mean, 0) {
		return nil, fmt.Errorf("quant: NewCompensation: the Hessian has no positive diagonal")
	}
	a := append([]float64(nil), h...)
	for i := 0; i < in; i++ {
		a[i*in+i] += damp * mean
	}
	inv, err := spdInverse(a, in) // (a: the damped copy, factored in place)
	if err != nil {
		return nil, fmt.Errorf("quant: NewCompensation: %w", err)
	}
	m := make([]float64, in*in)
	matMulInto(m, d, inv, in, in, in) // M = D·(H + λI)⁻¹
	return &Compensation{in: in, m: m}, nil
}

// Target returns W′ = W + W·M for the row-major [out, in] weight w.
func (c *Compensation) Target(w []float32, out int) ([]float32, error) {
	in := c.in
	if out <= 0 || len(w) != out*in {
		return nil, fmt.Errorf("quant: Compensation.Target: %d weights for shape [%d, %d]", len(w), out, in)
	}
	// W′ = W + W·M in chunks of rows: the chunk transposed (k-major), then
	// dgemm (on every core) into the chunk's rows in float64
	res := make([]float32, len(w))
	rows := min(out, chunkRows)
	wt := make([]float64, in*rows)
	acc := make([]float64, rows*in)
	for n0 := 0; n0 < out; n0 += rows {
		r := min(rows, out-n0)
		dense.Range(0, r, 8, func(a, b int) {
			for n := n0 + a; n < n0+b; n++ {
				for i, v := range w[n*in : (n+1)*in] {
					wt[i*r+n-n0] = float64(v)
					acc[(n-n0)*in+i] = float64(v)
				}
			}
		})
		dgemm(r, in, in, 1, wt, r, c.m, in, acc, in, false, false, false)
		for i, v := range acc[:r*in] {
			res[n0*in+i] = float32(v)
		}
	}
	return res, nil
}

// axpy64 adds a·x to y.
func axpy64(y []float64, a float64, x []float64) {
	x = x[:len(y)]
	for i, v := range x {
		y[i] += a * v
	}
}
