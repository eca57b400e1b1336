package tests

// End-to-end tests of the kubectl plugin and the demo (issue 7).

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func plugin(t *testing.T, b *Bed, args ...string) (string, error) {
	t.Helper()
	return pluginAs(t, filepath.Join(b.Dir, "kubeconfig"), args...)
}

// pluginAs runs kubectl-gpumode with the kubeconfig kc.
func pluginAs(t *testing.T, kc string, args ...string) (string, error) {
	t.Helper()
	cmd := exec.Command(filepath.Join(repoRoot(t), "build", "kubectl-gpumode"), args...)
	cmd.Env = append(os.Environ(), "KUBECONFIG="+kc)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// TestPluginPlanAndStatus: plan against a known fleet, then status while
// the same policy rolls out, and the plugin's errors.
func TestPluginPlanAndStatus(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "5", "--gpu-model", "H100-80GB")

	// Before the CRD: a message that says what to do.
	out, err := plugin(t, b, "status")
	if err == nil || !strings.Contains(out, "kubectl apply -f crd/gpumodepolicy.yaml") {
		t.Errorf("status without the CRD: %v\n%s", err, out)
	}
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001", "gpu-002", "gpu-003", "gpu-004", "gpu-005")
	Apply(t, b, workload("web", 1, "{kubernetes.io/hostname: gpu-002}"))
	Apply(t, b, fmt.Sprintf(pdb, "web", 1))
	Eventually(t, 60*time.Second, "workload running", func(ctx context.Context) error {
		if len(podsRunningOn(t, b, "app=web")) != 1 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	policy := filepath.Join(t.TempDir(), "policy.yaml")
	os.WriteFile(policy, []byte(`
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
  rollout: {maxUnavailable: 2}
`), 0o644)
	out, err = plugin(t, b, "plan", "-f", policy)
	if err != nil {
		t.Fatalf("plan: %v\n%s", err, out)
	}
	for _, want := range []string{"Batches (maxUnavailable 2 of 5 matched nodes)",
		"1: gpu-001, gpu-002", "2: gpu-003, gpu-004", "3: gpu-005", "protected"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan output lacks %q:\n%s", want, out)
		}
	}
	// Plan changes nothing: its server-side check is a dry run.
	if n := GetNode(t, b, "gpu-001"); n.Annotations["gpumode.io/switch"] != "" {
		t.Errorf("plan wrote to a node")
	}
	if _, err := dyn(t, b).Resource(gmpGVR).Get(context.Background(), "a", metav1.GetOptions{}); !apierrors.IsNotFound(err) {
		t.Errorf("plan created the policy (get: %v)", err)
	}
	bad := filepath.Join(t.TempDir(), "bad.yaml")
	os.WriteFile(bad, []byte("apiVersion: gpumode.io/v1alpha1\nkind: GPUModePolicy\nmetadata: {name: b}\nspec:\n  nodeSelector: {matchLabels: {pool: a}}\n  mode: turbo\n"), 0o644)
	if out, err := plugin(t, b, "plan", "-f", bad); err == nil || !strings.Contains(out, "spec.mode") {
		t.Errorf("plan of an invalid file: %v\n%s", err, out)
	}
	// A misspelt field passes every client's decoder; the API server's
	// strict validation, asked with a dry run, fails the plan as it would
	// fail kubectl apply.
	typo := filepath.Join(t.TempDir(), "typo.yaml")
	os.WriteFile(typo, []byte("apiVersion: gpumode.io/v1alpha1\nkind: GPUModePolicy\nmetadata: {name: a}\nspec:\n"+
		"  nodeSelector: {matchLabels: {pool: a}}\n  mode: vgpu\n  rollout: {maxUnavialable: 2}\n"), 0o644)
	out, err = plugin(t, b, "plan", "-f", typo)
	if err == nil || !strings.Contains(out, `unknown field "spec.rollout.maxUnavialable"`) || strings.Contains(out, "Batches") {
		t.Errorf("plan of a file with an unknown field: %v\n%s", err, out)
	}

	// A controller config the controller would refuse: the plan shows
	// what the defaults would do, and fails.
	b.MustKubectl("create", "configmap", "-n", "gpumode-system", "gpumode-config", "--from-literal=controller.yaml=profile: fancy")
	out, err = plugin(t, b, "plan", "-f", policy)
	if err == nil || !strings.Contains(out, "the controller's config is not valid: ConfigMap gpumode-system/gpumode-config, "+
		"key controller.yaml: profile: unknown preset \"fancy\"") || !strings.Contains(out, "1: gpu-001, gpu-002") {
		t.Errorf("plan with an invalid controller config: %v\n%s", err, out)
	}
	b.MustKubectl("delete", "configmap", "-n", "gpumode-system", "gpumode-config")

	// A user who may read what the plan needs but not the controller's
	// config: the plan shows what the defaults would do, and fails.
	b.MustKubectl("create", "serviceaccount", "planner")
	b.MustKubectl("create", "clusterrole", "planner", "--verb=get,list",
		"--resource=nodes,pods,poddisruptionbudgets.policy,gpumodepolicies.gpumode.io")
	b.MustKubectl("create", "clusterrolebinding", "planner", "--clusterrole=planner", "--serviceaccount=default:planner")
	kc, err := testbed(t, nil, "token", "--dir", b.Dir, "--sa", "default/planner")
	if err != nil {
		t.Fatal(err)
	}
	plannerKC := filepath.Join(t.TempDir(), "planner.kubeconfig")
	if err := os.WriteFile(plannerKC, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = pluginAs(t, plannerKC, "plan", "-f", policy)
	if err == nil || !strings.Contains(out, "the controller's config (ConfigMap gpumode-system/gpumode-config) could not be read: not allowed: ") ||
		!strings.Contains(out, "1: gpu-001, gpu-002") ||
		!strings.Contains(out, "note: the API server did not check "+policy+": not allowed: ") {
		t.Errorf("plan by a user who may not read the controller's config: %v\n%s", err, out)
	}

	b.MustKubectl("patch", "pdb", "web", "--type=merge", "-p", `{"spec":{"minAvailable":0}}`)
	StartController(t, b)
	b.MustKubectl("apply", "-f", policy)
	sawProgress := false
	Eventually(t, 120*time.Second, "status to show the rollout finish", func(ctx context.Context) error {
		out, err := plugin(t, b, "status", "a")
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		if strings.Contains(out, "switching") || strings.Contains(out, "Draining") || strings.Contains(out, "Pending") {
			sawProgress = true
		}
		if !strings.Contains(out, "5/5") {
			return fmt.Errorf("%s", out)
		}
		return nil
	})
	if !sawProgress {
		t.Logf("the rollout finished before status saw it in progress")
	}
	// The policy exists now: the dry run replaces it, and judges the file
	// as the whole new spec.
	if out, err := plugin(t, b, "plan", "-f", policy); err != nil || strings.Contains(out, "did not check") {
		t.Errorf("plan of the applied policy: %v\n%s", err, out)
	}
	if out, err := plugin(t, b, "plan", "-f", typo); err == nil || !strings.Contains(out, `unknown field "spec.rollout.maxUnavialable"`) {
		t.Errorf("plan of a misspelt change to an applied policy: %v\n%s", err, out)
	}
	// A plan of another mode leaves the applied policy as it was.
	live := b.MustKubectl("get", "gmp", "a", "-o", "jsonpath={.metadata.generation} {.spec.mode}")
	toFull := filepath.Join(t.TempDir(), "full.yaml")
	os.WriteFile(toFull, []byte("apiVersion: gpumode.io/v1alpha1\nkind: GPUModePolicy\nmetadata: {name: a}\nspec:\n"+
		"  nodeSelector: {matchLabels: {pool: a}}\n  mode: full\n"), 0o644)
	if out, err := plugin(t, b, "plan", "-f", toFull); err != nil || !strings.Contains(out, "Batches") {
		t.Errorf("plan of a change of mode: %v\n%s", err, out)
	}
	if now := b.MustKubectl("get", "gmp", "a", "-o", "jsonpath={.metadata.generation} {.spec.mode}"); now != live || !strings.HasSuffix(now, " vgpu") {
		t.Errorf("plan changed the applied policy: %q, was %q", now, live)
	}
	if out, err := plugin(t, b, "pause", "a"); err != nil || !strings.Contains(out, "paused") {
		t.Errorf("pause: %v %s", err, out)
	}
	if out := b.MustKubectl("get", "gmp", "a", "-o", "jsonpath={.spec.rollout.paused}"); out != "true" {
		t.Errorf("paused = %q", out)
	}
	if out, err := plugin(t, b, "resume", "a"); err != nil || !strings.Contains(out, "resumed") {
		t.Errorf("resume: %v %s", err, out)
	}
	if out, err := plugin(t, b, "retry", "gpu-001"); err == nil || !strings.Contains(out, "not failed") {
		t.Errorf("retry of a healthy node: %v %s", err, out)
	}
}

// TestDemoNonInteractive runs make demo's script unattended: it must end
// with every node converged (exit 0) and leave nothing running after down.
func TestDemoNonInteractive(t *testing.T) {
	requireE2E(t)
	dir := t.TempDir()
	script := filepath.Join(repoRoot(t), "scripts", "demo.sh")
	cmd := exec.Command(script, "--non-interactive")
	cmd.Env = append(os.Environ(), "DEMO_DIR="+dir)
	out, err := cmd.CombinedOutput()
	defer func() {
		down := exec.Command(script, "--down")
		down.Env = append(os.Environ(), "DEMO_DIR="+dir)
		down.Run()
		if left := processesUsing(dir); len(left) > 0 {
			t.Errorf("processes left after demo --down: %v", left)
		}
	}()
	if err != nil {
		t.Fatalf("demo failed: %v\n%s", err, tailLines(string(out), 60))
	}
	if !strings.Contains(string(out), "Every node converged") {
		t.Errorf("demo output lacks its summary:\n%s", tailLines(string(out), 30))
	}
}

// syncBuffer collects a child's output while the test reads it.
type syncBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startStatusWatch runs `kubectl gpumode status a --watch` until its output
// shows want; the caller kills it.
func startStatusWatch(t *testing.T, b *Bed, want string) (*exec.Cmd, *syncBuffer) {
	t.Helper()
	out := &syncBuffer{}
	cmd := exec.Command(filepath.Join(repoRoot(t), "build", "kubectl-gpumode"), "status", "a", "--watch")
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(b.Dir, "kubeconfig"))
	cmd.Stdout = out
	cmd.Stderr = out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 15*time.Second, "the first snapshot", func(ctx context.Context) error {
		if !strings.Contains(out.String(), want) {
			return fmt.Errorf("output so far: %q", out.String())
		}
		return nil
	})
	return cmd, out
}

