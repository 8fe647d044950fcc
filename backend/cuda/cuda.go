//go:build linux && !nocuda

package cuda

import (
	"embed"
	"errors"
	"fmt"
	"os"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/marlin-llm/marlin/backend"
)

//go:embed common.cu qmm.cu hopper.cu matmul.cu ops.cu attention.cu moe.cu mla.cu trellis.cu sample.cu
var kernelFS embed.FS

// kernelFiles is the order in which the sources are concatenated.
var kernelFiles = []string{"common.cu", "qmm.cu", "hopper.cu", "matmul.cu", "ops.cu", "attention.cu", "moe.cu", "mla.cu", "trellis.cu", "sample.cu"}

// kernelParts are the programs NVRTC compiles, at the same time, into one
// module each: every program holds every file (the device helpers are
// shared), but defines the kernels of its part's sections only — the
// other MARLIN_KERNEL sites become uninstantiated templates, parsed but
// never compiled — so that ptxas, most of the time of a fresh build (~45 s
// for sm_90a as one program on the dev VM, ~90 s on the H100's host), runs
// on the parts in parallel. A section is a file ("qmm.cu") or the part of
// one after a line "// kernels: NAME" ("qmm.cu/NAME"), up to the next;
// every section is in exactly one part (TestKernelParts).
// The parts are balanced by their compile times (NVRTC 12.4, sm_90a, dev
// VM: 0.4–11 s a section, ~5 s a part).
var kernelParts = [][]string{
	{"qmm.cu"},
	{"qmm.cu/gemm"},
	{"qmm.cu/dmv", "qmm.cu/qmv8"},
	{"qmm.cu/qmv_tc", "trellis.cu", "ops.cu", "sample.cu"},
	{"hopper.cu", "matmul.cu"},
	{"attention.cu", "trellis.cu/mcg"},
	{"moe.cu", "trellis.cu/mul1"},
	{"mla.cu", "trellis.cu/rest"},
	{"trellis.cu/viterbi"},
}

// kernelSections splits file f into its sections: names and texts, and
// the line each starts at.
func kernelSections(f string, text string) (names []string, texts []string, lines []int) {
	names, lines = []string{f}, []int{1}
	start, off := 0, 0
	for i, l := range strings.SplitAfter(text, "\n") {
		if name, ok := strings.CutPrefix(strings.TrimSpace(l), "// kernels: "); ok {
			texts, start = append(texts, text[start:off]), off
			names, lines = append(names, f+"/"+name), append(lines, i+1)
		}
		off += len(l)
	}
	return names, append(texts, text[start:]), lines
}

// kernelSources returns the programs of kernelParts: every .cu file, each
// section preceded by its MARLIN_KERNEL definition (extern "C" __global__
// in its part, a template elsewhere) and a #line directive so that
// compile errors name the file and line.
func kernelSources() []string {
	srcs := make([]string, len(kernelParts))
	for i, part := range kernelParts {
		var sb strings.Builder
		for _, f := range kernelFiles {
			b, err := kernelFS.ReadFile(f)
			if err != nil {
				panic(err) // embedded: cannot happen
			}
			names, texts, lines := kernelSections(f, string(b))
			for j, name := range names {
				def := "template <int marlin_elsewhere = 0> __global__"
				if slices.Contains(part, name) {
					def = `extern "C" __global__`
				}
				fmt.Fprintf(&sb, "#undef MARLIN_KERNEL\n#define MARLIN_KERNEL %s\n#line %d \"%s\"\n%s\n", def, lines[j], f, texts[j])
			}
		}
		srcs[i] = sb.String()
	}
	return srcs
}

// kernels are the module's entry points.
type kernels struct {
	mmSmall, mmLarge, embed [numFmts]uintptr
	dequant                 [numFmts]uintptr // W as fp16 for cuBLAS (matmul.cu dequant_rows; 0: none for the format)

	add, addBias, siluMul, rmsNorm, rope, copyRows, copyCols uintptr
	kvStore, attention                                       [numKV]uintptr // by the cache's number type (kvSuffixes)
	route, gatherRows, scatterAdd                            uintptr
	sample                                                   uintptr // sample.cu

	// tensor-core decode kernels, [0]: M ≤ 8, [1]: M ≤ 16
	qmvInt4, qmvInt4Asym, qmvFP4, dmvF16, dmvBF16 [2]uintptr
	qmvFP4G16                                     [2]uintptr // FP4 with groups of 16 (qmm.cu qmv4, PACK_FP4G16)
	// the 16-bit ones (M ≤ 8) reading 256 bytes a row at a time (K % 128 == 0)
	dmvF16Wide, dmvBF16Wide uintptr
	// a 4-bit stripe decode kernel (M ≤ 8) → its tile-cluster version
	// normalising its input (qmv*_norm_tc)
	qmvNormTC                                           map[uintptr]uintptr
	qmvTC                                               map[uintptr]uintptr // a stripe decode kernel → its tile-cluster version
	permute, xToHalf, xToTiles, dequantInt4, dequantFP4 uintptr
	youtApply                                           uintptr                  // fused outputs of a plain product (matrix.go)
	qmvGPTQ8                                            [2]uintptr               // 8-bit GPTQ decode products in the stored layout (qmm.cu qmv8): symmetric, with zero points
	qmvFP8                                              uintptr                  // FP8 decode products in pack.go's tiled layout (qmm.cu qmv8)
	tcQgemm                                             [3]uintptr               // tc_qgemm_int4, _int4_asym, _fp4: prefill-sized 4-bit products (matrix.go tcGemm)
	wgQgemm                                             [len(wgForms)][4]uintptr // wg_qgemm_{int4, int4_asym, fp4, fp4_g16}_{form}: the same on the warpgroup MMA (sm_90a; matrix.go wgGemm)
	attnSplit                                           [numKV][2][4]uintptr     // [cache number type][D 64, 128][G 1, 2, 4, 8]
	attnSplitWide                                       [numKV][2]uintptr        // the wide form at G = 4: [cache number type][D 64, 128]
	tr                                                  trellisKernels           // EXL3 (trellis.go)
}

// wgForm is one form of wg_qgemm (hopper.cu): a block of 2·ct column
// tiles of 64 outputs (ct a warpgroup) × bt tokens.
type wgForm struct {
	name   string // the kernels' suffix
	bt, ct int
}

// wgForms are wg_qgemm's forms (hopper.cu's WG_QGEMM_FORM); matrix.go's
// wgQgemm picks one.
var wgForms = [3]wgForm{{"64", 64, 1}, {"64w", 64, 2}, {"128", 128, 2}}

