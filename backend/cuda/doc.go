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
// Activations are float32 tensors in device memory; weights are uploaded in
// their stored format (dense F32/F16/BF16, GPTQ int2/3/4/8 with g_idx, FP8,
// FP4, MXFP4, NVFP4) and dequantized inside the matmul kernels.
//
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
// (New always fails with ErrUnavailable) and gives a static binary again.
//
// Memory. Tensors, matrices, vectors, caches and selections own device
// buffers that are freed when they become unreachable (runtime.AddCleanup
// queues them; they are released after the next stream synchronisation, so
// queued kernels never see freed memory) and in any case by Close.
//
// This first version is about correctness; its kernels are plain SIMT
// float32 code (matmuls: 6–17 TFLOP/s at prefill sizes, 37–290 GB/s of
// weights at batch 1 on an H100). Not yet done: a Marlin-style int4 decode
// kernel and tensor-core GEMMs with dequantize-on-load, flash attention
// (today one thread block per row and query head), CUDA graphs for decode
// steps (graph.go has the plumbing), MoE expert grouping on the device
// (Experts copies the chosen ids to the host, one synchronisation per
// call), and the EXL3 format (LoadMatrix reports it unsupported).
//
// Tests compare every op with backend/cpu and every model of
// testdata/models with transformers' logits; they skip without a driver.
// scripts/device/cuda_check.sh runs them (and compute-sanitizer) on a GPU
// machine.
package cuda
