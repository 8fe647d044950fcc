package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"runtime"
	"slices"
	"sync"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// The packed 4-bit layout of the fast quantized kernels (qmm.cu).
//
// GPTQ int4 (sym or asym, any group that is a multiple of 16, act-order
// through a permutation of the inputs), FP4 (e2m1 with fp16 scales,
// group a multiple of 16), MXFP4 weights (their e8m0 scales as fp16,
// where that is exact) and NVFP4 weights (each e4m3 scale times the
// global scale as one fp16 scale, rounded once, where fp16 holds its
// multiples: packable) are rewritten once, at load, into the
// order in which the tensor-core fragments of mma.m16n8k16 consume them, so
// that each lane of a warp fetches its share of a 16×64 weight tile with a
// single 128-bit load and dequantizes it in registers.
//
// Tiles. W [N, K] is cut into tiles of 64 outputs × 16 inputs ("steps"):
// tile (nt, s) covers n ∈ [64nt, 64nt+64), k ∈ [16s, 16s+16) of the
// (permuted, see below) input order. Tiles are stored [nt][s], 512 bytes
// each: lane l's four 32-bit words at byte 16l. So the k-loop of one column
// block streams contiguous memory, and a warp's load of one tile is 512
// consecutive bytes.
//
// Inside a tile, lane l (t = l%4, c = l/4) holds, for the eight n8 column
// tiles j8 = 0..7 of the 64 columns, the B fragment of column n = 8·j8 + c:
// four values, at inputs 4t, 4t+1, 4t+2, 4t+3 of the step. (The mma
// fragment puts lane l's B values at k = 2t, 2t+1, 2t+8, 2t+9; the A
// fragment of the same lane has the same k slots, so the kernel relabels
// slot 2t+i ↔ input 4t+i and slot 2t+8+i ↔ input 4t+2+i for A and B
// alike, which leaves the sum unchanged and lets each lane read its four
// inputs of x with one 16-byte load.) Word w (0..3) holds column tiles 2w
// and 2w+1, eight 4-bit codes; code i of the word sits at bits [4i, 4i+4):
//
//	i:      0      1      2      3      4      5      6      7
//	tile   2w     2w    2w+1   2w+1    2w     2w    2w+1   2w+1
//	input  4t    4t+2    4t    4t+2   4t+1   4t+3   4t+1   4t+3
//
// so that (word >> 4j) & 0x000F000F puts codes j and j+4 — one register of
// a B fragment, two consecutive slots — in the two halves of a 32-bit
// word, where OR-ing 0x6400 makes the fp16 numbers 1024 + code.
//
// Scales: fp16, [nt][group][c][j8] (c: the column within its 8-column
// tile): one step's 64 scales in 128 bytes. Zero points (GPTQ with stored
// zeros): the same layout with 4 bytes an entry, the fp16 pair
// −(1024 + z), −(64 + z): the kernel makes 1024 + q (low nibbles) and
// 1024 + 16q (high nibbles) by OR-ing codes into the fp16 1024, then
// q − z = (1024 + q) + (−(1024 + z)) and (1024 + 16q)/16 + (−(64 + z)),
// exactly. Symmetric GPTQ uses z = 8 without a table.
//
// Act-order (g_idx): the inputs are reordered by group (a stable sort of
// g_idx); perm[p] is the original input at position p, the kernel reads x
// through the same permutation. This needs every group to hold exactly
// Group inputs (true of GPTQ's act-order); other g_idx use the generic
// kernel.
//
// Columns past N are padded with zero codes and zero scales (outputs are
// not stored). K must be a multiple of 16.

const (
	packKindInt4 = 1 // GPTQ int4: value (q − z)·s
	packKindFP4  = 2 // FP4 e2m1: value e2m1(q)·s
)

// packed is a weight in the packed layout, on the host.
type packed struct {
	kind       int
	n, k       int // logical shape
	ntiles     int // ⌈n/64⌉
	steps      int // k/16
	group      int // inputs per scale group (a multiple of 16)
	groups     int // k/group
	data       []byte
	scales     []byte
	zeros      []byte  // nil: symmetric
	perm       []int32 // nil: identity
	permGroups []int32 // g_idx in packed order (for checks)
	// rounding bounds how far a packed weight may lie from the
	// checkpoint's, relatively: 2^-11 for NVFP4 (its scales rounded to
	// fp16 once), 0 for the others (exact)
	rounding float64
}

