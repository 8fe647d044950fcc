package qkernels

// gptqArgs is the argument block of the GPTQ assembly kernels. Every field
// is 8 bytes; the offsets in the comments are the ones the assembly uses.
// Pointers are uintptrs (the assembly advances them, possibly to one past
// the end of a buffer); the Go driver keeps the buffers alive.
type gptqArgs struct {
	q           uintptr    // 0: qweight at the first row of the sub-group, first column
	qstride     int        // 8: bytes per qweight row (4·Out)
	z           uintptr    // 16: qzeros of the current group at the first column
	zstride     int        // 24: bytes per qzeros row (0: one synthesized row)
	s           uintptr    // 32: scales of the current group at the first column
	sstride     int        // 40: bytes per scales row (2·Out)
	xf          uintptr    // 48: x coefficients [unit][field][mc] float32
	uniform     int        // 56: ≠ 0: all zero points equal, folded into the initial sums
	sx          uintptr    // 64: per sub-group and x row {initial sum, Σx} float32 pairs
	qgroup      int        // 72: bytes added to q at each group's end (packed layout: the group's scales and zero points; else 0)
	y           uintptr    // 80: dst at (first x row, first column)
	ystride     int        // 88: bytes between dst rows (4·ldd)
	ncb         int        // 96: column blocks of 8·C columns
	nsub        int        // 104: sub-groups (of 32·upsub input rows)
	upsub       int        // 112: units of 32 input rows per sub-group
	subPerGroup int        // 120: sub-groups per quantization group
	pfdist      int        // 128: bytes from a row to the same row of the next sub-group
	subLeft     int        // 136: loop counter (assembly)
	groupLeft   int        // 144: loop counter (assembly)
	spf         int        // 152: scale prefetch distance (bytes ahead of the scales being read)
	zpf         int        // 160: zero-point prefetch distance
	ntiles      int        // 168: column tiles (≥ 1): after the last sub-group, restart one tile further
	qtile       int        // 176: bytes from one column tile to the next (q, z, s)
	saved       [6]uintptr // 184: q, z, s, xf, sx, y at the start of the tile (assembly)
	ytile       int        // 232: bytes from one column tile to the next in dst
	qdelta      int        // 240: two-stream kernels: bytes from the first stream's tile to the second's in the packed copy
	ydelta      int        // 248: two-stream kernels: bytes from the first stream's outputs to the second's in dst
	ngroups     int        // 256: direct kernels: quantization groups (nsub / subPerGroup)
}

// fpArgs is the argument block of the row-major (FP8/FP4/MXFP4/NVFP4)
// assembly kernels.
type fpArgs struct {
	w        uintptr // 0: weight row n0
	wstride  int     // 8: bytes per weight row
	s        uintptr // 16: block scales of row n0
	sstride  int     // 24: bytes per scale row
	xp       uintptr // 32: x in decode order [chunk][vector][mc][8] float32
	y        uintptr // 40: dst at (first x row, column n0)
	ystride  int     // 48: bytes between dst rows
	nrows    int     // 56: weight rows
	nchunks  int     // 64: chunks of 64 inputs per row
	rs       uintptr // 72: per-row scale (float32), multiplied into the result
	rsstride int     // 80: 4, or 0 for one shared value
	post     float32 // 88: constant factor of the result
	_        float32
	cpg      int // 96: chunks per fp16 scale (FP4 with group 64·j)
	accum    int // 104: add to dst instead of storing (kernels with mc > 1)
}

// fpgArgs is the argument block of the AVX-512 row-major matrix-vector
// kernels (fpg*).
type fpgArgs struct {
	w       uintptr // 0: weights of row n0 (advanced row by row by the kernel)
	wstride int     // 8: bytes per weight row
	s       uintptr // 16: block scales of row n0 (advanced likewise)
	sstride int     // 24: bytes per scale row
	x       uintptr // 32: x row 0
	xstride int     // 40: bytes between x rows
	y       uintptr // 48: dst at (x row 0, column n0)
	ystride int     // 56: bytes between dst rows
	nrows   int     // 64: weight rows
	nchunks int     // 72: units per row (spans of 128 inputs for e2m1, chunks of 64 for FP8)
	bchunks int     // 80: units per K block
	cpg     int     // 88: spans (f4b) or half spans (f4h) per fp16 scale (FP4 with group 64·j)
	left    int     // 96: loop counter (assembly)
	written int     // 104: loop state (assembly)
	sleft   int     // 112: loop counter (assembly)
}

// fppArgs is the argument block of the AVX-512 panel packing kernels
// (fpp*): four weight rows and their scales.
type fppArgs struct {
	panel   uintptr    // 0
	w       [4]uintptr // 8
	s       [4]uintptr // 40
	nchunks int        // 72: units (as in fpgArgs)
	cpg     int        // 80: as in fpgArgs
	sleft   int        // 88: loop counter (assembly)
}

// gptqActArgs is the argument block of the act-order GPTQ kernels.
type gptqActArgs struct {
	q        uintptr // 0: qweight row 0 at the first column
	qstride  int     // 8
	z        uintptr // 16: qzeros row 0 at the first column
	zstride  int     // 24
	s        uintptr // 32: scales row 0 at the first column
	sstride  int     // 40
	list     uintptr // 48: entries {row, shift, spill row, 32−shift} int32, group by group
	xl       uintptr // 56: x values in list order [entry][mc] float32
	sx       uintptr // 64: per group and x row {−ZeroOffset·Σx, Σx}
	cnt      uintptr // 72: entries per group (int32); advanced by the kernel
	y        uintptr // 80
	ystride  int     // 88
	ncb      int     // 96: column blocks
	qrows    int     // 104: qweight rows (for the stripe prefetch)
	groups   int     // 112
	_        int     // 120
	cnt0     uintptr // 128: saved cnt
	colLeft  int     // 136: loop counter (assembly)
	entryEnd uintptr // 144: loop bound (assembly)
}
