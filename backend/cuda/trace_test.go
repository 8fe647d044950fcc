//go:build linux && !nocuda

package cuda

import (
	"strings"
	"testing"
)

// TestTraceRecords checks the trace's reading of the device table on a
// made-up one (no GPU): launches by id, a block left from an older
// launch in the same slot ignored, names from the host's launches of the
// same shape (one that recorded nothing skipped), and only the launches
// after the last pause of over a millisecond kept; then that the table
// gives each launch the time to the next one's release.
func TestTraceRecords(t *testing.T) {
	raw := make([]uint64, traceSlots*traceBlocks*traceWords)
	shape := func(gx, gy, gz, bx int) uint64 {
		return uint64(gx) | uint64(gy)<<16 | uint64(gz)<<32 | uint64(bx)<<48
	}
	put := func(id uint64, blk int, wait, rel uint64, sh uint64) {
		e := raw[(int(id%traceSlots)*traceBlocks+blk)*traceWords:]
		e[0], e[1], e[2], e[3] = id, wait, rel, sh
	}
	mark := func(id uint64, blk, k int, at uint64) {
		raw[(int(id%traceSlots)*traceBlocks+blk)*traceWords+3+k] = at
	}
	a, c := shape(528, 1, 1, 128), shape(8, 1, 64, 128)
	put(3, 0, 100, 200, a) // before the pause: dropped
	put(traceSlots+5, 0, 5_000_000, 5_000_900, a)
	put(traceSlots+5, 1, 5_000_100, 5_001_000, a)
	put(5, 2, 1, 2, c) // an older launch's block in the same slot
	put(traceSlots+6, 0, 5_000_500, 5_013_900, c)
	put(traceSlots+9, 0, 5_010_000, 5_023_900, a)
	// phases: mark 2 of the first launch's two blocks, 1.1 and 2.1 µs
	// after its release (the median of two: the upper); mark 1 of the
	// attention launch's block
	mark(traceSlots+5, 0, 2, 5_002_000)
	mark(traceSlots+5, 1, 2, 5_003_000)
	mark(traceSlots+6, 0, 1, 5_016_900)
	launches := []traceLaunch{
		{"qmv_int4", 528, 1, 1, 128},
		{"qmv_int4", 528, 1, 1, 128},
		{"attn_split_128_4_bf16", 8, 1, 64, 128},
		{"kv_store", 1, 1, 1, 256}, // recorded nothing
		{"qmv_int4", 528, 1, 1, 128},
	}
	recs := traceRecords(raw, launches)
	if len(recs) != 3 {
		t.Fatalf("%d records, want 3: %+v", len(recs), recs)
	}
	want := []struct {
		name           string
		blocks         int
		wait0, rel0, r uint64
	}{
		{"qmv_int4", 2, 5_000_000, 5_000_900, 5_001_000},
		{"attn_split_128_4_bf16", 1, 5_000_500, 5_013_900, 5_013_900},
		{"qmv_int4", 1, 5_010_000, 5_023_900, 5_023_900},
	}
	for i, w := range want {
		r := recs[i]
		if r.name != w.name || r.blocks != w.blocks || r.wait0 != w.wait0 || r.rel0 != w.rel0 || r.relMax != w.r {
			t.Errorf("record %d: %+v, want %+v", i, r, w)
		}
	}
	if m := recs[0].marks; m[0].n != 0 || m[1] != (traceMark{2, 2100, 2100}) {
		t.Errorf("record 0's marks %+v, want mark 2 of two blocks at 1.1 and 2.1 µs", m)
	}
	if m := recs[1].marks; m[0] != (traceMark{1, 3000, 3000}) {
		t.Errorf("record 1's marks %+v, want mark 1 at 3 µs", m)
	}
	if r := recs[1]; r.gx != 8 || r.gy != 1 || r.gz != 64 || r.bx != 128 {
		t.Errorf("record 1's shape %dx%dx%d/%d, want 8x1x64/128", r.gx, r.gy, r.gz, r.bx)
	}
	var out strings.Builder
	writeTrace(&out, recs)
	for _, line := range []string{"qmv_int4 ", "13000  2: 2100/2100\n", "attn_split_128_4_bf16", "10000  1: 3000/3000\n", "1:   3.00 /   3.00", "2:   2.10 /   2.10"} {
		if !strings.Contains(out.String(), line) {
			t.Errorf("table without %q:\n%s", line, out.String())
		}
	}
}