// wgSmem is wg_qgemm's dynamic shared memory for form f (hopper.cu's
// wg_smem: WG_STAGES = 5 ring stages of each column tile's 1 KB of codes,
// 128 B of scales (g16: 256 B, two groups) and, with zero points, 256 B
// of zero pairs, and bt tokens × 32 inputs of x in fp16 — or, where
// larger, the cluster sum's 256 threads × ct·bt/2 floats —, then an
// 8-byte mbarrier a stage).
func wgSmem(f wgForm, asym, g16 bool) int {
	st := 2*f.ct*(1024+128) + 64*f.bt
	if asym {
		st += 2 * f.ct * 256
	}
	if g16 {
		st += 2 * f.ct * 128
	}
	const stages = 5
	return max(stages*st, 512*f.ct*f.bt) + 8*stages
}

// tgSmem is tc_qgemm's dynamic shared memory (qmm.cu's tg_smem: 5 ring
// stages of 2 KB of codes, 256 B of scales, with zero points 512 B of zero
// pairs, and a 64-row fp16 x tile of 96-byte rows).
func tgSmem(asym bool) int {
	st := 2048 + 256 + 64*48*2 // codes, scales, 64 rows of x16 96 bytes apart
	if asym {
		st += 512
	}
	return 5 * st
}

// qmvSmem is the shared-memory ring of a 4-bit decode kernel for mr rows
// (qmm.cu: 4 warps × qstages stages × qstage_bytes; with zero points, 256
// bytes more a stage; with the input's norm, 128; with groups of 16, 128
// for the second group's scales).
func qmvSmem(mr int, asym, norm, g16 bool) int {
	stages := 6 // qstages
	if mr == 16 {
		stages = 4
	}
	b := 1024 + 128*mr + 128
	if asym {
		b += 256
	}
	if norm {
		b += 128
	}
	if g16 {
		b += 128
	}
	return 4 * stages * b
}

// q8Smem is the ring of an 8-bit decode kernel, GPTQ or FP8 (qmm.cu qmv8:
// 4 warps × Q8D stages × q8stage_bytes).
func q8Smem(gptq, asym bool) int {
	b := 64*32 + 128*8 // FP8: the 64 rows' 32 bytes, and x
	if gptq {
		b = 8*72*4 + 128*8 + 128 // word rows at a 72-word pitch, x, scales
	}
	if asym {
		b += 64
	}
	return 4 * 4 * b
}

// dmvSmem is the ring of a 16-bit decode kernel for mr rows (qmm.cu: 4
// warps × DD stages × dstage_bytes).
func dmvSmem(mr int) int { return 4 * 4 * (4096 + 128*mr) }

// dmvWideSmem is the ring of the wide-order 16-bit decode kernel (qmm.cu:
// 4 warps × DDW stages × dstage_bytes_wide(8)).
const dmvWideSmem = 4 * 3 * (4096 + 512*8)

// Backend runs the ops on one CUDA device.
type Backend struct {
	d          *driver
	nv         *nvrtc
	wgmma      bool  // 4-bit products of 17 … wgGemmMax rows on wg_qgemm (hopper.cu; matrix.go wgGemm)
	wgmmaReady bool  // the module has wg_qgemm (an sm_90a image)
	wgmmaErr   error // why the sm_90a compilation failed, if it did (the module is then plain sm_90)
	ordinal    int
	dev        int32
	ctx        uintptr // the device's primary context
	stream     uintptr
	modules    []uintptr          // one a kernelParts program
	module     map[string]uintptr // kernel name → the module that has it
	k          kernels
	names      map[uintptr]string // kernel → name, for error messages
	cc, sms    int                // compute capability (major·10+minor), multiprocessors
	smemOptin  int                // largest dynamic shared memory a block may opt into
	desc       string
	totalMem   int64
	fromCache  bool // every module came from the disk cache

	mu     sync.Mutex
	closed atomic.Bool
	err    error // sticky: the first failure since the last Read or Sync

	allocs  map[uint64]int64 // live device allocations
	freeMu  sync.Mutex
	pending []uint64 // allocations to free after the next stream sync

	args    *launchArgs
	meta    *buffer // per-op upload area for small host arrays (see stage)
	metaOff int64
	scratch map[string]*buffer
	ropes   map[*backend.Rope]*ropeTab

	counters *buffer            // zeroed int32 counters of the split-K kernels (each resets what it uses)
	resident map[uintptr]int    // kernel → its blocks resident per multiprocessor
	clusters map[[2]uintptr]int // (kernel, cluster size) → its clusters resident on the device

	pdlOn      bool // programmatic dependent launch of the decode matmuls
	pdlOps     bool // and of the other kernels written for it (MARLIN_CUDA_PDL_OPS=0: the products only)
	launchCfg  launchConfig
	launchAttr [3]launchAttr

	blas      *cublas // the large-M path (cublas.go), loaded at first use
	blasTried bool
	blasErr   error
	dynSmem   map[uintptr]int // kernel → dynamic shared memory of a block

	// CUDA graphs of recorded op segments (graph.go)
	graphsOn      bool
	manualCapture bool
	flushing      bool
	seg           *segment
	graphs        map[uint64]*segGraph
	seenSigs      map[uint64]struct{} // hashes of the segments and chunks that ran
	graphChunk    int                 // ops of a segment run while recording (graph.go)
	graphFirst    int                 // the first such chunk's ops
	graphGrow     int                 // each chunk's ops this many times the one before, to graphChunk
	gstats        GraphStats

	moe   moeState  // device-side experts, batched heads, MLA attention (moe_dispatch.go)
	prof  *profiler // per-kernel timing (MARLIN_CUDA_PROFILE=1, profile.go)
	trace *tracer   // when each launch waits and is released (MARLIN_CUDA_TRACE=1, trace.go)
}

