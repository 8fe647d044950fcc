package quantize

import (
	"encoding/binary"
	"math"
	"strings"
	"testing"

	"github.com/marlin-llm/marlin/backend/cpu"
	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/quant"
)

// scaledIdentity is the [n, n] float32 weight s·I.
func scaledIdentity(n int, s float32) *quant.Weight {
	d := make([]byte, 4*n*n)
	for i := 0; i < n; i++ {
		binary.LittleEndian.PutUint32(d[4*(i*n+i):], math.Float32bits(s))
	}
	return &quant.Weight{Name: "w", Format: quant.Dense, DType: dtype.F32, Out: n, In: n, Data: d}
}

// TestTwinRows: in a twin pass (2 full-precision rows, then 2 quantized)
// a product multiplies the full-precision rows by the source weight and
// the others by its replacement, a gather records how many of its
// leading rows are full-precision and a product passes that on to its
// output, and only an activation of every token gives targets; a gather
// that puts a full-precision row after a quantized one fails, and so does
// an activation whose rows cannot be traced to either half.
func TestTwinRows(t *testing.T) {
	be := newCalibBackend(cpu.New(1))
	defer be.Close()
	be.twin = 2
	src := be.NewTensor(4, 3)
	if n, err := be.fpRows(src); n != 2 || err != nil {
		t.Fatalf("a [4, 3] activation: %d full-precision rows, %v", n, err)
	}
	w, err := be.LoadMatrix(scaledIdentity(3, 1))
	if err != nil {
		t.Fatal(err)
	}
	if be.repl[w], err = be.LoadMatrix(scaledIdentity(3, 2)); err != nil {
		t.Fatal(err)
	}
	x := make([]float32, 12)
	for i := range x {
		x[i] = float32(i + 1)
	}
	be.Write(src, x)
	y := be.NewTensor(4, 3)
	be.MatMul(y, src, w)
	for i, v := range y.(*cpu.Tensor).Data() {
		if want := x[i] * float32(1+i/6); v != want || be.err != nil {
			t.Fatalf("twin product: y[%d] = %v, want %v (%v)", i, v, want, be.err)
		}
	}
	g := be.NewTensor(3, 3)
	be.CopyRows(g, src, []int32{1, 2, 3})
	if n, err := be.fpRows(g); n != 1 || err != nil || be.err != nil {
		t.Fatalf("rows 1, 2, 3 gathered: %d full-precision rows, %v, %v", n, err, be.err)
	}
	gy := be.NewTensor(3, 3)
	be.MatMul(gy, g, w)
	if n, err := be.fpRows(gy); n != 1 || err != nil {
		t.Fatalf("the product of the gathered rows: %d full-precision rows, %v", n, err)
	}
	for i, v := range gy.(*cpu.Tensor).Data() {
		if want := x[3+i] * float32(1+min(i/3, 1)); v != want {
			t.Fatalf("gathered product: y[%d] = %v, want %v", i, v, want)
		}
	}
	// every token in both halves: targets; gathered rows: none
	h := newHessian(3)
	be.accumulate(h, src.(*cpu.Tensor), 2)
	if h.rows != 2 || h.d == nil {
		t.Errorf("all rows: %d rows accumulated, targets %v", h.rows, h.d != nil)
	}
	h = newHessian(3)
	be.accumulate(h, g.(*cpu.Tensor), 1)
	if h.rows != 2 || h.d != nil {
		t.Errorf("gathered rows: %d rows accumulated, targets %v", h.rows, h.d != nil)
	}
	if _, err := be.fpRows(be.NewTensor(3, 5)); err == nil || !strings.Contains(err.Error(), "unknown origin") {
		t.Errorf("an activation of unknown origin: %v", err)
	}
	be.CopyRows(be.NewTensor(2, 3), src, []int32{3, 0})
	if be.err == nil || !strings.Contains(be.err.Error(), "after a quantized one") {
		t.Errorf("a quantized row gathered before a full-precision one: %v", be.err)
	}
}
