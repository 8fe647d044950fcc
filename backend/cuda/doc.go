// Package cuda is the NVIDIA GPU backend: the CUDA driver API (libcuda.so.1)
// and the NVRTC runtime compiler called through purego, so the binary
// still builds with CGO_ENABLED=0 and runs on machines without CUDA (New
// then returns an error matching ErrUnavailable).
//
// Kernels are CUDA C++ in the package's .cu files, embedded in the binary,
// compiled by NVRTC for the device's architecture when a Backend is first
// created — as several programs at once (kernelParts), one module each —
// and cached on disk (os.UserCacheDir()/marlin/cubin, keyed by the SHA-256
// of each program's source, architecture, options and NVRTC version;
// images unused for 30 days are removed when new ones are written).
//
// Activations are float32 tensors in device memory (the interface's
// type: the kernels convert x to fp16/bf16 where the tensor cores need it,
// which keeps every op comparable with the CPU reference). Weights are
// uploaded in their stored format (dense F32/F16/BF16, GPTQ int2/3/4/8 with
// g_idx, FP8, FP4, MXFP4, NVFP4), except GPTQ int4 and FP4 with groups of a
// multiple of 16, MXFP4 whose e8m0 scales fp16 holds exactly and NVFP4
// whose scales' e2m1 multiples fp16 holds, which are rewritten once at load
// into the packed layout of pack.go (fragment order for mma.m16n8k16, one
// 128-bit load a lane; MXFP4 as FP4 g32 and NVFP4 as FP4 g16 with fp16
// scales, NVFP4's e4m3 scale times its global scale rounded once), and
// FP8, whose codes pack.go rewrites into 2 KB steps of 64 rows × 32
// inputs.
//
// Matrix products: M ≤ 16 rows (decode) run the tensor-core kernels of
// qmm.cu (packed 4-bit and dense 16-bit weights: a shared-memory cp.async
// ring per warp, exact weights, fp32 sums, split-K "stripes" reduced in
// the kernel; at M ≤ 4 the 4-bit ones also apply a product's input RMS
// norm). Packed 4-bit products of 17–256 rows run tc_qgemm (the same ring,
// x converted to fp16 once, the weights dequantised into the mma's A
// operand); dense ones of 17–63 rows the decode kernels in parts of ≤ 16
// rows. Larger products (prefill) convert x to fp16/bf16, dequantize
// quantized weights to fp16 (packed ones by dequant4, the stored formats by
// matmul.cu's dequant_rows) and call cuBLAS (cublas.go, opened with
// dlopen); 8-bit GPTQ and FP8 products of ≤ 16 rows run qmv8 (qmm.cu:
// GPTQ in its stored layout without g_idx, FP8 tiled at load, on the
// tensor cores with the 4-bit kernels' ring and stripes; 8 rows a
// launch), and the stored formats dequantize +
// cuBLAS at every size qmv8 does not take (takesGemm); without cuBLAS
// the generic SIMT tile kernels of matmul.cu run.
// On sm_90 (with NVRTC 12 or newer) the module is built for
// sm_90a and also holds wg_qgemm (hopper.cu: the same 4-bit products on
// the warpgroup MMA, FP4 with groups of 16 — NVFP4 — included), which
// takes the 4-bit products of 17–256 rows in place of tc_qgemm (matrix.go
// wgGemm, wgFormFor; chooseWGSplit splits K, a split of two summed in a
// thread-block cluster). Attention is flash-decoding (split over positions, GQA heads
// sharing each key/value load) for heads of 64 or 128 dims, the generic
// kernel otherwise (MLA). docs/cuda-kernels.md has each kernel's history
// and measurements.
//
// CUDA graphs (graph.go): ops record their launches into a segment that
// runs at the next synchronisation point (long ones in chunks while they
// are recorded); a segment that repeats (a decode step) is captured once
// and replayed with one launch.
//
// Environment, for measurements: MARLIN_CUDA_GRAPHS=0 (no graphs),
// MARLIN_CUDA_GRAPH_CHUNK, MARLIN_CUDA_GRAPH_FIRST and MARLIN_CUDA_GRAPH_GROW
// (the most ops a chunk, the first chunk's, and each chunk's growth over the
// one before; 1: every chunk after the first the most), MARLIN_CUDA_PDL=0 (no programmatic
// dependent launch; MARLIN_CUDA_PDL_OPS=0: only for the products),
// MARLIN_CUDA_PROFILE=1 (kernel times, graphs off), MARLIN_CUDA_SKIP
// (kernels never launched: wrong results, for timing what each costs a
// step), MARLIN_CUDA_NORMFUSE=0
// (norms as their own launch), MARLIN_CUDA_MOE_FAST=0 (the older expert
// and routing paths), MARLIN_CUDA_ROUTE_CLUSTER=0 (route_mv's rows
// without thread-block clusters), MARLIN_QMV_BPS and MARLIN_QMV_MINSTEPS (the decode
// kernels' grid), MARLIN_CUDA_TILECLUSTER=0 (the decode products always
// on the stripes), MARLIN_TC_C and MARLIN_TC_MINSTEPS (a forced cluster
// size, the fewest steps a cluster's warp gets), MARLIN_TC_SHARE (1: tile
// clusters up to a stripe grid of the whole device, not half), MARLIN_CUDA_TCGEMM=0,
// MARLIN_TC_MIN and MARLIN_TC_MAX
// (tc_qgemm off, or its row range), MARLIN_TRELLIS_BLOCKS (the EXL3
// kernel's grid), MARLIN_CUBLAS (the library's path, or off),
// MARLIN_CUDA_GPTQ8=0 (8-bit GPTQ decode products on the generic
// kernel), MARLIN_CUDA_WGMMA=0, MARLIN_WG_MIN and MARLIN_WG_MAX (wg_qgemm off, or
// its row range), MARLIN_WG_FORM (one of its forms at every size),
// MARLIN_WG_SPLIT (its split of K, in a cluster where one fits) and
// MARLIN_WG_CLUSTER=0 (its splits summed through L2),
// MARLIN_ATTN_P (the splits of decode attention: attn_split, attn_mla and
// attn_mla_tc), MARLIN_ATTN_WIDE=0 (one decode row's split attention in
// the narrow form: 4 warps, 64 splits), MARLIN_CUDA_MLA_TC=0 (a bf16 latent cache on attn_mla, the
// CUDA-core kernel, instead of attn_mla_tc), MARLIN_CUDA_MLA_TC_HEADS (the
// most heads an attn_mla_tc block takes at decode sizes), MARLIN_CUDA_CARVEOUT
// (the kernels' preferred shared-memory share of L1, in percent; only those
// whose names begin with one of MARLIN_CUDA_CARVEOUT_KERNELS, if set),
// MARLIN_CLUSTER_POLICY (1 spread, 2 load balancing: the placement of
// every cluster launch's blocks),
// MARLIN_NVRTC_LOG=1 (NVRTC's log, ptxas's advisories included, on
// stderr when the module is compiled).
package cuda
