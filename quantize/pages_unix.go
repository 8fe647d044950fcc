//go:build unix

package quantize

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

// dropPages tells the kernel that the mapped source bytes just processed are
// not needed any more, so the resident set stays at about one tensor even
// for a checkpoint larger than memory. Pages shared with a neighbouring
// tensor are simply read again if that tensor is used later.
func dropPages(data []byte) {
	if len(data) == 0 {
		return
	}
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	lo := start &^ (page - 1)
	hi := (start + uintptr(len(data)) + page - 1) &^ (page - 1)
	p := unsafe.Add(unsafe.Pointer(unsafe.SliceData(data)), -int(start-lo))
	_ = unix.Madvise(unsafe.Slice((*byte)(p), hi-lo), unix.MADV_DONTNEED)
}
