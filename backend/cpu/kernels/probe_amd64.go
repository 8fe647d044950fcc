//go:build amd64 && !purego

package kernels

// Machine probes for the benchmarks (probe_amd64.s).

// memRead reads n bytes at p (n a multiple of 256) and returns a checksum.
//
//go:noescape
func memRead(p *byte, n int) uint64

// fmaPeak runs n iterations of 12 independent 8-wide FMAs (192 flops each).
func fmaPeak(n int)

// clockLoop runs 8·n dependent single-cycle additions.
func clockLoop(n int)

// probesAvailable reports whether fmaPeak and clockLoop measure anything.
const probesAvailable = true
