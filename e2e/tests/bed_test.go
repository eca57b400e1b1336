// Package tests holds end-to-end tests against a test bed. They start real
// processes and take a while, so they run only when GPUMODE_E2E=1 (as
// e2e/run-tests.sh sets it).
package tests

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"k8s.io/apimachinery/pkg/api/resource"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// Bed is a running test bed.
type Bed struct {
	t   *testing.T
	Dir string
	CS  *kubernetes.Clientset
}

func e2eDir(t *testing.T) string {
	wd, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Dir(wd) // e2e/tests -> e2e
}

func requireE2E(t *testing.T) {
	t.Helper()
	if os.Getenv("GPUMODE_E2E") != "1" {
		t.Skip("end-to-end test: set GPUMODE_E2E=1 (e2e/run-tests.sh does)")
	}
}

// testbed runs e2e/testbed with args and returns stdout; stderr goes to the
// test log.
func testbed(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(e2eDir(t), "testbed"), args...)
	cmd.Env = append(os.Environ(), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if errb.Len() > 0 {
		t.Logf("testbed %s: %s", args[0], strings.TrimSpace(errb.String()))
	}
	if err != nil {
		return out.String(), fmt.Errorf("testbed %s: %v\n%s", strings.Join(args, " "), err, errb.String())
	}
	return out.String(), nil
}

// StartBed brings a bed up in a temporary directory and registers its
// teardown, which also checks that no process of the bed is left.
func StartBed(t *testing.T, env []string, args ...string) *Bed {
	t.Helper()
	dir, err := os.MkdirTemp("", "gpumode-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	b := &Bed{t: t, Dir: dir}
	t.Cleanup(func() {
		if _, err := testbed(t, nil, "down", "--dir", dir); err != nil {
			t.Errorf("down: %v", err)
		}
		if left := processesUsing(dir); len(left) > 0 {
			t.Errorf("processes left behind after down: %v", left)
		}
		if os.Getenv("GPUMODE_E2E_KEEP") == "1" && !t.Failed() {
			t.Logf("bed directory kept (GPUMODE_E2E_KEEP=1): %s", dir)
			return
		}
		if t.Failed() {
			for _, c := range []string{"sim", "kube-controller-manager", "kube-apiserver"} {
				if b, err := os.ReadFile(filepath.Join(dir, "logs", c+".log")); err == nil {
					t.Logf("---- %s.log (tail) ----\n%s", c, tailLines(string(b), 40))
				}
			}
			t.Logf("bed directory kept: %s", dir)
			return
		}
		os.RemoveAll(dir)
	})
	start := time.Now()
	if _, err := testbed(t, env, append([]string{"up", "--dir", dir}, args...)...); err != nil {
		t.Fatal(err)
	}
	t.Logf("bed up in %.1fs", time.Since(start).Seconds())
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	// Tests label thousands of nodes for benchmarks: no client throttle
	// worth the name.
	cfg.QPS, cfg.Burst = 500, 1000
	b.CS, err = kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tailLines(s string, n int) string {
	ls := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(ls) > n {
		ls = ls[len(ls)-n:]
	}
	return strings.Join(ls, "\n")
}

// processesUsing lists live processes whose command line mentions dir.
func processesUsing(dir string) []string {
	ents, _ := os.ReadDir("/proc")
	var out []string
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == os.Getpid() {
			continue
		}
		cl, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		if err != nil || !bytes.Contains(cl, []byte(dir)) {
			continue
		}
		st, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if i := bytes.LastIndexByte(st, ')'); i > 0 && len(st) > i+2 && st[i+2] == 'Z' {
			continue // exited, waiting to be reaped by init
		}
		out = append(out, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(cl), "\x00", " ")))
	}
	return out
}

// Kubectl runs the bed's kubectl.
func (b *Bed) Kubectl(args ...string) (string, error) {
	b.t.Helper()
	return testbed(b.t, []string{"KUBECONFIG=" + filepath.Join(b.Dir, "kubeconfig")}, append([]string{"kubectl"}, args...)...)
}

// MustKubectl runs kubectl and fails the test on error.
func (b *Bed) MustKubectl(args ...string) string {
	b.t.Helper()
	out, err := b.Kubectl(args...)
	if err != nil {
		b.t.Fatal(err)
	}
	return out
}

// Eventually polls cond until it returns nil or the timeout passes.
func Eventually(t *testing.T, timeout time.Duration, what string, cond func(ctx context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	var last error
	for {
		if last = cond(ctx); last == nil {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func resourceOne() resource.Quantity { return resource.MustParse("1") }