// Bytes of the layout per column tile of 64 outputs: the codes of one
// step of 16 inputs, the scales of one group, its zero points.
const (
	packStepBytes  = 512
	packScaleBytes = 128
	packZeroBytes  = 2 * packScaleBytes
)

// packable reports whether w can use the packed kernels, and why not.
func packable(w *quant.Weight) (int, string) {
	if w.In%16 != 0 {
		return 0, "inputs not a multiple of 16"
	}
	switch w.Format {
	case quant.GPTQ:
		if w.Bits != 4 {
			return 0, fmt.Sprintf("%d-bit GPTQ", w.Bits)
		}
	case quant.FP4:
	case quant.MXFP4:
		// e8m0 scales become fp16 ones: exact where 2^(e−127) and every
		// e2m1 multiple of it are fp16 numbers (the larger-batch kernels
		// round e2m1·s to fp16): exponents −23 … 13
		for _, e := range w.Scales {
			if e < 127-23 || e > 127+13 {
				return 0, fmt.Sprintf("an e8m0 scale 2^%d outside fp16's exact range", int(e)-127)
			}
		}
	case quant.NVFP4:
		// each e4m3 scale times the global scale becomes one fp16 scale,
		// rounded once: off by ≤ 2^-11 relatively (the size of the
		// kernels' own rounding of x), or by ≤ 2^-25 for scales below
		// fp16's normal range (blocks of weights under ~1e-4, far inside
		// one 4-bit step of any real row); where every e2m1 multiple of
		// it is finite in fp16 (|s| ≤ 65504/6; NaN codes: never)
		for _, c := range w.Scales {
			if s := math.Abs(float64(nvfp4Scale(w, c))); !(s <= 65504.0/6) {
				return 0, fmt.Sprintf("an NVFP4 scale %g (e4m3 × global) beyond fp16's range for e2m1 multiples", s)
			}
		}
	default:
		return 0, "format " + w.Format.String()
	}
	g := w.Group
	if g <= 0 {
		g = w.In
	}
	if g%16 != 0 || w.In%g != 0 {
		return 0, fmt.Sprintf("group %d", w.Group)
	}
	if w.Format == quant.GPTQ {
		if w.GIdx != nil {
			if _, ok := quant.GroupOrder(w.GIdx, g); !ok {
				return 0, "g_idx whose groups are not all of the group size"
			}
		}
		return packKindInt4, ""
	}
	return packKindFP4, ""
}

// nvfp4Scale is the scale of an NVFP4 block of w with e4m3 code c: the
// code's value times the weight's global scale, in float32.
func nvfp4Scale(w *quant.Weight, c byte) float32 {
	return dtype.E4M3ToF32(c) * w.GlobalScale
}

// codeAt returns the 4-bit code of (n, k) of w (original input order).
func codeAt(w *quant.Weight, n, k int) uint32 {
	if w.Format == quant.GPTQ {
		word := binary.LittleEndian.Uint32(w.Data[4*((k/8)*w.Out+n):])
		return (word >> (4 * (k % 8))) & 15
	}
	b := w.Data[n*(w.In/2)+k/2]
	if k&1 == 1 {
		return uint32(b >> 4)
	}
	return uint32(b & 15)
}

// packWeight rewrites w (which packable accepted) into the packed layout,
// in parallel over column tiles.
func packWeight(w *quant.Weight, kind int) *packed {
	return packRows([]*quant.Weight{w}, w.Out, func(n int) (int, int) { return 0, n }, kind)
}

// asymmetric reports whether w (packable, int4) needs the zero-point table:
// stored zero points other than the symmetric kernel's constant 8.
func asymmetric(w *quant.Weight) bool {
	asym := w.Format == quant.GPTQ && w.Zeros != nil
	if asym && w.ZerosUniform {
		// every zero point the same: 8 is the symmetric kernel's constant
		word := binary.LittleEndian.Uint32(w.Zeros)
		asym = int(word&15)+w.ZeroOffset != 8
	}
	return asym
}

