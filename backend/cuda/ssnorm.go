//go:build linux && !nocuda

package cuda

import "os"

// The RMS norm of a decode row from its producer's sums of squares.
//
// A Llama layer's residual stream h is written by a product that adds to
// it (o, then down: MatMulAdd), and read next through an RMS norm by the
// product after it (q/k/v, then gate/up: MatMulN and SwiGLU with a Norm).
// On the stripes that norm is rms_norm's own launch, one block that reads
// the row, reduces it and writes the normed copy: ~4 µs on the decode
// step's critical path, twice a layer (the Llama-3-8B shape at M = 1,
// H100: 349 → 368 tok/s with the launches knocked out). Instead, the
// adding product, as it writes a column tile's new values, leaves their
// sum of squares (float64) in a slot of the tile (qmm.cu's YOut.ss), and
// the next product adds the slots after its wait, finds r = 1/√(Σ/K + eps)
// and forms (x·r)·w as it stages x (qmm.cu's NORM_SS) — no reduction of
// the row and no launch.
//
// One array of slots serves every product: a product writes its slots
// after its wait, when the product that read the previous sums has
// completed.
//
// The host passes the sums on only from one op to the next: the op that
// begins (enter) takes the previous op's mark (in) and clears it (out), so
// any op between the product and the norm's reader — a copy, another
// kernel that may write the row — leaves the norm to rms_norm.

// ssNorm (MARLIN_CUDA_SSNORM=0 turns it off, for measurements) lets an
// adding decode product leave its row's sums of squares for the next
// product's norm.
var ssNorm = os.Getenv("MARLIN_CUDA_SSNORM") != "0"

// ssTiles is the most column tiles (64 columns each) a row may have for
// its sums to be left.
const ssTiles = 1024

// ssState is the slots on the device and what the ops know of them.
type ssState struct {
	buf     *buffer // ssTiles float64s
	in, out ssMark
	used    int // products that took their norm from the sums (tests)
}

// ssMark says that the sums of squares of the row at y (n floats) are at
// sum; the zero mark says nothing.
type ssMark struct {
	y, sum uint64
	n      int
}

// ssProduce sets o up to leave the sums of squares of its one row (a
// plain output that the product adds to, M = 1, the 4-bit decode kernels)
// and marks the op's output as having them.
func (b *Backend) ssProduce(o *yout, m *matrix, M int) {
	if !ssNorm || b.ss.buf == nil || M != 1 || o.accum != 1 || o.mode != youtSplit || o.n1 != int32(m.rows) || o.n2 != int32(m.rows) ||
		(m.f != fmtPInt4 && m.f != fmtPFP4) || m.rows > 64*ssTiles {
		return
	}
	o.ss = b.ss.buf.ptr
	b.ss.out = ssMark{y: o.y0, sum: o.ss, n: m.rows}
}
