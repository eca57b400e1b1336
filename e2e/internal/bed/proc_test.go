package bed

import (
	"encoding/json"
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// stop ends the whole process group, including children that ignore
// nothing and grandchildren started in the background.
func TestStopKillsTheGroup(t *testing.T) {
	dir := t.TempDir()
	if err := os.MkdirAll(runDir(dir), 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("sh", "-c", "sleep 300 & sleep 300 & trap '' TERM; sleep 300")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go cmd.Wait() // reap the leader as init would
	time.Sleep(200 * time.Millisecond)
	_, _, start, err := procStat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(pidRecord{Pid: cmd.Process.Pid, Start: start})
	if err := os.WriteFile(pidFile(dir, "sim"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	if n := len(groupMembers(cmd.Process.Pid)); n < 3 {
		t.Fatalf("group has %d processes, want 3", n)
	}
	t0 := time.Now()
	if err := stop(dir, "sim", time.Second); err != nil {
		t.Fatal(err)
	}
	if left := groupMembers(cmd.Process.Pid); len(left) > 0 {
		t.Fatalf("left: %v", left)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Errorf("stop took %s", d)
	}
	if _, err := os.Stat(pidFile(dir, "sim")); !os.IsNotExist(err) {
		t.Error("pid file kept")
	}
}

// A recorded pid whose process is gone, or reused by another process, is
// not ours: stop does nothing to it.
func TestStopIgnoresReusedPid(t *testing.T) {
	dir := t.TempDir()
	_ = os.MkdirAll(runDir(dir), 0o755)
	b, _ := json.Marshal(pidRecord{Pid: os.Getpid(), Start: 1})
	_ = os.WriteFile(pidFile(dir, "etcd"), b, 0o644)
	r, _ := readPid(dir, "etcd")
	if r.alive() {
		t.Fatal("a different start time must not count as alive")
	}
}
