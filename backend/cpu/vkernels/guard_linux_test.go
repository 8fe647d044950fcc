//go:build linux

package vkernels

import (
	"math/rand/v2"
	"syscall"
	"testing"
	"unsafe"
)

// TestNoReadPastEnd places every input and output slice so that it ends
// exactly at a page that cannot be accessed (PROT_NONE): a kernel that
// loads or stores even one element past the end of a slice (a tail that is
// not masked, a wrong mask, an unrolled loop overrunning) faults and the
// test binary dies (values are checked by the other tests).
func TestNoReadPastEnd(t *testing.T) {
	page := syscall.Getpagesize()
	const pages = 64
	mem, err := syscall.Mmap(-1, 0, (pages+1)*page, syscall.PROT_READ|syscall.PROT_WRITE, syscall.MAP_ANON|syscall.MAP_PRIVATE)
	if err != nil {
		t.Skipf("mmap: %v", err)
	}
	defer syscall.Munmap(mem)
	if err := syscall.Mprotect(mem[pages*page:], syscall.PROT_NONE); err != nil {
		t.Skipf("mprotect: %v", err)
	}
	// atEnd returns a slice of n floats ending at the guard page, filled
	// with a copy of src; several can coexist (slot k ends k·stride
	// floats before the guard, on its own pages).
	const stride = 4 * 4096 // floats per slot (16 pages of 4 KiB)
	atEnd := func(slot int, src []float32) []float32 {
		end := pages*page/4 - slot*stride
		if len(src) > stride || end-len(src) < 0 {
			t.Fatalf("slice of %d does not fit a guard slot", len(src))
		}
		all := unsafe.Slice((*float32)(unsafe.Pointer(&mem[0])), pages*page/4)
		s := all[end-len(src) : end : end]
		copy(s, src)
		return s
	}
	// Only the slot ending at the guard page (slot 0) detects overruns;
	// each kernel is run once per argument with that argument in slot 0.
	r := rand.New(rand.NewPCG(31, 32))
	eachLevel(t, func(t *testing.T) {
		for _, n := range []int{1, 3, 7, 9, 15, 17, 33, 100} {
			a, b, c := randSigned(r, n, 0.1, 3), randSigned(r, n, 0.1, 3), randSigned(r, n, 0.1, 3)
			for guard := range 3 {
				slot := func(i int) int { return (i - guard + 3) % 3 } // argument i in slot 0 when i == guard
				x, y, z := atEnd(slot(0), a), atEnd(slot(1), b), atEnd(slot(2), c)
				Exp(x, y)
				SiLUMul(x, y, z)
				SoftmaxScaled(y, 0.5)
				Scale(z, 2)
				_ = MaxScaled(x, 1)
				RMSNorm(x, y, z, 1e-5)
				RMSNorm(z, z, y, 1e-5)
			}
		}
		for _, c := range []attnCase{{1, 1, 1}, {3, 5, 7}, {4, 17, 33}, {2, 9, 15}, {5, 16, 64}, {1, 20, 100}, {8, 3, 9}} {
			g, n, dim := c.g, c.n, c.dim
			q, keys := randSigned(r, g*dim, 0.1, 1), randSigned(r, n*dim, 0.1, 1)
			p, sc := randSigned(r, g*n, 0.1, 1), make([]float32, g*n)
			for guard := range 3 {
				slot := func(i int) int { return (i - guard + 3) % 3 }
				S, Q, K := atEnd(slot(0), sc), atEnd(slot(1), q), atEnd(slot(2), keys)
				BlockScores(S, n, Q, g, K, n, dim)
				KT := atEnd(slot(2), keys[:(dim-1)*n+n]) // [dim][n] view of the same numbers
				BlockScoresT(S, n, Q, g, KT, n, n, dim)
				O, P, V := atEnd(slot(0), q), atEnd(slot(1), p), atEnd(slot(2), keys)
				BlockValues(O, P, n, g, V, dim, n, dim)
			}
		}
	})
}
