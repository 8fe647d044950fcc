//go:build !unix

package safetensors

import (
	"fmt"
	"io"
	"os"
)

// mapped reports whether Open memory-maps files on this system.
const mapped = false

// mapFile reads the first size bytes of f into memory: this system has no
// syscall.Mmap, so tensor data lives in the Go heap.
func mapFile(f *os.File, size int64) (data []byte, unmap func() error, err error) {
	b := make([]byte, size)
	if _, err := io.ReadFull(f, b); err != nil {
		return nil, nil, fmt.Errorf("read: %w", err)
	}
	return b, func() error { return nil }, nil
}
