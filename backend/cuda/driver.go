//go:build linux && !nocuda

package cuda

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"

	"github.com/ebitengine/purego"
)

// The CUDA driver API (libcuda.so.1), called through purego without cgo.
//
// Every entry point is resolved once with dlsym into a uintptr and called
// with purego.SyscallN (about 120 ns a call). All arguments of the driver
// API are integers or pointers; enums and CUresult are 32-bit, so results
// are truncated to int32 (the upper half of the return register is
// undefined for a C int). Versioned names (cuMemAlloc_v2 …) are the ones
// the CUDA headers map the plain names to.

// cuResult is a CUresult.
type cuResult int32

// CUresult values the backend tells apart.
const (
	cuSuccess            cuResult = 0
	cuErrorOutOfMemory   cuResult = 2
	cuErrorNoDevice      cuResult = 100
	cuErrorInvalidDevice cuResult = 101
	cuErrorInsufficient  cuResult = 35 // CUDA_ERROR_INSUFFICIENT_DRIVER
	cuErrorNotFound      cuResult = 500
)

// Device and function attributes (CUdevice_attribute, CUfunction_attribute).
const (
	attrMultiprocessorCount      = 16
	attrComputeCapabilityMajor   = 75
	attrComputeCapabilityMinor   = 76
	attrMaxSharedPerBlockOptin   = 97
	funcAttrMaxDynamicSharedSize = 8
	funcAttrPreferredCarveout    = 9 // CU_FUNC_ATTRIBUTE_PREFERRED_SHARED_MEMORY_CARVEOUT (% of the unified L1)

	streamNonBlocking  = 1 // CU_STREAM_NON_BLOCKING
	eventDefault       = 0
	captureModeRelaxed = 2 // CU_STREAM_CAPTURE_MODE_RELAXED
)

// driver holds the resolved entry points of libcuda.
type driver struct {
	lib uintptr

	cuInit, cuDriverGetVersion                                            uintptr
	cuDeviceGet, cuDeviceGetCount, cuDeviceGetName                        uintptr
	cuDeviceGetAttribute, cuDeviceTotalMem                                uintptr
	cuDevicePrimaryCtxRetain, cuDevicePrimaryCtxRelease                   uintptr
	cuCtxSetCurrent, cuCtxGetCurrent, cuCtxSynchronize                    uintptr
	cuMemAlloc, cuMemFree, cuMemGetInfo                                   uintptr
	cuMemcpyHtoD, cuMemcpyDtoH                                            uintptr
	cuMemcpyHtoDAsync, cuMemcpyDtoHAsync, cuMemcpyDtoDAsync               uintptr
	cuMemsetD32Async                                                      uintptr
	cuStreamCreate, cuStreamDestroy, cuStreamSynchronize                  uintptr
	cuEventCreate, cuEventRecord, cuEventSynchronize                      uintptr
	cuEventElapsedTime, cuEventDestroy                                    uintptr
	cuModuleLoadData, cuModuleUnload, cuModuleGetFunction                 uintptr
	cuModuleGetGlobal                                                     uintptr
	cuLaunchKernel, cuFuncSetAttribute                                    uintptr
	cuOccupancyMaxActiveBlocksPerMultiprocessor, cuLaunchKernelEx         uintptr
	cuOccupancyMaxActiveClusters                                          uintptr
	cuGetErrorName, cuGetErrorString                                      uintptr
	cuStreamBeginCapture, cuStreamEndCapture                              uintptr
	cuGraphInstantiate, cuGraphLaunch, cuGraphExecDestroy, cuGraphDestroy uintptr
}

// ErrUnavailable is matched (errors.Is) by the error New returns when this
// machine cannot run the backend at all: no driver library, no device, or
// no NVRTC. Callers fall back to the CPU on it.
var ErrUnavailable = errors.New("CUDA unavailable")

