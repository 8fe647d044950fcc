package quant

import (
	"fmt"

	"github.com/marlin-llm/marlin/dtype"
)

// DequantizeRow writes row `row` (one output feature) of the weight matrix
// to dst[:In], as float32. It is the reference every kernel is tested
// against:
//
//	Dense   the stored value, converted exactly
//	GPTQ    float32(q − z) · scale[g][row]     (g = g_idx[k] or k/Group)
//	FP8     e4m3(q) · scale[row]
//	FP4     e2m1(q) · scale[row][k/Group]      (fp16 scale)
//	MXFP4   e2m1(q) · 2^(e−127)                (e8m0 scale per 32)
//	NVFP4   float32(e2m1(q) · e4m3(s)) · GlobalScale   (s per 16; the
//	        inner product is exact, so there is a single rounding)
//	EXL3    row n of diag(suh)·H·Ŵ·H·diag(svh) (see Format EXL3), computed
//	        in float64 from the decoded trellis tiles
//
// It panics if row is out of range or dst is shorter than In; the weight
// should have passed Validate.
func (w *Weight) DequantizeRow(dst []float32, row int) {
	if row < 0 || row >= w.Out {
		panic(fmt.Sprintf("quant: %s: DequantizeRow: row %d out of range [0, %d)", w.Name, row, w.Out))
	}
	in := w.In
	dst = dst[:in]
	switch w.Format {
	case Dense:
		switch w.DType {
		case dtype.F32:
			for k := range dst {
				dst[k] = f32At(w.Data, row*in+k)
			}
		case dtype.F16:
			for k := range dst {
				dst[k] = dtype.F16ToF32(u16At(w.Data, row*in+k))
			}
		case dtype.BF16:
			for k := range dst {
				dst[k] = dtype.BF16ToF32(u16At(w.Data, row*in+k))
			}
		default:
			panic(fmt.Sprintf("quant: %s: dense dtype %v", w.Name, w.DType))
		}
	case GPTQ:
		for k := range dst {
			g := w.group(k)
			s := dtype.F16ToF32(u16At(w.Scales, g*w.Out+row))
			dst[k] = float32(int32(w.gptqQ(row, k))-w.gptqZero(g, row)) * s
		}
	case FP8:
		s := f32At(w.Scales, row)
		for k := range dst {
			dst[k] = dtype.E4M3ToF32(w.Data[row*in+k]) * s
		}
	case FP4, MXFP4:
		for k := range dst {
			dst[k] = E2M1Value(w.nibble(row, k)) * w.scaleAt(row, k/w.Group)
		}
	case NVFP4:
		for k := range dst {
			dst[k] = E2M1Value(w.nibble(row, k)) * w.scaleAt(row, k/16) * w.GlobalScale
		}
	case EXL3:
		w.exl3Row(dst, row)
	default:
		panic(fmt.Sprintf("quant: %s: unknown format %v", w.Name, w.Format))
	}
}
