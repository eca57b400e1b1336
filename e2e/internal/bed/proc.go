package bed

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Components in start order; they stop in reverse.
var Components = []string{"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "sim"}

// pidRecord identifies a process we started: its pid and its start time in
// clock ticks since boot, so a reused pid is never mistaken for ours.
type pidRecord struct {
	Pid   int      `json:"pid"`
	Start uint64   `json:"start"`
	Args  []string `json:"args"`
}

func runDir(dir string) string { return filepath.Join(dir, "run") }
func logDir(dir string) string { return filepath.Join(dir, "logs") }

func pidFile(dir, name string) string { return filepath.Join(runDir(dir), name+".json") }

// procStat returns (state, pgrp, starttime) of a pid from /proc.
func procStat(pid int) (state byte, pgrp int, start uint64, err error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, 0, err
	}
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	if i < 0 {
		return 0, 0, 0, fmt.Errorf("bad stat for %d", pid)
	}
	f := strings.Fields(s[i+1:])
	// f[0]=state f[1]=ppid f[2]=pgrp ... f[19]=starttime
	if len(f) < 20 {
		return 0, 0, 0, fmt.Errorf("short stat for %d", pid)
	}
	pgrp, _ = strconv.Atoi(f[2])
	start, _ = strconv.ParseUint(f[19], 10, 64)
	return f[0][0], pgrp, start, nil
}

// alive reports whether the recorded process still runs (zombies count as gone).
func (r pidRecord) alive() bool {
	st, _, start, err := procStat(r.Pid)
	return err == nil && start == r.Start && st != 'Z'
}

// groupMembers lists live processes whose process group is pgid.
func groupMembers(pgid int) []int {
	ents, _ := os.ReadDir("/proc")
	var out []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		st, pg, _, err := procStat(pid)
		if err == nil && pg == pgid && st != 'Z' {
			out = append(out, pid)
		}
	}
	return out
}

// launch starts a component of this bed as `self NAME ARGS...` in its own
// session (so its process group can be signalled as a whole), with output to
// DIR/logs/NAME.log, and records its pid.
func launch(dir, name string, args []string) (*exec.Cmd, error) {
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(logDir(dir), 0o755); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(runDir(dir), 0o755); err != nil {
		return nil, err
	}
	logf, err := os.OpenFile(filepath.Join(logDir(dir), name+".log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	fmt.Fprintf(logf, "==== %s starting %s %s\n", time.Now().Format(time.RFC3339), name, strings.Join(args, " "))
	devnull, err := os.Open(os.DevNull)
	if err != nil {
		return nil, err
	}
	defer devnull.Close()
	cmd := exec.Command(self, append([]string{name}, args...)...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = devnull, logf, logf
	cmd.Dir = dir
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, err
	}
	rec := pidRecord{Pid: cmd.Process.Pid, Args: args}
	for i := 0; i < 100; i++ { // /proc entry appears at once; be safe
		if _, _, st, err := procStat(rec.Pid); err == nil {
			rec.Start = st
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	b, _ := json.Marshal(rec)
	if err := os.WriteFile(pidFile(dir, name), b, 0o644); err != nil {
		return cmd, err
	}
	return cmd, nil
}

func readPid(dir, name string) (pidRecord, bool) {
	var r pidRecord
	b, err := os.ReadFile(pidFile(dir, name))
	if err != nil {
		return r, false
	}
	if json.Unmarshal(b, &r) != nil || r.Pid <= 1 {
		return r, false
	}
	return r, true
}

// stop ends a component and every process in its group: SIGTERM, then
// SIGKILL after timeout, and waits until none is left. kube-apiserver gets 5
// seconds at most: it stops serving at once but, while other components
// still hold watches on it, its process lingers until killed (it keeps no
// state of its own).
func stop(dir, name string, timeout time.Duration) error {
	if name == "kube-apiserver" && timeout > 5*time.Second {
		timeout = 5 * time.Second
	}
	r, ok := readPid(dir, name)
	if !ok {
		return nil
	}
	defer os.Remove(pidFile(dir, name))
	if !r.alive() && len(groupMembers(r.Pid)) == 0 {
		return nil
	}
	// The component leads its own session and group: pgid == pid.
	_ = syscall.Kill(-r.Pid, syscall.SIGTERM)
	deadline := time.Now().Add(timeout)
	killed := false
	for {
		left := groupMembers(r.Pid)
		if len(left) == 0 && !r.alive() {
			return nil
		}
		if time.Now().After(deadline) {
			if killed {
				return fmt.Errorf("%s: processes %v still alive after SIGKILL", name, left)
			}
			_ = syscall.Kill(-r.Pid, syscall.SIGKILL)
			for _, p := range left {
				_ = syscall.Kill(p, syscall.SIGKILL)
			}
			killed = true
			deadline = time.Now().Add(10 * time.Second)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