// unavailable is an error that matches ErrUnavailable.
type unavailable struct{ msg string }

func (e *unavailable) Error() string        { return e.msg }
func (e *unavailable) Is(target error) bool { return target == ErrUnavailable }

var (
	drvOnce sync.Once
	drv     *driver
	drvErr  error
)

// loadDriver opens libcuda.so.1 and resolves the entry points (once per
// process).
func loadDriver() (*driver, error) {
	drvOnce.Do(func() {
		lib, err := purego.Dlopen("libcuda.so.1", purego.RTLD_NOW|purego.RTLD_GLOBAL)
		if err != nil {
			msg := strings.TrimPrefix(err.Error(), "libcuda.so.1: ")
			drvErr = &unavailable{fmt.Sprintf("no CUDA driver found (libcuda.so.1: %s)", msg)}
			return
		}
		d := &driver{lib: lib}
		syms := []struct {
			p        *uintptr
			names    []string
			optional bool
		}{
			{&d.cuInit, []string{"cuInit"}, false},
			{&d.cuDriverGetVersion, []string{"cuDriverGetVersion"}, false},
			{&d.cuDeviceGet, []string{"cuDeviceGet"}, false},
			{&d.cuDeviceGetCount, []string{"cuDeviceGetCount"}, false},
			{&d.cuDeviceGetName, []string{"cuDeviceGetName"}, false},
			{&d.cuDeviceGetAttribute, []string{"cuDeviceGetAttribute"}, false},
			{&d.cuDeviceTotalMem, []string{"cuDeviceTotalMem_v2"}, false},
			{&d.cuDevicePrimaryCtxRetain, []string{"cuDevicePrimaryCtxRetain"}, false},
			{&d.cuDevicePrimaryCtxRelease, []string{"cuDevicePrimaryCtxRelease_v2", "cuDevicePrimaryCtxRelease"}, false},
			{&d.cuCtxSetCurrent, []string{"cuCtxSetCurrent"}, false},
			{&d.cuCtxGetCurrent, []string{"cuCtxGetCurrent"}, false},
			{&d.cuCtxSynchronize, []string{"cuCtxSynchronize"}, false},
			{&d.cuMemAlloc, []string{"cuMemAlloc_v2"}, false},
			{&d.cuMemFree, []string{"cuMemFree_v2"}, false},
			{&d.cuMemGetInfo, []string{"cuMemGetInfo_v2"}, false},
			{&d.cuMemcpyHtoD, []string{"cuMemcpyHtoD_v2"}, false},
			{&d.cuMemcpyDtoH, []string{"cuMemcpyDtoH_v2"}, false},
			{&d.cuMemcpyHtoDAsync, []string{"cuMemcpyHtoDAsync_v2"}, false},
			{&d.cuMemcpyDtoHAsync, []string{"cuMemcpyDtoHAsync_v2"}, false},
			{&d.cuMemcpyDtoDAsync, []string{"cuMemcpyDtoDAsync_v2"}, false},
			{&d.cuMemsetD32Async, []string{"cuMemsetD32Async"}, false},
			{&d.cuStreamCreate, []string{"cuStreamCreate"}, false},
			{&d.cuStreamDestroy, []string{"cuStreamDestroy_v2"}, false},
			{&d.cuStreamSynchronize, []string{"cuStreamSynchronize"}, false},
			{&d.cuEventCreate, []string{"cuEventCreate"}, false},
			{&d.cuEventRecord, []string{"cuEventRecord"}, false},
			{&d.cuEventSynchronize, []string{"cuEventSynchronize"}, false},
			{&d.cuEventElapsedTime, []string{"cuEventElapsedTime_v2", "cuEventElapsedTime"}, false},
			{&d.cuEventDestroy, []string{"cuEventDestroy_v2"}, false},
			{&d.cuModuleLoadData, []string{"cuModuleLoadData"}, false},
			{&d.cuModuleUnload, []string{"cuModuleUnload"}, false},
			{&d.cuModuleGetFunction, []string{"cuModuleGetFunction"}, false},
			{&d.cuModuleGetGlobal, []string{"cuModuleGetGlobal_v2"}, true},
			{&d.cuLaunchKernel, []string{"cuLaunchKernel"}, false},
			{&d.cuFuncSetAttribute, []string{"cuFuncSetAttribute"}, false},
			{&d.cuOccupancyMaxActiveBlocksPerMultiprocessor, []string{"cuOccupancyMaxActiveBlocksPerMultiprocessor"}, true},
			{&d.cuLaunchKernelEx, []string{"cuLaunchKernelEx"}, true},
			{&d.cuOccupancyMaxActiveClusters, []string{"cuOccupancyMaxActiveClusters"}, true},
			{&d.cuGetErrorName, []string{"cuGetErrorName"}, false},
			{&d.cuGetErrorString, []string{"cuGetErrorString"}, false},
			// graph capture: present since CUDA 11.4; optional so that an
			// older driver still runs everything else
			{&d.cuStreamBeginCapture, []string{"cuStreamBeginCapture_v2"}, true},
			{&d.cuStreamEndCapture, []string{"cuStreamEndCapture"}, true},
			{&d.cuGraphInstantiate, []string{"cuGraphInstantiateWithFlags"}, true},
			{&d.cuGraphLaunch, []string{"cuGraphLaunch"}, true},
			{&d.cuGraphExecDestroy, []string{"cuGraphExecDestroy"}, true},
			{&d.cuGraphDestroy, []string{"cuGraphDestroy"}, true},
		}
		for _, s := range syms {
			for _, name := range s.names {
				if p, err := purego.Dlsym(lib, name); err == nil && p != 0 {
					*s.p = p
					break
				}
			}
			if *s.p == 0 && !s.optional {
				drvErr = fmt.Errorf("cuda: libcuda.so.1 lacks %s (driver too old?)", s.names[0])
				return
			}
		}
		drv = d
	})
	return drv, drvErr
}

