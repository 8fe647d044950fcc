//go:build linux && !nocuda

package cuda

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"unsafe"

	"github.com/marlin-llm/marlin/backend"
)

// selection holds each row's chosen experts and weights on the device:
// ids int32 [rows, k] followed by weights float32 [rows, k].
type selection struct {
	owner   *Backend
	rows, k int
	buf     *buffer
}

// Rows implements backend.Selection.
func (s *selection) Rows() int { return s.rows }

func (s *selection) ids() uint64     { return s.buf.ptr }
func (s *selection) weights() uint64 { return s.buf.ptr + uint64(4*s.rows*s.k) }

// NewSelection implements backend.Backend. An allocation failure becomes
// the sticky error.
func (b *Backend) NewSelection(rows, topK int) backend.Selection {
	if rows < 0 || topK < 0 {
		panic(fmt.Sprintf("cuda: NewSelection(%d, %d): negative size", rows, topK))
	}
	b.enter()
	defer b.leave()
	buf, err := b.alloc(8 * int64(rows) * int64(topK))
	b.fail(err)
	if err == nil {
		b.memsetZero(buf.ptr, 2*int64(rows)*int64(topK))
	}
	return &selection{owner: b, rows: rows, k: topK, buf: buf}
}

func (b *Backend) sel(s backend.Selection) *selection {
	c, ok := s.(*selection)
	if !ok || c.owner != b {
		panic(fmt.Sprintf("cuda: selection of another backend (%T)", s))
	}
	return c
}