// packRows packs a matrix of n rows whose row r is row src(r) = (i, row)
// of ws[i]: one weight (packWeight), or several stored together
// (LoadMatrices: stacked or interleaved rows). The weights share In,
// Group, the kind and g_idx (nil, or the first's for one weight).
func packRows(ws []*quant.Weight, n int, src func(int) (int, int), kind int) *packed {
	w0 := ws[0]
	g := w0.Group
	if g <= 0 {
		g = w0.In
	}
	p := &packed{kind: kind, n: n, k: w0.In, ntiles: (n + 63) / 64, steps: w0.In / 16, group: g, groups: w0.In / g}
	for _, w := range ws {
		if w.Format == quant.NVFP4 {
			p.rounding = 0x1p-11
		}
	}
	if w0.GIdx != nil {
		p.perm, _ = quant.GroupOrder(w0.GIdx, g)
	}
	p.data = make([]byte, p.ntiles*p.steps*packStepBytes)
	p.scales = make([]byte, p.ntiles*p.groups*packScaleBytes)
	asyms := make([]bool, len(ws))
	asym := false
	for i, w := range ws {
		asyms[i] = kind == packKindInt4 && asymmetric(w)
		asym = asym || asyms[i]
	}
	if asym {
		p.zeros = make([]byte, p.ntiles*p.groups*packZeroBytes)
	}
	codeOf := func(row, k int) uint32 {
		i, r := src(row)
		return codeAt(ws[i], r, k)
	}
	scaleOf := func(grp, row int) uint16 { // fp16 bits; grp is the original group
		i, n := src(row)
		w := ws[i]
		if kind == packKindInt4 {
			return binary.LittleEndian.Uint16(w.Scales[2*(grp*w.Out+n):])
		}
		switch w.Format {
		case quant.MXFP4:
			return dtype.F32ToF16(dtype.E8M0ToF32(w.Scales[n*(w.In/g)+grp])) // (packable checked the range: exact)
		case quant.NVFP4:
			return dtype.F32ToF16(nvfp4Scale(w, w.Scales[n*(w.In/g)+grp])) // (rounded once; packable checked the range)
		}
		return binary.LittleEndian.Uint16(w.Scales[2*(n*(w.In/g)+grp):])
	}
	zeroOf := func(grp, row int) uint32 {
		i, n := src(row)
		w := ws[i]
		z := 8
		if asyms[i] {
			zcols := (w.Out*4 + 31) / 32
			word := binary.LittleEndian.Uint32(w.Zeros[4*(grp*zcols+n/8):])
			z = int((word>>(4*(n%8)))&15) + w.ZeroOffset
		}
		return uint32(dtype.F32ToF16(float32(-(1024 + z)))) | uint32(dtype.F32ToF16(float32(-(64+z))))<<16
	}
	origK := func(k int) int {
		if p.perm != nil {
			return int(p.perm[k])
		}
		return k
	}
	overTiles(p.ntiles, func(nt int) {
		for s := range p.steps {
			tile := p.data[(nt*p.steps+s)*packStepBytes:]
			for lane := range 32 {
				t, c := lane%4, lane/4
				for wd := range 4 {
					var word uint32
					for i := range 8 {
						j := i & 3
						j8 := 2*wd + j>>1
						kk := 4*t + 2*(j&1) + i>>2
						n, k := 64*nt+8*j8+c, 16*s+kk
						if n < p.n {
							word |= codeOf(n, origK(k)) << (4 * i)
						}
					}
					binary.LittleEndian.PutUint32(tile[16*lane+4*wd:], word)
				}
			}
		}
		for grp := range p.groups {
			// the group of packed inputs [grp·g, grp·g+g): with act-order
			// its original group index is grp (quant.GroupOrder checked it)
			off := (nt*p.groups + grp) * packScaleBytes
			for c := range 8 {
				for j8 := range 8 {
					n := 64*nt + 8*j8 + c
					var s uint16
					var z uint32
					if n < p.n {
						s = scaleOf(grp, n)
						if asym {
							z = zeroOf(grp, n)
						}
					}
					binary.LittleEndian.PutUint16(p.scales[off+2*(8*c+j8):], s)
					if asym {
						binary.LittleEndian.PutUint32(p.zeros[2*off+4*(8*c+j8):], z)
					}
				}
			}
		}
	})
	return p
}

// overTiles calls fn for every column tile 0…ntiles−1, in parallel.
func overTiles(ntiles int, fn func(nt int)) {
	workers := min(runtime.GOMAXPROCS(0), ntiles)
	var wg sync.WaitGroup
	for wk := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for nt := wk; nt < ntiles; nt += workers {
				fn(nt)
			}
		}()
	}
	wg.Wait()
}

