//go:build linux && !nocuda

package cuda

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"unsafe"

	"github.com/ebitengine/purego"
)

// The large-M path (prefill, M ≥ gemmMinRows; for the formats without
// kernels of their own above the decode sizes every M past those, see
// takesGemm): x is converted to fp16 (bf16 for bf16 weights), quantized
// weights are dequantized into an fp16 scratch matrix (qmm.cu: x_to_half,
// dequant_pint4/pfp4; matmul.cu: dequant_rows), and cuBLAS's
// cublasGemmEx multiplies them on the tensor cores with fp32 accumulation
// and an fp32 result. cuBLAS is opened with dlopen through purego at the
// first such product; without it (or with MARLIN_CUBLAS=off) the tile
// kernels of matmul.cu run instead. Set MARLIN_CUBLAS to a library path to
// choose one.
//
// Precision: x rounded to fp16 (bf16 for bf16 weights) and 4-bit weights
// rounded to fp16 once, fp32 sums — the bf16 tolerance of a transformers
// run, not the float32 of the decode kernels.

// gemmMinRows is the smallest M that takes the cuBLAS path for the formats
// with kernels of their own at every size (takesGemm).
const gemmMinRows = 64

// cuBLAS enumerations (cublas_api.h, library_types.h).
const (
	cublasOpN          = 0
	cublasOpT          = 1
	cudaR16F           = 2
	cudaR16BF          = 14
	cudaR32F           = 0
	cublasCompute32F   = 68
	cublasGemmDefault  = -1
	cublasStatusOK     = 0
	cublasDefaultMath  = 0
	cublasTensorOpMath = 1
)

// cublas is the loaded library with one handle bound to the backend's
// stream.
type cublas struct {
	create, setStream, gemmEx, destroy uintptr
	handle                             uintptr
	path                               string
}

// cublasCandidates lists the places libcublas may be: the dynamic
// loader's search path, the CUDA toolkit, and PyTorch's wheels.
func cublasCandidates() []string {
	if p := os.Getenv("MARLIN_CUBLAS"); p != "" {
		return []string{p}
	}
	c := []string{"libcublas.so.13", "libcublas.so.12", "/usr/local/cuda/lib64/libcublas.so.13", "/usr/local/cuda/lib64/libcublas.so.12"}
	for _, pat := range []string{"/usr/local/cuda*/lib64/libcublas.so.1[23]", "/usr/local/lib/python3*/dist-packages/nvidia/cu*/lib/libcublas.so.1[23]",
		"/usr/local/lib/python3*/dist-packages/nvidia/cublas/lib/libcublas.so.1[23]", "/usr/lib/python3*/dist-packages/nvidia/cublas/lib/libcublas.so.1[23]"} {
		m, _ := filepath.Glob(pat)
		c = append(c, m...)
	}
	return c
}

