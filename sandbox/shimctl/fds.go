package shimctl

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"os"

	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// maxFiles is the most descriptors one frame may carry (stdin, stdout,
// stderr); more are closed unread.
const maxFiles = 3

// fdReader reads a unix connection and keeps the descriptors that arrive
// with the bytes (SCM_RIGHTS), so that a frame and its files are read
// together.
type fdReader struct {
	conn *net.UnixConn
	fds  []*os.File
}

func (r *fdReader) Read(p []byte) (int, error) {
	oob := make([]byte, unix.CmsgSpace(4*maxFiles))
	n, oobn, _, _, err := r.conn.ReadMsgUnix(p, oob)
	if oobn > 0 {
		if msgs, perr := unix.ParseSocketControlMessage(oob[:oobn]); perr == nil {
			for _, m := range msgs {
				fds, _ := unix.ParseUnixRights(&m)
				for _, fd := range fds {
					r.fds = append(r.fds, os.NewFile(uintptr(fd), fmt.Sprintf("passed-fd-%d", len(r.fds))))
				}
			}
		}
	}
	if n == 0 && err == nil {
		err = io.EOF
	}
	return n, err
}

// CloseFiles closes every file of fs.
func CloseFiles(fs []*os.File) {
	for _, f := range fs {
		f.Close()
	}
}

// writeWithFiles writes one frame with files attached (SCM_RIGHTS).
func writeWithFiles(conn *net.UnixConn, v any, files []*os.File) error {
	var buf bytes.Buffer
	if err := protocol.WriteFrame(&buf, v); err != nil {
		return err
	}
	var oob []byte
	if len(files) > 0 {
		fds := make([]int, len(files))
		for i, f := range files {
			fds[i] = int(f.Fd())
		}
		oob = unix.UnixRights(fds...)
	}
	n, _, err := conn.WriteMsgUnix(buf.Bytes(), oob, nil)
	if err != nil {
		return err
	}
	if n < buf.Len() {
		_, err = conn.Write(buf.Bytes()[n:])
	}
	return err
}
