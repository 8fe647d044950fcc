// Package safetensors reads and writes the safetensors checkpoint format:
//
//	8 bytes   N, the header length, unsigned little-endian
//	N bytes   the header: a UTF-8 JSON object mapping each tensor name to
//	          {"dtype": "F16", "shape": [..], "data_offsets": [begin, end]},
//	          plus an optional "__metadata__" object of string values;
//	          the reference writer pads it with spaces to a multiple of 8
//	rest      the data: every tensor's little-endian bytes, row-major, at
//	          [begin, end) relative to the start of the data
//
// Reading (Open) memory-maps the file on unix systems: tensor data is never
// copied into the Go heap, and a Tensor's Data aliases the read-only mapping.
// On other systems the file is read into memory once.
//
// Validation follows the reference implementation: the data offsets of all
// tensors must tile the data exactly (no overlaps, no holes, nothing after the
// last tensor), and each tensor's byte length must equal its element count
// times its element size. Any violation is an error that names the tensor and
// the numbers involved; no input makes the package panic.
//
// Alignment: the mapping is page-aligned and reference writers pad the header
// so that the data starts at a multiple of 8, but tensor offsets themselves
// are arbitrary, so a Tensor's Data may be unaligned for its element type
// (for example an F32 tensor placed after an odd-length U8 tensor). Code that
// reinterprets Data must either copy (Tensor.Float32s) or use the checked
// zero-copy views (Tensor.Float32View, Tensor.Uint16s), which report whether
// the data is suitably aligned. The Writer of this package orders tensors by
// decreasing element size, so files it writes are always aligned.
package safetensors
