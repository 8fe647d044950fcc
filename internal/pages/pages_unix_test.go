//go:build unix

package pages

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"unsafe"
)

// TestReleaseRereads: released pages of a file mapping read back the
// file's bytes (the kernel faults them in again), including the partial
// pages at both ends of an unaligned slice.
func TestReleaseRereads(t *testing.T) {
	page := os.Getpagesize()
	want := make([]byte, 5*page+123)
	for i := range want {
		want[i] = byte(i*7 + i>>9)
	}
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, want, 0o644); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := syscall.Mmap(int(f.Fd()), 0, len(want), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer syscall.Munmap(m)
	sum := 0
	for _, b := range m {
		sum += int(b) // fault every page in
	}
	Release(m[100 : 3*page+77])
	Release(nil)
	for i := range want {
		if m[i] != want[i] {
			t.Fatalf("byte %d = %d after Release, want %d", i, m[i], want[i])
		}
	}
	_ = sum
}

// TestHuge: a huge-page buffer is zeroed, 64-byte aligned and writable.
func TestHuge(t *testing.T) {
	const n = 5<<20 + 123
	b, free := Huge(n)
	if len(b) != n || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%64 != 0 {
		t.Fatalf("len %d, address %p", len(b), unsafe.SliceData(b))
	}
	for i, v := range b {
		if v != 0 {
			t.Fatalf("byte %d is %d", i, v)
		}
	}
	for i := range b {
		b[i] = byte(i * 7)
	}
	for i, v := range b {
		if v != byte(i*7) {
			t.Fatalf("byte %d reads %d", i, v)
		}
	}
	if free != nil {
		free()
	}
}

// TestHugeArenas: small buffers cut from shared arenas (more of them than
// one arena holds) are zeroed, 64-byte aligned, and do not overlap: a
// pattern written to each reads back after others were freed and new
// arenas taken.
func TestHugeArenas(t *testing.T) {
	type buf struct {
		b    []byte
		free func()
		v    byte
	}
	var live []buf
	for i := range 40 {
		n := (3<<20)/2 + 977*i // 1.5 MiB and a bit: 40 of them span two arenas
		b, free := Huge(n)
		if len(b) != n || uintptr(unsafe.Pointer(unsafe.SliceData(b)))%64 != 0 {
			t.Fatalf("buffer %d: len %d, address %p", i, len(b), unsafe.SliceData(b))
		}
		for j, x := range b {
			if x != 0 {
				t.Fatalf("buffer %d byte %d is %d", i, j, x)
			}
		}
		v := byte(i + 1)
		for j := range b {
			b[j] = v
		}
		live = append(live, buf{b, free, v})
		if i%3 == 2 && free != nil { // free some as we go
			live[len(live)-2].free()
			live = append(live[:len(live)-2], live[len(live)-1])
		}
	}
	for _, l := range live {
		for j, x := range l.b {
			if x != l.v {
				t.Fatalf("a buffer of value %d reads %d at %d: overlapping buffers", l.v, x, j)
			}
		}
		if l.free != nil {
			l.free()
			l.free()
		}
	}
}
