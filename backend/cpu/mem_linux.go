package cpu

import (
	"bufio"
	"bytes"
	"os"
	"strconv"
)

// MemoryAvailable implements backend.Backend: the kernel's estimate of the
// memory available for new allocations without swapping (MemAvailable of
// /proc/meminfo), less the memory-mapped weights the kernels read, which
// that estimate counts as reclaimable page cache although every forward
// pass needs them (an underestimate while they are not yet read in).
func (b *Backend) MemoryAvailable() int64 {
	raw, err := os.ReadFile("/proc/meminfo")
	if err != nil {
		return 0
	}
	sc := bufio.NewScanner(bytes.NewReader(raw))
	for sc.Scan() {
		f := bytes.Fields(sc.Bytes())
		if len(f) >= 2 && string(f[0]) == "MemAvailable:" {
			kb, err := strconv.ParseInt(string(f[1]), 10, 64)
			if err != nil || kb < 0 {
				return 0
			}
			return max(kb<<10-b.mapped.Load(), 0)
		}
	}
	return 0
}