// The tiled FP8 layout (qmm.cu's qmv8 and wload<FMT_FP8>): the e4m3
// codes of a [N, K] row-major checkpoint are rewritten once, at load, into
// steps of 64 rows × 32 inputs, each 2 KB contiguous — rows
// [64·nt, 64·nt+64) and inputs [32·s, 32·s+32) of step (nt, s) at bytes
// (nt·S + s)·2048 + 32·(n − 64·nt) + (k − 32·s), S = ⌈K/32⌉, codes past N
// or K zero — so that a decode kernel's step is one contiguous 2 KB read.
// (Read in the stored rows, 32 bytes of each of 64 rows a step, FP8
// decode ran at 51–59% of a device-to-device copy on the H100, where GPTQ
// INT8's 256-byte rows ran at 62–85%.) The scales stay one float32 a row.
const fp8StepBytes = 64 * 32

// tileFP8 returns the e4m3 codes data ([n, k] row-major) in the tiled FP8
// layout, in parallel over column tiles.
func tileFP8(data []byte, n, k int) []byte {
	ntiles, S := (n+63)/64, (k+31)/32
	out := make([]byte, ntiles*S*fp8StepBytes)
	overTiles(ntiles, func(nt int) {
		for r := range min(64, n-64*nt) {
			row := data[(64*nt+r)*k : (64*nt+r+1)*k]
			for s := range S {
				copy(out[(nt*S+s)*fp8StepBytes+32*r:][:32], row[32*s:min(k, 32*s+32)])
			}
		}
	})
	return out
}

// value returns element (n, k) of the packed weight (k in the original
// input order) as the kernels compute it, in float32: the Go model of
// the layout that the tests check against quant.DequantizeRow.
func (p *packed) value(n, k int) float32 {
	pk := k
	if p.perm != nil {
		pk = slices.Index(p.perm, int32(k))
	}
	nt, s, kk := n/64, pk/16, pk%16
	j8, c := (n%64)/8, n%8
	t := kk / 4
	lane := 4*c + t
	r := kk % 4 // 0..3 = input 4t+r
	// r = 2·(j&1) + i>>2, j>>1 = j8&1
	j := 2*(j8&1) + r>>1
	i := j + 4*(r&1)
	wd := j8 / 2
	word := binary.LittleEndian.Uint32(p.data[(nt*p.steps+s)*packStepBytes+16*lane+4*wd:])
	code := (word >> (4 * i)) & 15
	grp := pk / p.group
	off := (nt*p.groups+grp)*packScaleBytes + 2*(8*c+j8)
	sc := dtype.F16ToF32(binary.LittleEndian.Uint16(p.scales[off:]))
	if p.kind == packKindFP4 {
		return quant.E2M1Value(uint8(code)) * sc
	}
	z := float32(8)
	if p.zeros != nil {
		z = -dtype.F16ToF32(binary.LittleEndian.Uint16(p.zeros[2*off:])) - 1024
	}
	return (float32(code) - z) * sc
}

// gptq8Group reports whether ws (two or three weights) can be grouped by
// LoadMatrices in the 8-bit GPTQ stored layout: a SwiGLU pair interleaved
// (gptq8Interleave) or parts stacked (gptq8Stack), with the same input
// size, group and zero-point convention, no act-order, rows a multiple of
// 8 (whole qzeros words, and qmv8's 16-byte copies of scales and zero
// points at every part's start).
func gptq8Group(ws []*quant.Weight) bool {
	if len(ws) < 2 || len(ws) > 3 {
		return false
	}
	a := ws[0]
	for _, w := range ws {
		if w.Format != quant.GPTQ || w.Bits != 8 || w.GIdx != nil || w.Out%8 != 0 || w.Validate() != nil ||
			w.In != a.In || w.Group != a.Group || w.ZeroOffset != a.ZeroOffset || (w.Zeros == nil) != (a.Zeros == nil) {
			return false
		}
	}
	return true
}

