//go:build linux && !nocuda

package cuda

import (
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"testing"
	"unsafe"
)

// TestCompileKernels compiles the kernel sources with NVRTC for sm_80 and
// sm_90 wherever NVRTC is installed (no GPU or driver needed), so that a
// syntax error shows up on any machine with the CUDA toolkit. With
// MARLIN_CUBIN_OUT set it also writes the sm_90 image there, for
// scripts/sass_scan.py.
func TestCompileKernels(t *testing.T) {
	nv, err := loadNVRTC()
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
	src := kernelSource()
	for _, cc := range []int{90, 80} {
		arch, ptx, err := nv.target(cc)
		if err != nil {
			t.Fatal(err)
		}
		img, err := nv.build(src, "marlin_kernels.cu", arch, ptx, compileOptions)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("NVRTC %d.%d (%s): %s image of %d bytes", nv.major, nv.minor, nv.soname, arch, len(img))
		if out := os.Getenv("MARLIN_CUBIN_OUT"); out != "" && cc == 90 && !ptx {
			if err := os.WriteFile(out, img, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if !ptx && !strings.HasPrefix(string(img[:4]), "\x7fELF") {
			t.Errorf("%s: CUBIN is not an ELF image", arch)
		}
	}
}

// TestNoDriver checks the message New gives on a machine without CUDA.
func TestNoDriver(t *testing.T) {
	if _, err := loadDriver(); err == nil {
		t.Skip("skipping: a CUDA driver is installed")
	}
	_, err := New(0)
	if err == nil || !errors.Is(err, ErrUnavailable) || !strings.HasPrefix(err.Error(), "no CUDA driver found (libcuda.so.1: ") {
		t.Fatalf("New without a driver: %v", err)
	}
	t.Log(err)
}

// TestKernelResources logs ptxas's resource report (registers, spills,
// shared memory) of the tensor-core kernels for sm_90 (sm_90a where NVRTC
// has it), wherever NVRTC is installed, and fails if one of them spills to
// local memory.
func TestKernelResources(t *testing.T) {
	n, err := loadNVRTC()
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
	if !slices.Contains(n.archs, 90) && len(n.archs) > 0 {
		t.Skip("skipping: NVRTC without sm_90")
	}
	var prog uintptr
	csrc, cname := cstr(kernelSource()), cstr("marlin_kernels.cu")
	if r := call(n.create, uintptr(unsafe.Pointer(&prog)), uintptr(unsafe.Pointer(&csrc[0])), uintptr(unsafe.Pointer(&cname[0])), 0, 0, 0); r != 0 {
		t.Fatal(n.errString(int32(r)))
	}
	defer call(n.destroy, uintptr(unsafe.Pointer(&prog)))
	arch, _, err := n.target(90) // sm_90a with NVRTC 12 and newer, as the backend compiles
	if err != nil {
		t.Fatal(err)
	}
	opts := append([]string{"--gpu-architecture=" + arch, "--ptxas-options=-v"}, compileOptions...)
	cs := make([][]byte, len(opts))
	ptrs := make([]*byte, len(opts))
	for i, o := range opts {
		cs[i] = cstr(o)
		ptrs[i] = &cs[i][0]
	}
	if r := call(n.compile, prog, uintptr(len(ptrs)), uintptr(unsafe.Pointer(&ptrs[0]))); r != 0 {
		t.Fatalf("%s\n%s", n.errString(int32(r)), n.programLog(prog))
	}
	lines := strings.Split(n.programLog(prog), "\n")
	for i, l := range lines {
		for _, k := range []string{"qmv_", "dmv_", "attn_split_128_4", "tc_gemm", "tmv_", "tmv16_", "tdq_", "viterbi_", "moe_", "head_mv_", "attn_mla_", "sample_", "route_mv_", "tc_qgemm", "wg_qgemm"} {
			if strings.Contains(l, "Compiling entry function '"+k) && i+3 < len(lines) {
				t.Logf("%s\n%s\n%s", l, lines[i+2], lines[i+3])
				// an array demoted to local memory spills hundreds of bytes; a
				// word or two at the register cap (seen with NVRTC 13 in the
				// 16-row dense kernels) is left to ptxas
				var st, sp, ld int
				if n, _ := fmt.Sscanf(strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(lines[i+2]), "ptxas")), ". %d bytes stack frame, %d bytes spill stores, %d bytes spill loads", &st, &sp, &ld); n == 3 && sp > 64 {
					t.Errorf("spills: %s", lines[i+2])
				}
			}
		}
	}
}
