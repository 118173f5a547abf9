package agent

import (
	"bytes"
	"crypto/rand"
	"io"
	"testing"
)

// chunked reads at most n bytes per call, as a pipe gives what it holds.
type chunked struct {
	r io.Reader
	n int
}

func (c chunked) Read(p []byte) (int, error) { return c.r.Read(p[:min(len(p), c.n)]) }

// copyGrowing relays every byte, whether the writer's chunks are small
// (the buffer stays small) or fill it (it grows).
func TestCopyGrowingRelaysEverything(t *testing.T) {
	for _, c := range []struct{ size, chunk int }{{0, 1}, {100, 7}, {3 << 20, 4 << 10}, {3 << 20, bigRead}, {5<<20 + 3, 300 << 10}} {
		src := make([]byte, c.size)
		rand.Read(src)
		var dst bytes.Buffer
		if err := copyGrowing(&dst, chunked{bytes.NewReader(src), c.chunk}); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(dst.Bytes(), src) {
			t.Errorf("%d bytes in chunks of %d: relayed %d bytes, not the same", c.size, c.chunk, dst.Len())
		}
	}
}
