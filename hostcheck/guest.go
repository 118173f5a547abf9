package hostcheck

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"debug/elf"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strconv"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// imageFix is how to get a guest image, said by every guest check.
const imageFix = "build the guest image (make guest, which writes build/guest/) or install it (make install), or set hypervisor.kernel and hypervisor.initrd in the configuration to existing files"

// xenPhys32Entry is the ELF note (owner "Xen") through which a vmlinux
// offers its PVH entry point, which QEMU uses to boot it directly.
const xenPhys32Entry = 18

// CheckKernel checks that the guest kernel exists, is readable and, on
// amd64, is an uncompressed vmlinux with a PVH entry point.
func CheckKernel(path string) Result {
	r := Result{Name: "guest kernel"}
	fail := func(detail string) Result {
		r.Status, r.Detail, r.Fix = Fail, detail, imageFix
		return r
	}
	if path == "" {
		return fail("no kernel path configured")
	}
	f, size, err := openRegular(path)
	if err != nil {
		return fail(err.Error())
	}
	defer f.Close()
	if runtime.GOARCH != "amd64" {
		r.Status, r.Detail = Pass, fmt.Sprintf("%s readable, %s", path, mib(size))
		return r
	}
	if err := checkPVH(f); err != nil {
		r.Status, r.Detail = Fail, fmt.Sprintf("%s: %v", path, err)
		r.Fix = "use an uncompressed vmlinux with a PVH entry point (CONFIG_PVH=y, as Debian's stock kernel has; make guest extracts one), not a bzImage"
		return r
	}
	r.Status, r.Detail = Pass, fmt.Sprintf("%s: ELF vmlinux with a PVH entry point, %s", path, mib(size))
	return r
}

// checkPVH says what is wrong with f as a kernel QEMU boots through PVH.
func checkPVH(f *os.File) error {
	var magic [4]byte
	if _, err := f.ReadAt(magic[:], 0); err != nil {
		return fmt.Errorf("cannot read its header: %w", err)
	}
	if string(magic[:]) != elf.ELFMAG {
		var hdr [4]byte
		// A bzImage carries the boot protocol's "HdrS" at 0x202.
		if _, err := f.ReadAt(hdr[:], 0x202); err == nil && string(hdr[:]) == "HdrS" {
			return errors.New("is a compressed bzImage, not an ELF vmlinux")
		}
		return errors.New("is not an ELF file (want an uncompressed vmlinux)")
	}
	ef, err := elf.NewFile(f)
	if err != nil {
		return fmt.Errorf("unreadable ELF: %w", err)
	}
	if ef.Machine != elf.EM_X86_64 {
		return fmt.Errorf("is an ELF for %v, not x86-64", ef.Machine)
	}
	for _, p := range ef.Progs {
		if p.Type != elf.PT_NOTE {
			continue
		}
		notes, err := io.ReadAll(io.LimitReader(p.Open(), 1<<20))
		if err == nil && hasNote(notes, ef.ByteOrder, "Xen", xenPhys32Entry) {
			return nil
		}
	}
	return errors.New("has no PVH entry point (no Xen PHYS32_ENTRY note): QEMU cannot boot it directly")
}

// hasNote reports whether an ELF note segment holds a note of owner name
// and type typ. Notes are 4-byte aligned: namesz, descsz, type, name, desc.
func hasNote(b []byte, order binary.ByteOrder, name string, typ uint32) bool {
	align := func(n uint32) uint64 { return (uint64(n) + 3) &^ 3 }
	for len(b) >= 12 {
		namesz, descsz, t := order.Uint32(b[0:]), order.Uint32(b[4:]), order.Uint32(b[8:])
		b = b[12:]
		if align(namesz) > uint64(len(b)) {
			return false
		}
		n := string(bytes.TrimRight(b[:namesz], "\x00"))
		b = b[align(namesz):]
		if align(descsz) > uint64(len(b)) {
			return false
		}
		b = b[align(descsz):]
		if n == name && t == typ {
			return true
		}
	}
	return false
}

