//go:build !nocuda

package cuda

import (
	"errors"
	"strings"
	"testing"
)

// TestCompileKernels compiles the kernel sources with NVRTC for sm_80 and
// sm_90 wherever NVRTC is installed (no GPU or driver needed), so that a
// syntax error shows up on any machine with the CUDA toolkit.
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
