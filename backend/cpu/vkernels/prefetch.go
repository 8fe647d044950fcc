package vkernels

import "unsafe"

// Prefetch asks the processor to bring the n bytes at p into its caches
// ahead of their use (a hint: it reads nothing the program sees, and does
// nothing on other architectures or with the purego tag). p must point
// into a live Go object of at least n bytes.
func Prefetch(p unsafe.Pointer, n int) {
	if n > 0 && level != levelGo {
		prefetchLines(p, n)
	}
}
