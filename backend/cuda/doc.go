// Package cuda is the NVIDIA GPU backend: the CUDA driver API (libcuda.so.1)
// and the NVRTC runtime compiler called through purego, so the binary
// still builds with CGO_ENABLED=0 and runs on machines without CUDA (New
// then returns an error matching ErrUnavailable).
//
// Kernels are CUDA C++ in the package's .cu files, embedded in the binary,
// compiled by NVRTC for the device's architecture when a Backend is first
// created and cached on disk (os.UserCacheDir()/marlin/cubin, keyed by the
// SHA-256 of source, architecture, options and NVRTC version).
//
// Activations are float32 tensors in device memory (the interface's
// type: the kernels convert x to fp16/bf16 where the tensor cores need it,
// which keeps every op comparable with the CPU reference). Weights are
// uploaded in their stored format (dense F32/F16/BF16, GPTQ int2/3/4/8 with
// g_idx, FP8, FP4, MXFP4, NVFP4), except GPTQ int4 and FP4 with groups of a
// multiple of 16, which are rewritten once at load into the packed layout
// of pack.go (fragment order for mma.m16n8k16, one 128-bit load a lane).
//
// Matrix products: M ≤ 16 rows (decode) run the tensor-core kernels of
// qmm.cu (packed 4-bit and dense 16-bit weights: a shared-memory cp.async
// ring per warp, exact weights, fp32 sums, split-K "stripes" reduced in
// the kernel; at M ≤ 4 the 4-bit ones also apply a product's input RMS
// norm), 17–63 rows the same kernels in parts of ≤ 16 rows; M ≥ 64
// (prefill) converts x to fp16/bf16, dequantizes packed weights to fp16
// and calls cuBLAS (cublas.go, opened with dlopen); formats without a fast
// kernel use the generic SIMT tile kernels of matmul.cu. Attention is flash-decoding (split over positions,
// GQA heads sharing each key/value load) for heads of 64 or 128 dims, the
// generic kernel otherwise (MLA). docs/cuda-kernels.md has each kernel's
// history and measurements.
//
// CUDA graphs (graph.go): ops record their launches into a segment that
// runs at the next synchronisation point (long ones in chunks while they
// are recorded); a segment that repeats (a decode step) is captured once
// and replayed with one launch.
//
// Environment, for measurements: MARLIN_CUDA_GRAPHS=0 (no graphs),
// MARLIN_CUDA_GRAPH_CHUNK and MARLIN_CUDA_GRAPH_FIRST (ops per chunk, and
// in a segment's first chunk), MARLIN_CUDA_PDL=0 (no programmatic
// dependent launch; MARLIN_CUDA_PDL_OPS=0: only for the products), MARLIN_CUDA_PROFILE=1 (kernel times, graphs off),
// MARLIN_CUDA_NORMFUSE=0 (norms as their own launch), MARLIN_CUDA_MOE_FAST=0
// (the older expert and routing paths), MARLIN_QMV_BPS and MARLIN_QMV_MINSTEPS
// (the decode kernels' grid), MARLIN_TRELLIS_TILES and
// MARLIN_TRELLIS_BLOCKS (the EXL3 kernel's), MARLIN_CUBLAS (the library's
// path, or off).

// Execution model. All work goes to one CUDA stream, in issue order; ops
// return as soon as their kernels are queued. Failures (out of memory, a
// launch error, a device fault) become a sticky error that Read and Sync
// report (and clear); ops issued while an error is pending are skipped.
// Shape mismatches are programming errors and panic, as on the CPU.
//
// Threads. A CUDA context is current per OS thread, and the engine calls
// the backend from a goroutine that may move between threads. Every method
// therefore takes the backend's mutex, locks its goroutine to the current
// OS thread for the duration of the call and makes the backend's (primary)
// context current there with cuCtxSetCurrent. TestCallCost measured the
// choice on an H100 host: a purego call 107 ns, that whole enter/leave
// (mutex, LockOSThread, cuCtxSetCurrent) 128 ns, against 14.3 µs for a
// round trip to a dedicated locked worker goroutine fed through channels
// (a cross-thread wake-up per op). A small op (Add) costs 4.0 µs of host
// time, nearly all of it cuLaunchKernel — which is what CUDA graphs will
// remove. The backend is safe for concurrent use; ops are serialised.
//
// Linking: purego makes a CGO_ENABLED=0 binary that imports this package
// dynamically linked against the C library (it needs the dynamic loader to
// dlopen libcuda). Building with the tag nocuda leaves the backend out
// (New always fails with ErrUnavailable) and gives a static binary again;
// so does building for a system other than Linux, where the backend is
// not built.
//
// Memory. Tensors, matrices, vectors, caches and selections own device
// buffers that are freed when they become unreachable (runtime.AddCleanup
// queues them; they are released after the next stream synchronisation, so
// queued kernels never see freed memory) and in any case by Close.
//
// Mixtures of experts (moe.go, moe_dispatch.go, moe.cu): Route picks the
// experts on the device; decode-sized batches run every chosen expert (and
// a shared expert of the same shape) in the same few launches without a
// host synchronisation, larger ones group the rows by expert on the host.
// Multi-head latent attention has its own decode kernel (mla.cu) and a
// one-launch prologue (MLAPrologue). EXL3 trellis weights have a fused
// decode matmul and a GPU Viterbi encoder (trellis.go, trellis.cu).
// Programmatic dependent launch lets each decode matmul (and the small
// kernels written for it, common.cu) start, and prefetch its weights,
// while the previous kernel ends.
//
// Not yet done: a tensor-core GEMM with dequantize-on-load (prefill
// dequantizes into a scratch matrix first).
//
// Tests compare every op with backend/cpu and every model of
// testdata/models with transformers' logits; they skip without a driver.
// scripts/device/cuda_check.sh runs them (and compute-sanitizer) on a GPU
// machine.
package cuda