// CheckInitrd checks that the initramfs exists, is readable and not empty.
func CheckInitrd(path string) Result {
	r := Result{Name: "guest initramfs"}
	if path == "" {
		r.Status, r.Detail, r.Fix = Fail, "no initramfs path configured", imageFix
		return r
	}
	f, size, err := openRegular(path)
	if err != nil {
		r.Status, r.Detail, r.Fix = Fail, err.Error(), imageFix
		return r
	}
	defer f.Close()
	if size == 0 {
		r.Status, r.Detail, r.Fix = Fail, path+" is empty", imageFix
		return r
	}
	var head [6]byte
	n, _ := f.ReadAt(head[:], 0)
	r.Status = Pass
	r.Detail = fmt.Sprintf("%s readable, %s, %s", path, mib(size), initrdFormat(head[:n]))
	return r
}

func initrdFormat(head []byte) string {
	switch {
	case bytes.HasPrefix(head, []byte("070701")), bytes.HasPrefix(head, []byte("070702")):
		return "uncompressed cpio"
	case bytes.HasPrefix(head, []byte{0x1f, 0x8b}):
		return "gzip"
	case bytes.HasPrefix(head, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd"
	case bytes.HasPrefix(head, []byte{0xfd, '7', 'z', 'X', 'Z', 0}):
		return "xz"
	default:
		return "unknown format"
	}
}

// GuestInfo is what guest/build.sh records in guest.json beside the
// kernel.
type GuestInfo struct {
	KernelPackage        string `json:"kernelPackage"`
	KernelPackageVersion string `json:"kernelPackageVersion"`
	KernelVersion        string `json:"kernelVersion"`
	AgentSHA256          string `json:"agentSHA256"`
	InitramfsCompression string `json:"initramfsCompression"`
}

// GuestInfoPath is where guest.json of the image holding kernel lives
// (kernel-minimal.json for the minimal kernel of `make kernel`).
func GuestInfoPath(kernel string) string {
	if filepath.Base(kernel) == "vmlinux-minimal" {
		return filepath.Join(filepath.Dir(kernel), "kernel-minimal.json")
	}
	return filepath.Join(filepath.Dir(kernel), "guest.json")
}

// ReadGuestInfo reads guest.json beside kernel. It returns fs.ErrNotExist
// (wrapped) when the image has none.
func ReadGuestInfo(kernel string) (GuestInfo, error) {
	var gi GuestInfo
	p := GuestInfoPath(kernel)
	b, err := os.ReadFile(p)
	if err != nil {
		return gi, err
	}
	if err := json.Unmarshal(b, &gi); err != nil {
		return gi, fmt.Errorf("%s: %w", p, err)
	}
	return gi, nil
}

// CheckGuestImage reports the kernel version and agent recorded in
// guest.json beside the kernel, and checks the recorded agent against the
// initramfs's /init when the initramfs is an uncompressed cpio. Whether
// the agent speaks this binary's protocol version is checked at every
// boot (the first call to the agent); a probe boot here would cost
// seconds under TCG.
func CheckGuestImage(kernel, initrd string) Result {
	r := Result{Name: "guest image"}
	if _, err := os.Stat(kernel); err != nil {
		r.Status = Warn
		r.Detail = "not checked: the guest kernel is missing (see guest kernel)"
		r.Fix = imageFix
		return r
	}
	p := GuestInfoPath(kernel)
	gi, err := ReadGuestInfo(kernel)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		r.Status = Pass
		r.Detail = fmt.Sprintf("no %s (image not built by guest/build.sh): guest kernel and agent versions unknown; agent protocol v%d is checked at each cold boot and when a VM template is built", p, protocol.Version)
		return r
	case err != nil:
		r.Status, r.Detail = Warn, err.Error()
		r.Fix = "rebuild the guest image (make guest), which rewrites guest.json"
		return r
	}
	short := gi.AgentSHA256
	if len(short) > 12 {
		short = short[:12]
	}
	desc := fmt.Sprintf("kernel %s (%s %s), agent sha256 %s", gi.KernelVersion, gi.KernelPackage, gi.KernelPackageVersion, short)
	got, err := initSHA256(initrd)
	switch {
	case err != nil:
		desc += " (not compared with the initramfs: " + err.Error() + ")"
	case gi.AgentSHA256 != "" && got != gi.AgentSHA256:
		r.Status = Warn
		r.Detail = fmt.Sprintf("%s, but /init in %s has sha256 %s: guest.json does not describe this initramfs", desc, initrd, got[:12])
		r.Fix = "rebuild the guest image (make guest) so that kernel, initramfs and guest.json belong together"
		return r
	default:
		desc += ", matches /init in the initramfs"
	}
	r.Status = Pass
	r.Detail = fmt.Sprintf("%s; agent protocol v%d is checked at each cold boot and when a VM template is built", desc, protocol.Version)
	return r
}

