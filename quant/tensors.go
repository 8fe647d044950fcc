package quant

import (
	"encoding/binary"
	"fmt"
	"math"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/format/safetensors"
)

// Tensors returns the checkpoint tensors that store w under prefix (for
// example "model.layers.0.mlp.down_proj"):
//
//	Dense  .weight        F32/F16/BF16 [Out, In]
//	GPTQ   .qweight       I32 [In·Bits/32, Out]
//	       .qzeros        I32 [Groups, ⌈Out·Bits/32⌉]
//	       .scales        F16 [Groups, Out]
//	       .g_idx         I32 [In] (k/Group when w has no GIdx)
//	FP8    .weight        F8_E4M3 [Out, In];  .weight_scale F32 [Out, 1]
//	FP4    .weight        U8 [Out, In/2];     .weight_scale F16 [Out, In/Group]
//	MXFP4  .weight        U8 [Out, In/2];     .weight_scale U8 (e8m0) [Out, In/32]
//	NVFP4  .weight        U8 [Out, In/2];     .weight_scale F8_E4M3 [Out, In/16];
//	       .weight_scale_2 F32 [] (the global scale)
//	EXL3   .trellis       I16 [In'/16, Out'/16, 16·K] (In', Out' padded to 128)
//	       .suh F16 [In'];  .svh F16 [Out'];  .mcg or .mul1 I32 [] (codebook marker)
//
// The tensors' Data alias w's slices where the bytes are already in
// checkpoint form. A symmetric GPTQ weight without Zeros gets qzeros holding
// 2^(Bits−1) − ZeroOffset. w should have passed Validate.
func (w *Weight) Tensors(prefix string) []safetensors.Tensor {
	t := func(suffix string, dt dtype.DType, data []byte, shape ...int) safetensors.Tensor {
		return safetensors.Tensor{Name: prefix + suffix, DType: dt, Shape: shape, Data: data}
	}
	switch w.Format {
	case Dense:
		return []safetensors.Tensor{t(".weight", w.DType, w.Data, w.Out, w.In)}
	case GPTQ:
		groups := w.Groups()
		qrows, zcols := gptqDims(w.In, w.Out, w.Bits)
		zeros := w.Zeros
		if zeros == nil {
			zeros = make([]byte, 4*groups*zcols)
			z := uint32(1)<<uint(w.Bits-1) - uint32(w.ZeroOffset)
			for g := 0; g < groups; g++ {
				base := g * zcols
				get := func(r int) uint32 { return u32At(zeros, base+r) }
				set := func(r int, v uint32) { putU32(zeros, base+r, v) }
				for n := 0; n < w.Out; n++ {
					streamPut(get, set, n, w.Bits, z)
				}
			}
		}
		gidx := make([]byte, 4*w.In)
		for k := 0; k < w.In; k++ {
			binary.LittleEndian.PutUint32(gidx[4*k:], uint32(w.group(k)))
		}
		return []safetensors.Tensor{
			t(".qweight", dtype.I32, w.Data, qrows, w.Out),
			t(".qzeros", dtype.I32, zeros, groups, zcols),
			t(".scales", dtype.F16, w.Scales, groups, w.Out),
			t(".g_idx", dtype.I32, gidx, w.In),
		}
	case FP8:
		return []safetensors.Tensor{
			t(".weight", dtype.F8E4M3, w.Data, w.Out, w.In),
			t(".weight_scale", dtype.F32, w.Scales, w.Out, 1),
		}
	case FP4, MXFP4, NVFP4:
		nb := w.In / w.Group
		st := map[Format]dtype.DType{FP4: dtype.F16, MXFP4: dtype.U8, NVFP4: dtype.F8E4M3}[w.Format]
		ts := []safetensors.Tensor{
			t(".weight", dtype.U8, w.Data, w.Out, w.In/2),
			t(".weight_scale", st, w.Scales, w.Out, nb),
		}
		if w.Format == NVFP4 {
			gs := make([]byte, 4)
			binary.LittleEndian.PutUint32(gs, math.Float32bits(w.GlobalScale))
			ts = append(ts, t(".weight_scale_2", dtype.F32, gs))
		}
		return ts
	case EXL3:
		return w.exl3Tensors(prefix)
	}
	return nil
}

