//go:build linux && !nocuda

package cuda

import (
	"debug/elf"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// buildParts compiles every program of kernelSources for arch with opts,
// at the same time as the backend does (buildAll), and returns the images
// and logs.
func buildParts(t *testing.T, nv *nvrtc, arch string, ptx bool, opts []string) (imgs [][]byte, logs []string) {
	t.Helper()
	srcs := kernelSources()
	imgs = make([][]byte, len(srcs))
	logs, err := nv.buildAll(srcs, imgs, arch, ptx, opts)
	if err != nil {
		t.Fatal(err)
	}
	return imgs, logs
}

// TestCompileKernels compiles the kernel sources with NVRTC for sm_80 and
// sm_90 wherever NVRTC is installed (no GPU or driver needed), so that a
// syntax error shows up on any machine with the CUDA toolkit. With
// MARLIN_CUBIN_OUT=DIR it also writes the sm_90 images there
// (part-N.cubin, one a program of kernelParts), for scripts/sass_scan.py.
func TestCompileKernels(t *testing.T) {
	nv, err := loadNVRTC()
	if err != nil {
		if errors.Is(err, ErrUnavailable) {
			t.Skipf("skipping: %v", err)
		}
		t.Fatal(err)
	}
	for _, cc := range []int{90, 80} {
		arch, ptx, err := nv.target(cc)
		if err != nil {
			t.Fatal(err)
		}
		imgs, _ := buildParts(t, nv, arch, ptx, compileOptions)
		owner := map[string]int{} // every kernel in one image, as New's lookup assumes
		for i, img := range imgs {
			names, err := entryPoints(img)
			if err != nil {
				t.Errorf("%s: image %d: %v", arch, i, err)
			}
			for _, name := range names {
				if j, dup := owner[name]; dup {
					t.Errorf("%s: kernel %s in images %d and %d", arch, name, j, i)
				}
				owner[name] = i
			}
			t.Logf("NVRTC %d.%d (%s): %s image %d (%v) of %d bytes", nv.major, nv.minor, nv.soname, arch, i, kernelParts[i], len(img))
			if dir := os.Getenv("MARLIN_CUBIN_OUT"); dir != "" && cc == 90 && !ptx {
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("part-%d.cubin", i)), img, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			if !ptx && !strings.HasPrefix(string(img[:4]), "\x7fELF") {
				t.Errorf("%s: image %d is not an ELF image", arch, i)
			}
		}
		t.Logf("%s: %d kernels in %d images", arch, len(owner), len(imgs))
	}
}

// TestKernelParts checks that every section of the kernel sources that
// holds a MARLIN_KERNEL site is in exactly one program of kernelParts, and
// that the parts name no section that does not exist.
func TestKernelParts(t *testing.T) {
	in := map[string]int{}
	for _, part := range kernelParts {
		for _, name := range part {
			in[name]++
		}
	}
	for _, f := range kernelFiles {
		b, err := kernelFS.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		names, texts, _ := kernelSections(f, string(b))
		for i, name := range names {
			switch n := in[name]; {
			case n > 1:
				t.Errorf("section %s is in %d parts", name, n)
			case n == 0 && strings.Contains(texts[i], "MARLIN_KERNEL"):
				t.Errorf("section %s has kernels but is in no part", name)
			}
			delete(in, name)
		}
	}
	for name := range in {
		t.Errorf("kernelParts names %s, which is no section", name)
	}
}

// cubinLike returns a minimal ELF64 image shaped as NVRTC's cubins are —
// the CUDA OS/ABI, machine EM_CUDA and the ABI version in e_version, which
// debug/elf refuses — whose symbol table holds the global functions
// globals and the local function "helper".
func cubinLike(globals ...string) []byte {
	le := binary.LittleEndian
	strtab := []byte{0}
	type sym struct {
		name uint32
		info byte
	}
	syms := []sym{{}} // the null symbol
	add := func(name string, info byte) {
		syms = append(syms, sym{uint32(len(strtab)), info})
		strtab = append(append(strtab, name...), 0)
	}
	add("helper", byte(elf.STB_LOCAL)<<4|byte(elf.STT_FUNC))
	for _, g := range globals {
		add(g, byte(elf.STB_GLOBAL)<<4|byte(elf.STT_FUNC))
	}
	symtab := make([]byte, 24*len(syms))
	for i, s := range syms {
		le.PutUint32(symtab[24*i:], s.name)
		symtab[24*i+4] = s.info
	}
	shstrtab := []byte("\x00.strtab\x00.symtab\x00.shstrtab\x00")
	img := make([]byte, 64)
	copy(img, []byte{0x7f, 'E', 'L', 'F', 2, 1, 1, 0x33, 7})
	le.PutUint16(img[16:], uint16(elf.ET_EXEC))
	le.PutUint16(img[18:], uint16(elf.EM_CUDA))
	le.PutUint32(img[20:], 124) // the CUDA ABI version, not EV_CURRENT
	offs := []int{}
	for _, d := range [][]byte{strtab, symtab, shstrtab} {
		offs = append(offs, len(img))
		img = append(img, d...)
	}
	shoff := len(img)
	le.PutUint64(img[40:], uint64(shoff))
	le.PutUint16(img[52:], 64) // e_ehsize
	le.PutUint16(img[58:], 64) // e_shentsize
	le.PutUint16(img[60:], 4)  // e_shnum
	le.PutUint16(img[62:], 3)  // e_shstrndx
	sh := func(name uint32, typ elf.SectionType, off, size int, link, info uint32, entsize uint64) {
		h := make([]byte, 64)
		le.PutUint32(h[0:], name)
		le.PutUint32(h[4:], uint32(typ))
		le.PutUint64(h[24:], uint64(off))
		le.PutUint64(h[32:], uint64(size))
		le.PutUint32(h[40:], link)
		le.PutUint32(h[44:], info)
		le.PutUint64(h[48:], 1)
		le.PutUint64(h[56:], entsize)
		img = append(img, h...)
	}
	sh(0, elf.SHT_NULL, 0, 0, 0, 0, 0)
	sh(1, elf.SHT_STRTAB, offs[0], len(strtab), 0, 0, 0)
	sh(9, elf.SHT_SYMTAB, offs[1], len(symtab), 1, 2, 24)
	sh(17, elf.SHT_STRTAB, offs[2], len(shstrtab), 0, 0, 0)
	return img
}

// TestEntryPoints checks the kernel names read from a cubin-shaped ELF
// image and from PTX (NVRTC's own cubins are TestCompileKernels's), and the
// errors for images that are neither.
func TestEntryPoints(t *testing.T) {
	names, err := entryPoints(cubinLike("rope", "add_f32"))
	if err != nil || !slices.Equal(names, []string{"rope", "add_f32"}) {
		t.Errorf("cubin: %q, %v; want [rope add_f32]", names, err)
	}
	if names, err := entryPoints(cubinLike()); err == nil {
		t.Errorf("cubin without kernels: %q and no error", names)
	}
	ptx := ".version 8.0\n.target sm_90\n.visible .entry add_f32(\n\t.param .u64 p0\n)\n{\n}\n.func helper()\n.visible .entry rope (\n)\n\x00"
	names, err = entryPoints([]byte(ptx))
	if err != nil || !slices.Equal(names, []string{"add_f32", "rope"}) {
		t.Errorf("PTX: %q, %v; want [add_f32 rope]", names, err)
	}
	for _, bad := range []string{"", "garbage", "\x7fELF\x02\x01\x01", "\x7fELF" + strings.Repeat("\xff", 200)} {
		if names, err := entryPoints([]byte(bad)); err == nil {
			t.Errorf("%q: %q and no error", bad, names)
		}
	}
}

// TestPruneCache checks that pruning the kernel cache removes the images
// (and leftover temporary files) last used before the cutoff, and keeps
// recent images and every other file.
func TestPruneCache(t *testing.T) {
	dir := t.TempDir()
	old, now := time.Now().Add(-40*24*time.Hour), time.Now()
	files := map[string]time.Time{
		"aaa.cubin": old, "bbb.ptx": old, "ccc.cubin.123.tmp": old, // removed
		"ddd.cubin": now, "eee.ptx": now, // recently used
		"notes.txt": old, // not the cache's
	}
	for name, mt := range files {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(path, mt, mt); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Mkdir(filepath.Join(dir, "old.cubin"), 0o755); err != nil { // a directory: left alone
		t.Fatal(err)
	}
	pruneCache(dir, now.Add(-cacheMaxAge))
	for name, mt := range files {
		_, err := os.Stat(filepath.Join(dir, name))
		gone := errors.Is(err, os.ErrNotExist)
		if want := mt.Equal(old) && name != "notes.txt"; gone != want {
			t.Errorf("%s: removed %v, want %v", name, gone, want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, "old.cubin")); err != nil {
		t.Errorf("the directory old.cubin: %v", err)
	}
	pruneCache(filepath.Join(dir, "missing"), now) // no such folder: nothing to do, no panic
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
	arch, _, err := n.target(90) // sm_90a with NVRTC 12 and newer, as the backend compiles
	if err != nil {
		t.Fatal(err)
	}
	_, logs := buildParts(t, n, arch, false, append([]string{"--ptxas-options=-v"}, compileOptions...))
	// each kernel compiled by one program only (the others' MARLIN_KERNEL
	// sites stay uncompiled templates), and every program compiles some
	owner := map[string]int{}
	for i, log := range logs {
		count := 0
		for _, l := range strings.Split(log, "\n") {
			_, name, ok := strings.Cut(l, "Compiling entry function '")
			if !ok {
				continue
			}
			name, _, _ = strings.Cut(name, "'")
			if j, dup := owner[name]; dup && j != i {
				t.Errorf("kernel %s compiled by programs %d and %d", name, j, i)
			}
			owner[name] = i
			count++
		}
		if count == 0 {
			t.Errorf("program %d (%v) compiled no kernel", i, kernelParts[i])
		}
	}
	t.Logf("%d kernels in %d programs", len(owner), len(logs))
	lines := strings.Split(strings.Join(logs, "\n"), "\n")
	for i, l := range lines {
		for _, k := range []string{"qmv_", "dmv_", "attn_split_128_4", "attn_split_wide_128_4", "tc_gemm", "tmv_", "tmv16_", "tdq_", "viterbi_", "moe_", "head_mv_", "attn_mla_", "attn_merge", "sample_", "route_mv_", "tc_qgemm", "wg_qgemm"} {
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