// Route implements backend.Backend with the kernels of moe.cu, which follow
// the CPU backend's Route step for step. A dense router without expert
// groups is one route_mv launch with the norm folded in: the logits in
// float32, as transformers computes GLM's and DeepSeek's (the matmul
// kernels round x to 16 bits at prefill sizes, which moved near-tied
// choices and weights by ~1e-3), then the choice. Otherwise the norm is an
// RMSNorm and the logits are a MatMul into scratch, chosen from by
// route_warp (no groups) or route.
func (b *Backend) Route(s backend.Selection, xn, x backend.Tensor, norm *backend.Norm, router backend.Matrix, r *backend.Router) {
	sl, xt, w := b.sel(s), b.tensor(x), b.mat(router)
	E := w.rows
	checkShape("Route", xt.cols == w.cols, "x [%d, %d] for the router %s", xt.rows, xt.cols, w.name)
	if err := r.Check(sl.rows, sl.k, xt.rows, E); err != nil {
		checkShape("Route", false, "%v", err)
	}
	var nt *tensor
	var nv *vector
	if norm != nil {
		nt, nv = b.tensor(xn), b.vec(norm.W)
		checkShape("Route", nt.rows == xt.rows && nt.cols == xt.cols && nv.n == xt.cols && nt.buf != xt.buf,
			"xn [%d, %d] (a buffer of its own) and norm weight %d for x [%d, %d]", nt.rows, nt.cols, nv.n, xt.rows, xt.cols)
	}
	groups := max(r.Groups, 1)
	var bias *vector
	if r.Bias != nil {
		bias = b.vec(r.Bias)
		checkShape("Route", bias.n == E, "bias of %d for %d experts", bias.n, E)
	}
	scale := r.Scale
	if scale == 0 {
		scale = 1
	}
	M := xt.rows
	oneLaunch := groups == 1 && E <= 256 && r.TopK <= 32 && w.cols%4 == 0 && xt.cols%4 == 0 && 4*(w.cols+E) <= 48<<10 &&
		M <= counterCap && (w.f == fmtF32 || w.f == fmtF16 || w.f == fmtBF16) && w.tr == nil && b.moe.routeMV[w.f] != 0 && !b.moe.off
	if !oneLaunch && norm != nil {
		b.RMSNorm(xn, x, norm.W, norm.Eps)
		x, xt, norm = xn, nt, nil
	}
	var lg *tensor
	if !oneLaunch && M > 0 {
		if lg = b.scratchTensor("route.logits", M, E); lg == nil {
			return // the sticky error is set
		}
		b.MatMul(lg, x, router)
	}
	b.enter()
	defer b.leave()
	if M == 0 || !b.usable(xt) || !w.usable() || !b.selUsable(sl) || sl.buf.ptr == 0 {
		return
	}
	var bp uint64
	if bias != nil {
		if !b.vecUsable(bias) {
			return
		}
		bp = bias.buf.ptr
	}
	if oneLaunch {
		var xnp, nwp uint64
		if norm != nil {
			if !b.usable(nt) || !b.vecUsable(nv) {
				return
			}
			xnp, nwp = nt.ptr(), nv.buf.ptr
		}
		lgs := b.scratchBuf("route.logits", 4*int64(M)*int64(E))
		if lgs == 0 {
			return
		}
		a := b.newArgs()
		a.ptr(sl.ids())
		a.ptr(sl.weights())
		a.ptr(xt.ptr())
		a.i32(xt.cols)
		a.ptr(xnp)
		a.i32(xt.cols)
		a.ptr(nwp)
		if norm != nil {
			a.f32(norm.Eps)
		} else {
			a.f32(0)
		}
		a.desc(&w.desc)
		a.ptr(bp)
		a.i32(r.TopK)
		a.i32(btoi(r.Sigmoid))
		a.i32(btoi(r.Normalize))
		a.f32(scale)
		a.ptr(lgs)
		a.ptr(b.counters.ptr)
		// route_mv (moe.cu): blocks of 8 warps, a warp an expert; a row's
		// blocks in one cluster where they fit one (route_mv_*_cl)
		nb := (E + 7) / 8
		if routeClusterOn && nb > 1 && nb <= 8 && b.cc >= 90 && b.d.cuLaunchKernelEx != 0 && b.moe.routeMVCl[w.f] != 0 {
			b.launchCluster(b.moe.routeMVCl[w.f], nb, M, 1, 256, 4*(w.cols+E), a, b.pdlOps, nb)
			return
		}
		b.launchOpt(b.moe.routeMV[w.f], nb, M, 1, 256, 4*(w.cols+E), a, b.pdlOps)
		return
	}
	if !b.usable(lg) {
		return
	}
	topGroups := r.TopKGroups
	if groups == 1 {
		topGroups = 1
	}
	if groups == 1 && E <= 256 && r.TopK <= 32 && b.moe.routeWarp != 0 && !b.moe.off {
		a := b.newArgs()
		a.ptr(sl.ids())
		a.ptr(sl.weights())
		a.ptr(lg.ptr())
		a.ptr(bp)
		a.i32(lg.rows)
		a.i32(E)
		a.i32(r.TopK)
		a.i32(btoi(r.Sigmoid))
		a.i32(btoi(r.Normalize))
		a.f32(scale)
		b.launch(b.moe.routeWarp, (lg.rows+3)/4, 1, 128, 0, a)
		return
	}
	a := b.newArgs()
	a.ptr(sl.ids())
	a.ptr(sl.weights())
	a.ptr(lg.ptr())
	a.ptr(bp)
	a.i32(E)
	a.i32(r.TopK)
	a.i32(btoi(r.Sigmoid))
	a.i32(btoi(r.Normalize))
	a.i32(groups)
	a.i32(topGroups)
	a.i32(btoi(r.GroupMaskZero))
	a.f32(scale)
	smem := 4 * (3*E + 2*groups)
	b.launch(b.k.route, lg.rows, 1, 1, smem, a)
}

// routeClusterOn runs route_mv's rows in thread-block clusters where they
// fit one (MARLIN_CUDA_ROUTE_CLUSTER=0: the counter and global logits of
// the plain kernel, for measurements).
var routeClusterOn = os.Getenv("MARLIN_CUDA_ROUTE_CLUSTER") != "0"