// gptq8Stack returns ws as one 8-bit GPTQ weight whose rows are ws[0]'s,
// then ws[1]'s, …: in the stored layout the rows are columns, so each row
// of qweight [In/4, Out] words, scales [Groups, Out] fp16 and qzeros
// [Groups, Out/4] words (a byte a row) is the parts' rows side by side.
// A part of the result is not a view of it (its columns are strided), so
// LoadMatrices marks the group whole.
func gptq8Stack(ws []*quant.Weight, name string) *quant.Weight {
	cw := gptq8Joined(ws, name)
	side := func(part func(w *quant.Weight) []byte, es int) []byte {
		rows := len(part(ws[0])) / (ws[0].Out * es)
		out := make([]byte, 0, rows*cw.Out*es)
		for r := range rows {
			for _, w := range ws {
				out = append(out, part(w)[r*w.Out*es:(r+1)*w.Out*es]...)
			}
		}
		return out
	}
	cw.Data = side(func(w *quant.Weight) []byte { return w.Data }, 4)
	cw.Scales = side(func(w *quant.Weight) []byte { return w.Scales }, 2)
	if ws[0].Zeros != nil {
		cw.Zeros = side(func(w *quant.Weight) []byte { return w.Zeros }, 1)
	}
	return cw
}

// gptq8Joined is the header of ws joined into one 8-bit GPTQ weight (the
// data left to the caller): their rows summed, symmetric where every part
// is, and with uniform zero points where every part has the same one.
func gptq8Joined(ws []*quant.Weight, name string) *quant.Weight {
	a := ws[0]
	cw := &quant.Weight{Name: name, Format: quant.GPTQ, Bits: 8, Group: a.Group, Sym: true, ZeroOffset: a.ZeroOffset,
		In: a.In, ZerosUniform: true}
	for _, w := range ws {
		cw.Out += w.Out
		cw.Sym = cw.Sym && w.Sym
		cw.ZerosUniform = cw.ZerosUniform && w.ZerosUniform && (w.Zeros == nil || w.Zeros[0] == a.Zeros[0])
	}
	return cw
}

// gptq8Interleave returns the pair (gate, up) as one 8-bit GPTQ weight of
// 2·Out rows whose row 2j is gate's j and 2j + 1 up's j: in the stored
// layout the rows are columns of qweight [In/4, Out] words, of scales
// [Groups, Out] fp16 and of qzeros [Groups, Out/4] words (a byte a row),
// so each is interleaved word by word, half by half, or byte by byte.
func gptq8Interleave(a, b *quant.Weight, name string) *quant.Weight {
	N := a.Out
	cw := gptq8Joined([]*quant.Weight{a, b}, name)
	inter := func(x, y []byte, es int) []byte {
		rows := len(x) / (N * es)
		out := make([]byte, 2*len(x))
		for r := range rows {
			for j := range N {
				d := (r*2*N + 2*j) * es
				copy(out[d:d+es], x[(r*N+j)*es:])
				copy(out[d+es:d+2*es], y[(r*N+j)*es:])
			}
		}
		return out
	}
	cw.Data = inter(a.Data, b.Data, 4)
	cw.Scales = inter(a.Scales, b.Scales, 2)
	if a.Zeros != nil {
		cw.Zeros = inter(a.Zeros, b.Zeros, 1)
	}
	return cw
}

// groupable reports whether LoadMatrices stores ws together (see there).
func groupable(ws []*quant.Weight) bool {
	if len(ws) < 2 || len(ws) > 3 { // YOut has three outputs
		return false
	}
	w0 := ws[0]
	kind, _ := packable(w0)
	dense := w0.Format == quant.Dense && (w0.DType == dtype.F16 || w0.DType == dtype.BF16)
	inter := len(ws) == 2 && ws[0].Out == ws[1].Out
	if gptq8Group(ws) {
		return true
	}
	if kind == 0 && !dense && w0.Format != quant.FP8 {
		return false
	}
	for i, w := range ws {
		if w.Validate() != nil || w.In != w0.In || w.Format != w0.Format || w.Out <= 0 {
			return false
		}
		if !inter && i < len(ws)-1 && w.Out%64 != 0 {
			return false
		}
		if dense {
			if w.DType != w0.DType {
				return false
			}
			continue
		}
		if w0.Format == quant.FP8 {
			continue // (the format checked above; one scale a row)
		}
		if k, _ := packable(w); k != kind || w.GIdx != nil || w.Group != w0.Group {
			return false
		}
	}
	return true
}
