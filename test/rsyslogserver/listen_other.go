//go:build !linux

package rsyslogserver

// listensAs cannot tell who holds a port without /proc; it trusts that the port is ours.
func listensAs(pid, port int) (bool, error) { return true, nil }