// initSHA256 returns the sha256 of /init in an uncompressed newc cpio
// initramfs (as guest/build.sh writes by default).
func initSHA256(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", unwrapPath(err)
	}
	defer f.Close()
	return cpioFileSHA256(bufio.NewReaderSize(f, 1<<16), "init")
}

// cpioFileSHA256 walks newc cpio archives (concatenated, possibly with
// zero padding between them) for the regular file name and hashes it.
func cpioFileSHA256(r *bufio.Reader, name string) (string, error) {
	const hdrLen = 110
	var off int64 // bytes consumed, for 4-byte alignment
	skip := func(n int64) error {
		k, err := io.CopyN(io.Discard, r, n)
		off += k
		return err
	}
	for {
		// Zero padding between concatenated archives.
		b, err := r.Peek(1)
		if err == io.EOF {
			return "", fmt.Errorf("no /%s in the archive", name)
		}
		if err != nil {
			return "", err
		}
		if b[0] == 0 {
			if err := skip(1); err != nil {
				return "", err
			}
			continue
		}
		var hdr [hdrLen]byte
		if _, err := io.ReadFull(r, hdr[:]); err != nil {
			return "", errors.New("not an uncompressed cpio archive")
		}
		off += hdrLen
		if m := string(hdr[:6]); m != "070701" && m != "070702" {
			return "", errors.New("not an uncompressed newc cpio archive")
		}
		field := func(i int) (int64, error) {
			return strconv.ParseInt(string(hdr[6+8*i:6+8*i+8]), 16, 64)
		}
		mode, err1 := field(1)
		size, err2 := field(6)
		namesz, err3 := field(11)
		if err := errors.Join(err1, err2, err3); err != nil || namesz < 1 || namesz > 4096 {
			return "", errors.New("corrupt cpio header")
		}
		nb := make([]byte, namesz)
		if _, err := io.ReadFull(r, nb); err != nil {
			return "", errors.New("truncated cpio archive")
		}
		off += namesz
		if err := skip((4 - off%4) % 4); err != nil {
			return "", errors.New("truncated cpio archive")
		}
		entry := string(bytes.TrimRight(nb, "\x00"))
		if entry == "TRAILER!!!" {
			continue
		}
		if (entry == name || entry == "./"+name) && mode&0o170000 == 0o100000 {
			h := sha256.New()
			if _, err := io.CopyN(h, r, size); err != nil {
				return "", errors.New("truncated cpio archive")
			}
			return hex.EncodeToString(h.Sum(nil)), nil
		}
		if err := skip(size + (4-(off+size)%4)%4); err != nil {
			return "", errors.New("truncated cpio archive")
		}
	}
}

// openRegular opens a regular file for reading, with errors that name it.
func openRegular(path string) (*os.File, int64, error) {
	fi, err := os.Stat(path)
	if err != nil {
		return nil, 0, fmt.Errorf("%s: %w", path, unwrapPath(err))
	}
	if !fi.Mode().IsRegular() {
		return nil, 0, fmt.Errorf("%s is not a regular file", path)
	}
	f, err := os.Open(path)
	if err != nil {
		return nil, 0, fmt.Errorf("%s is not readable: %w", path, unwrapPath(err))
	}
	return f, fi.Size(), nil
}

func mib(n int64) string {
	return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
}
