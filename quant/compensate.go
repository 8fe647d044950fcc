package quant

import (
	"fmt"
	"math"
)

// CompensateTarget returns the weight that a layer's quantized-model
// inputs should be multiplied by to reproduce its full-precision outputs
// best. With W [out, in], X the inputs the quantized model gives the layer
// and X̃ the ones the full-precision model gives it (rows are tokens), the
// least-squares solution of min ‖X̃·Wᵀ − X·W′ᵀ‖ is
//
//	W′ = W + W·D·(H + λI)⁻¹,   H = XᵀX,  D = (X̃ − X)ᵀX,
//
// λ = damp·mean(diag H) keeping the solve well posed. h and d are H and D
// up to one common factor (row-major [in, in]). Since X·W′ᵀ is the
// projection of X̃·Wᵀ onto the span of X, quantizing W′ in the metric of H
// (GPTQ, LDLQ) minimizes the error against the full-precision outputs,
// the error the layers before left in X included: asymmetric calibration,
// as in GPTAQ (Li et al., 2025). When X̃ = X, D = 0 and W′ = W.
func CompensateTarget(w []float32, out, in int, h, d []float64, damp float64) ([]float32, error) {
	if out <= 0 || in <= 0 || len(w) != out*in || len(h) != in*in || len(d) != in*in {
		return nil, fmt.Errorf("quant: CompensateTarget: %d weights, %d and %d statistics for shape [%d, %d]", len(w), len(h), len(d), out, in)
	}
	if !(damp >= 0) {
		return nil, fmt.Errorf("quant: CompensateTarget: damping %g", damp)
	}
	var mean float64
	for i := 0; i < in; i++ {
		mean += h[i*in+i]
	}
	mean /= float64(in)
	if !(mean > 0) || math.IsInf(mean, 0) {
		return nil, fmt.Errorf("quant: CompensateTarget: the Hessian has no positive diagonal")
	}
	a := append([]float64(nil), h...)
	for i := 0; i < in; i++ {
		a[i*in+i] += damp * mean
	}
	inv, err := spdInverse(a, in)
	if err != nil {
		return nil, fmt.Errorf("quant: CompensateTarget: %w", err)
	}
	// M = D·(H + λI)⁻¹, then each row w′ = w + w·M
	m := make([]float64, in*in)
	for i := 0; i < in; i++ {
		mr := m[i*in : (i+1)*in]
		for k, v := range d[i*in : (i+1)*in] {
			if v != 0 {
				axpy64(mr, v, inv[k*in:(k+1)*in])
			}
		}
	}
	res := make([]float32, len(w))
	acc := make([]float64, in)
	for n := 0; n < out; n++ {
		row := w[n*in : (n+1)*in]
		for j, v := range row {
			acc[j] = float64(v)
		}
		for i, v := range row {
			if v != 0 {
				axpy64(acc, float64(v), m[i*in:(i+1)*in])
			}
		}
		for j, v := range acc {
			res[n*in+j] = float32(v)
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
