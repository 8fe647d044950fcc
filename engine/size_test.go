package engine

import (
	"strings"
	"testing"
)

// TestSizeCache checks how the context and the KV cache are sized from the
// model's context length and the backend's available memory: the
// defaults, a cache cut to nine tenths of the memory, a default context
// shortened to fit, and clear errors for a context or a cache size that
// was asked for and does not fit (or a memory too small for any useful
// context).
func TestSizeCache(t *testing.T) {
	const per = 1 << 10 // bytes a token
	for _, c := range []struct {
		name        string
		cfg         Config
		modelCtx    int
		avail       int64
		ctx, tokens int
		err         string
	}{
		{"unknown memory", Config{}, 8192, 0, 8192, 4 * 8192, ""},
		{"unknown context", Config{}, 0, 0, 2048, 8192, ""},
		{"plenty", Config{}, 8192, 1 << 40, 8192, 4 * 8192, ""},
		{"one sequence", Config{MaxSeqs: 1}, 8192, 1 << 40, 8192, 8192 + 64, ""},
		{"cache cut", Config{}, 8192, 20000 * per, 8192, 17984, ""},
		{"context shortened", Config{}, 131072, 10000 * per, 8896, 8960, ""},
		{"asked context capped by the model's", Config{ContextLength: 1 << 20}, 4096, 0, 4096, 16384, ""},
		{"asked context fits", Config{ContextLength: 4096, MaxSeqs: 1}, 131072, 10000 * per, 4096, 4096 + 64, ""},
		{"asked context too long", Config{ContextLength: 65536}, 131072, 10000 * per, 0, 0, "ask for a context of at most 8896"},
		{"asked cache too large", Config{CacheTokens: 50000}, 8192, 20000 * per, 0, 0, "ask for at most 17984 tokens"},
		{"too little memory", Config{}, 8192, 200 * per, 0, 0, "ask for a context of at most"},
	} {
		cfg := c.cfg
		cfg.BlockSize = 64
		if cfg.MaxSeqs == 0 {
			cfg.MaxSeqs = 64
		}
		ctx, err := sizeCache(&cfg, c.modelCtx, per, c.avail)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) {
				t.Errorf("%s: error %v, want one saying %q", c.name, err, c.err)
			}
			continue
		}
		if err != nil || ctx != c.ctx || cfg.CacheTokens != c.tokens {
			t.Errorf("%s: context %d, cache %d tokens, error %v; want %d, %d", c.name, ctx, cfg.CacheTokens, err, c.ctx, c.tokens)
		}
		if c.avail > 0 && int64(cfg.CacheTokens)*per > c.avail/10*9 {
			t.Errorf("%s: a cache of %d tokens exceeds nine tenths of %d bytes", c.name, cfg.CacheTokens, c.avail)
		}
		if cfg.CacheTokens < ctx+cfg.BlockSize {
			t.Errorf("%s: a cache of %d tokens cannot hold a context of %d", c.name, cfg.CacheTokens, ctx)
		}
	}
}