// call invokes a driver (or NVRTC) entry point. The directive keeps any
// pointer converted to uintptr in the argument list alive and on the heap
// for the duration of the call, as purego.SyscallN's own does.
//
//go:uintptrescapes
func call(fn uintptr, args ...uintptr) cuResult {
	r, _, _ := purego.SyscallN(fn, args...)
	return cuResult(int32(r))
}

// cString reads a NUL-terminated C string (at most 4096 bytes) that the
// driver owns.
func cString(p *byte) string {
	if p == nil {
		return ""
	}
	var sb strings.Builder
	for i := 0; i < 4096; i++ {
		c := *(*byte)(unsafe.Add(unsafe.Pointer(p), i))
		if c == 0 {
			break
		}
		sb.WriteByte(c)
	}
	return sb.String()
}

// errorString describes a CUresult: "CUDA_ERROR_OUT_OF_MEMORY (out of memory)".
func (d *driver) errorString(r cuResult) string {
	var name, desc *byte
	call(d.cuGetErrorName, uintptr(r), uintptr(unsafe.Pointer(&name)))
	call(d.cuGetErrorString, uintptr(r), uintptr(unsafe.Pointer(&desc)))
	n, s := cString(name), cString(desc)
	switch {
	case n == "":
		return fmt.Sprintf("CUresult %d", int32(r))
	case s == "":
		return n
	}
	return n + " (" + s + ")"
}

// cuError is a failed driver call.
type cuError struct {
	op   string
	code cuResult
	desc string
}

func (e *cuError) Error() string { return "cuda: " + e.op + ": " + e.desc }

// check turns a CUresult into an error naming the operation, or nil.
func (d *driver) check(r cuResult, op string) error {
	if r == cuSuccess {
		return nil
	}
	return &cuError{op: op, code: r, desc: d.errorString(r)}
}
