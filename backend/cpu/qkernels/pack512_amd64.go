//go:build amd64 && !purego

package qkernels

import (
	"runtime"
	"unsafe"

	"github.com/marlin-llm/marlin/dtype"
	"github.com/marlin-llm/marlin/internal/pages"
	"github.com/marlin-llm/marlin/quant"
)

// Packed layout of the fast GPTQ kernels (AVX-512, and AVX2: gptqY reads
// it too, gptqUseYPack).
//
// In the checkpoint layout a decode pass reads, per block of columns, bits
// qweight rows of one sub-group (each 4·N bytes apart) and a row of the
// scales (and zero points) elsewhere: bits+1 (or +2) concurrent streams per
// core, each jumping by a row stride at every block. The packed copy puts,
// for each tile of T output columns (T = the widest one-row kernel's block;
// 32 for the two-stream kernels' weights, gptqTwoStreamsFor)
// and each group, the group's codes (the qweight rows of its sub-groups,
// T columns each), then its T fp16 scales, then (when the zero points are
// not uniform) its zero points, padded to 64 bytes; the tiles of one column
// tile follow each other group by group, and column tiles follow each
// other. A kernel walking one column tile over all of K then reads a single
// forward stream, and a core's column range is one contiguous region.
//
// The kernels take it through the same argument block as the checkpoint
// layout (qstride = 4·width of the tile, sstride = zstride = tile bytes,
// qgroup = the tile's scale and zero-point bytes), one call per column
// tile, so every output element is still computed by the same operations
// in the same order: the results equal the unpacked kernels' bit for bit.
//
// The copy is made by Prepare while the model loads (or else on the
// weight's first call), in one pass, on huge pages where the
// system has them (pages.Huge), and kept while the Weight is reachable;
// its size is that of codes + scales
// (+ zero points), plus padding to 64 bytes per tile when the tile is not
// a multiple of it (none for int4 g32 with uniform zero points).
type gptqPacked struct {
	buf   []byte  // 64-byte aligned
	T     int     // columns of a full tile
	G     int     // groups
	cpg   int     // code bytes per column per group (4 · bits · Group/32)
	zeros bool    // tiles hold zero points
	zero  float32 // GPTQ: the zero point of every column and group where the tiles hold none, else the offset added to theirs
	bits  int
	full  int  // bytes of a full tile (one group)
	nv    bool // NVFP4: two scale rows a group (a unit), each 2·T bytes
	// identity of the packed weight's buffers
	data, scales, zp unsafe.Pointer
	uniform          bool
}

// gptqUsePack selects the packed layout (benchmarks compare without).
var gptqUsePack = true

// gptqUseTwoStreams selects, for the weights packed after it is set, the
// two-stream one-row kernels (gptqTwoStreams) and the 32-column tiles they
// read (tests and benchmarks compare without).
var gptqUseTwoStreams = true

// gptqTwoStreamsFor reports whether w's packed copy is cut into tiles of
// 32 columns for the two-stream direct kernels: 4-bit codes without zero
// points of their own (INT4 with uniform zero points, FP4, MXFP4), on
// AVX-512 VNNI.
func gptqTwoStreamsFor(w *quant.Weight) bool {
	return gptqUseTwoStreams && gptqUseDirect && useAVX512 && useVNNI && packedBits(w) == 4 &&
		w.Format != quant.NVFP4 && (isE2M1(w.Format) || w.Zeros == nil || w.ZerosUniform)
}

// gptqPackAhead is the software prefetch distance of the packed walk in
// bytes of its stream: the kernels prefetch each row they read that far
// ahead (and, in each group's epilogue, the scales as far). Measured on
// dev-cpu, one x row, K2048×N8192 and K8192×N2048 alternating in one
// process, with int4 g32's tiles of 1,152 bytes: 0, 1 or 2 tiles ahead
// read 10–35% less than 4, 4 about 5–10% less than 8, 6 to 16 within a few
// percent of 8 — which is this distance. It used to be 8 tiles whatever
// their size: 34 KB ahead for int4 g128 (2 tiles, 8.4 KB, read 8–12%
// faster) and 0.5–2 MB for per-channel weights, whose one group spans a
// tile's whole K (int4 per channel read ~30% slower than g32).
var gptqPackAhead = 9216

