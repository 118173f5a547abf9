package agent

import (
	"errors"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"time"

	"github.com/hashicorp/yamux"
	"golang.org/x/sys/unix"

	"github.com/skiff-oci/skiff/agentclient/protocol"
)

// serveChannel serves one yamux session after another on the agent port:
// when the host goes away the port reads EOF, and a later host connection
// gets a fresh session. Containers outlive sessions.
func (a *Agent) serveChannel() {
	for {
		port, err := a.openPort()
		if err != nil {
			a.log.errorf("%v", err)
			time.Sleep(time.Second)
			continue
		}
		a.waitHost(port)
		sess, err := yamux.Server(port, protocol.YamuxConfig())
		if err != nil {
			a.log.errorf("start session: %v", err)
			port.Close()
			continue
		}
		a.log.say(protocol.ReadyMessage)
		for {
			st, err := sess.AcceptStream()
			if err != nil {
				a.log.debugf("session ended: %v", err)
				break
			}
			go a.handle(st)
		}
		sess.Close()
		port.Close()
	}
}

// openPort finds the virtio-serial port named protocol.PortName and opens
// it non-blocking (so that Go's poller drives it). The port appears when
// virtio_console probes the device; poll briefly for it rather than sleep.
func (a *Agent) openPort() (*os.File, error) {
	deadline := time.Now().Add(5 * time.Second)
	delay := 500 * time.Microsecond
	for {
		dev, err := findPort()
		if err == nil {
			fd, err := unix.Open(dev, unix.O_RDWR|unix.O_NONBLOCK|unix.O_CLOEXEC|unix.O_NOCTTY, 0)
			if err != nil {
				return nil, fmt.Errorf("open %s: %w", dev, err)
			}
			a.log.debugf("opened %s", dev)
			return os.NewFile(uintptr(fd), dev), nil
		}
		if time.Now().After(deadline) {
			return nil, err
		}
		time.Sleep(delay)
		if delay < 20*time.Millisecond {
			delay *= 2
		}
	}
}

// findPort returns the /dev node of the port named protocol.PortName,
// creating the node from sysfs when devtmpfs did not.
func findPort() (string, error) {
	const class = "/sys/class/virtio-ports"
	ents, err := os.ReadDir(class)
	if err != nil {
		return "", fmt.Errorf("no virtio-serial ports (is virtio_console loaded?): %w", err)
	}
	for _, e := range ents {
		name, err := os.ReadFile(filepath.Join(class, e.Name(), "name"))
		if err != nil || strings.TrimSpace(string(name)) != protocol.PortName {
			continue
		}
		return devNode(class, e.Name(), unix.S_IFCHR)
	}
	return "", fmt.Errorf("no virtio-serial port named %q", protocol.PortName)
}

// waitHost waits until a host is connected to the port: until then a read
// returns EOF at once, which would end the session before it starts. The
// port reports POLLHUP while no host is connected and gives no wake-up when
// one connects, so poll, briefly at first.
func (a *Agent) waitHost(port *os.File) {
	rc, err := port.SyscallConn()
	if err != nil {
		return
	}
	connected := func() bool {
		ok := true
		rc.Control(func(fd uintptr) {
			pfd := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLOUT}}
			if _, err := unix.Poll(pfd, 0); err == nil && pfd[0].Revents&unix.POLLHUP != 0 {
				ok = false
			}
		})
		return ok
	}
	if connected() {
		return
	}
	// virtio_console raises SIGIO on an O_ASYNC port when the host side
	// connects: a guest restored from a template then answers at once,
	// instead of after its next poll. Polling stays as a fallback.
	sigio := make(chan os.Signal, 1)
	signal.Notify(sigio, unix.SIGIO)
	defer signal.Stop(sigio)
	rc.Control(func(fd uintptr) {
		unix.FcntlInt(fd, unix.F_SETOWN, os.Getpid())
		if fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0); err == nil {
			unix.FcntlInt(fd, unix.F_SETFL, fl|unix.O_ASYNC)
		}
	})
	// Nobody is connected yet: this may be a VM template, saved on this
	// message, so the zygote must be waiting in it by then.
	a.waitZygote()
	a.log.say(protocol.WaitingMessage)
	delay := 500 * time.Microsecond
	for !connected() {
		select {
		case <-sigio:
		case <-time.After(delay):
		}
		if delay < 50*time.Millisecond {
			delay *= 2
		}
	}
	// The session reads the port normally from here on.
	rc.Control(func(fd uintptr) {
		if fl, err := unix.FcntlInt(fd, unix.F_GETFL, 0); err == nil {
			unix.FcntlInt(fd, unix.F_SETFL, fl&^unix.O_ASYNC)
		}
	})
	a.log.debugf("host connected")
}

// devNode returns /dev/NAME for the device sysfs lists as class/NAME,
// making the node (of type kind: unix.S_IFCHR or S_IFBLK) from its
// major:minor when devtmpfs did not.
func devNode(class, name string, kind uint32) (string, error) {
	dev := "/dev/" + name
	if _, err := os.Stat(dev); err == nil {
		return dev, nil
	}
	nums, err := os.ReadFile(filepath.Join(class, name, "dev"))
	if err != nil {
		return "", err
	}
	var major, minor uint32
	if _, err := fmt.Sscanf(strings.TrimSpace(string(nums)), "%d:%d", &major, &minor); err != nil {
		return "", fmt.Errorf("parse %s/dev: %w", name, err)
	}
	if err := unix.Mknod(dev, kind|0o600, int(unix.Mkdev(major, minor))); err != nil && !errors.Is(err, unix.EEXIST) {
		return "", fmt.Errorf("mknod %s: %w", dev, err)
	}
	return dev, nil
}
