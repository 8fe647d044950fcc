//go:build unix

package pages

import (
	"os"
	"unsafe"

	"golang.org/x/sys/unix"
)

func release(data []byte) {
	page := uintptr(os.Getpagesize())
	start := uintptr(unsafe.Pointer(unsafe.SliceData(data)))
	lo := start &^ (page - 1)
	hi := (start + uintptr(len(data)) + page - 1) &^ (page - 1)
	p := unsafe.Add(unsafe.Pointer(unsafe.SliceData(data)), -int(start-lo))
	_ = unix.Madvise(unsafe.Slice((*byte)(p), hi-lo), unix.MADV_DONTNEED)
}
