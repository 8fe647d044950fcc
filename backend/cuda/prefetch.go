//go:build linux && !nocuda

package cuda

// L2 prefetch of the next products' weights. A decode step alternates
// products that stream weights from DRAM with kernels that read almost
// nothing from it (attention over a short cache, the RMS norms): while
// those run, the DRAM idles. The kernels that do (attn_split, rms_norm)
// take up to two byte ranges and ask the L2 for them
// (cp.async.bulk.prefetch: no data comes to the multiprocessor, nothing to
// wait for), so that the products after them find the front of their
// weights in the L2.
//
// Which weights come next is learned: each product launch records which
// matrix followed the one before (a step's order is the same every step),
// and a prefetch plan starts at the successor of the last product
// launched, continuing where the previous plan stopped inside it.

// prefetchAttn and prefetchNorm (MARLIN_CUDA_PREFETCH_ATTN,
// MARLIN_CUDA_PREFETCH_NORM: MiB; 0 none) are the bytes attn_split and
// rms_norm ask for.
var (
	prefetchAttn = int64(envInt("MARLIN_CUDA_PREFETCH_ATTN", 0)) << 20
	prefetchNorm = int64(envInt("MARLIN_CUDA_PREFETCH_NORM", 0)) << 20
)

// prefetchState is the learned order of the products and how far the last
// plan got.
type prefetchState struct {
	last *matrix             // the last product launched
	next map[*matrix]*matrix // the product that followed each
	at   *matrix             // the matrix the last plan ended in
	off  int64               // and the offset it ended at
	from *matrix             // the last product when that plan was made
}

// weightBytes is the contiguous range of m's weights a prefetch may ask
// for (its codes or its 16-bit values; scales are left to the kernel), or
// 0 where the layout has none that the decode kernels stream.
func (m *matrix) weightBytes() int64 {
	switch m.f {
	case fmtPInt4, fmtPFP4:
		steps := int64(m.cols / 16)
		return int64((m.rows+63)/64) * steps * packStepBytes
	case fmtF16, fmtBF16:
		return int64(m.rows) * int64(m.cols) * 2
	}
	return 0
}

// productLaunched records that m's product is being queued.
func (p *prefetchState) productLaunched(m *matrix) {
	if p.last == m {
		return
	}
	if p.last != nil {
		if p.next == nil {
			p.next = map[*matrix]*matrix{}
		}
		p.next[p.last] = m
	}
	p.last = m
}

// plan returns up to two ranges (device pointer, bytes) covering up to
// budget bytes of the weights of the products predicted to come next.
func (p *prefetchState) plan(budget int64) (r [2][2]uint64) {
	if budget <= 0 || p.last == nil {
		return r
	}
	m, off := p.next[p.last], int64(0)
	if p.from == p.last && p.at != nil { // no product since the last plan: go on from its end
		m = p.at
	}
	p.from = p.last
	for i := 0; i < 2 && m != nil && budget > 0; m = p.next[m] {
		if m == p.at {
			off = p.off
		}
		if n := min(budget, m.weightBytes()-off) &^ 15; n > 0 {
			r[i] = [2]uint64{m.desc.data + uint64(off), uint64(n)}
			budget -= n
			p.at, p.off = m, off+n
			i++
		}
		off = 0
		if m == p.last { // a whole step ahead
			break
		}
	}
	return r
}

// prefetchArgs appends a plan of budget bytes to a kernel's arguments.
func (a *launchArgs) prefetch(r [2][2]uint64) {
	for _, x := range r {
		a.ptr(x[0])
		a.u64(x[1])
	}
}
