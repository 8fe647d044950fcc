package quant

import (
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/dtype"
)

// Validate checks that w is self-consistent: a known format, positive
// shape, parameters the format allows (GPTQ bits ∈ {2,3,4,8}, a group size
// dividing In, …) and byte slices of exactly the lengths the shape implies,
// g_idx entries in range. Errors name w.Name and the checkpoint tensor at
// fault (as Tensors names it). It never panics on a non-nil w and does not
// read the bulk data except g_idx.
func (w *Weight) Validate() error {
	if w == nil {
		return fmt.Errorf("quant: nil weight")
	}
	name := w.Name
	if w.Out <= 0 || w.In <= 0 {
		return fmt.Errorf("quant: %s: bad shape [%d, %d] (Out, In must be positive)", name, w.Out, w.In)
	}
	if int64(w.Out)*int64(w.In) > 1<<40 {
		return fmt.Errorf("quant: %s: shape [%d, %d] too large", name, w.Out, w.In)
	}
	wantLen := func(tensor string, got, want int, what string) error {
		if got != want {
			return fmt.Errorf("quant: %s%s: %d bytes, want %d (%s)", name, tensor, got, want, what)
		}
		return nil
	}
	switch w.Format {
	case Dense:
		sz := 0
		switch w.DType {
		case dtype.F32, dtype.F16, dtype.BF16:
			sz = w.DType.Size()
		default:
			return fmt.Errorf("quant: %s.weight: dense dtype %v not supported (want F32, F16 or BF16)", name, w.DType)
		}
		return wantLen(".weight", len(w.Data), w.Out*w.In*sz, fmt.Sprintf("%v [%d, %d]", w.DType, w.Out, w.In))
	case GPTQ:
		if w.Bits != 2 && w.Bits != 3 && w.Bits != 4 && w.Bits != 8 {
			return fmt.Errorf("quant: %s: GPTQ bits %d not supported (want 2, 3, 4 or 8)", name, w.Bits)
		}
		if w.Group <= 0 || w.Group > w.In || w.In%w.Group != 0 {
			return fmt.Errorf("quant: %s.scales: group size %d does not divide In = %d", name, w.Group, w.In)
		}
		if w.In*w.Bits%32 != 0 {
			return fmt.Errorf("quant: %s.qweight: In = %d is not a multiple of %d, as %d-bit packing needs", name, w.In, 32/gcd(32, w.Bits), w.Bits)
		}
		if w.ZeroOffset != 0 && w.ZeroOffset != 1 {
			return fmt.Errorf("quant: %s.qzeros: zero offset %d (want 1 for gptq v1 or 0 for gptq_v2)", name, w.ZeroOffset)
		}
		groups := w.In / w.Group
		qrows, zcols := gptqDims(w.In, w.Out, w.Bits)
		if err := wantLen(".qweight", len(w.Data), 4*qrows*w.Out, fmt.Sprintf("int32 [%d, %d]", qrows, w.Out)); err != nil {
			return err
		}
		if err := wantLen(".scales", len(w.Scales), 2*groups*w.Out, fmt.Sprintf("fp16 [%d, %d]", groups, w.Out)); err != nil {
			return err
		}
		if w.Zeros == nil {
			if !w.Sym {
				return fmt.Errorf("quant: %s.qzeros: missing (only symmetric weights may omit zero points)", name)
			}
		} else if err := wantLen(".qzeros", len(w.Zeros), 4*groups*zcols, fmt.Sprintf("int32 [%d, %d]", groups, zcols)); err != nil {
			return err
		}
		if w.GIdx != nil {
			if len(w.GIdx) != w.In {
				return fmt.Errorf("quant: %s.g_idx: %d entries, want In = %d", name, len(w.GIdx), w.In)
			}
			for i, g := range w.GIdx {
				if g < 0 || int(g) >= groups {
					return fmt.Errorf("quant: %s.g_idx: entry %d is %d, out of range [0, %d)", name, i, g, groups)
				}
			}
		}
		return nil
	case FP8:
		if w.Group != w.In {
			return fmt.Errorf("quant: %s.weight_scale: FP8 has one scale per output row (Group = In = %d), not group %d", name, w.In, w.Group)
		}
		if err := wantLen(".weight", len(w.Data), w.Out*w.In, fmt.Sprintf("F8_E4M3 [%d, %d]", w.Out, w.In)); err != nil {
			return err
		}
		return wantLen(".weight_scale", len(w.Scales), 4*w.Out, fmt.Sprintf("F32 [%d, 1]", w.Out))
	case FP4, MXFP4, NVFP4:
		want := map[Format]int{MXFP4: 32, NVFP4: 16}[w.Format]
		if want != 0 && w.Group != want {
			return fmt.Errorf("quant: %s.weight_scale: %v uses blocks of %d, not group %d", name, w.Format, want, w.Group)
		}
		if w.Group <= 0 || w.Group%2 != 0 || w.Group > w.In || w.In%w.Group != 0 {
			return fmt.Errorf("quant: %s.weight_scale: group size %d does not divide In = %d (or is odd)", name, w.Group, w.In)
		}
		if w.Format != NVFP4 && w.GlobalScale != 0 {
			return fmt.Errorf("quant: %s: global scale %g set on a %v weight", name, w.GlobalScale, w.Format)
		}
		if w.Format == NVFP4 && (math.IsNaN(float64(w.GlobalScale)) || math.IsInf(float64(w.GlobalScale), 0)) {
			return fmt.Errorf("quant: %s.weight_scale_2: global scale %g is not finite", name, w.GlobalScale)
		}
		nb := w.In / w.Group
		if err := wantLen(".weight", len(w.Data), w.Out*w.In/2, fmt.Sprintf("U8 [%d, %d]", w.Out, w.In/2)); err != nil {
			return err
		}
		ssz, st := 1, "U8"
		switch w.Format {
		case FP4:
			ssz, st = 2, "F16"
		case NVFP4:
			st = "F8_E4M3"
		}
		return wantLen(".weight_scale", len(w.Scales), ssz*w.Out*nb, fmt.Sprintf("%s [%d, %d]", st, w.Out, nb))
	case EXL3:
		return w.validateEXL3()
	}
	return fmt.Errorf("quant: %s: unknown format %v", name, w.Format)
}
