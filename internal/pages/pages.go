// Package pages manages memory at the level of the operating system's
// pages: it releases the resident pages of memory-mapped file data that a
// process has finished reading, and allocates large buffers on huge pages
// for data that kernels stream through.
package pages

import "unsafe"

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
// cannot, one from the Go heap. free returns the memory; the buffer must
// not be used after it. A nil free means the Go heap owns the buffer.
func Huge(n int) (buf []byte, free func()) {
	if n > 0 {
		if b, f := huge(n); b != nil {
			return b, f
		}
	}
	raw := make([]byte, n+64)
	off := int((64 - uintptr(unsafe.Pointer(unsafe.SliceData(raw)))%64) % 64)
	return raw[off : off+n : off+n], nil
}
