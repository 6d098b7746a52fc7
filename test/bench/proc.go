package bench

import (
	"bufio"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// clockTicks is the kernel's USER_HZ, the unit of utime and stime in /proc/PID/stat; it is 100
// on every Linux architecture Go supports.
const clockTicks = 100

// Memory is what /proc/PID/status says about a process's resident memory, in bytes.
type Memory struct {
	// HWM is VmHWM, the peak resident set size since the process started.
	HWM int64
	// RSS is VmRSS, the resident set size now.
	RSS int64
}

// ReadMemory reads VmHWM and VmRSS of pid.
func ReadMemory(pid int) (Memory, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return Memory{}, fmt.Errorf("read memory of process %d: %w", pid, err)
	}
	return parseStatus(data)
}

// parseStatus picks VmHWM and VmRSS out of a /proc/PID/status file.
func parseStatus(data []byte) (Memory, error) {
	var m Memory
	var found int
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, rest, ok := strings.Cut(sc.Text(), ":")
		if !ok || (key != "VmHWM" && key != "VmRSS") {
			continue
		}
		f := strings.Fields(rest)
		if len(f) != 2 || f[1] != "kB" {
			return m, fmt.Errorf("parse %s in process status: %q", key, rest)
		}
		kb, err := strconv.ParseInt(f[0], 10, 64)
		if err != nil {
			return m, fmt.Errorf("parse %s in process status: %w", key, err)
		}
		if key == "VmHWM" {
			m.HWM = kb << 10
		} else {
			m.RSS = kb << 10
		}
		found++
	}
	if found != 2 {
		return m, fmt.Errorf("parse process status: VmHWM or VmRSS missing")
	}
	return m, nil
}

// CPUTime returns the user plus system CPU time used so far by pid and by every living
// descendant of it (found through /proc/PID/task/TID/children). Descendants that have already
// exited are not counted.
func CPUTime(pid int) (time.Duration, error) {
	total, err := ownCPUTime(pid)
	if err != nil {
		return 0, err
	}
	for _, child := range children(pid) {
		if d, err := CPUTime(child); err == nil {
			total += d
		}
	}
	return total, nil
}

// TreeCPUTime is CPUTime with the time of descendants that have exited and been waited for
// (cutime and cstime) added: everything pid's tree has used since pid started.
func TreeCPUTime(pid int) (time.Duration, error) {
	st, err := readStat(pid)
	if err != nil {
		return 0, err
	}
	total := st.own + st.reaped
	for _, child := range children(pid) {
		if d, err := TreeCPUTime(child); err == nil {
			total += d
		}
	}
	return total, nil
}

// ownCPUTime reads utime and stime of one process.
func ownCPUTime(pid int) (time.Duration, error) {
	st, err := readStat(pid)
	return st.own, err
}

// procStat is what this package reads from /proc/PID/stat.
type procStat struct {
	own    time.Duration // utime + stime
	reaped time.Duration // cutime + cstime: children that have exited and been waited for
}

func readStat(pid int) (procStat, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return procStat{}, fmt.Errorf("read CPU time of process %d: %w", pid, err)
	}
	return parseStat(data)
}

// parseStat reads the CPU times of a /proc/PID/stat line. The command name, in parentheses,
// may itself hold spaces and parentheses, so fields are counted after the last ')'.
func parseStat(data []byte) (procStat, error) {
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return procStat{}, fmt.Errorf("parse process stat: no command name")
	}
	f := strings.Fields(string(data[i+1:]))
	// After the name: state(3) ppid(4) ... utime(14) stime(15) cutime(16) cstime(17), so
	// indexes 11 to 14 here.
	if len(f) < 15 {
		return procStat{}, fmt.Errorf("parse process stat: %d fields", len(f))
	}
	var ticks [4]int64
	for k, s := range f[11:15] {
		n, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return procStat{}, fmt.Errorf("parse process stat: %w", err)
		}
		ticks[k] = n
	}
	toDur := func(t int64) time.Duration { return time.Duration(t) * time.Second / clockTicks }
	return procStat{own: toDur(ticks[0] + ticks[1]), reaped: toDur(ticks[2] + ticks[3])}, nil
}

// MachineBusy returns the CPU time all processors have spent not idle since boot, from the
// first line of /proc/stat (user, nice, system, irq, softirq and steal).
func MachineBusy() (time.Duration, error) {
	data, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, fmt.Errorf("read machine CPU time: %w", err)
	}
	return parseMachineStat(data)
}

func parseMachineStat(data []byte) (time.Duration, error) {
	line, _, _ := bytes.Cut(data, []byte("\n"))
	f := strings.Fields(string(line))
	if len(f) < 9 || f[0] != "cpu" {
		return 0, fmt.Errorf("parse /proc/stat: first line %q", line)
	}
	var busy int64
	for _, k := range []int{1, 2, 3, 6, 7, 8} { // user nice system (idle iowait) irq softirq steal
		n, err := strconv.ParseInt(f[k], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc/stat: %w", err)
		}
		busy += n
	}
	return time.Duration(busy) * time.Second / clockTicks, nil
}

// children lists the direct children of pid, from every thread's children file.
func children(pid int) []int {
	tasks, _ := filepath.Glob(fmt.Sprintf("/proc/%d/task/*/children", pid))
	var out []int
	for _, t := range tasks {
		data, err := os.ReadFile(t)
		if err != nil {
			continue
		}
		for _, s := range strings.Fields(string(data)) {
			if n, err := strconv.Atoi(s); err == nil {
				out = append(out, n)
			}
		}
	}
	return out
}

// Proc names a process to meter. With Tree set, its living descendants are counted with it
// (nginx's workers); with Reaped, only its children that have exited and been waited for
// (the wrk runs a load driver starts and waits for within a slice); with neither, only the
// process itself (a load driver whose children are the servers it measures).
type Proc struct {
	Name   string
	PID    int
	Tree   bool
	Reaped bool
}

// cpuTime reads what p has used so far.
func (p Proc) cpuTime() (time.Duration, error) {
	switch {
	case p.Reaped:
		st, err := readStat(p.PID)
		return st.reaped, err
	case p.Tree:
		return CPUTime(p.PID)
	}
	return ownCPUTime(p.PID)
}

// CPUMeter accumulates the CPU time that processes use during measured slices.
type CPUMeter struct {
	procs []Proc
	start map[string]time.Duration
	// Used is the CPU time used by each process, by name, over every slice so far.
	Used map[string]time.Duration
}

// NewCPUMeter meters procs.
func NewCPUMeter(procs []Proc) *CPUMeter {
	return &CPUMeter{procs: procs, start: map[string]time.Duration{}, Used: map[string]time.Duration{}}
}

// Begin notes each process's CPU time at the start of a slice.
func (m *CPUMeter) Begin() {
	for _, p := range m.procs {
		if d, err := p.cpuTime(); err == nil {
			m.start[p.Name] = d
		}
	}
}

// End adds what each process used since Begin.
func (m *CPUMeter) End() {
	for _, p := range m.procs {
		if d, err := p.cpuTime(); err == nil {
			m.Used[p.Name] += d - m.start[p.Name]
		}
	}
}
