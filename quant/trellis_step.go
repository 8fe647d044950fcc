package quant

// stepFunc is one Viterbi step (see stepGeneric).
type stepFunc func(next []float32, bp []uint8, prev, val []float32, x float32, K int)

// step is the Viterbi step the encoder runs: the fastest of stepKernels.
var step stepFunc = stepGeneric

// StepKernel names the Viterbi step in use ("avx512", "avx2" or "go").
var StepKernel = "go"

// stepKernels holds every step usable on this CPU, by name (the tests
// compare them).
var stepKernels = map[string]stepFunc{"go": stepGeneric}