// ahead returns the packed walk's prefetch distances (bytes): of the rows
// and of the scales. Both are whole tiles of a group where a tile is
// shorter than gptqPackAhead, so that the rows' prefetches fall on codes
// and the scales' on scales (a row prefetch of codes that fell on a
// group's scales would leave a line of codes unfetched in every group);
// where one group's tile is longer, the rows are prefetched gptqPackAhead
// ahead and the scales a tile ahead (the next tile's group).
// With gptqNoPrefetch the rows are not prefetched (rows = 0).
func (p *gptqPacked) ahead() (rows, scales int) {
	if p.full > gptqPackAhead {
		rows, scales = gptqPackAhead&^63, p.full
	} else {
		k := max(1, (gptqPackAhead+p.full/2)/p.full)
		rows, scales = k*p.full, k*p.full
	}
	if gptqNoPrefetch {
		rows = 0
	}
	return rows, scales
}

// tileRun is one kernel call's share of the packed copy: the columns
// [c0, c1) of nt column tiles from the one starting at column t0 (a run of
// whole tiles, or part of one tile), each wt columns wide, at base.
type tileRun struct {
	p                  *gptqPacked
	t0, c0, c1, nt, wt int
	codes, tb          int // code bytes and all bytes of a group's tile
	base               uintptr
}

// runs calls fn for each tileRun of the columns [a0, a1) of an N-column
// weight, in column order: the kernels walk a run's tiles one after the
// other (gptqArgs.ntiles), each from its first group to its last.
func (p *gptqPacked) runs(a0, a1, N int, fn func(r tileRun)) {
	for t := a0 / p.T; t*p.T < a1; {
		r := tileRun{p: p, t0: t * p.T, nt: 1}
		r.c0, r.c1 = max(a0, r.t0), min(a1, r.t0+p.T)
		if r.c0 == r.t0 && r.c1 == r.t0+p.T {
			for (t+r.nt+1)*p.T <= a1 {
				r.nt++
			}
		}
		r.wt = min(p.T, N-r.t0) &^ 7
		r.codes, r.tb = p.tile(r.wt)
		r.base = uintptr(unsafe.Pointer(&p.buf[p.col(t)]))
		fn(r)
		t += r.nt
	}
}

// layout sets the packed layout's fields of a, a kernel call from column
// col of the run (bits-bit codes): the codes, scales and zero points of
// col in the run's first tile, their strides, the group skip and the
// tile loop.
func (r *tileRun) layout(a *gptqArgs, col, bits int) {
	o := uintptr(col - r.t0)
	a.q, a.qstride, a.qgroup = r.base+4*o, 4*r.wt, r.tb-r.codes
	a.z, a.zstride = r.base+uintptr(r.codes+2*r.wt)+o*uintptr(bits)/8, r.tb
	a.s, a.sstride = r.base+uintptr(r.codes)+2*o, r.tb
	a.ntiles, a.qtile, a.ytile = r.nt, r.p.G*r.p.full, 4*r.p.T
}

// tile returns the code bytes and the total bytes of a tile wt columns wide.
func (p *gptqPacked) tile(wt int) (codes, total int) {
	codes = p.cpg * wt
	total = codes + 2*wt
	if p.nv {
		total = codes + 4*p.T // the second half's scales 2·T after the first's
	}
	if p.zeros {
		total += wt * p.bits / 8
	}
	return codes, (total + 63) &^ 63
}

// col returns the byte offset of column tile t (all tiles before it full).
func (p *gptqPacked) col(t int) int { return t * p.G * p.full }

// packedBits is the code width of w's packed copy: GPTQ's bits, 4 for
// the e2m1 formats.
func packedBits(w *quant.Weight) int {
	if isE2M1(w.Format) {
		return 4
	}
	return w.Bits
}

// e4m3F16 holds the fp16 bits of every e4m3 byte (each e4m3 value is an
// fp16 value; NaN stays NaN).
var e4m3F16 = func() (t [256]uint16) {
	for b := range t {
		t[b] = dtype.F32ToF16(dtype.E4M3ToF32(uint8(b)))
	}
	return
}()

// packedGroup is the group size of w's packed copy: 32 for MXFP4 (its
// scales' blocks) and NVFP4 (a unit: its two blocks of 16 are scaled
// inside the kernels), else w.Group.
func packedGroup(w *quant.Weight) int {
	if w.Format == quant.MXFP4 || w.Format == quant.NVFP4 {
		return 32
	}
	return w.Group
}

