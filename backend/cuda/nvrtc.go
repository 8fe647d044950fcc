//go:build linux && !nocuda

package cuda

import (
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/ebitengine/purego"
)

// NVRTC, the runtime compiler, through purego: the kernels' CUDA C++
// sources (embedded .cu files) are compiled at first use for the device's
// architecture and the result is cached on disk, keyed by the SHA-256 of
// source, target, options and NVRTC version.

// nvrtcLibs are the sonames tried in order (CUDA 13, 12, 11.2+).
var nvrtcLibs = []string{"libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so.11.2", "libnvrtc.so"}

// nvrtc holds the resolved NVRTC entry points.
type nvrtc struct {
	soname       string
	major, minor int
	plain        bool  // compile for sm_90, not sm_90a (after the sm_90a compile failed)
	archs        []int // supported sm_XY as XY (empty when NVRTC cannot say)

	create, compile, destroy       uintptr
	logSize, log                   uintptr
	cubinSize, cubin, ptxSize, ptx uintptr
	errString                      func(int32) string
}

var (
	nvrtcOnce sync.Once
	nvrtcLib  *nvrtc
	nvrtcErr  error
)

// loadNVRTC opens the newest NVRTC found (once per process).
func loadNVRTC() (*nvrtc, error) {
	nvrtcOnce.Do(func() {
		var lib uintptr
		var errs []string
		n := &nvrtc{}
		for _, name := range nvrtcLibs {
			h, err := purego.Dlopen(name, purego.RTLD_NOW|purego.RTLD_GLOBAL)
			if err == nil {
				lib, n.soname = h, name
				break
			}
			errs = append(errs, err.Error())
		}
		if lib == 0 {
			nvrtcErr = &unavailable{fmt.Sprintf("no NVRTC found (%s)", strings.Join(errs, "; "))}
			return
		}
		sym := func(name string) uintptr {
			p, err := purego.Dlsym(lib, name)
			if err != nil {
				return 0
			}
			return p
		}
		version := sym("nvrtcVersion")
		n.create, n.compile, n.destroy = sym("nvrtcCreateProgram"), sym("nvrtcCompileProgram"), sym("nvrtcDestroyProgram")
		n.logSize, n.log = sym("nvrtcGetProgramLogSize"), sym("nvrtcGetProgramLog")
		n.cubinSize, n.cubin = sym("nvrtcGetCUBINSize"), sym("nvrtcGetCUBIN")
		n.ptxSize, n.ptx = sym("nvrtcGetPTXSize"), sym("nvrtcGetPTX")
		for _, p := range []uintptr{version, n.create, n.compile, n.destroy, n.logSize, n.log, n.cubinSize, n.cubin, n.ptxSize, n.ptx} {
			if p == 0 {
				nvrtcErr = fmt.Errorf("cuda: %s lacks an NVRTC entry point (NVRTC older than 11.2?)", n.soname)
				return
			}
		}
		purego.RegisterLibFunc(&n.errString, lib, "nvrtcGetErrorString")
		var major, minor int32
		call(version, uintptr(unsafe.Pointer(&major)), uintptr(unsafe.Pointer(&minor)))
		n.major, n.minor = int(major), int(minor)
		if num, list := sym("nvrtcGetNumSupportedArchs"), sym("nvrtcGetSupportedArchs"); num != 0 && list != 0 {
			var cnt int32
			if call(num, uintptr(unsafe.Pointer(&cnt))) == 0 && cnt > 0 && cnt < 1024 {
				archs := make([]int32, cnt)
				if call(list, uintptr(unsafe.Pointer(&archs[0]))) == 0 {
					for _, a := range archs {
						n.archs = append(n.archs, int(a))
					}
				}
			}
		}
		nvrtcLib = n
	})
	return nvrtcLib, nvrtcErr
}

// target picks what to compile for a device of compute capability cc
// (major·10 + minor): a CUBIN for sm_cc when NVRTC supports it, else PTX
// for the newest supported architecture not above it (the driver JIT-
// compiles PTX for newer devices).
//
// On sm_90 with NVRTC 12 or newer the CUBIN is for sm_90a, Hopper's
// architecture-specific target, which the warpgroup MMA (hopper.cu) needs;
// the image then runs on sm_90 devices only, which is all it is loaded on.
func (n *nvrtc) target(cc int) (arch string, ptx bool, err error) {
	if len(n.archs) == 0 || slices.Contains(n.archs, cc) {
		if cc == 90 && n.major >= 12 && !n.plain {
			return "sm_90a", false, nil
		}
		return fmt.Sprintf("sm_%d", cc), false, nil
	}
	best := 0
	for _, a := range n.archs {
		if a <= cc && a > best {
			best = a
		}
	}
	if best == 0 {
		return "", false, fmt.Errorf("cuda: NVRTC %d.%d supports no architecture up to sm_%d (it has %v)", n.major, n.minor, cc, n.archs)
	}
	return fmt.Sprintf("compute_%d", best), true, nil
}

