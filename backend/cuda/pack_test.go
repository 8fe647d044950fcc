package cuda

import (
	"encoding/binary"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// TestPack checks the packed 4-bit layout on the host (no GPU needed):
// every element read back through packed.value — the Go model of the
// kernels' indexing — equals quant.DequantizeRow, for GPTQ int4 (sym,
// asym v1/v2, per-channel, act-order) and FP4, with column counts that
// leave a partial 64-column tile; and packable refuses what the kernels
// cannot do.
func TestPack(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	f16 := func(n int, lo, hi float64) []byte {
		b := make([]byte, 2*n)
		for i := range n {
			binary.LittleEndian.PutUint16(b[2*i:], dtype.F32ToF16(float32(lo+rng.Float64()*(hi-lo))))
		}
		return b
	}
	rbytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	gptq := func(n, k, group int, asym, act bool, zoff int) *quant.Weight {
		g := group
		if g == 0 {
			g = k
		}
		w := &quant.Weight{Name: "gptq", Format: quant.GPTQ, Out: n, In: k, Bits: 4, Group: g, Sym: !asym, ZeroOffset: zoff,
			Data: rbytes(4 * (k / 8) * n), Scales: f16(k/g*n, 0.002, 0.03)}
		if asym {
			w.Zeros = rbytes(4 * (k / g) * ((n*4 + 31) / 32))
		}
		if act {
			w.GIdx = make([]int32, k)
			for i := range w.GIdx {
				w.GIdx[i] = int32(i / g)
			}
			rng.Shuffle(k, func(a, b int) { w.GIdx[a], w.GIdx[b] = w.GIdx[b], w.GIdx[a] })
		}
		return w
	}
	fp4 := func(n, k, group int) *quant.Weight {
		return &quant.Weight{Name: "fp4", Format: quant.FP4, Out: n, In: k, Bits: 4, Group: group, Data: rbytes(n * k / 2),
			Scales: f16(n*(k/group), 0.01, 0.1)}
	}
	// MXFP4: e8m0 scales over the whole range packed exactly (2^-23 … 2^13)
	mxfp4 := func(n, k int, lo, hi int) *quant.Weight {
		sc := make([]byte, n*(k/32))
		for i := range sc {
			sc[i] = byte(lo + rng.IntN(hi-lo+1))
		}
		sc[0], sc[len(sc)-1] = byte(lo), byte(hi)
		return &quant.Weight{Name: "mxfp4", Format: quant.MXFP4, Out: n, In: k, Bits: 4, Group: 32, Data: rbytes(n * k / 2), Scales: sc}
	}
	// NVFP4: e4m3 scales (random codes below the NaN ones) and global
	// scales whose products reach fp16's largest (0.25·448 … ) and its
	// subnormal range (0.001·2^-9 …)
	nvfp4 := func(n, k int, global float32) *quant.Weight {
		sc := make([]byte, n*(k/16))
		for i := range sc {
			sc[i] = byte(rng.IntN(0x7f))
		}
		return &quant.Weight{Name: "nvfp4", Format: quant.NVFP4, Out: n, In: k, Bits: 4, Group: 16, Data: rbytes(n * k / 2),
			Scales: sc, GlobalScale: global}
	}
	uniform := gptq(64, 128, 32, true, false, 1)
	for i := range uniform.Zeros {
		uniform.Zeros[i] = 0x77 // stored 7 + offset 1 = 8: packed as symmetric
	}
	uniform.ZerosUniform = true
	if p := packWeight(uniform, packKindInt4); p.zeros != nil {
		t.Error("uniform zero points of 8: packed with a zero table")
	}
	for _, w := range []*quant.Weight{
		uniform, gptq(70, 256, 128, false, false, 1), gptq(64, 160, 32, true, false, 1), gptq(130, 256, 32, true, true, 0),
		gptq(37, 64, 0, true, false, 1), gptq(200, 384, 128, false, true, 1),
		fp4(70, 256, 32), fp4(129, 96, 16), fp4(64, 128, 128),
		mxfp4(70, 256, 127-23, 127+13), mxfp4(130, 64, 118, 129),
		nvfp4(70, 256, 0.25), nvfp4(130, 64, 0.001),
	} {
		if err := w.Validate(); err != nil {
			t.Fatal(err)
		}
		kind, why := packable(w)
		if kind == 0 {
			t.Fatalf("%s: not packable: %s", w, why)
		}
		p := packWeight(w, kind)
		row := make([]float32, w.In)
		bad := 0
		for n := range w.Out {
			w.DequantizeRow(row, n)
			for k, want := range row {
				// exact, but NVFP4's scales, rounded to fp16 once: 2^-11
				// relatively, 2^-25 absolutely below fp16's normal range
				// (times e2m1's largest value, 6)
				got := p.value(n, k)
				ok := got == want
				if w.Format == quant.NVFP4 {
					ok = math.Abs(float64(got-want)) <= 0x1p-11*math.Abs(float64(want))+6*0x1p-25
				}
				if !ok && bad < 5 {
					t.Errorf("%s: (%d, %d): packed %g, reference %g", w, n, k, got, want)
					bad++
				}
			}
		}
		if len(p.data) != p.ntiles*p.steps*512 || len(p.scales) != p.ntiles*p.groups*128 {
			t.Errorf("%s: %d data and %d scale bytes", w, len(p.data), len(p.scales))
		}
	}
	// several weights packed as one (LoadMatrices): stacked rows, and two
	// interleaved; a symmetric part beside asymmetric ones
	for _, grp := range [][]*quant.Weight{
		{gptq(128, 256, 128, true, false, 0), gptq(64, 256, 128, false, false, 1), gptq(70, 256, 128, true, false, 1)},
		{gptq(100, 256, 32, false, false, 1), gptq(100, 256, 32, true, false, 0)},
		{fp4(64, 128, 32), fp4(33, 128, 32)},
		{fp4(70, 96, 16), fp4(70, 96, 16)},
		{mxfp4(64, 128, 110, 130), mxfp4(64, 128, 110, 130)},
	} {
		if !groupable(grp) {
			t.Fatalf("%s…: not groupable", grp[0])
		}
		inter := len(grp) == 2 && grp[0].Out == grp[1].Out
		var rows [][2]int // (part, row) of each packed row
		for i, w := range grp {
			for r := range w.Out {
				rows = append(rows, [2]int{i, r})
			}
		}
		if inter {
			for r := range rows {
				rows[r] = [2]int{r & 1, r >> 1}
			}
		}
		kind, _ := packable(grp[0])
		p := packRows(grp, len(rows), func(r int) (int, int) { return rows[r][0], rows[r][1] }, kind)
		row := make([]float32, grp[0].In)
		bad := 0
		for n, src := range rows {
			grp[src[0]].DequantizeRow(row, src[1])
			for k, want := range row {
				if got := p.value(n, k); got != want && bad < 5 {
					t.Errorf("%s… (inter %v): row %d (part %d row %d), input %d: packed %g, reference %g", grp[0], inter, n, src[0], src[1], k, got, want)
					bad++
				}
			}
		}
	}
	if groupable([]*quant.Weight{gptq(100, 256, 32, false, false, 1), gptq(64, 256, 32, false, false, 1)}) {
		t.Error("stacked parts of 100 and 64 rows (not whole tiles): groupable")
	}
	if groupable([]*quant.Weight{gptq(64, 256, 32, false, true, 1), gptq(64, 256, 32, false, true, 1)}) {
		t.Error("act-order weights: groupable")
	}
	f8 := func(n, k int) *quant.Weight {
		sc := make([]byte, 4*n)
		for i := range n {
			binary.LittleEndian.PutUint32(sc[4*i:], math.Float32bits(0.01+0.01*rng.Float32()))
		}
		return &quant.Weight{Name: "fp8", Format: quant.FP8, Out: n, In: k, Bits: 8, Group: k, Data: rbytes(n * k), Scales: sc}
	}
	if !groupable([]*quant.Weight{f8(128, 96), f8(64, 96), f8(70, 96)}) || !groupable([]*quant.Weight{f8(70, 96), f8(70, 96)}) {
		t.Error("FP8 q, k, v or an FP8 pair: not groupable")
	}
	if groupable([]*quant.Weight{f8(64, 256), gptq(64, 256, 32, false, false, 1)}) || groupable([]*quant.Weight{f8(70, 96), f8(64, 96)}) {
		t.Error("FP8 with GPTQ, or stacked FP8 parts of 70 and 64 rows: groupable")
	}

	// refusals: 8-bit, a group not a multiple of 16, K not a multiple of 16,
	// an act-order g_idx with uneven groups, MXFP4 scales that fp16 does
	// not hold exactly (2^-24: 0.5·2^-24 is not an fp16 number; 2^14:
	// 6·2^14 overflows; e8m0 0xFF is NaN)
	uneven := gptq(64, 64, 32, false, true, 1)
	for i := range uneven.GIdx {
		uneven.GIdx[i] = 0
	}
	uneven.GIdx[5] = 1
	nvfp4nan := nvfp4(64, 64, 1)
	nvfp4nan.Scales[3] = 0x7f
	for _, w := range []*quant.Weight{
		{Format: quant.GPTQ, Bits: 8, Out: 64, In: 64, Group: 32},
		fp4(64, 160, 10), fp4(64, 40, 20), uneven,
		mxfp4(64, 64, 127-24, 127), mxfp4(64, 64, 127, 127+14), mxfp4(64, 64, 127, 255),
		nvfp4(64, 64, 100), nvfp4nan,
	} {
		if kind, why := packable(w); kind != 0 || why == "" {
			t.Errorf("%s: packable %d (%q)", fmt.Sprint(w.Format, w.Bits, w.In, w.Group), kind, why)
		}
	}
}

// TestTileFP8 checks the tiled FP8 layout against its definition (pack.go)
// on random codes, with rows and inputs that fill no whole tile: every
// code at its place, zeros past N and K.
func TestTileFP8(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for _, sh := range [][2]int{{64, 32}, {130, 96}, {70, 131}, {1, 5}} {
		n, k := sh[0], sh[1]
		data := make([]byte, n*k)
		for i := range data {
			data[i] = byte(rng.UintN(256))
		}
		got := tileFP8(data, n, k)
		S := (k + 31) / 32
		if want := (n + 63) / 64 * S * 2048; len(got) != want {
			t.Fatalf("%d×%d: %d bytes, want %d", n, k, len(got), want)
		}
		for nt := range (n + 63) / 64 {
			for s := range S {
				for r := range 64 {
					for kk := range 32 {
						row, col := 64*nt+r, 32*s+kk
						var want byte
						if row < n && col < k {
							want = data[row*k+col]
						}
						if g := got[(nt*S+s)*2048+32*r+kk]; g != want {
							t.Fatalf("%d×%d: code (%d, %d) = %#x, want %#x", n, k, row, col, g, want)
						}
					}
				}
			}
		}
	}
}

// TestGPTQ8Groups checks the grouped 8-bit GPTQ weights on the host: row
// 2j of an interleaved pair dequantizes to gate's row j and row 2j + 1 to
// up's; a stack's rows are its parts' in order; symmetric (no qzeros) and
// with zero points (v1 offset); and gptq8Group refuses what the layouts
// and qmv8 cannot take.
func TestGPTQ8Groups(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	rbytes := func(n int) []byte {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(rng.UintN(256))
		}
		return b
	}
	mk := func(n, k, g int, asym bool) *quant.Weight {
		w := &quant.Weight{Name: "int8", Format: quant.GPTQ, Out: n, In: k, Bits: 8, Group: g, Sym: !asym, ZeroOffset: 1,
			Data: rbytes(k * n), Scales: make([]byte, 2*(k/g)*n)}
		for i := 0; i < len(w.Scales); i += 2 {
			binary.LittleEndian.PutUint16(w.Scales[i:], dtype.F32ToF16(float32(0.001+0.01*rng.Float64())))
		}
		if asym {
			w.Zeros = rbytes((k / g) * n)
		}
		return w
	}
	for _, asym := range []bool{false, true} {
		a, b := mk(24, 256, 64, asym), mk(24, 256, 64, asym)
		if !gptq8Group([]*quant.Weight{a, b}) {
			t.Fatalf("asym %v: pair refused", asym)
		}
		p := gptq8Interleave(a, b, "pair")
		if err := p.Validate(); err != nil {
			t.Fatal(err)
		}
		got, want := make([]float32, 256), make([]float32, 256)
		for j := range 2 * a.Out {
			p.DequantizeRow(got, j)
			[]*quant.Weight{a, b}[j&1].DequantizeRow(want, j>>1)
			for i := range got {
				if got[i] != want[i] {
					t.Fatalf("asym %v: row %d input %d: %g, want %g", asym, j, i, got[i], want[i])
				}
			}
		}
	}
	for _, asym := range []bool{false, true} {
		ws := []*quant.Weight{mk(32, 256, 64, asym), mk(8, 256, 64, asym), mk(16, 256, 64, asym)}
		if !gptq8Group(ws) {
			t.Fatalf("asym %v: stack refused", asym)
		}
		st := gptq8Stack(ws, "stack")
		if err := st.Validate(); err != nil {
			t.Fatal(err)
		}
		got, want := make([]float32, 256), make([]float32, 256)
		r := 0
		for _, w := range ws {
			for j := range w.Out {
				st.DequantizeRow(got, r)
				w.DequantizeRow(want, j)
				for i := range got {
					if got[i] != want[i] {
						t.Fatalf("asym %v: stack row %d input %d: %g, want %g", asym, r, i, got[i], want[i])
					}
				}
				r++
			}
		}
	}
	a := mk(24, 256, 64, false)
	for _, c := range []struct {
		name string
		a, b *quant.Weight
	}{
		{"other group", a, mk(24, 256, 128, false)},
		{"zeros in one only", a, mk(24, 256, 64, true)},
		{"rows not a multiple of 8", mk(20, 256, 64, false), mk(20, 256, 64, false)},
	} {
		if gptq8Group([]*quant.Weight{c.a, c.b}) {
			t.Errorf("%s: pair accepted", c.name)
		}
	}
}