// newGptqPacked makes the packed copy of a GPTQ weight, or of an FP4,
// MXFP4 or NVFP4 one (fp4VNNI): its rows of e2m1 codes transposed into
// qweight words (the word of input rows 8r … 8r+7 of column n is bytes
// 4r … 4r+3 of row n, low nibble first in both) and its scales [Out,
// Groups] (fp16, or e8m0 turned into fp16) into scale rows, without zero
// points. NVFP4's e4m3 scales (two a unit) become fp16 too (exactly): a
// tile's scales of the units' first halves, then, nvScaleHalf bytes after
// them (a full tile's worth: narrower tiles are padded), the second
// halves'.
func newGptqPacked(w *quant.Weight) *gptqPacked {
	K, N, bits := w.In, w.Out, packedBits(w)
	fp := isE2M1(w.Format)
	group := packedGroup(w)
	T := 16 * gptqZKernels[bits][1].c[0]
	if gptqTwoStreamsFor(w) {
		T = 32 // the two-stream kernels' two column vectors a stream
	}
	p := &gptqPacked{
		T: T, G: K / group, cpg: 4 * bits * group / 32,
		zeros: !(w.Zeros == nil || w.ZerosUniform) && !fp, bits: bits,
		data: unsafe.Pointer(unsafe.SliceData(w.Data)), scales: unsafe.Pointer(unsafe.SliceData(w.Scales)),
		zp: unsafe.Pointer(unsafe.SliceData(w.Zeros)), uniform: w.ZerosUniform, nv: w.Format == quant.NVFP4,
	}
	switch {
	case p.zeros:
		p.zero = float32(w.ZeroOffset)
	case !fp:
		p.zero = float32(zeroOf(w, 0, 0))
	}
	if p.nv && p.T != nvScaleHalf/2 {
		panic("qkernels: NVFP4 tiles of the kernels' width")
	}
	_, p.full = p.tile(p.T)
	nt := (N + p.T - 1) / p.T
	size := 0
	for t := 0; t < nt; t++ {
		wt := min(p.T, N-t*p.T) &^ 7
		_, tb := p.tile(wt)
		size += p.G * tb
	}
	// on huge pages where possible: a decode step streams the whole copy,
	// and with 4 KiB pages every 4 KiB of it costs a page-table walk
	// (dev-cpu: INT4 decode +15–40% GB/s at the VM's upper bandwidth level)
	buf, free := pages.Huge(size)
	p.buf = buf
	if free != nil {
		runtime.AddCleanup(p, func(f func()) { f() }, free)
	}
	zrow := 4 * ((N*bits + 31) / 32)
	rowsPerGroup := bits * group / 32
	for t := 0; t < nt; t++ {
		t0 := t * p.T
		wt := min(p.T, N-t0) &^ 7
		if wt == 0 {
			continue
		}
		codes, tb := p.tile(wt)
		d := p.buf[p.col(t):]
		for g := 0; g < p.G; g++ {
			o := 0
			for r := g * rowsPerGroup; r < (g+1)*rowsPerGroup; r++ {
				if fp {
					// word r of each of the tile's rows (bounds checked
					// once: the last row's word and the tile's end)
					_, _ = w.Data[(t0+wt-1)*(K/2)+4*r+3], d[o+4*wt-1]
					src := unsafe.Pointer(&w.Data[t0*(K/2)+4*r])
					dst := unsafe.Pointer(&d[o])
					for j := 0; j < wt; j++ {
						*(*uint32)(unsafe.Add(dst, 4*j)) = *(*uint32)(unsafe.Add(src, j*(K/2)))
					}
					o += 4 * wt
					continue
				}
				o += copy(d[o:o+4*wt], w.Data[r*4*N+4*t0:])
			}
			// the group's scales (fp16 in the tile; e8m0 and e4m3 turned
			// into fp16 exactly), then GPTQ's zero points
			switch w.Format {
			case quant.MXFP4:
				for j := 0; j < wt; j++ {
					h, _ := e8m0ToF16(w.Scales[(t0+j)*p.G+g]) // mxfp4Fits checked them
					d[codes+2*j], d[codes+2*j+1] = byte(h), byte(h>>8)
				}
			case quant.FP4:
				for j := 0; j < wt; j++ {
					copy(d[codes+2*j:codes+2*j+2], w.Scales[2*((t0+j)*p.G+g):])
				}
			case quant.NVFP4:
				for h := 0; h < 2; h++ {
					for j := 0; j < wt; j++ {
						f := e4m3F16[w.Scales[(t0+j)*(K/16)+2*g+h]]
						o := codes + nvScaleHalf*h + 2*j
						d[o], d[o+1] = byte(f), byte(f>>8)
					}
				}
			default:
				copy(d[codes:codes+2*wt], w.Scales[g*2*N+2*t0:])
				if p.zeros {
					zb := wt * bits / 8
					copy(d[codes+2*wt:codes+2*wt+zb], w.Zeros[g*zrow+t0*bits/8:])
				}
			}
			d = d[tb:]
		}
	}
	return p
}

