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