// New opens CUDA device ordinal (0 for the first), compiles (or loads from
// the cache) the kernels and returns the backend. Without a usable driver,
// device or NVRTC the error matches ErrUnavailable and says why, e.g.
// "no CUDA driver found (libcuda.so.1: cannot open shared object file: …)".
func New(ordinal int) (*Backend, error) {
	d, err := loadDriver()
	if err != nil {
		return nil, err
	}
	if r := call(d.cuInit, 0); r != cuSuccess {
		return nil, &unavailable{fmt.Sprintf("no usable CUDA device (cuInit: %s)", d.errorString(r))}
	}
	var count int32
	if err := d.check(call(d.cuDeviceGetCount, uintptr(unsafe.Pointer(&count))), "cuDeviceGetCount"); err != nil {
		return nil, err
	}
	if ordinal < 0 || ordinal >= int(count) {
		return nil, &unavailable{fmt.Sprintf("no CUDA device %d (%d found)", ordinal, count)}
	}
	nv, err := loadNVRTC()
	if err != nil {
		return nil, err
	}
	b := &Backend{d: d, nv: nv, ordinal: ordinal, names: map[uintptr]string{}, module: map[string]uintptr{}, allocs: map[uint64]int64{},
		args: new(launchArgs), scratch: map[string]*buffer{}, ropes: map[*backend.Rope]*ropeTab{}}
	if err := d.check(call(d.cuDeviceGet, uintptr(unsafe.Pointer(&b.dev)), uintptr(ordinal)), "cuDeviceGet"); err != nil {
		return nil, err
	}
	attr := func(a int) int {
		var v int32
		call(d.cuDeviceGetAttribute, uintptr(unsafe.Pointer(&v)), uintptr(a), uintptr(b.dev))
		return int(v)
	}
	b.cc = attr(attrComputeCapabilityMajor)*10 + attr(attrComputeCapabilityMinor)
	b.sms = max(attr(attrMultiprocessorCount), 1)
	b.smemOptin = attr(attrMaxSharedPerBlockOptin)
	nameBuf := make([]byte, 256)
	call(d.cuDeviceGetName, uintptr(unsafe.Pointer(&nameBuf[0])), uintptr(len(nameBuf)), uintptr(b.dev))
	var total uint64
	call(d.cuDeviceTotalMem, uintptr(unsafe.Pointer(&total)), uintptr(b.dev))
	b.totalMem = int64(total)
	devName := strings.TrimRight(string(nameBuf), "\x00")
	var dver int32
	call(d.cuDriverGetVersion, uintptr(unsafe.Pointer(&dver)))
	b.desc = fmt.Sprintf("%s (sm_%d, %d SMs, %.1f GiB; driver %d.%d, NVRTC %d.%d)", devName, b.cc, b.sms,
		float64(total)/(1<<30), dver/1000, dver%1000/10, nv.major, nv.minor)

	if err := d.check(call(d.cuDevicePrimaryCtxRetain, uintptr(unsafe.Pointer(&b.ctx)), uintptr(b.dev)), "cuDevicePrimaryCtxRetain"); err != nil {
		return nil, err
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	if err := b.init(); err != nil {
		b.teardown()
		return nil, err
	}
	return b, nil
}

// init creates the stream and loads the modules, one a program of
// kernelParts, compiled at the same time or from the disk cache (the
// context is current).
func (b *Backend) init() error {
	d := b.d
	if err := d.check(call(d.cuCtxSetCurrent, b.ctx), "cuCtxSetCurrent"); err != nil {
		return err
	}
	if err := d.check(call(d.cuStreamCreate, uintptr(unsafe.Pointer(&b.stream)), streamNonBlocking), "cuStreamCreate"); err != nil {
		return err
	}
	srcs := kernelSources()
	imgs, paths, cached, err := b.nv.images(srcs, b.cc, false)
	arch, _, _ := b.nv.target(b.cc)
	if err != nil && arch == "sm_90a" {
		// without Hopper's own target the warpgroup-MMA kernels are empty
		// stubs and everything else is the same: compile for plain sm_90
		b.wgmmaErr, b.nv.plain, arch = err, true, "sm_90"
		imgs, paths, cached, err = b.nv.images(srcs, b.cc, false)
	}
	if err != nil {
		return err
	}
	for i, img := range imgs {
		var mod uintptr
		r := call(d.cuModuleLoadData, uintptr(unsafe.Pointer(&mod)), uintptr(unsafe.Pointer(&img[0])))
		if r != cuSuccess && cached[i] { // a stale or damaged cache file: compile afresh
			fresh, fpaths, _, err := b.nv.images(srcs[i:i+1], b.cc, true)
			if err != nil {
				return err
			}
			paths[i], img = fpaths[0], fresh[0]
			r = call(d.cuModuleLoadData, uintptr(unsafe.Pointer(&mod)), uintptr(unsafe.Pointer(&img[0])))
			cached[i] = false
		}
		if err := d.check(r, "cuModuleLoadData "+paths[i]); err != nil {
			return err
		}
		b.modules = append(b.modules, mod)
		names, err := entryPoints(img)
		if err != nil {
			return fmt.Errorf("cuda: the kernels of program %d: %w", i, err)
		}
		for _, name := range names {
			b.module[name] = mod
		}
	}
	b.fromCache = !slices.Contains(cached, false)
	// the warpgroup-MMA products need the sm_90a image (nvrtc.target);
	// MARLIN_CUDA_WGMMA=0 turns them off (matrix.go wgGemm)
	b.wgmmaReady = arch == "sm_90a"
	b.wgmma = b.wgmmaReady && os.Getenv("MARLIN_CUDA_WGMMA") != "0"
	if err := b.loadKernels(); err != nil {
		return err
	}
	buf, err := b.allocRaw(4 * counterCap)
	if err != nil {
		return err
	}
	b.counters = buf
	b.memsetZero(buf.ptr, counterCap)
	b.graphsOn = os.Getenv("MARLIN_CUDA_GRAPHS") != "0"
	b.graphChunk = graphChunkOps
	if n, err := strconv.Atoi(os.Getenv("MARLIN_CUDA_GRAPH_CHUNK")); err == nil && n > 0 {
		b.graphChunk = n
	}
	b.graphFirst = min(b.graphChunk, graphFirstOps)
	if n, err := strconv.Atoi(os.Getenv("MARLIN_CUDA_GRAPH_FIRST")); err == nil && n > 0 {
		b.graphFirst = n
	}
	b.graphGrow = graphGrowBy
	if n, err := strconv.Atoi(os.Getenv("MARLIN_CUDA_GRAPH_GROW")); err == nil && n > 0 {
		b.graphGrow = n
	}
	if os.Getenv("MARLIN_CUDA_PROFILE") == "1" {
		b.prof, b.graphsOn = newProfiler(), false
	}
	// programmatic dependent launch of the decode matmuls: on unless
	// MARLIN_CUDA_PDL=0. With the fused decode products (4 a layer) it
	// measured +5% end to end on the 8B INT4 decode (docs/cuda-kernels.md)
	b.pdlOn = b.cc >= 90 && b.d.cuLaunchKernelEx != 0 && os.Getenv("MARLIN_CUDA_PDL") != "0"
	b.pdlOps = os.Getenv("MARLIN_CUDA_PDL_OPS") != "0"
	b.graphs = map[uint64]*segGraph{}
	b.resident = map[uintptr]int{}
	b.clusters = map[[2]uintptr]int{}
	if traceOn {
		return b.startTrace()
	}
	return nil
}

// residentBlocks returns how many blocks of kernel f, launched with threads
// threads a block (one size per kernel), fit on a multiprocessor at once
// (from the driver's occupancy calculator; 2 if the driver lacks it).
func (b *Backend) residentBlocks(f uintptr, threads int) int {
	if n, ok := b.resident[f]; ok {
		return n
	}
	n := int32(2)
	if b.d.cuOccupancyMaxActiveBlocksPerMultiprocessor == 0 ||
		call(b.d.cuOccupancyMaxActiveBlocksPerMultiprocessor, uintptr(unsafe.Pointer(&n)), f, uintptr(threads), uintptr(b.dynSmem[f])) != cuSuccess || n < 1 {
		n = 2
	}
	b.resident[f] = int(n)
	return int(n)
}

// residentClusters returns how many thread-block clusters of C blocks of
// kernel f (128 threads a block, its dynamic shared memory) the device
// holds at once: a cluster's blocks must share one GPC, so this can be
// well below residentBlocks·SMs/C. Without the driver's calculator it
// assumes no such loss.
func (b *Backend) residentClusters(f uintptr, threads, C int) int {
	key := [2]uintptr{f, uintptr(C)}
	if n, ok := b.clusters[key]; ok {
		return n
	}
	n := int32(b.residentBlocks(f, threads) * b.sms / C)
	if b.d.cuOccupancyMaxActiveClusters != 0 {
		attr := launchAttr{id: launchAttrClusterDimension, val: [16]uint32{uint32(C), 1, 1}}
		cfg := launchConfig{gridX: uint32(C), gridY: 1, gridZ: 1, blockX: uint32(threads), blockY: 1, blockZ: 1,
			smem: uint32(b.dynSmem[f]), stream: b.stream, attrs: uintptr(unsafe.Pointer(&attr)), numAttrs: 1}
		var got int32
		if call(b.d.cuOccupancyMaxActiveClusters, uintptr(unsafe.Pointer(&got)), f, uintptr(unsafe.Pointer(&cfg))) == cuSuccess && got > 0 {
			n = got
		}
		runtime.KeepAlive(&attr)
	}
	b.clusters[key] = int(n)
	return int(n)
}

// function returns the kernel called name from the module that defines
// it (kernelParts; entryPoints read which), or 0.
func (b *Backend) function(name string) uintptr {
	m, ok := b.module[name]
	if !ok {
		return 0
	}
	cname := cstr(name)
	var f uintptr
	if call(b.d.cuModuleGetFunction, uintptr(unsafe.Pointer(&f)), m, uintptr(unsafe.Pointer(&cname[0]))) != cuSuccess {
		return 0
	}
	return f
}

// loadKernels looks up every entry point in the modules.
func (b *Backend) loadKernels() error {
	var missing []string
	get := func(name string) uintptr {
		f := b.function(name)
		if f == 0 {
			missing = append(missing, name)
			return 0
		}
		b.names[f] = name
		return f
	}
	k := &b.k
	for f := range numFmts {
		k.mmSmall[f] = get("mm_small_" + fmtNames[f])
		k.mmLarge[f] = get("mm_large_" + fmtNames[f])
		k.embed[f] = get("embed_" + fmtNames[f])
	}
	for _, f := range []int{fmtFP8, fmtFP4, fmtMXFP4, fmtNVFP4, fmtGPTQ} {
		k.dequant[f] = get("dequant_" + fmtNames[f])
	}
	k.add, k.addBias, k.siluMul, k.rmsNorm = get("add_f32"), get("add_bias"), get("silu_mul"), get("rms_norm")
	k.rope, k.copyRows, k.copyCols = get("rope"), get("copy_rows"), get("copy_cols")
	for i, sfx := range kvSuffixes {
		k.kvStore[i], k.attention[i] = get("kv_store"+sfx), get("attention"+sfx)
	}
	k.route, k.gatherRows, k.scatterAdd = get("route"), get("gather_rows"), get("scatter_add")
	k.sample = get("sample_rows")
	for i, sfx := range []string{"", "_m16"} {
		k.qmvInt4[i], k.qmvInt4Asym[i], k.qmvFP4[i] = get("qmv_int4"+sfx), get("qmv_int4_asym"+sfx), get("qmv_fp4"+sfx)
		k.qmvFP4G16[i] = get("qmv_fp4_g16" + sfx)
		k.dmvF16[i], k.dmvBF16[i] = get("dmv_f16"+sfx), get("dmv_bf16"+sfx)
	}
	k.permute = get("permute_cols")
	k.youtApply = get("yout_apply")
	k.qmvGPTQ8[0], k.qmvGPTQ8[1], k.qmvFP8 = get("qmv_gptq8"), get("qmv_gptq8_asym"), get("qmv_fp8")
	k.xToHalf, k.xToTiles, k.dequantInt4, k.dequantFP4 = get("x_to_half"), get("x_to_tiles"), get("dequant_pint4"), get("dequant_pfp4")
	// the decode kernels' shared-memory rings (qmm.cu: QW warps × stages ×
	// stage bytes)
	b.dynSmem = map[uintptr]int{}
	for i, mr := range []int{8, 16} {
		for _, f := range []uintptr{k.qmvInt4[i], k.qmvFP4[i]} {
			b.dynSmem[f] = qmvSmem(mr, false, false, false)
		}
		b.dynSmem[k.qmvInt4Asym[i]] = qmvSmem(mr, true, false, false)
		b.dynSmem[k.qmvFP4G16[i]] = qmvSmem(mr, false, false, true)
		b.dynSmem[k.dmvF16[i]], b.dynSmem[k.dmvBF16[i]] = dmvSmem(mr), dmvSmem(mr)
	}
	b.dynSmem[k.qmvGPTQ8[0]], b.dynSmem[k.qmvGPTQ8[1]], b.dynSmem[k.qmvFP8] = q8Smem(true, false), q8Smem(true, true), q8Smem(false, false)
	k.dmvF16Wide, k.dmvBF16Wide = get("dmv_f16_wide"), get("dmv_bf16_wide")
	b.dynSmem[k.dmvF16Wide], b.dynSmem[k.dmvBF16Wide] = dmvWideSmem, dmvWideSmem
	// the tile-cluster versions of the 4-bit decode kernels (qmm.cu's TCL)
	k.qmvTC = map[uintptr]uintptr{}
	for i, sfx := range []string{"", "_m16"} {
		for _, p := range []struct {
			f    uintptr
			name string
		}{{k.qmvInt4[i], "qmv_int4"}, {k.qmvInt4Asym[i], "qmv_int4_asym"}, {k.qmvFP4[i], "qmv_fp4"}} {
			tc := get(p.name + sfx + "_tc")
			k.qmvTC[p.f], b.dynSmem[tc] = tc, b.dynSmem[p.f]
		}
	}
	for _, p := range []struct {
		f    uintptr
		name string
	}{{k.qmvGPTQ8[0], "qmv_gptq8"}, {k.qmvGPTQ8[1], "qmv_gptq8_asym"}, {k.qmvFP8, "qmv_fp8"}} {
		tc := get(p.name + "_tc")
		k.qmvTC[p.f], b.dynSmem[tc] = tc, b.dynSmem[p.f]
	}
	k.qmvNormTC = map[uintptr]uintptr{}
	for _, p := range []struct {
		f    uintptr
		name string
		asym bool
	}{{k.qmvInt4[0], "qmv_int4_norm_tc", false}, {k.qmvInt4Asym[0], "qmv_int4_asym_norm_tc", true}, {k.qmvFP4[0], "qmv_fp4_norm_tc", false}} {
		n := get(p.name)
		k.qmvNormTC[p.f], b.dynSmem[n] = n, qmvSmem(8, p.asym, true, false)
	}
	b.loadTrellisKernels(get)
	k.tcQgemm[0], k.tcQgemm[1], k.tcQgemm[2] = get("tc_qgemm_int4"), get("tc_qgemm_int4_asym"), get("tc_qgemm_fp4")
	b.dynSmem[k.tcQgemm[0]], b.dynSmem[k.tcQgemm[1]], b.dynSmem[k.tcQgemm[2]] = tgSmem(false), tgSmem(true), tgSmem(false)
	for i, form := range wgForms {
		for j, kind := range []string{"int4", "int4_asym", "fp4", "fp4_g16"} {
			f := get(fmt.Sprintf("wg_qgemm_%s_%s", kind, form.name))
			if b.wgmmaReady { // (elsewhere empty stubs, never launched: their rings need not fit)
				k.wgQgemm[i][j], b.dynSmem[f] = f, wgSmem(form, j == 1, j == 3)
			}
		}
	}
	for t, sfx := range kvSuffixes {
		for i, d := range []int{64, 128} {
			for j, g := range []int{1, 2, 4, 8} {
				k.attnSplit[t][i][j] = get(fmt.Sprintf("attn_split_%d_%d%s", d, g, sfx))
			}
			k.attnSplitWide[t][i] = get(fmt.Sprintf("attn_split_wide_%d_4%s", d, sfx))
		}
	}
	b.loadMoEKernels(get) // moe_dispatch.go: device-side experts, batched heads, MLA attention
	if len(missing) > 0 {
		return fmt.Errorf("cuda: kernels missing from the modules: %s", strings.Join(missing, ", "))
	}
	// attention's dynamic shared memory grows with the head sizes (MLA:
	// 576 + 4·512 floats; attn_mla_tc: ~182 KB at GLM's); allow it up to
	// the device's opt-in limit
	if b.smemOptin > 48<<10 {
		tc := b.moe.mlaTC
		for _, f := range slices.Concat(k.attention[:], tc[0][:], tc[1][:]) {
			if err := b.d.check(call(b.d.cuFuncSetAttribute, f, funcAttrMaxDynamicSharedSize, uintptr(b.smemOptin)), "cuFuncSetAttribute"); err != nil {
				return err
			}
		}
	}
	// MARLIN_CUDA_CARVEOUT (a measurement): the kernels' preferred
	// shared-memory share of the unified L1, in percent — one share for
	// all, so that a multiprocessor never reconfigures between launches —
	// or, with MARLIN_CUDA_CARVEOUT_KERNELS (comma-separated name
	// prefixes, e.g. "mla_prologue,attn_mla_tc"), for those kernels only
	if c := envInt("MARLIN_CUDA_CARVEOUT", -1); c >= 0 {
		only := strings.FieldsFunc(os.Getenv("MARLIN_CUDA_CARVEOUT_KERNELS"), func(r rune) bool { return r == ',' })
		for f, name := range b.names {
			if len(only) > 0 && !slices.ContainsFunc(only, func(p string) bool { return strings.HasPrefix(name, p) }) {
				continue
			}
			if err := b.d.check(call(b.d.cuFuncSetAttribute, f, funcAttrPreferredCarveout, uintptr(min(c, 100))), "cuFuncSetAttribute"); err != nil {
				return err
			}
		}
	}
	for f, n := range b.dynSmem {
		if n > max(b.smemOptin, 48<<10) {
			return fmt.Errorf("cuda: %s needs %d bytes of shared memory (device limit %d)", b.names[f], n, b.smemOptin)
		}
		if n > 48<<10 {
			if err := b.d.check(call(b.d.cuFuncSetAttribute, f, funcAttrMaxDynamicSharedSize, uintptr(n)), "cuFuncSetAttribute"); err != nil {
				return err
			}
		}
	}
	return nil
}

// teardown releases what New acquired (the context must be current).
func (b *Backend) teardown() {
	d := b.d
	for _, m := range b.modules {
		call(d.cuModuleUnload, m)
	}
	b.modules = nil
	if b.stream != 0 {
		call(d.cuStreamDestroy, b.stream)
		b.stream = 0
	}
	if b.ctx != 0 {
		call(d.cuDevicePrimaryCtxRelease, uintptr(b.dev))
		b.ctx = 0
	}
}

// Name implements backend.Backend: "cuda:N".
func (b *Backend) Name() string { return fmt.Sprintf("cuda:%d", b.ordinal) }

// Describe returns the device in one line: model, architecture, SMs,
// memory, driver and NVRTC versions.
func (b *Backend) Describe() string { return b.desc }

// enter starts an op: it serialises callers, pins the goroutine to its OS
// thread and makes the context current there. Every op pairs it with leave.
func (b *Backend) enter() {
	b.mu.Lock()
	if b.closed.Load() {
		b.mu.Unlock()
		panic("cuda: backend used after Close")
	}
	runtime.LockOSThread()
	if r := call(b.d.cuCtxSetCurrent, b.ctx); r != cuSuccess {
		b.fail(b.d.check(r, "cuCtxSetCurrent"))
	}
	b.metaOff = 0
}

// leave ends an op.
func (b *Backend) leave() {
	runtime.UnlockOSThread()
	b.mu.Unlock()
}

// fail records err as the sticky error unless one is pending.
func (b *Backend) fail(err error) {
	if err != nil && b.err == nil {
		if b.seg != nil && !b.flushing {
			b.flush() // the ops recorded before the failure still run
		}
		b.err = err
	}
}

// checkCall records a failed driver call as the sticky error.
func (b *Backend) checkCall(r cuResult, op string) bool {
	if r == cuSuccess {
		return true
	}
	b.fail(b.d.check(r, op))
	return false
}

// takeErr returns and clears the sticky error.
func (b *Backend) takeErr() error {
	err := b.err
	b.err = nil
	return err
}

// Sync implements backend.Backend: it waits for the queued work and
// returns (and clears) the first error since the last Sync or Read.
func (b *Backend) Sync() error {
	b.enter()
	defer b.leave()
	b.syncStream()
	return b.takeErr()
}

// syncStream waits for the stream, then frees the allocations queued for
// release before the wait began (their last users have finished).
func (b *Backend) syncStream() {
	b.flush()
	b.freeMu.Lock()
	batch := b.pending
	b.pending = nil
	b.freeMu.Unlock()
	if !b.checkCall(call(b.d.cuStreamSynchronize, b.stream), "cuStreamSynchronize") {
		b.freeMu.Lock() // keep them for Close
		b.pending = append(b.pending, batch...)
		b.freeMu.Unlock()
		return
	}
	for _, p := range batch {
		b.freeNow(p)
	}
	if b.prof != nil {
		b.prof.collect(b)
	}
}

// freeNow frees a device allocation this backend made (once).
func (b *Backend) freeNow(p uint64) {
	if _, ok := b.allocs[p]; !ok {
		return
	}
	delete(b.allocs, p)
	call(b.d.cuMemFree, uintptr(p))
}

// Close implements backend.Backend: it waits for queued work and frees
// every allocation, the modules, the stream and the context reference.
// Using the backend afterwards panics (Read returns an error).
func (b *Backend) Close() error {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed.Load() {
		return nil
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	d := b.d
	err := d.check(call(d.cuCtxSetCurrent, b.ctx), "cuCtxSetCurrent")
	if err == nil {
		if b.trace != nil {
			b.trace.dump(b, os.Stderr)
		}
		b.flush()
		err = d.check(call(d.cuStreamSynchronize, b.stream), "cuStreamSynchronize")
	}
	b.dropGraphs()
	if b.blas != nil {
		call(b.blas.destroy, b.blas.handle)
		b.blas = nil
	}
	b.closed.Store(true)
	b.freeMu.Lock()
	b.pending = nil
	b.freeMu.Unlock()
	for p := range b.allocs {
		call(d.cuMemFree, uintptr(p))
	}
	clear(b.allocs)
	b.teardown()
	if err == nil {
		err = b.takeErr()
	}
	return err
}

// MemInfo returns the device's free and total memory in bytes.
func (b *Backend) MemInfo() (free, total int64, err error) {
	b.enter()
	defer b.leave()
	var f, t uint64
	if err := b.d.check(call(b.d.cuMemGetInfo, uintptr(unsafe.Pointer(&f)), uintptr(unsafe.Pointer(&t))), "cuMemGetInfo"); err != nil {
		return 0, 0, err
	}
	return int64(f), int64(t), nil
}

// buffer is one device allocation. ptr is 0 for an empty buffer and for
// one whose allocation failed (size > 0): ops refuse those (see usable).
type buffer struct {
	owner *Backend
	ptr   uint64
	size  int64
}

// allocRaw allocates size bytes (the caller holds the op lock).
func (b *Backend) allocRaw(size int64) (*buffer, error) {
	buf := &buffer{owner: b, size: size}
	if size <= 0 {
		buf.size = 0
		return buf, nil
	}
	var p uint64
	if r := call(b.d.cuMemAlloc, uintptr(unsafe.Pointer(&p)), uintptr(size)); r != cuSuccess {
		return buf, fmt.Errorf("cuda: allocating %d bytes on %s: %s", size, b.Name(), b.d.errorString(r))
	}
	b.allocs[p] = size
	buf.ptr = p
	return buf, nil
}

// alloc allocates a buffer that is freed when it becomes unreachable.
func (b *Backend) alloc(size int64) (*buffer, error) {
	buf, err := b.allocRaw(size)
	if err == nil && buf.ptr != 0 {
		runtime.AddCleanup(buf, b.collect, buf.ptr)
	}
	return buf, err
}

// collect runs (on the runtime's cleanup goroutine) when a buffer's owner
// became unreachable: its memory is freed after the next stream sync.
func (b *Backend) collect(p uint64) {
	if b.closed.Load() {
		return
	}
	b.freeMu.Lock()
	b.pending = append(b.pending, p)
	b.freeMu.Unlock()
}

// drop queues an internal buffer for release after the next stream sync
// (kernels already queued may still read it).
func (b *Backend) drop(buf *buffer) {
	if buf != nil && buf.ptr != 0 {
		b.collect(buf.ptr)
		buf.ptr = 0
	}
}

// upload copies host bytes to a new buffer (on the stream; the driver
// stages pageable memory before returning, so data may change afterwards).
func (b *Backend) upload(data unsafe.Pointer, size int64) (*buffer, error) {
	buf, err := b.alloc(size)
	if err != nil || size == 0 {
		return buf, err
	}
	if r := call(b.d.cuMemcpyHtoDAsync, uintptr(buf.ptr), uintptr(data), uintptr(size), b.stream); r != cuSuccess {
		return buf, b.d.check(r, "cuMemcpyHtoDAsync")
	}
	return buf, nil
}

// stage copies a small host array (tokens, positions, block tables …)
// into the per-op upload area and returns its device address. The area is
// reused from its start by every op: the stream runs the copies and the
// kernels in issue order, so an op's copy lands after the previous op's
// kernels have read theirs. Returns 0 (with the sticky error set) on
// failure.
func (b *Backend) stage(data unsafe.Pointer, size int64) uint64 {
	if size == 0 || b.err != nil {
		return 0
	}
	if b.recording() {
		return b.stageSeg(data, size)
	}
	need := (size + 255) &^ 255
	if b.meta == nil || b.metaOff+need > b.meta.size {
		n := int64(64 << 10)
		if b.meta != nil {
			n = 2 * b.meta.size
		}
		n = max(n, need)
		b.drop(b.meta) // earlier data of this op stays valid until the next sync
		buf, err := b.allocRaw(n)
		if err != nil {
			b.meta = nil
			b.fail(err)
			return 0
		}
		b.meta, b.metaOff = buf, 0
	}
	p := b.meta.ptr + uint64(b.metaOff)
	b.metaOff += need
	if !b.checkCall(call(b.d.cuMemcpyHtoDAsync, uintptr(p), uintptr(data), uintptr(size), b.stream), "cuMemcpyHtoDAsync") {
		return 0
	}
	return p
}

// stageInts stages an int32 array.
func (b *Backend) stageInts(v []int32) uint64 {
	if len(v) == 0 {
		return 0
	}
	return b.stage(unsafe.Pointer(&v[0]), int64(4*len(v)))
}

// scratchBuf returns an internal buffer of at least size bytes, reused by
// every op that asks for the same name (ops are serialised on the stream).
func (b *Backend) scratchBuf(name string, size int64) uint64 {
	buf := b.scratch[name]
	if buf == nil || buf.size < size {
		b.drop(buf)
		nb, err := b.allocRaw(max(size, 2*sizeOf(buf)))
		if err != nil {
			delete(b.scratch, name)
			b.fail(err)
			return 0
		}
		b.scratch[name] = nb
		buf = nb
	}
	return buf.ptr
}

func sizeOf(buf *buffer) int64 {
	if buf == nil {
		return 0
	}
	return buf.size
}

// memsetZero queues a fill of n 32-bit words with zero.
func (b *Backend) memsetZero(p uint64, words int64) {
	if p == 0 || words == 0 {
		return
	}
	if b.recording() {
		b.seg.addMemset(p, words)
		return
	}
	b.checkCall(call(b.d.cuMemsetD32Async, uintptr(p), 0, uintptr(words), b.stream), "cuMemsetD32Async")
}

// launchArgs builds the kernelParams array of cuLaunchKernel: each
// argument's value sits in vals (8-byte slots; a struct takes several) and
// ptrs[i] points at argument i. One instance per backend, reused by every
// launch under the op lock; it lives on the Go heap, which does not move.
type launchArgs struct {
	vals   [64]uint64
	ptrs   [32]unsafe.Pointer
	offs   [32]uint8 // word offset of each argument in vals
	nv, np int
}

func (a *launchArgs) reset() { a.nv, a.np = 0, 0 }

// slot reserves words 8-byte words for the next argument.
func (a *launchArgs) slot(words int) unsafe.Pointer {
	clear(a.vals[a.nv : a.nv+words]) // whole words: recorded launches compare them
	p := unsafe.Pointer(&a.vals[a.nv])
	a.ptrs[a.np] = p
	a.offs[a.np] = uint8(a.nv)
	a.nv += words
	a.np++
	return p
}

func (a *launchArgs) ptr(v uint64)  { *(*uint64)(a.slot(1)) = v }
func (a *launchArgs) u64(v uint64)  { *(*uint64)(a.slot(1)) = v }
func (a *launchArgs) i32(v int)     { *(*int32)(a.slot(1)) = int32(v) }
func (a *launchArgs) f32(v float32) { *(*float32)(a.slot(1)) = v }
func (a *launchArgs) desc(d *wdesc) { *(*wdesc)(a.slot(8)) = *d }
func (a *launchArgs) yout(o *yout)  { *(*yout)(a.slot(7)) = *o }

// ptrsIf adds the pointers ps, or as many null pointers when !on (a
// kernel's optional arguments).
func (a *launchArgs) ptrsIf(on bool, ps ...uint64) {
	for _, p := range ps {
		if !on {
			p = 0
		}
		a.ptr(p)
	}
}

func (b *Backend) newArgs() *launchArgs { b.args.reset(); return b.args }

// launch queues kernel f on the stream with a grid of gx×gy blocks of bx
// threads and smem bytes of dynamic shared memory. Empty grids and ops
// after a failure are skipped.
func (b *Backend) launch(f uintptr, gx, gy, bx, smem int, a *launchArgs) {
	b.launch3(f, gx, gy, 1, bx, smem, a)
}

// launch3 is launch with a three-dimensional grid. While a segment is
// being recorded (graph.go) the launch is recorded instead of issued.
func (b *Backend) launch3(f uintptr, gx, gy, gz, bx, smem int, a *launchArgs) {
	b.launchOpt(f, gx, gy, gz, bx, smem, a, false)
}

// launchOpt is launch3 with the choice of programmatic dependent launch
// (for kernels written for it: see issue).
func (b *Backend) launchOpt(f uintptr, gx, gy, gz, bx, smem int, a *launchArgs, pdl bool) {
	b.launchCluster(f, gx, gy, gz, bx, smem, a, pdl, 1)
}

// launchCluster is launchOpt in thread-block clusters of cluster blocks
// along x (1: none).
func (b *Backend) launchCluster(f uintptr, gx, gy, gz, bx, smem int, a *launchArgs, pdl bool, cluster int) {
	if b.err != nil || gx <= 0 || gy <= 0 || gz <= 0 {
		return
	}
	if b.trace != nil {
		b.trace.note(b.names[f], gx, gy, gz, bx)
	}
	if b.recording() {
		b.seg.addLaunch(f, gx, gy, gz, bx, smem, a, pdl, cluster)
		if b.graphChunk > 0 && len(b.seg.ops) >= b.chunkOps(b.seg.chunks) {
			b.flushChunk()
		}
		return
	}
	b.issue(f, gx, gy, gz, bx, smem, unsafe.Pointer(&a.ptrs[0]), pdl, cluster)
	runtime.KeepAlive(a)
}

// issue calls cuLaunchKernel (params: the kernelParams array), or, for a
// kernel that allows it (pdl) while programmatic dependent launch is on,
// cuLaunchKernelEx with programmatic stream serialization: the kernel may
// start while the previous one finishes (qmm.cu's prologues prefetch
// weights, then wait for it with griddepcontrol.wait). If the driver
// refuses that, the backend turns it off and launches plainly. cluster > 1
// launches thread-block clusters of that many blocks along x
// (cuLaunchKernelEx with the cluster-dimension attribute; the kernel relies
// on it, so a refusal is an error).
func (b *Backend) issue(f uintptr, gx, gy, gz, bx, smem int, params unsafe.Pointer, pdl bool, cluster int) {
	if len(skipKernels) > 0 && skipKernels[b.names[f]] {
		return
	}
	if b.prof != nil {
		defer b.prof.around(b, f)()
	}
	if pdl && b.pdlOn || cluster > 1 {
		for {
			cfg := &b.launchCfg
			*cfg = launchConfig{gridX: uint32(gx), gridY: uint32(gy), gridZ: uint32(gz), blockX: uint32(bx), blockY: 1, blockZ: 1,
				smem: uint32(smem), stream: b.stream}
			cfg.attrs = uintptr(unsafe.Pointer(&b.launchAttr[0]))
			usePDL := pdl && b.pdlOn
			if usePDL {
				b.launchAttr[cfg.numAttrs] = launchAttr{id: launchAttrProgrammaticStreamSerialization, val: [16]uint32{1}}
				cfg.numAttrs++
			}
			if cluster > 1 {
				b.launchAttr[cfg.numAttrs] = launchAttr{id: launchAttrClusterDimension, val: [16]uint32{uint32(cluster), 1, 1}}
				cfg.numAttrs++
				if clusterPolicy > 0 {
					b.launchAttr[cfg.numAttrs] = launchAttr{id: launchAttrClusterSchedulingPolicy, val: [16]uint32{uint32(clusterPolicy)}}
					cfg.numAttrs++
				}
			}
			r := call(b.d.cuLaunchKernelEx, uintptr(unsafe.Pointer(cfg)), f, uintptr(params), 0)
			if r == cuSuccess {
				return
			}
			if !usePDL { // (then cluster > 1)
				b.fail(b.d.check(r, fmt.Sprintf("launching %s in clusters of %d", b.names[f], cluster)))
				return
			}
			b.pdlOn = false // and again without it: in clusters, or plainly below
			if cluster <= 1 {
				break
			}
		}
	}
	r := call(b.d.cuLaunchKernel, f, uintptr(gx), uintptr(gy), uintptr(gz), uintptr(bx), 1, 1, uintptr(smem), b.stream,
		uintptr(params), 0)
	if r != cuSuccess {
		b.fail(b.d.check(r, "launching "+b.names[f]))
	}
}

// launchConfig mirrors CUlaunchConfig and launchAttr CUlaunchAttribute
// (id, padding, a 64-byte value union) of the CUDA 12+ driver API.
type launchConfig struct {
	gridX, gridY, gridZ    uint32
	blockX, blockY, blockZ uint32
	smem                   uint32
	_                      uint32
	stream                 uintptr
	attrs                  uintptr
	numAttrs               uint32
	_                      uint32
}

type launchAttr struct {
	id  uint32
	_   uint32
	val [16]uint32 // the value union (a cluster dimension: x, y, z)
}

// CU_LAUNCH_ATTRIBUTE_CLUSTER_DIMENSION,
// CU_LAUNCH_ATTRIBUTE_CLUSTER_SCHEDULING_POLICY_PREFERENCE and
// CU_LAUNCH_ATTRIBUTE_PROGRAMMATIC_STREAM_SERIALIZATION
const (
	launchAttrClusterDimension                = 4
	launchAttrClusterSchedulingPolicy         = 5
	launchAttrProgrammaticStreamSerialization = 6
)

// clusterPolicy (MARLIN_CLUSTER_POLICY; for measurements) asks the driver
// to place every cluster launch's blocks by CUclusterSchedulingPolicy 1
// (spread over the multiprocessors) or 2 (load balancing) instead of its
// default.
var clusterPolicy = envInt("MARLIN_CLUSTER_POLICY", 0)

// gridFor returns the block count of a grid-stride kernel over n elements
// with 256-thread blocks (capped at 32 blocks per SM).
func (b *Backend) gridFor(n int64) int {
	return int(min((n+255)/256, int64(32*b.sms)))
}

// usable reports whether the tensors' memory exists; a tensor whose
// allocation failed makes the op fail instead of touching address 0.
func (b *Backend) usable(ts ...*tensor) bool {
	if b.err != nil {
		return false
	}
	for _, t := range ts {
		if t != nil && t.buf.ptr == 0 && t.buf.size > 0 {
			b.fail(errors.New("cuda: use of a tensor whose allocation failed"))
			return false
		}
	}
	return true
}

// tensor is an activation matrix in device memory, row-major float32. A
// view shares its buffer (and keeps it alive).
type tensor struct {
	buf        *buffer
	rows, cols int
}

// Rows implements backend.Tensor.
func (t *tensor) Rows() int { return t.rows }

// Cols implements backend.Tensor.
func (t *tensor) Cols() int { return t.cols }

func (t *tensor) ptr() uint64 { return t.buf.ptr }
func (t *tensor) n() int64    { return int64(t.rows) * int64(t.cols) }

// tensor converts a backend.Tensor of this backend.
func (b *Backend) tensor(t backend.Tensor) *tensor {
	c, ok := t.(*tensor)
	if !ok || c.buf.owner != b {
		panic(fmt.Sprintf("cuda: tensor of another backend (%T)", t))
	}
	return c
}

// NewTensor implements backend.Backend. An allocation failure becomes the
// sticky error; the returned tensor is then unusable.
func (b *Backend) NewTensor(rows, cols int) backend.Tensor {
	if rows < 0 || cols < 0 {
		panic(fmt.Sprintf("cuda: NewTensor(%d, %d): negative size", rows, cols))
	}
	b.enter()
	defer b.leave()
	buf, err := b.alloc(4 * int64(rows) * int64(cols))
	b.fail(err)
	if err == nil {
		b.memsetZero(buf.ptr, int64(rows)*int64(cols))
	}
	return &tensor{buf: buf, rows: rows, cols: cols}
}

// View implements backend.Backend.
func (b *Backend) View(t backend.Tensor, rows int) backend.Tensor {
	c := b.tensor(t)
	if rows < 0 || rows > c.rows {
		panic(fmt.Sprintf("cuda: View of %d rows of a [%d, %d] tensor", rows, c.rows, c.cols))
	}
	return &tensor{buf: c.buf, rows: rows, cols: c.cols}
}

// Write implements backend.Backend. The copy is queued; src may be reused
// as soon as Write returns.
func (b *Backend) Write(t backend.Tensor, src []float32) {
	c := b.tensor(t)
	if int64(len(src)) != c.n() {
		panic(fmt.Sprintf("cuda: Write of %d values into a [%d, %d] tensor", len(src), c.rows, c.cols))
	}
	b.enter()
	defer b.leave()
	b.flush() // the recorded ops come first
	if len(src) == 0 || !b.usable(c) {
		return
	}
	b.checkCall(call(b.d.cuMemcpyHtoDAsync, uintptr(c.ptr()), uintptr(unsafe.Pointer(&src[0])), uintptr(4*len(src)), b.stream), "cuMemcpyHtoDAsync")
}

// Read implements backend.Backend: it waits for the queued work, copies t
// into dst and returns (and clears) the first error since the last Read or
// Sync; dst is unspecified when it returns an error.
func (b *Backend) Read(dst []float32, t backend.Tensor) error {
	c := b.tensor(t)
	if int64(len(dst)) != c.n() {
		return fmt.Errorf("cuda: Read of a [%d, %d] tensor into %d values", c.rows, c.cols, len(dst))
	}
	if b.closed.Load() {
		return errors.New("cuda: Read after Close")
	}
	b.enter()
	defer b.leave()
	b.flush() // the recorded ops come before the copy
	if len(dst) > 0 && b.usable(c) {
		b.checkCall(call(b.d.cuMemcpyDtoHAsync, uintptr(unsafe.Pointer(&dst[0])), uintptr(c.ptr()), uintptr(4*len(dst)), b.stream), "cuMemcpyDtoHAsync")
	}
	b.syncStream()
	return b.takeErr()
}

// vector is a parameter vector in device memory.
type vector struct {
	buf *buffer
	n   int
}

// Len implements backend.Vector.
func (v *vector) Len() int { return v.n }

func (b *Backend) vec(v backend.Vector) *vector {
	c, ok := v.(*vector)
	if !ok || c.buf.owner != b {
		panic(fmt.Sprintf("cuda: vector of another backend (%T)", v))
	}
	return c
}

// LoadVector implements backend.Backend. An allocation failure becomes the
// sticky error.
func (b *Backend) LoadVector(v []float32) backend.Vector {
	b.enter()
	defer b.leave()
	var p unsafe.Pointer
	if len(v) > 0 {
		p = unsafe.Pointer(&v[0])
	}
	buf, err := b.upload(p, 4*int64(len(v)))
	b.fail(err)
	return &vector{buf: buf, n: len(v)}
}

// vecUsable is usable for vectors.
func (b *Backend) vecUsable(v *vector) bool {
	if v.buf.ptr == 0 && v.buf.size > 0 {
		b.fail(errors.New("cuda: use of a vector whose allocation failed"))
		return false
	}
	return b.err == nil
}

func checkShape(op string, cond bool, format string, args ...any) {
	if !cond {
		panic("cuda: " + op + ": " + fmt.Sprintf(format, args...))
	}
}

// MemoryAvailable implements backend.Backend: the device's free memory (0
// when the driver does not say).
func (b *Backend) MemoryAvailable() int64 {
	free, _, err := b.MemInfo()
	if err != nil {
		return 0
	}
	return free
}
