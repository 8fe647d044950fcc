package pages

import "golang.org/x/sys/unix"

// hugeAlign is the huge page size buffers are rounded up to.
const hugeAlign = 2 << 20

func huge(n int) ([]byte, func()) {
	size := (n + hugeAlign - 1) &^ (hugeAlign - 1)
	b, err := unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANON|unix.MAP_PRIVATE)
	if err != nil {
		return nil, nil
	}
	_ = unix.Madvise(b, unix.MADV_HUGEPAGE) // a hint: without THP the pages stay small
	return b[:n:n], func() { _ = unix.Munmap(b) }
}
