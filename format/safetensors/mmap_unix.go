//go:build unix

package safetensors

import (
	"fmt"
	"os"
	"syscall"
)

// mapped reports whether Open memory-maps files on this system.
const mapped = true

// mapFile maps the first size bytes of f read-only. The mapping stays valid
// after f is closed, until unmap is called.
func mapFile(f *os.File, size int64) (data []byte, unmap func() error, err error) {
	b, err := syscall.Mmap(int(f.Fd()), 0, int(size), syscall.PROT_READ, syscall.MAP_SHARED)
	if err != nil {
		return nil, nil, fmt.Errorf("mmap: %w", err)
	}
	return b, func() error { return syscall.Munmap(b) }, nil
}