// loadCublas opens cuBLAS and creates a handle on the backend's stream (the
// caller holds the op lock; the context is current).
func (b *Backend) loadCublas() (*cublas, error) {
	if os.Getenv("MARLIN_CUBLAS") == "off" {
		return nil, errors.New("cuBLAS turned off (MARLIN_CUBLAS=off)")
	}
	var lib uintptr
	var path string
	var errs []string
	for _, p := range cublasCandidates() {
		if filepath.IsAbs(p) {
			// its companion cublasLt from the same folder first
			lt := filepath.Join(filepath.Dir(p), "libcublasLt"+filepath.Base(p)[len("libcublas"):])
			purego.Dlopen(lt, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		}
		h, err := purego.Dlopen(p, purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err == nil {
			lib, path = h, p
			break
		}
		errs = append(errs, err.Error())
	}
	if lib == 0 {
		return nil, fmt.Errorf("no cuBLAS library found (%d places tried)", len(errs))
	}
	c := &cublas{path: path}
	for _, s := range []struct {
		p    *uintptr
		name string
	}{{&c.create, "cublasCreate_v2"}, {&c.setStream, "cublasSetStream_v2"}, {&c.gemmEx, "cublasGemmEx"}, {&c.destroy, "cublasDestroy_v2"}} {
		f, err := purego.Dlsym(lib, s.name)
		if err != nil {
			return nil, fmt.Errorf("%s lacks %s", path, s.name)
		}
		*s.p = f
	}
	if r := call(c.create, uintptr(unsafe.Pointer(&c.handle))); r != cublasStatusOK {
		return nil, fmt.Errorf("cublasCreate: status %d", r)
	}
	if r := call(c.setStream, c.handle, b.stream); r != cublasStatusOK {
		return nil, fmt.Errorf("cublasSetStream: status %d", r)
	}
	return c, nil
}

// blasReady returns cuBLAS, loading it once; nil when unavailable.
func (b *Backend) blasReady() *cublas {
	if !b.blasTried {
		b.blasTried = true
		b.blas, b.blasErr = b.loadCublas()
	}
	return b.blas
}

// xHalf queues x_to_half: x [M, m.cols] (row stride ldx) as fp16 (bf16
// with bf16) rows of m.cols in scratch, in the packed input order of m's
// act-order 4-bit weights; the scratch's address, 0 after a failure.
func (b *Backend) xHalf(x uint64, ldx, M int, m *matrix, bf16 bool) uint64 {
	K := m.cols
	x16 := b.scratchBuf("x16", 2*int64(M)*int64(K))
	if x16 == 0 {
		return 0
	}
	a := b.newArgs()
	a.ptr(x16)
	a.ptr(x)
	a.i32(ldx)
	a.ptr(m.desc.gidx * boolU64(m.f == fmtPInt4 || m.f == fmtPFP4))
	a.i32(K)
	a.i32(int(boolU64(bf16)))
	b.launch(b.k.xToHalf, (K+255)/256, M, 256, 0, a)
	return x16
}

// gemmLarge computes y[M, N] = x[M, K]·Wᵀ through cuBLAS for dense fp16/bf16
// weights, and for the quantized formats dequantized to fp16 first (packed
// 4-bit: dequant4 of qmm.cu; GPTQ of any bits, FP8 (tiled), FP4, MXFP4 and
// NVFP4: dequant_rows of matmul.cu) where takesGemm says so; false when it
// does not or cannot (the caller then runs the other kernels).
func (b *Backend) gemmLarge(y uint64, ldy int, x uint64, ldx, M int, m *matrix) bool {
	bf16 := m.f == fmtBF16
	if !b.takesGemm(m, M) || m.cols%8 != 0 || ldy%4 != 0 {
		return false
	}
	c := b.blasReady()
	if c == nil {
		return false
	}
	K, N := m.cols, m.rows
	// x in fp16/bf16 (and the packed order)
	x16 := b.xHalf(x, ldx, M, m, bf16)
	if x16 == 0 {
		return true
	}
	w := m.desc.data
	opW, ldw := cublasOpT, K // W [N, K] row-major: Wᵀ of a K×N column-major matrix
	// quantized weights: dequantized to fp16 into scratch first
	f, gx, gy := b.dequantKernel(m), 0, 0
	switch {
	case f != 0: // matmul.cu's dequant_rows: 8 values a thread along the contiguous dimension
		inner, outer := K, N
		if m.f == fmtGPTQ { // written [K, N]: an N×K column-major matrix
			inner, outer, opW, ldw = N, K, cublasOpN, N
		}
		gx, gy = min((inner+8*256-1)/(8*256), 64), min(outer, 65535)
	case m.f == fmtPInt4 || m.f == fmtPFP4: // qmm.cu's dequant4: 8 tiles of 64 × 16 a block
		f, gx, gy = b.k.dequantInt4, (((N+63)/64)*(K/16)+7)/8, 1
		if m.f == fmtPFP4 {
			f = b.k.dequantFP4
		}
	}
	if f != 0 {
		if w = b.scratchBuf("w16", 2*int64(N)*int64(K)); w == 0 {
			return true
		}
		a := b.newArgs()
		a.ptr(w)
		a.desc(&m.desc)
		b.launch(f, gx, gy, 256, 0, a)
	}
	// cuBLAS is not recorded: issue what was recorded first, in order
	b.flush()
	if b.err != nil {
		return true
	}
	dt := uintptr(cudaR16F)
	if bf16 {
		dt = cudaR16BF
	}
	alpha, beta := float32(1), float32(0)
	// column-major view: Y (N×M, ld ldy) = op(W) (N×K) · X16 (K×M, ld K)
	r := call(c.gemmEx, c.handle, uintptr(opW), cublasOpN, uintptr(N), uintptr(M), uintptr(K),
		uintptr(unsafe.Pointer(&alpha)), uintptr(w), dt, uintptr(ldw), uintptr(x16), dt, uintptr(K),
		uintptr(unsafe.Pointer(&beta)), uintptr(y), cudaR32F, uintptr(ldy), cublasCompute32F, uintptr(cublasGemmDefault&0xffffffff))
	if r != cublasStatusOK {
		b.fail(fmt.Errorf("cuda: cublasGemmEx (%s, M %d): status %d", m.name, M, r))
	}
	return true
}

// takesGemm reports whether an M-row product of m belongs on the cuBLAS
// path (gemmLarge, which may still decline it for alignment): from
// gemmMinRows rows for the formats with tensor-core kernels of their own
// at every size (dense 16-bit, packed 4-bit); for those dequant_rows
// serves, at every M the decode kernels do not cover (qmv8: 8 rows a
// launch, up to 16 in two launches; none: every M), since their only
// other kernels are matmul.cu's SIMT tiles, 4–50× slower than
// dequantizing and cuBLAS (FP8 4096×14336 at 16 rows: 760 µs, torch's fp16
// F.linear 46 µs; H100).
func (b *Backend) takesGemm(m *matrix, M int) bool {
	switch {
	case m.f == fmtF16, m.f == fmtBF16, m.f == fmtPInt4, m.f == fmtPFP4:
		return M >= gemmMinRows
	case b.dequantKernel(m) == 0:
		return false
	case b.fastKernel(m, 1) != 0:
		return M > 16
	}
	return true
}

// dequantKernel returns matmul.cu's dequant_rows kernel for m's stored
// format, or 0 (packed, dense, EXL3: none).
func (b *Backend) dequantKernel(m *matrix) uintptr {
	if m.f >= numFmts {
		return 0
	}
	return b.k.dequant[m.f]
}

func boolU64(v bool) uint64 {
	if v {
		return 1
	}
	return 0
}