func (p *gptqPacked) matches(w *quant.Weight) bool {
	return p.data == unsafe.Pointer(unsafe.SliceData(w.Data)) && p.scales == unsafe.Pointer(unsafe.SliceData(w.Scales)) &&
		p.zp == unsafe.Pointer(unsafe.SliceData(w.Zeros)) && p.uniform == w.ZerosUniform && p.bits == packedBits(w)
}

// gptqPacks holds the packed copies of live Weights.
var gptqPacks perWeight[gptqPacked]

// gptqUseYPack selects the packed copy for the AVX2 kernels too (gptqY);
// off, they read the checkpoint layout (the benchmarks compare both).
var gptqUseYPack = true

// gptqPackable reports whether the fast GPTQ kernels of this machine read
// w from its packed copy (at least one 8-column block; the AVX2 kernels
// with gptqUseYPack).
func gptqPackable(w *quant.Weight) bool {
	return gptqUsePack && (useAVX512 || gptqUseYPack) && w.Out >= 8 && gptqFast(w)
}

// gptqPackY returns the packed copy the AVX2 kernels walk, or nil where
// they read the checkpoint layout.
func gptqPackY(w *quant.Weight) *gptqPacked {
	if !gptqPackable(w) {
		return nil
	}
	return gptqPackOf(w)
}

// gptqPackOf returns w's packed copy, making it on first use (and then
// releasing the pages of a mapped checkpoint's bytes).
func gptqPackOf(w *quant.Weight) *gptqPacked {
	return gptqPacks.get(w, func(w *quant.Weight) *gptqPacked {
		p := newGptqPacked(w)
		releaseSource(w)
		return p
	}, (*gptqPacked).matches)
}

// packSorted makes the packed copy of an act-order weight's sorted form
// wp when the AVX-512 kernels will read it, and then drops wp's codes:
// the packed copy holds them (its identity records no codes either, so it
// still matches wp). Called before wp is shared. Paths that would read
// wp's codes (the unpacked walk, the AVX2 kernels) take the list kernels
// instead (gptqSIMD).
func packSorted(wp *quant.Weight) {
	if useAVX512 && gptqUsePack && wp.Out >= 8 {
		gptqPackOf(wp).data = nil
		wp.Data = nil
	}
}

// releaseSource drops the resident pages of a mapped weight's checkpoint
// bytes once the packed copy holds them, so that the process keeps one
// copy of the weights in memory, not two. Paths that still read the
// original layout (columns outside the packed tiles, the portable code)
// fault the pages in again from the file.
func releaseSource(w *quant.Weight) {
	if w.Mapped {
		pages.Release(w.Data)
		pages.Release(w.Scales)
		pages.Release(w.Zeros)
	}
}

// packedRow dequantizes output feature row of a GPTQ weight into dst (In
// values) from its packed copy, as w.DequantizeRow would, bit for bit. The
// row is then one column of one tile, a contiguous run of the copy,
// where the checkpoint layout has it in a word of every qweight row (one
// page each, released once the copy is made): the lookup of a tied,
// quantized embedding. It reports false, leaving dst alone, where the
// copy does not hold the row (not packed, or in the columns after the
// last multiple of 8).
func packedRow(dst []float32, w *quant.Weight, row int) bool {
	if w.Format != quant.GPTQ || !gptqPackable(w) {
		return false
	}
	p := gptqPackOf(w)
	t, c := row/p.T, row%p.T
	wt := min(p.T, w.Out-t*p.T) &^ 7
	if c >= wt {
		return false
	}
	codes, tb := p.tile(wt)
	bits, group := p.bits, w.Group
	mask := uint32(1)<<uint(bits) - 1
	for g := range p.G {
		gb := p.buf[p.col(t)+g*tb : p.col(t)+(g+1)*tb]
		s := dtype.F16ToF32(uint16(gb[codes+2*c]) | uint16(gb[codes+2*c+1])<<8)
		z := int32(p.zero)
		if p.zeros {
			zb, pos := gb[codes+2*wt:codes+2*wt+wt*bits/8], c*bits
			v := uint32(zb[pos/8]) >> uint(pos%8)
			if pos%8+bits > 8 {
				v |= uint32(zb[pos/8+1]) << uint(8-pos%8)
			}
			z = int32(v&mask) + int32(w.ZeroOffset)
		}
		// the column's word of code row r is word r·wt + c of the group
		for kk := range group {
			dst[g*group+kk] = float32(int32(field(gb, c, wt, kk*bits, bits))-z) * s
		}
	}
	return true
}