// cstr returns s as a NUL-terminated byte slice.
func cstr(s string) []byte { return append([]byte(s), 0) }

// build compiles src for arch (sm_XY for a CUBIN, compute_XY for PTX) and
// returns the image for cuModuleLoadData and NVRTC's log (ptxas's
// advisories, and its resource report with --ptxas-options=-v). Compile
// errors carry the log.
func (n *nvrtc) build(src, name, arch string, ptx bool, opts []string) ([]byte, string, error) {
	var prog uintptr
	csrc, cname := cstr(src), cstr(name)
	if r := call(n.create, uintptr(unsafe.Pointer(&prog)), uintptr(unsafe.Pointer(&csrc[0])), uintptr(unsafe.Pointer(&cname[0])), 0, 0, 0); r != 0 {
		return nil, "", fmt.Errorf("cuda: nvrtcCreateProgram: %s", n.errString(int32(r)))
	}
	defer call(n.destroy, uintptr(unsafe.Pointer(&prog)))
	all := append([]string{"--gpu-architecture=" + arch}, opts...)
	cs := make([][]byte, len(all))
	ptrs := make([]*byte, len(all))
	for i, o := range all {
		cs[i] = cstr(o)
		ptrs[i] = &cs[i][0]
	}
	r := call(n.compile, prog, uintptr(len(ptrs)), uintptr(unsafe.Pointer(&ptrs[0])))
	log := n.programLog(prog)
	if r != 0 {
		return nil, log, fmt.Errorf("cuda: NVRTC %d.%d compiling %s for %s: %s\n%s", n.major, n.minor, name, arch, n.errString(int32(r)), log)
	}
	if os.Getenv("MARLIN_NVRTC_LOG") == "1" { // the compiler's warnings and advisories, for kernel work
		fmt.Fprintf(os.Stderr, "NVRTC %d.%d log (%s, %s):\n%s\n", n.major, n.minor, name, arch, log)
	}
	sizeFn, getFn := n.cubinSize, n.cubin
	if ptx {
		sizeFn, getFn = n.ptxSize, n.ptx
	}
	var size uintptr
	if r := call(sizeFn, prog, uintptr(unsafe.Pointer(&size))); r != 0 || size == 0 {
		return nil, log, fmt.Errorf("cuda: NVRTC: no image for %s: %s", arch, n.errString(int32(r)))
	}
	img := make([]byte, size)
	if r := call(getFn, prog, uintptr(unsafe.Pointer(&img[0]))); r != 0 {
		return nil, log, fmt.Errorf("cuda: NVRTC: reading the image: %s", n.errString(int32(r)))
	}
	return img, log, nil
}

// programLog returns NVRTC's compile log of prog.
func (n *nvrtc) programLog(prog uintptr) string {
	var size uintptr
	if call(n.logSize, prog, uintptr(unsafe.Pointer(&size))) != 0 || size <= 1 {
		return ""
	}
	buf := make([]byte, size)
	if call(n.log, prog, uintptr(unsafe.Pointer(&buf[0]))) != 0 {
		return ""
	}
	return strings.TrimRight(string(buf), "\x00\n")
}

// compileOptions are passed to every compilation (besides the target).
// No -lineinfo: NVRTC 11.8 crashed (SIGSEGV inside nvrtcCompileProgram)
// compiling these sources for sm_90 with it.
var compileOptions = []string{"--std=c++17"}

// cacheDir returns the folder of cached images (created on demand), or ""
// when the user has no cache folder.
func cacheDir() string {
	dir, err := os.UserCacheDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "marlin", "cubin")
}

// cacheKey identifies one compilation.
func (n *nvrtc) cacheKey(src, arch string) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\x00%s\x00nvrtc %d.%d\x00%s\x00", src, arch, n.major, n.minor, strings.Join(compileOptions, " "))
	return hex.EncodeToString(h.Sum(nil))
}

