// Command fcap sets and reads a file capability the way setcap and getcap
// do (the security.capability extended attribute, revision 2), for tests
// that run in a busybox rootfs, which has neither:
//
//	fcap set FILE   gives FILE cap_net_raw+ep
//	fcap get FILE   prints "FILE cap_net_raw=ep" if it has exactly that
package main

import (
	"encoding/binary"
	"fmt"
	"os"

	"golang.org/x/sys/unix"
)

const (
	xattr        = "security.capability"
	revision2    = 0x02000000
	effective    = 0x000001
	capNetRaw    = 13
	revision2Len = 20
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: fcap set|get FILE")
		os.Exit(2)
	}
	file := os.Args[2]
	switch os.Args[1] {
	case "set":
		b := make([]byte, revision2Len)
		binary.LittleEndian.PutUint32(b[0:], revision2|effective)
		binary.LittleEndian.PutUint32(b[4:], 1<<capNetRaw) // permitted, low word
		if err := unix.Setxattr(file, xattr, b, 0); err != nil {
			fmt.Fprintf(os.Stderr, "fcap: set %s: %v\n", file, err)
			os.Exit(1)
		}
	case "get":
		b := make([]byte, 64)
		n, err := unix.Getxattr(file, xattr, b)
		if err != nil {
			fmt.Fprintf(os.Stderr, "fcap: get %s: %v\n", file, err)
			os.Exit(1)
		}
		if n < revision2Len || binary.LittleEndian.Uint32(b)&0xff000000 != revision2 {
			fmt.Printf("%s unknown capability format\n", file)
			return
		}
		magic := binary.LittleEndian.Uint32(b)
		perm := binary.LittleEndian.Uint32(b[4:])
		if perm == 1<<capNetRaw && magic&effective != 0 {
			fmt.Printf("%s cap_net_raw=ep\n", file)
		} else {
			fmt.Printf("%s permitted=%#x flags=%#x\n", file, perm, magic&0xffffff)
		}
	default:
		fmt.Fprintln(os.Stderr, "usage: fcap set|get FILE")
		os.Exit(2)
	}
}
