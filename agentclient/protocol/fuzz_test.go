package protocol

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"testing"
)

// FuzzReadFrame: whatever the guest sends, decoding never panics and never
// allocates for a frame over MaxFrame.
func FuzzReadFrame(f *testing.F) {
	var buf bytes.Buffer
	WriteFrame(&buf, Response{Body: []byte(`{"exitStatus":7}`)})
	f.Add(buf.Bytes())
	f.Add([]byte{0xff, 0xff, 0xff, 0xff})
	f.Add([]byte{0, 0, 0, 5, '{', '}', 0, 0, 0})
	f.Add([]byte{0, 0, 0, 2, '{', '}'})
	f.Fuzz(func(t *testing.T, b []byte) {
		var rsp Response
		err := ReadFrame(bytes.NewReader(b), &rsp)
		if len(b) >= 4 && binary.BigEndian.Uint32(b) > MaxFrame && err == nil {
			t.Fatal("accepted a frame over MaxFrame")
		}
		var wait WaitProcessResponse
		if err == nil && len(rsp.Body) > 0 {
			_ = json.Unmarshal(rsp.Body, &wait)
		}
	})
}

func TestFrameRoundTripAndLimit(t *testing.T) {
	var buf bytes.Buffer
	if err := WriteFrame(&buf, PingResponse{Version: Version, Kernel: "6.1"}); err != nil {
		t.Fatal(err)
	}
	var got PingResponse
	if err := ReadFrame(&buf, &got); err != nil || got.Version != Version || got.Kernel != "6.1" {
		t.Fatalf("round trip: %+v %v", got, err)
	}
	hdr := make([]byte, 4)
	binary.BigEndian.PutUint32(hdr, MaxFrame+1)
	if err := ReadFrame(bytes.NewReader(hdr), &got); err == nil {
		t.Fatal("a frame over MaxFrame was accepted")
	}
	big := make([]byte, MaxFrame+1)
	if err := WriteFrame(&buf, big); err == nil {
		t.Fatal("WriteFrame sent a frame over MaxFrame")
	}
}