// ExpertsAdd implements backend.Backend. Decode-sized batches (at most
// moeDeviceSlots chosen experts in all, the shared expert counting as one
// more a row) whose experts have a decode kernel run on the device alone
// (expertsOnDevice, moe_dispatch.go), the shared expert as one more slot
// of the same launches when it has the routed experts' shape and format.
// Otherwise the routed experts run expert by expert (expertsByExpert) and
// the shared expert through SwiGLU and MatMulAdd.
func (b *Backend) ExpertsAdd(dst, x backend.Tensor, s backend.Selection, experts []backend.Expert, shared *backend.Expert) {
	d, xt, sl := b.tensor(dst), b.tensor(x), b.sel(s)
	checkShape("ExpertsAdd", d.rows == xt.rows && d.cols == xt.cols && sl.rows >= xt.rows && len(experts) > 0,
		"dst [%d, %d], x [%d, %d], selection of %d rows, %d experts", d.rows, d.cols, xt.rows, xt.cols, sl.rows, len(experts))
	M, H, K := xt.rows, xt.cols, sl.k
	set := b.expertSetOf(experts, shared, H)
	perRow := K
	if set.sh != nil {
		perRow++
	}
	if M == 0 {
		return
	}
	if set.slotted && M*perRow <= moeDeviceSlots && b.expertsAddOnDevice(d, xt, sl, set) {
		return
	}
	b.expertsByExpert(d, xt, sl, set.mats)
	if set.sh != nil {
		a := b.scratchTensor("moe.shared", M, set.sh.gate.rows)
		if a == nil {
			return // the sticky error is set
		}
		b.SwiGLU(a, x, shared.Gate, shared.Up, nil)
		b.MatMulAdd(dst, a, shared.Down)
	}
}

// ffn is one expert's three matrices.
type ffn struct{ gate, up, down *matrix }

// expertSet is what ExpertsAdd derives from one layer's experts: their
// matrices with the shapes checked, the shared expert's, whether the
// shared expert can ride along as one more slot of the routed experts'
// launches (same shape and format), and the device dispatch table
// (expertsOnDevice, built on first use). A decode step calls ExpertsAdd
// once a layer with the same list, so the set is kept with the first
// expert's gate matrix (its listTables: it lives as long as the weights)
// and reused while the list and the shared expert are the ones it was
// made for: checking 64 experts' shapes and naming them cost more host
// time than the step's launches.
type expertSet struct {
	list    []backend.Expert // a copy of the routed experts, then the shared expert if any
	routed  int              // how many of list are routed experts
	H       int
	mats    []ffn // the routed experts'
	sh      *ffn  // the shared expert's, or nil
	slotted bool
	table   *expertTable
}

// of reports whether s was made for experts, shared and H.
func (s *expertSet) of(experts []backend.Expert, shared *backend.Expert, H int) bool {
	return s.H == H && (s.sh != nil) == (shared != nil) && slices.Equal(s.list[:s.routed], experts) &&
		(shared == nil || s.list[s.routed] == *shared)
}

// expertSetOf returns the expertSet of experts and shared on hidden size
// H, made (and its shapes checked) on first use.
func (b *Backend) expertSetOf(experts []backend.Expert, shared *backend.Expert, H int) *expertSet {
	first := b.mat(experts[0].Gate)
	if first.lists == nil {
		first.lists = &listTables{}
	}
	if s := first.lists.set; s != nil && s.of(experts, shared, H) {
		return s
	}
	s := &expertSet{list: slices.Clone(experts), routed: len(experts), H: H, mats: make([]ffn, len(experts))}
	for e, ex := range experts {
		s.mats[e] = b.ffnOf(ex, H, fmt.Sprintf("expert %d", e))
	}
	if shared != nil {
		f := b.ffnOf(*shared, H, "shared expert")
		s.sh = &f
		s.list = append(s.list, *shared)
	}
	g0, sh := s.mats[0], s.sh
	s.slotted = sh == nil || sh.gate.rows == g0.gate.rows && sh.gate.f == g0.gate.f && sh.up.f == g0.gate.f && sh.down.f == g0.gate.f &&
		sh.gate.grp == nil && sh.up.grp == nil && sh.down.grp == nil
	first.lists.set = s
	return s
}

// ffnOf returns ex's matrices, checking that they form a SwiGLU network
// on hidden size H (what names ex in the panic).
func (b *Backend) ffnOf(ex backend.Expert, H int, what string) ffn {
	f := ffn{b.mat(ex.Gate), b.mat(ex.Up), b.mat(ex.Down)}
	I := f.gate.rows
	checkShape("ExpertsAdd", f.gate.cols == H && f.up.rows == I && f.up.cols == H && f.down.rows == H && f.down.cols == I,
		"%s: gate %s, up %s, down %s for hidden %d", what, f.gate.name, f.up.name, f.down.name, H)
	return f
}

// selUsable is usable for selections.
func (b *Backend) selUsable(sl *selection) bool {
	if sl.buf.ptr == 0 && sl.buf.size > 0 {
		b.fail(errors.New("cuda: use of a selection whose allocation failed"))
		return false
	}
	return b.err == nil
}

