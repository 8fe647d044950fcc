//go:build !linux

package cpu

// MemoryAvailable implements backend.Backend: not known here.
func (b *Backend) MemoryAvailable() int64 { return 0 }
