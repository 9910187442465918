package genl

import (
	"errors"
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// sock is one blocking generic netlink socket, used by one caller at a
// time. Its calls are plain syscalls: no netpoller, no goroutine, no timer;
// a receive waits at most the SO_RCVTIMEO last set.
type sock struct {
	fd int
}

// openSock opens a socket whose receive buffer holds rcvbuf bytes of
// answers (0: the default); SO_RCVBUFFORCE passes the rmem_max limit, as
// root may.
func openSock(rcvbuf int, timeout time.Duration) (*sock, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_GENERIC)
	if err != nil {
		return nil, fmt.Errorf("opening a generic netlink socket: %w", err)
	}
	s := &sock{fd: fd}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		s.close()
		return nil, fmt.Errorf("binding a generic netlink socket: %w", err)
	}
	if rcvbuf > 0 {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, rcvbuf); err != nil {
			if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, rcvbuf); err != nil {
				s.close()
				return nil, fmt.Errorf("sizing the netlink receive buffer: %w", err)
			}
		}
	}
	// An error answer carries only the request's header, not the whole
	// request: more of them fit in the receive buffer.
	_ = unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_CAP_ACK, 1)
	if err := s.setTimeout(timeout); err != nil {
		s.close()
		return nil, err
	}
	return s, nil
}

func (s *sock) close() {
	if s.fd >= 0 {
		unix.Close(s.fd)
		s.fd = -1
	}
}

// setTimeout bounds each receive (at least a millisecond: 0 would be
// "forever").
func (s *sock) setTimeout(d time.Duration) error {
	d = max(d, time.Millisecond)
	tv := unix.NsecToTimeval(d.Nanoseconds())
	if err := unix.SetsockoptTimeval(s.fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("setting the netlink receive timeout: %w", err)
	}
	return nil
}

// send hands a run of requests to the kernel in one sendmsg. The kernel
// handles them all before it returns, answers queued.
func (s *sock) send(b []byte) error {
	for {
		_, err := unix.Write(s.fd, b)
		if err != unix.EINTR {
			return err
		}
	}
}

// errTimeout is a receive that timed out.
var errTimeout = errors.New("no netlink answer in time")

// recv reads one datagram into b; flags may add MSG_DONTWAIT. A datagram
// larger than b is an error, never silently cut.
func (s *sock) recv(b []byte, flags int) (int, error) {
	for {
		r, _, e := unix.Syscall6(unix.SYS_RECVFROM, uintptr(s.fd), uintptr(unsafe.Pointer(&b[0])), uintptr(len(b)),
			uintptr(flags|unix.MSG_TRUNC), 0, 0)
		switch {
		case e == unix.EINTR: // Go's preemption signals; SO_RCVTIMEO makes no restart
			continue
		case e == unix.EAGAIN && flags&unix.MSG_DONTWAIT == 0:
			return 0, errTimeout
		case e != 0:
			return 0, e
		case int(r) > len(b):
			return 0, fmt.Errorf("a netlink answer of %d bytes in a buffer of %d", r, len(b))
		}
		return int(r), nil
	}
}