// LoadWeight builds the Weight stored under prefix from the tensors get
// finds, validating dtypes and shapes; errors name the tensor at fault.
//
//   - prefix.trellis present: EXL3, with .suh, .svh and an optional
//     codebook marker .mcg or .mul1; the logical shape is cfg.Shapes[prefix]
//     when recorded (padded layers), else the stored one.
//   - prefix.qweight present: GPTQ, with .qzeros, .scales and optional
//     .g_idx; bits, group size, sym and v1/v2 come from cfg (required). A
//     g_idx equal to k/Group is dropped (GIdx nil).
//   - prefix.weight of F32, F16 or BF16: Dense (also in quantized
//     checkpoints, e.g. an unquantized lm_head).
//   - prefix.weight F8_E4M3 with .weight_scale (F32, F16 or BF16; shape
//     [Out, 1], [Out], [1] or [] for one per-tensor scale): FP8.
//   - prefix.weight U8 [Out, In/2] with .weight_scale of F16 (FP4, group
//     In/columns), U8 (MXFP4) or F8_E4M3 (NVFP4, with .weight_scale_2).
//
// The Weight's slices alias the tensors' data where no conversion is
// needed. cfg may be nil for all but GPTQ; when it names a format, the
// tensors found must match it (or be Dense).
func LoadWeight(prefix string, get func(name string) (safetensors.Tensor, bool), cfg *Config) (*Weight, error) {
	if tr, ok := get(prefix + ".trellis"); ok {
		return loadEXL3(prefix, tr, get, cfg)
	}
	if qw, ok := get(prefix + ".qweight"); ok {
		mc, err := cfg.For(prefix)
		if err != nil {
			return nil, fmt.Errorf("quant: %s: %w", prefix, err)
		}
		return loadGPTQ(prefix, qw, get, mc)
	}
	wt, ok := get(prefix + ".weight")
	if !ok {
		return nil, fmt.Errorf("quant: %s: no .weight or .qweight tensor", prefix)
	}
	if len(wt.Shape) != 2 || wt.Shape[0] <= 0 || wt.Shape[1] <= 0 {
		return nil, fmt.Errorf("quant: %s.weight: shape %v, want 2 positive dimensions", prefix, wt.Shape)
	}
	out, cols := wt.Shape[0], wt.Shape[1]
	w := &Weight{Name: prefix, Out: out, In: cols, Data: wt.Data}
	switch wt.DType {
	case dtype.F32, dtype.F16, dtype.BF16:
		w.Format, w.DType = Dense, wt.DType
	case dtype.F8E4M3:
		w.Format, w.Bits, w.Group, w.Sym = FP8, 8, cols, true
		st, ok := get(prefix + ".weight_scale")
		if !ok {
			if _, blk := get(prefix + ".weight_scale_inv"); blk {
				return nil, fmt.Errorf("quant: %s.weight_scale_inv: block-wise FP8 is not supported", prefix)
			}
			return nil, fmt.Errorf("quant: %s.weight_scale: missing (FP8 weight needs it)", prefix)
		}
		sc, err := floatScales(prefix+".weight_scale", st, out)
		if err != nil {
			return nil, err
		}
		w.Scales = sc
	case dtype.U8:
		w.In = 2 * cols
		w.Bits, w.Sym = 4, true
		st, ok := get(prefix + ".weight_scale")
		if !ok {
			return nil, fmt.Errorf("quant: %s.weight_scale: missing (U8 packed e2m1 weight needs it)", prefix)
		}
		if len(st.Shape) != 2 || st.Shape[0] != out || st.Shape[1] <= 0 {
			return nil, fmt.Errorf("quant: %s.weight_scale: shape %v, want [%d, blocks]", prefix, st.Shape, out)
		}
		nb := st.Shape[1]
		switch st.DType {
		case dtype.F16:
			w.Format = FP4
			if w.In%nb != 0 {
				return nil, fmt.Errorf("quant: %s.weight_scale: %d groups do not divide In = %d", prefix, nb, w.In)
			}
			w.Group = w.In / nb
		case dtype.U8:
			w.Format, w.Group = MXFP4, 32
		case dtype.F8E4M3:
			w.Format, w.Group = NVFP4, 16
			g2, ok := get(prefix + ".weight_scale_2")
			if !ok {
				return nil, fmt.Errorf("quant: %s.weight_scale_2: missing (NVFP4 global scale)", prefix)
			}
			if g2.DType != dtype.F32 || g2.NumElements() != 1 || len(g2.Data) != 4 {
				return nil, fmt.Errorf("quant: %s.weight_scale_2: %v %v, want one F32", prefix, g2.DType, g2.Shape)
			}
			w.GlobalScale = math.Float32frombits(binary.LittleEndian.Uint32(g2.Data))
		default:
			return nil, fmt.Errorf("quant: %s.weight_scale: dtype %v with a U8 weight (want F16, U8 or F8_E4M3)", prefix, st.DType)
		}
		if w.Group != 0 && w.In/w.Group != nb {
			return nil, fmt.Errorf("quant: %s.weight_scale: %d blocks per row, want In/%d = %d", prefix, nb, w.Group, w.In/w.Group)
		}
		w.Scales = st.Data
		w.Mapped = wt.Mapped && st.Mapped // both alias the file
	default:
		return nil, fmt.Errorf("quant: %s.weight: dtype %v not supported", prefix, wt.DType)
	}
	if cfg != nil && w.Format != Dense && cfg.Format != w.Format {
		return nil, fmt.Errorf("quant: %s.weight: tensors are %v but quantization_config says %v", prefix, w.Format, cfg.Format)
	}
	if err := checkBytes(prefix+".weight", wt); err != nil {
		return nil, err
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	return w, nil
}

// floatScales converts a per-row (or per-tensor) scale tensor to Out
// little-endian float32s.
func floatScales(name string, t safetensors.Tensor, out int) ([]byte, error) {
	n := t.NumElements()
	okShape := (len(t.Shape) == 2 && t.Shape[0] == out && t.Shape[1] == 1) ||
		(len(t.Shape) == 1 && (t.Shape[0] == out || t.Shape[0] == 1)) || len(t.Shape) == 0
	if !okShape {
		return nil, fmt.Errorf("quant: %s: shape %v, want [%d, 1], [%d], [1] or []", name, t.Shape, out, out)
	}
	if err := checkBytes(name, t); err != nil {
		return nil, err
	}
	if t.DType == dtype.F32 && n == out {
		return t.Data, nil
	}
	vals := make([]float32, n)
	for i := range vals {
		switch t.DType {
		case dtype.F32:
			vals[i] = f32At(t.Data, i)
		case dtype.F16:
			vals[i] = dtype.F16ToF32(u16At(t.Data, i))
		case dtype.BF16:
			vals[i] = dtype.BF16ToF32(u16At(t.Data, i))
		default:
			return nil, fmt.Errorf("quant: %s: dtype %v, want F32, F16 or BF16", name, t.DType)
		}
	}
	b := make([]byte, 4*out)
	for i := 0; i < out; i++ {
		putF32(b, i, vals[i%n])
	}
	return b, nil
}

// checkBytes verifies that a tensor's data length matches dtype × shape.
func checkBytes(name string, t safetensors.Tensor) error {
	n := 1
	for _, d := range t.Shape {
		if d < 0 || (d > 0 && n > (1<<40)/d) {
			return fmt.Errorf("quant: %s: bad shape %v", name, t.Shape)
		}
		n *= d
	}
	if want := n * t.DType.Size(); len(t.Data) != want || t.DType.Size() == 0 {
		return fmt.Errorf("quant: %s: %d bytes for %v %v, want %d", name, len(t.Data), t.DType, t.Shape, want)
	}
	return nil
}

func loadGPTQ(prefix string, qw safetensors.Tensor, get func(string) (safetensors.Tensor, bool), cfg *Config) (*Weight, error) {
	if cfg == nil || cfg.Format != GPTQ {
		return nil, fmt.Errorf("quant: %s.qweight: GPTQ tensors but no gptq quantization_config", prefix)
	}
	bits := cfg.Bits
	if bits != 2 && bits != 3 && bits != 4 && bits != 8 {
		return nil, fmt.Errorf("quant: %s.qweight: gptq bits %d not supported", prefix, bits)
	}
	if qw.DType != dtype.I32 || len(qw.Shape) != 2 || qw.Shape[0] <= 0 || qw.Shape[1] <= 0 {
		return nil, fmt.Errorf("quant: %s.qweight: %v %v, want I32 [In·bits/32, Out]", prefix, qw.DType, qw.Shape)
	}
	if err := checkBytes(prefix+".qweight", qw); err != nil {
		return nil, err
	}
	out := qw.Shape[1]
	in := qw.Shape[0] * 32 / bits
	if qw.Shape[0]*32%bits != 0 {
		return nil, fmt.Errorf("quant: %s.qweight: %d rows is not a whole number of %d-bit inputs", prefix, qw.Shape[0], bits)
	}
	w := &Weight{Name: prefix, Format: GPTQ, Out: out, In: in, Bits: bits, Sym: cfg.Sym,
		ZeroOffset: cfg.ZeroOffset(), Data: qw.Data}
	group := cfg.Group
	if group == -1 {
		group = in
	}
	if group <= 0 || in%group != 0 {
		return nil, fmt.Errorf("quant: %s.scales: group_size %d does not divide In = %d", prefix, cfg.Group, in)
	}
	w.Group = group
	groups := in / group
	sc, ok := get(prefix + ".scales")
	if !ok {
		return nil, fmt.Errorf("quant: %s.scales: missing", prefix)
	}
	if sc.DType != dtype.F16 || len(sc.Shape) != 2 || sc.Shape[0] != groups || sc.Shape[1] != out {
		return nil, fmt.Errorf("quant: %s.scales: %v %v, want F16 [%d, %d]", prefix, sc.DType, sc.Shape, groups, out)
	}
	if err := checkBytes(prefix+".scales", sc); err != nil {
		return nil, err
	}
	w.Scales = sc.Data
	_, zcols := gptqDims(in, out, bits)
	if qz, ok := get(prefix + ".qzeros"); ok {
		if qz.DType != dtype.I32 || len(qz.Shape) != 2 || qz.Shape[0] != groups || qz.Shape[1] != zcols {
			return nil, fmt.Errorf("quant: %s.qzeros: %v %v, want I32 [%d, %d]", prefix, qz.DType, qz.Shape, groups, zcols)
		}
		if err := checkBytes(prefix+".qzeros", qz); err != nil {
			return nil, err
		}
		w.Zeros = qz.Data
		w.ZerosUniform = zerosUniform(w.Zeros, groups, out, bits)
	} else if !cfg.Sym {
		return nil, fmt.Errorf("quant: %s.qzeros: missing for an asymmetric checkpoint", prefix)
	}
	w.Mapped = qw.Mapped && sc.Mapped
	if qz, ok := get(prefix + ".qzeros"); ok && !qz.Mapped {
		w.Mapped = false
	}
	if gi, ok := get(prefix + ".g_idx"); ok {
		if gi.DType != dtype.I32 || len(gi.Shape) != 1 || gi.Shape[0] != in {
			return nil, fmt.Errorf("quant: %s.g_idx: %v %v, want I32 [%d]", prefix, gi.DType, gi.Shape, in)
		}
		if err := checkBytes(prefix+".g_idx", gi); err != nil {
			return nil, err
		}
		idx := make([]int32, in)
		trivial := true
		for k := range idx {
			idx[k] = int32(binary.LittleEndian.Uint32(gi.Data[4*k:]))
			if int(idx[k]) != k/group {
				trivial = false
			}
		}
		if !trivial {
			w.GIdx = idx
		}
	}
	if err := w.Validate(); err != nil {
		return nil, err
	}
	return w, nil
}