// images returns the device images of the programs srcs for compute
// capability cc (cubins, or PTX where NVRTC lacks the architecture): each
// from the disk cache unless noCache, else compiled (buildAll) and cached
// (best effort: a read-only cache only costs a compile); fromCache[i]
// tells where image i came from.
func (n *nvrtc) images(srcs []string, cc int, noCache bool) (imgs [][]byte, paths []string, fromCache []bool, err error) {
	arch, ptx, err := n.target(cc)
	if err != nil {
		return nil, nil, nil, err
	}
	ext := ".cubin"
	if ptx {
		ext = ".ptx"
	}
	imgs, paths, fromCache = make([][]byte, len(srcs)), make([]string, len(srcs)), make([]bool, len(srcs))
	dir := cacheDir()
	for i, src := range srcs {
		if dir == "" {
			continue
		}
		paths[i] = filepath.Join(dir, n.cacheKey(src, arch)+ext)
		if !noCache {
			if b, err := os.ReadFile(paths[i]); err == nil && len(b) > 0 {
				imgs[i], fromCache[i] = b, true
				now := time.Now()
				os.Chtimes(paths[i], now, now) // in use (pruneCache keeps it); best effort
			}
		}
	}
	if !slices.Contains(fromCache, false) {
		return imgs, paths, fromCache, nil
	}
	if _, err := n.buildAll(srcs, imgs, arch, ptx, compileOptions); err != nil {
		return nil, nil, nil, err
	}
	for i, img := range imgs {
		if fromCache[i] {
			continue
		}
		if ptx {
			imgs[i] = append(img, 0) // cuModuleLoadData wants PTX NUL-terminated
		}
		if path := paths[i]; path != "" && os.MkdirAll(filepath.Dir(path), 0o755) == nil {
			tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
			if os.WriteFile(tmp, imgs[i], 0o644) != nil || os.Rename(tmp, path) != nil {
				os.Remove(tmp)
			}
		}
	}
	if dir != "" {
		pruneCache(dir, time.Now().Add(-cacheMaxAge))
	}
	return imgs, paths, fromCache, nil
}

// buildAll compiles the programs srcs[i] whose imgs[i] is nil into imgs
// (build), at the same time — ptxas is single-threaded — with at most as
// many compiles at once as cores (each holds its own parse and ptxas), and
// returns their logs.
func (n *nvrtc) buildAll(srcs []string, imgs [][]byte, arch string, ptx bool, opts []string) ([]string, error) {
	logs, errs := make([]string, len(srcs)), make([]error, len(srcs))
	var wg sync.WaitGroup
	sem := make(chan struct{}, runtime.NumCPU())
	for i, src := range srcs {
		if imgs[i] != nil {
			continue
		}
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			imgs[i], logs[i], errs[i] = n.build(src, fmt.Sprintf("marlin_kernels_%d.cu", i), arch, ptx, opts)
		})
	}
	wg.Wait()
	return logs, errors.Join(errs...)
}

// cacheMaxAge is how long a cached image is kept after its last use: each
// new version of the kernel sources (or of NVRTC, or another device)
// writes new files, ~7 MB a build, which nothing else would remove.
const cacheMaxAge = 30 * 24 * time.Hour

// pruneCache removes the cached images in dir (.cubin, .ptx, and
// temporary files of interrupted writes) last used before cutoff — a cache
// hit sets a file's modification time — and nothing else. Best effort:
// failures are ignored, the cache is only an optimisation.
func pruneCache(dir string, cutoff time.Time) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		name := e.Name()
		if !e.Type().IsRegular() || !(strings.HasSuffix(name, ".cubin") || strings.HasSuffix(name, ".ptx") || strings.HasSuffix(name, ".tmp")) {
			continue
		}
		if info, err := e.Info(); err == nil && info.ModTime().Before(cutoff) {
			os.Remove(filepath.Join(dir, name))
		}
	}
}

// entryPoints returns the names of the kernels in a device image: the
// global functions of a cubin's symbol table, or the .entry directives of
// PTX. It lets the backend ask each kernel of the one module that has it.
func entryPoints(img []byte) ([]string, error) {
	if !bytes.HasPrefix(img, []byte(elf.ELFMAG)) {
		var names []string
		for _, l := range strings.Split(string(bytes.TrimRight(img, "\x00")), "\n") {
			if _, rest, ok := strings.Cut(l, ".entry "); ok {
				if name, _, ok := strings.Cut(rest, "("); ok {
					names = append(names, strings.TrimSpace(name))
				}
			}
		}
		if len(names) == 0 {
			return nil, errors.New("PTX without an .entry")
		}
		return names, nil
	}
	// a cubin keeps the CUDA ABI version in e_version (bytes 20–23), where
	// debug/elf wants EV_CURRENT: read a copy that says so
	if len(img) < 64 {
		return nil, errors.New("cubin shorter than its ELF header")
	}
	c := slices.Clone(img)
	c[20], c[21], c[22], c[23] = byte(elf.EV_CURRENT), 0, 0, 0
	f, err := elf.NewFile(bytes.NewReader(c))
	if err != nil {
		return nil, err
	}
	syms, err := f.Symbols()
	if err != nil {
		return nil, err
	}
	var names []string
	for _, s := range syms {
		if elf.ST_TYPE(s.Info) == elf.STT_FUNC && elf.ST_BIND(s.Info) == elf.STB_GLOBAL {
			names = append(names, s.Name)
		}
	}
	if len(names) == 0 {
		return nil, errors.New("cubin without a global function")
	}
	return names, nil
}