// waitExit waits up to d for cmd to end: whether it ended, and its error.
func waitExit(cmd *exec.Cmd, d time.Duration) (bool, error) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		return true, err
	case <-time.After(d):
		return false, nil
	}
}

// TestStatusWatchUsesWatches: `status --watch` follows a rollout from start
// to end through watches: it prints a new snapshot on each change, lists
// the nodes only to start, ends cleanly on Ctrl-C, and ends with an error
// when the policy it watches is deleted.
func TestStatusWatchUsesWatches(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "3", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001", "gpu-002", "gpu-003")
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
  rollout: {maxUnavailable: 1, paused: true}
`)
	WaitPolicy(t, b, "a", 30*time.Second, "status written", func(s *PolicyStatus) error {
		if s.ObservedGeneration != s.Generation || s.Summary.Matched != 3 {
			return fmt.Errorf("summary %+v", s.Summary)
		}
		return nil
	})

	// Node lists: the costly read a poll repeats. (Policy reads cannot be
	// told apart: the API server counts a list of one policy by field
	// selector as a GET, and WaitPolicy GETs the policy too.)
	lists := func() float64 {
		return apiserverRequests(t, b, `verb="LIST"`, `resource="nodes"`)
	}
	atStart := lists()
	cmd, out := startStatusWatch(t, b, "0/3")
	defer cmd.Process.Kill()
	// Starting lists the nodes twice: for the first snapshot, then the
	// watch's own list. Count from when both are done.
	var before float64
	Eventually(t, 30*time.Second, "the node lists of the start", func(ctx context.Context) error {
		before = lists()
		if before < atStart+2 {
			return fmt.Errorf("%.0f node lists since the start", before-atStart)
		}
		return nil
	})
	start := time.Now()

	if o, err := plugin(t, b, "resume", "a"); err != nil {
		t.Fatalf("resume: %v %s", err, o)
	}
	WaitPolicy(t, b, "a", 120*time.Second, "vgpu", Converged)
	Eventually(t, 10*time.Second, "the watch to show the end", func(ctx context.Context) error {
		if !strings.Contains(out.String(), "3/3") {
			return fmt.Errorf("output: %s", tailLines(out.String(), 20))
		}
		return nil
	})
	// Quiet for a while: a watch costs nothing, a poll lists on.
	time.Sleep(5 * time.Second)
	elapsed := time.Since(start)
	// A two-second poll would have listed both about elapsed/2 times.
	if d := lists() - before; d > 0 {
		t.Errorf("%.0f node lists in %v of --watch; want none after the start", d, elapsed.Round(time.Second))
	}
	snapshots := strings.Count(out.String(), "\n\n") + 1
	if snapshots < 3 {
		t.Errorf("%d snapshots for a 3-node rollout; want one per change:\n%s", snapshots, out.String())
	}
	t.Logf("%d snapshots over %v:\n%s", snapshots, elapsed.Round(time.Second), out.String())

	// The cluster out of reach: the view says since when it is out of
	// date, and says so no more once its watches are answered again.
	testbed(t, nil, "stop", "--dir", b.Dir, "kube-apiserver")
	Eventually(t, 60*time.Second, "the out-of-date line", func(context.Context) error {
		if !strings.Contains(out.String(), "Out of date since") {
			return fmt.Errorf("output: %s", tailLines(out.String(), 8))
		}
		return nil
	})
	if _, err := testbed(t, nil, "start", "--dir", b.Dir, "kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 90*time.Second, "the view live again", func(context.Context) error {
		s := out.String()
		if last := s[strings.LastIndex(strings.TrimRight(s, "\n"), "\n\n")+1:]; strings.Contains(last, "Out of date") {
			return fmt.Errorf("last snapshot: %s", last)
		}
		return nil
	})

	cmd.Process.Signal(os.Interrupt)
	if ended, err := waitExit(cmd, 5*time.Second); !ended {
		t.Errorf("status --watch did not end within 5 s of Ctrl-C")
	} else if err != nil {
		t.Errorf("status --watch after Ctrl-C: %v\n%s", err, tailLines(out.String(), 10))
	}

	// Watching a policy that is then deleted ends with an error, as
	// status of a missing policy does.
	cmd2, out2 := startStatusWatch(t, b, "3/3")
	defer cmd2.Process.Kill()
	DeletePolicy(t, b, "a")
	if ended, err := waitExit(cmd2, 15*time.Second); !ended {
		t.Errorf("status --watch did not end within 15 s of the policy's deletion:\n%s", out2.String())
	} else if err == nil || !strings.Contains(out2.String(), "GPUModePolicy a was deleted") {
		t.Errorf("status --watch of a deleted policy: %v\n%s", err, out2.String())
	}
}
