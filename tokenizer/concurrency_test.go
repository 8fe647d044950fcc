package tokenizer

import (
	"math/rand/v2"
	"sync"
	"testing"
)

// TestConcurrentEncode encodes from many goroutines at once (the word
// caches are shared) and checks every result against a serial run.
func TestConcurrentEncode(t *testing.T) {
	for _, name := range []string{"llama3", "mistral", "llama2"} {
		tk := sharedTokenizer(t, name)
		r := rand.New(rand.NewPCG(5, 5))
		texts := make([]string, 64)
		want := make([][]int32, len(texts))
		for i := range texts {
			texts[i] = genText(r, 40, genOptions{special: true})
		}
		fresh, err := Load(sharedData(t) + "/" + sharedTokenizers[name])
		if err != nil {
			t.Fatal(err)
		}
		for i, s := range texts {
			want[i] = fresh.Encode(s, true)
		}
		var wg sync.WaitGroup
		for g := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for k := range 4 * len(texts) {
					i := (k*7 + g) % len(texts)
					if got := tk.Encode(texts[i], true); !equalIDs(got, want[i]) {
						t.Errorf("%s: goroutine %d text %d differs", name, g, i)
						return
					}
					tk.Decode(want[i], true)
				}
			}()
		}
		wg.Wait()
	}
}
