//go:build amd64 && !purego

package kernels

// Machine probes (probe_amd64.s): the memory read bandwidth that `marlin
// bench` and the benchmarks compare the kernels with, the FMA peak and the
// core clock for the benchmarks.

// MemRead reads the n bytes at p (n a multiple of 256) as plainly as the
// machine allows — four sequential streams of 32-byte loads with a software
// prefetch ahead, nothing else — and returns the XOR of their 64-bit words.
// It is the read-only reference the decode kernels' weight streams are
// measured against.
//
//go:noescape
func MemRead(p *byte, n int) uint64

// fmaPeak runs n iterations of 12 independent 8-wide FMAs (192 flops each).
func fmaPeak(n int)

// clockLoop runs 8·n dependent single-cycle additions.
func clockLoop(n int)

// probesAvailable reports whether fmaPeak and clockLoop measure anything.
const probesAvailable = true
