//go:build linux

package rsyslogserver

import (
	"bufio"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// listensAs reports whether the process pid holds the socket that listens on 127.0.0.1:port,
// from /proc: another process that took the port is never taken for ours, and rsyslogd, which
// goes on running when it cannot bind a port, is not taken for ready.
func listensAs(pid, port int) (bool, error) {
	fds, err := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	if err != nil {
		return false, err
	}
	sockets := map[string]bool{}
	for _, fd := range fds {
		if link, err := os.Readlink(fd); err == nil && strings.HasPrefix(link, "socket:[") {
			sockets[strings.TrimSuffix(strings.TrimPrefix(link, "socket:["), "]")] = true
		}
	}
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		return false, err
	}
	defer f.Close()
	want := fmt.Sprintf("0100007F:%04X", port)
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 10 || fields[1] != want || fields[3] != "0A" {
			continue
		}
		if sockets[fields[9]] {
			return true, nil
		}
	}
	return false, sc.Err()
}