// expertsAddOnDevice runs expertsOnDevice under the op lock; it reports
// whether it did.
func (b *Backend) expertsAddOnDevice(d, xt *tensor, sl *selection, set *expertSet) bool {
	b.enter()
	defer b.leave()
	if !b.usable(d, xt) || !b.selUsable(sl) {
		return true // the sticky error is set: nothing more to queue
	}
	return b.expertsOnDevice(d, xt, sl, set)
}

// scratchTensor returns the scratch buffer name viewed as a [rows, cols]
// tensor (valid until the next use of that name), or nil after an
// allocation failure (the sticky error is set).
func (b *Backend) scratchTensor(name string, rows, cols int) *tensor {
	b.enter()
	defer b.leave()
	if b.scratchBuf(name, 4*int64(rows)*int64(cols)) == 0 {
		return nil
	}
	return &tensor{buf: b.scratch[name], rows: rows, cols: cols}
}

// expertsByExpert adds to d, for each row of x, the weighted sum of its
// selected experts' outputs. The chosen expert ids are copied to the host
// (one stream synchronisation per call) to group the rows by expert;
// then, expert by expert in increasing order, the expert's rows are
// gathered, run through gate, up, SiLU·up and down, and added to their
// tokens' rows times their routing weights (scatter_add) — the CPU's order
// of accumulation.
func (b *Backend) expertsByExpert(d, xt *tensor, sl *selection, mats []ffn) {
	M, H, K := xt.rows, xt.cols, sl.k
	b.enter()
	defer b.leave()
	if M == 0 || !b.usable(d, xt) || !b.selUsable(sl) {
		return
	}
	ids := make([]int32, M*K)
	b.flush() // the recorded ops (Route) come before the copy
	if len(ids) > 0 {
		b.checkCall(call(b.d.cuMemcpyDtoHAsync, uintptr(unsafe.Pointer(&ids[0])), uintptr(sl.ids()), uintptr(4*len(ids)), b.stream), "cuMemcpyDtoHAsync")
	}
	b.syncStream()
	if b.err != nil {
		return
	}
	counts := make([]int, len(mats))
	for _, e := range ids {
		checkShape("ExpertsAdd", e >= 0 && int(e) < len(mats), "expert %d of %d", e, len(mats))
		counts[e]++
	}
	// slots grouped by expert, in slot order within each (a counting sort)
	start := make([]int, len(mats)+1)
	maxN, maxI := 0, 0
	for e, n := range counts {
		start[e+1] = start[e] + n
		if n > 0 {
			maxN = max(maxN, n)
			maxI = max(maxI, mats[e].gate.rows)
		}
	}
	slots := make([]int32, len(ids))
	fill := append([]int(nil), start[:len(mats)]...)
	for i, e := range ids {
		slots[fill[e]] = int32(i)
		fill[e]++
	}
	sp := b.stageInts(slots)
	in := b.scratchBuf("moe.in", 4*int64(maxN)*int64(H))
	gate := b.scratchBuf("moe.gate", 4*int64(maxN)*int64(maxI))
	up := b.scratchBuf("moe.up", 4*int64(maxN)*int64(maxI))
	outp := b.scratchBuf("moe.out", 4*int64(maxN)*int64(H))
	if b.err != nil || sp == 0 {
		return
	}
	for e, n := range counts {
		if n == 0 {
			continue
		}
		f := mats[e]
		I := f.gate.rows
		es := sp + uint64(4*start[e])
		a := b.newArgs()
		a.ptr(in)
		a.ptr(xt.ptr())
		a.ptr(es)
		a.i32(K)
		a.i32(H)
		b.launch(b.k.gatherRows, n, 1, 256, 0, a)
		b.matmul(gate, I, in, H, n, f.gate)
		b.matmul(up, I, in, H, n, f.up)
		b.siluMul(gate, gate, up, int64(n)*int64(I))
		b.matmul(outp, H, gate, I, n, f.down)
		a = b.newArgs()
		a.ptr(d.ptr())
		a.ptr(outp)
		a.ptr(es)
		a.ptr(sl.weights())
		a.i32(K)
		a.i32(H)
		b.launch(b.k.scatterAdd, n, 1, 256, 0, a)
	}
}
