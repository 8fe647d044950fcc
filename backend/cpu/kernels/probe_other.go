//go:build !amd64 || purego

package kernels

import "unsafe"

// Portable stand-ins for the amd64 machine probes.

// MemRead reads the n bytes at p (n a multiple of 256) and returns the XOR
// of their 64-bit words: the read-only reference of the decode kernels'
// weight streams.
func MemRead(p *byte, n int) uint64 {
	var s uint64
	for _, v := range unsafe.Slice((*uint64)(unsafe.Pointer(p)), n/8) {
		s ^= v
	}
	return s
}

func fmaPeak(n int) {}

func clockLoop(n int) {}

const probesAvailable = false
