//go:build linux && !nocuda

package cuda

import "testing"

// TestPrefetchPlan checks the learned order of the products and the plans
// made from it (no GPU needed): the successor of the last product first,
// continuing inside it where the previous plan stopped, then the one after.
func TestPrefetchPlan(t *testing.T) {
	mk := func(base uint64, rows, cols int) *matrix {
		return &matrix{f: fmtPInt4, rows: rows, cols: cols, desc: wdesc{data: base}}
	}
	a, o, g := mk(1<<30, 128, 64), mk(2<<30, 64, 128), mk(3<<30, 256, 64) // 4 KB, 4 KB, 8 KB of codes
	if n := o.weightBytes(); n != 64*128/2 {
		t.Fatalf("weightBytes = %d, want %d", n, 64*128/2)
	}
	var p prefetchState
	if r := p.plan(1 << 20); r != ([2][2]uint64{}) {
		t.Fatalf("plan before any product = %v, want none", r)
	}
	for range 2 { // a step, then the next: a → o → g → a
		for _, m := range []*matrix{a, o, o, g} {
			p.productLaunched(m)
		}
	}
	p.productLaunched(a)
	want := [2][2]uint64{{2 << 30, 4096}, {3 << 30, 1024}}
	if r := p.plan(5120); r != want {
		t.Fatalf("after a: plan(5 KB) = %v, want %v", r, want)
	}
	want = [2][2]uint64{{3<<30 + 1024, 7168}, {1 << 30, 4096}}
	if r := p.plan(1 << 20); r != want {
		t.Fatalf("continued: plan(1 MB) = %v, want %v", r, want)
	}
	p.productLaunched(o)
	want = [2][2]uint64{{3 << 30, 8000}, {}}
	if r := p.plan(8000); r != want {
		t.Fatalf("after o: plan(8000) = %v, want %v", r, want)
	}
}
