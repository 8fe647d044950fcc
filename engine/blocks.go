package engine

// blockPool hands out the KV cache's blocks. It is used only by the
// engine's loop goroutine.
type blockPool struct {
	free  []int32
	total int
}

func newBlockPool(n int) *blockPool {
	p := &blockPool{free: make([]int32, n), total: n}
	for i := range p.free {
		p.free[i] = int32(n - 1 - i) // hand out low block numbers first
	}
	return p
}

// available returns the number of free blocks.
func (p *blockPool) available() int { return len(p.free) }

// grow extends blocks to n blocks; it takes nothing and returns false when
// fewer than the needed blocks are free.
func (p *blockPool) grow(blocks []int32, n int) ([]int32, bool) {
	need := n - len(blocks)
	if need <= 0 {
		return blocks, true
	}
	if need > len(p.free) {
		return blocks, false
	}
	for range need {
		last := len(p.free) - 1
		blocks = append(blocks, p.free[last])
		p.free = p.free[:last]
	}
	return blocks, true
}

// release returns blocks to the pool.
func (p *blockPool) release(blocks []int32) {
	p.free = append(p.free, blocks...)
}
