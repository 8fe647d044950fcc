//go:build !amd64 || purego

package kernels

import "unsafe"

// Portable stand-ins for the amd64 machine probes used by the benchmarks.

func memRead(p *byte, n int) uint64 {
	var s uint64
	for _, v := range unsafe.Slice((*uint64)(unsafe.Pointer(p)), n/8) {
		s ^= v
	}
	return s
}

func fmaPeak(n int) {}

func clockLoop(n int) {}

const probesAvailable = false
