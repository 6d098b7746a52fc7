//go:build linux

package dicomaudit

import (
	"errors"
	"net"
	"syscall"
)

// peek looks, without reading or waiting, at what the kernel holds for conn: nothing yet
// (peekEmpty), bytes not yet read (peekPending), or the end of the connection, a FIN or a
// reset (peekClosed). The background reader may read concurrently; an end it has read still
// reads as an end.
func peek(conn net.Conn) peekResult {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return peekEmpty
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return peekClosed
	}
	res := peekClosed
	var buf [1]byte
	err = rc.Control(func(fd uintptr) {
		n, _, err := syscall.Recvfrom(int(fd), buf[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case n > 0, errors.Is(err, syscall.EINTR):
			res = peekPending
		case errors.Is(err, syscall.EAGAIN):
			res = peekEmpty
		}
	})
	if err != nil {
		return peekClosed
	}
	return res
}
