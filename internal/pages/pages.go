// Package pages manages memory at the level of the operating system's
// pages: it releases the resident pages of memory-mapped file data that a
// process has finished reading, and allocates large buffers on huge pages
// for data that kernels stream through.
package pages

import (
	"sync"
	"unsafe"
)

// Release tells the operating system that the pages under data (a slice of
// a read-only file mapping) are not needed now: they leave the process's
// resident set and are read from the file again if touched later. Pages
// shared with neighbouring data are treated the same way, which is safe
// for a file mapping (they are simply read again). It must never be called
// on heap or other anonymous memory, whose contents it would discard. It
// does nothing where the platform has no such hint.
func Release(data []byte) {
	if len(data) > 0 {
		release(data)
	}
}

// Huge returns a zeroed buffer of n bytes outside the Go heap, backed by
// transparent huge pages where the system allows it (2 MiB pages: a
// stream over hundreds of megabytes then needs about 500 times fewer page
// table walks than with 4 KiB pages), 64-byte aligned; or, where it
// cannot, one from the Go heap. free returns the memory (calling it again
// does nothing); the buffer must not be used after it. A nil free means
// the Go heap owns the buffer.
//
// Buffers of at least arenaSize/2 get a mapping of their own, rounded up
// to 2 MiB. Smaller ones (a model has many: a mixture of experts
// thousands of 1–2 MiB matrices, which rounding would grow by up to half)
// are cut one after the other from shared arenas of arenaSize, each
// unmapped when all its buffers are freed and another arena has taken its
// place; only the pages touched become resident.
func Huge(n int) (buf []byte, free func()) {
	if n > 0 {
		if n >= arenaSize/2 {
			if b, f := huge(n); b != nil {
				return b, sync.OnceFunc(f)
			}
		} else if b, f := fromArena(n); b != nil {
			return b, f
		}
	}
	raw := make([]byte, n+64)
	off := int((64 - uintptr(unsafe.Pointer(unsafe.SliceData(raw)))%64) % 64)
	return raw[off : off+n : off+n], nil
}

// arenaSize is the size of the shared huge-page arenas.
const arenaSize = 64 << 20

// arena is a huge-page mapping that small buffers are cut from in order.
type arena struct {
	mem   []byte
	off   int // bytes handed out
	live  int // buffers not yet freed
	unmap func()
}

var (
	arenaMu sync.Mutex
	current *arena // the arena new buffers are cut from
)

// fromArena cuts n bytes (rounded up to 64) from the current arena, or
// from a new one when it is full; nil when no mapping can be made.
func fromArena(n int) ([]byte, func()) {
	arenaMu.Lock()
	defer arenaMu.Unlock()
	size := (n + 63) &^ 63
	if current == nil || current.off+size > len(current.mem) {
		old := current
		mem, unmap := huge(arenaSize)
		if mem == nil {
			return nil, nil
		}
		current = &arena{mem: mem, unmap: unmap}
		if old != nil && old.live == 0 {
			old.unmap()
		}
	}
	a := current
	b := a.mem[a.off : a.off+n : a.off+n]
	a.off += size
	a.live++
	return b, sync.OnceFunc(func() {
		arenaMu.Lock()
		defer arenaMu.Unlock()
		if a.live--; a.live == 0 && a != current {
			a.unmap()
		}
	})
}
