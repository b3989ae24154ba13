package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// clockTicks is USER_HZ, the unit of /proc/PID/stat times; 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procTimes is one process's line of /proc/PID/stat, the fields we use.
type procTimes struct {
	ppid               int
	utime, stime       int64 // its own CPU, in ticks
	cutime, cstime     int64 // its reaped children's CPU
	name               string
	hwmKB, rssKB       int64 // from /proc/PID/status
	vmOK, statReadable bool
}

func readProc(pid int) (procTimes, error) {
	var p procTimes
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return p, fmt.Errorf("read /proc/%d/stat: %w", pid, err)
	}
	// The command name is in parentheses and may hold spaces.
	s := string(b)
	open, closing := strings.IndexByte(s, '('), strings.LastIndexByte(s, ')')
	if open < 0 || closing < open {
		return p, fmt.Errorf("parse /proc/%d/stat", pid)
	}
	p.name = s[open+1 : closing]
	f := strings.Fields(s[closing+1:])
	if len(f) < 15 {
		return p, fmt.Errorf("parse /proc/%d/stat: %d fields", pid, len(f))
	}
	// Fields after the name start at stat field 3 (state).
	num := func(i int) int64 { n, _ := strconv.ParseInt(f[i-3], 10, 64); return n }
	p.ppid = int(num(4))
	p.utime, p.stime, p.cutime, p.cstime = num(14), num(15), num(16), num(17)
	p.statReadable = true
	if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(st), "\n") {
			k, v, _ := strings.Cut(line, ":")
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			switch k {
			case "VmHWM":
				p.hwmKB, p.vmOK = kb, true
			case "VmRSS":
				p.rssKB = kb
			}
		}
	}
	return p, nil
}

// treeUsage is the CPU and memory of a process and its descendants.
type treeUsage struct {
	cpuTicks int64 // own + reaped children's, over the whole tree
	hwmKB    int64 // sum of VmHWM over processes alive now
	procs    int
}

// usageTree measures pid and every live descendant. Counting each live
// process's own time plus what its reaped children used counts every tick
// exactly once, so the difference of two samples is the tree's CPU in
// between, even for children that came and went (Postfix's smtp, local,
// cleanup).
func usageTree(pid int) (treeUsage, error) {
	var u treeUsage
	root, err := readProc(pid)
	if err != nil {
		return u, err
	}
	all := map[int]procTimes{pid: root}
	if ents, err := os.ReadDir("/proc"); err == nil {
		for _, e := range ents {
			n, err := strconv.Atoi(e.Name())
			if err != nil || n == pid {
				continue
			}
			if p, err := readProc(n); err == nil {
				all[n] = p
			}
		}
	}
	inTree := func(n int) bool {
		for range 64 { // bounded walk up the parent chain
			if n == pid {
				return true
			}
			p, ok := all[n]
			if !ok || p.ppid == 0 {
				return false
			}
			n = p.ppid
		}
		return false
	}
	for n, p := range all {
		if !inTree(n) {
			continue
		}
		u.procs++
		u.cpuTicks += p.utime + p.stime + p.cutime + p.cstime
		u.hwmKB += p.hwmKB
	}
	return u, nil
}

// pidFromFile reads a pid file such as Postfix's
// /var/spool/postfix/pid/master.pid.
func pidFromFile(path string) (int, error) {
	b, err := os.ReadFile(filepath.Clean(path))
	if err != nil {
		return 0, fmt.Errorf("read pid file: %w", err)
	}
	n, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("pid file %s: %w", path, err)
	}
	return n, nil
}
