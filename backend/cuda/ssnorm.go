//go:build linux && !nocuda

package cuda

import "os"

// The RMS norm of a decode row from its producer's sum of squares.
//
// A Llama layer's residual stream h is written by a product that adds to
// it (o, then down: MatMulAdd), and read next through an RMS norm by the
// product after it (q/k/v, then gate/up: MatMulN and SwiGLU with a Norm).
// On the stripes that norm was rms_norm's own launch, one block that reads
// the row, reduces it and writes the normed copy: ~4 µs on the decode
// step's critical path, twice a layer (the Llama-3-8B shape at M = 1,
// H100: 349 → 368 tok/s with the launches knocked out). Instead, the
// adding product, as it writes each column's new value, adds the squares
// to a float64 sum (qmm.cu's YOut.ss: one atomic a warp that writes a
// column tile), and the next product reads that one number after its
// wait, finds r = 1/√(Σ/K + eps) and forms (x·r)·w as it stages x
// (qmm.cu's NORM_SS) — the same float32 inputs as rms_norm's, but no
// reduction and no launch.
//
// The sums live in a ring of ssSlots float64s. The n-th adding product
// adds to slot n mod ssSlots and zeroes slot n + 1 after its wait (by then
// every kernel before it has completed, the last reader of that slot among
// them); the next adding product adds to it after its own wait.
//
// The host passes a sum on only from one op to the next: the op that
// begins (enter) takes the previous op's mark (in) and clears it (out), so
// any op between the product and the norm's reader — a copy, another
// kernel that may write the row — leaves the norm to rms_norm.

// ssNorm (MARLIN_CUDA_SSNORM=0 turns it off, for measurements) lets an
// adding decode product leave its row's sum of squares for the next
// product's norm.
var ssNorm = os.Getenv("MARLIN_CUDA_SSNORM") != "0"

// ssSlots is the ring's length: at least 2 (the slot a product adds to and
// the one it zeroes).
const ssSlots = 4

// ssState is the ring of sums on the device and what the ops know of it.
type ssState struct {
	buf     *buffer // ssSlots float64s, zeroed at start
	next    int     // the slot the next adding product adds to
	in, out ssMark
	used    int // products that took their norm from a sum (tests)
}

// ssMark says that the sum of squares of the row at y (n floats) is at
// sum; the zero mark says nothing.
type ssMark struct {
	y, sum uint64
	n      int
}

// ssProduce sets o up to leave the sum of squares of its one row (a plain
// output that the product adds to, M = 1, the 4-bit decode kernels) in
// the next slot, and marks the op's output as having it.
func (b *Backend) ssProduce(o *yout, m *matrix, M int) {
	if !ssNorm || b.ss.buf == nil || M != 1 || o.accum != 1 || o.mode != youtSplit || o.n1 != int32(m.rows) || o.n2 != int32(m.rows) ||
		(m.f != fmtPInt4 && m.f != fmtPFP4) {
		return
	}
	k := b.ss.next
	b.ss.next = (k + 1) % ssSlots
	o.ss, o.ssz = b.ss.buf.ptr+uint64(8*k), int32(b.ss.next-k)
	b.ss.out = ssMark{y: o.y0, sum: o.ss, n: m.rows}
}
