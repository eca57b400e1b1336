package tests

// End-to-end tests of the node switch on the real control plane (issue 5).

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/apimachinery/pkg/watch"

	"gpumode.io/e2e/internal/sim"
)

const gpuWorkload = `
apiVersion: apps/v1
kind: Deployment
metadata: {name: %[1]s, namespace: default}
spec:
  replicas: %[2]d
  selector: {matchLabels: {app: %[1]s}}
  template:
    metadata: {labels: {app: %[1]s}}
    spec:
      terminationGracePeriodSeconds: 30
      nodeSelector: %[3]s
      containers:
      - name: c
        image: registry.example/train:1
        resources: {limits: {nvidia.com/gpu: 1}}
`

// policyAFull puts the nodes labelled pool=a in full mode.
const policyAFull = `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: full
`

// policyAMig1g: policy a lays every GPU of the nodes labelled pool=a
// with seven 1g.10gb instances (an inline layout).
const policyAMig1g = `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: mig
  mig: {layout: [{migDevices: {"1g.10gb": 7}}]}
`

func workload(name string, replicas int, nodeSelector string) string {
	return fmt.Sprintf(gpuWorkload, name, replicas, nodeSelector)
}

func podsRunningOn(t *testing.T, b *Bed, selector string) map[string]string {
	t.Helper()
	pl, err := b.CS.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		t.Fatal(err)
	}
	m := map[string]string{}
	for _, p := range pl.Items {
		if runningReady(&p) {
			m[string(p.UID)] = p.Spec.NodeName
		}
	}
	return m
}

// watchCordons records the most nodes cordoned at once by the switch.
func watchCordons(t *testing.T, b *Bed) func() int {
	ctx, cancel := context.WithCancel(context.Background())
	var mu sync.Mutex
	cordoned := map[string]bool{}
	most := 0
	w, err := b.CS.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range w.ResultChan() {
			n, ok := ev.Object.(*corev1.Node)
			if !ok {
				continue
			}
			mu.Lock()
			cordoned[n.Name] = n.Spec.Unschedulable && ev.Type != watch.Deleted
			c := 0
			for _, v := range cordoned {
				if v {
					c++
				}
			}
			if c > most {
				most = c
			}
			mu.Unlock()
		}
	}()
	return func() int {
		cancel()
		mu.Lock()
		defer mu.Unlock()
		return most
	}
}

// TestSwitchFullMigVgpuFull moves three nodes of a mixed A100/H100 fleet
// through every mode while GPU workloads run: they are evicted and the real
// scheduler places them on the node that stays full. The GPU Operator runs
// its standalone DCGM too (dcgm.enabled), which holds the GPUs: each
// switch stops it with the other operands, and it runs again after.
func TestSwitchFullMigVgpuFull(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "4", "--gpu-model", "mixed", "--dcgm")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=switch", "gpu-001", "gpu-002", "gpu-003")
	LabelNodes(t, b, "pool=stay", "gpu-004")
	Apply(t, b, workload("train", 2, "{pool: switch}"))
	Eventually(t, 60*time.Second, "workloads running", func(ctx context.Context) error {
		if n := len(podsRunningOn(t, b, "app=train")); n != 2 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	// Evicted pods may go anywhere with GPUs once the selector allows it.
	b.MustKubectl("patch", "deployment", "train", "--type=merge", "-p",
		`{"spec":{"template":{"spec":{"nodeSelector":null}}}}`)
	Eventually(t, 60*time.Second, "rollout of the workload", func(ctx context.Context) error {
		if n := len(podsRunningOn(t, b, "app=train")); n != 2 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	ctl := StartController(t, b)
	cordons := watchCordons(t, b)
	t0, writes0 := time.Now(), statusWrites(t, b)
	// Pod creates the API server refused as AlreadyExists: a helper pod
	// posted again before the helper cache showed the first post.
	dupHelpers := func() float64 { return apiserverRequests(t, b, `verb="POST"`, `resource="pods"`, `code="409"`) }
	dup0 := dupHelpers()
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: pool}
spec:
  nodeSelector: {matchLabels: {pool: switch}}
  mode: mig
  mig: {config: all-balanced, strategy: mixed}
  rollout: {maxUnavailable: 1}
`)
	WaitPolicy(t, b, "pool", 180*time.Second, "all nodes in mig", Converged)
	for _, name := range []string{"gpu-001", "gpu-002", "gpu-003"} {
		n := GetNode(t, b, name)
		if n.Labels["gpumode.io/mode"] != "mig" || n.Labels["gpumode.io/state"] != "ready" {
			t.Errorf("%s: labels mode=%q state=%q", name, n.Labels["gpumode.io/mode"], n.Labels["gpumode.io/state"])
		}
		mig := false
		for r, q := range n.Status.Allocatable {
			if strings.HasPrefix(string(r), "nvidia.com/mig-") && q.Value() > 0 {
				mig = true
			}
		}
		if !mig || n.Spec.Unschedulable {
			t.Errorf("%s: mig resources %v, unschedulable %v", name, mig, n.Spec.Unschedulable)
		}
	}
	// The workloads asked for whole GPUs: only gpu-004 has them now.
	Eventually(t, 60*time.Second, "workloads rescheduled onto the full node", func(ctx context.Context) error {
		m := podsRunningOn(t, b, "app=train")
		if len(m) != 2 {
			return fmt.Errorf("%d running", len(m))
		}
		for _, node := range m {
			if node != "gpu-004" {
				return fmt.Errorf("pod on %s", node)
			}
		}
		return nil
	})

	PatchPolicy(t, b, "pool", `{"spec":{"mode":"vgpu","mig":null,"vgpu":{"splitCount":4}}}`)
	WaitPolicy(t, b, "pool", 180*time.Second, "all nodes in vgpu", Converged)
	for _, name := range []string{"gpu-001", "gpu-002", "gpu-003"} {
		n := GetNode(t, b, name)
		gpus := n.Labels["nvidia.com/gpu.count"]
		if got := Allocatable(n, "nvidia.com/vgpu"); fmt.Sprint(got) != fmt.Sprint(4*atoi(gpus)) {
			t.Errorf("%s: nvidia.com/vgpu=%d, want 4 x %s", name, got, gpus)
		}
		if n.Labels["nvidia.com/gpu.deploy.device-plugin"] != "false" || n.Labels["nvidia.com/vgpu.deploy.device-plugin"] != "true" {
			t.Errorf("%s: plugin labels %v", name, n.Labels)
		}
	}

	PatchPolicy(t, b, "pool", `{"spec":{"mode":"full","vgpu":null}}`)
	WaitPolicy(t, b, "pool", 180*time.Second, "all nodes in full", Converged)
	for _, name := range []string{"gpu-001", "gpu-002", "gpu-003"} {
		n := GetNode(t, b, name)
		if got := Allocatable(n, "nvidia.com/gpu"); fmt.Sprint(got) != n.Labels["nvidia.com/gpu.count"] {
			t.Errorf("%s: nvidia.com/gpu=%d, want %s", name, got, n.Labels["nvidia.com/gpu.count"])
		}
		if _, ok := n.Labels["nvidia.com/device-plugin.config"]; ok {
			t.Errorf("%s: device-plugin.config left behind", name)
		}
	}
	if most := cordons(); most > 1 {
		t.Errorf("%d nodes cordoned at once; maxUnavailable is 1", most)
	}
	// The policy's status is written at most once a second, however often
	// its nodes change phase (the first write of a quiet policy at once).
	if w, secs := statusWrites(t, b)-writes0, time.Since(t0).Seconds(); w > secs+1 {
		t.Errorf("policy status written %.0f times in %.0f s", w, secs)
	} else {
		t.Logf("policy status written %.0f times in %.0f s", w, secs)
	}
	if d := dupHelpers() - dup0; d > 0 {
		t.Errorf("%.0f pod creates answered 409 AlreadyExists (a helper pod posted twice)", d)
	}
	Eventually(t, 60*time.Second, "nvidia-dcgm running on every node", func(ctx context.Context) error {
		pl, err := b.CS.CoreV1().Pods("gpu-operator").List(ctx, metav1.ListOptions{LabelSelector: "app=nvidia-dcgm"})
		if err != nil {
			return err
		}
		on := map[string]bool{}
		for _, p := range pl.Items {
			if p.Status.Phase == corev1.PodRunning && p.DeletionTimestamp == nil {
				on[p.Spec.NodeName] = true
			}
		}
		if len(on) != 4 {
			return fmt.Errorf("running on %v", on)
		}
		return nil
	})
	// No helper pod is left behind.
	Eventually(t, 30*time.Second, "helper pods cleaned up", func(ctx context.Context) error {
		pl, err := b.CS.CoreV1().Pods("gpumode-system").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(pl.Items) > 0 {
			return fmt.Errorf("%d helper pods left", len(pl.Items))
		}
		return nil
	})
	_ = ctl
}

func atoi(s string) int {
	n := 0
	fmt.Sscan(s, &n)
	return n
}

const pdb = `
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: %[1]s, namespace: default}
spec:
  minAvailable: %[2]d
  selector: {matchLabels: {app: %[1]s}}
`

// waitDrainOnBudget waits until a node of policy is Draining and its
// status names a PodDisruptionBudget that holds an eviction.
func waitDrainOnBudget(t *testing.T, b *Bed, policy string) {
	t.Helper()
	WaitPolicy(t, b, policy, 60*time.Second, "the drain to wait on a budget", func(s *PolicyStatus) error {
		for _, n := range s.Nodes {
			if n.Phase == "Draining" && strings.Contains(n.Message, "PodDisruptionBudget") {
				return nil
			}
		}
		return fmt.Errorf("nodes %+v", s.Nodes)
	})
}

// waitRolledBack waits until policy counts one failed node and node is
// back: uncordoned, labelled failed. It returns the last status.
func waitRolledBack(t *testing.T, b *Bed, policy, node string, timeout time.Duration) *PolicyStatus {
	t.Helper()
	return WaitPolicy(t, b, policy, timeout, "the node to fail and roll back", func(s *PolicyStatus) error {
		if s.Summary.Failed != 1 {
			return fmt.Errorf("summary %+v nodes %+v", s.Summary, s.Nodes)
		}
		n := GetNode(t, b, node)
		if n.Spec.Unschedulable || n.Labels["gpumode.io/state"] != "failed" {
			return fmt.Errorf("unschedulable=%v state=%q", n.Spec.Unschedulable, n.Labels["gpumode.io/state"])
		}
		return nil
	})
}

// TestPDBBlocksThenAllows: a PodDisruptionBudget holds the drain; freeing
// it lets the switch finish. A budget never freed ends in a drain timeout
// and a rollback, with no pod evicted against its budget.
func TestPDBBlocksThenAllows(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "2", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	LabelNodes(t, b, "pool=b", "gpu-002")
	Apply(t, b, workload("web", 1, "{pool: a}"))
	Apply(t, b, fmt.Sprintf(pdb, "web", 1))
	Apply(t, b, workload("db", 1, "{pool: b}"))
	Apply(t, b, fmt.Sprintf(pdb, "db", 1))
	Eventually(t, 60*time.Second, "workloads running", func(ctx context.Context) error {
		if a, d := len(podsRunningOn(t, b, "app=web")), len(podsRunningOn(t, b, "app=db")); a != 1 || d != 1 {
			return fmt.Errorf("web %d db %d", a, d)
		}
		return nil
	})
	dbPods := podsRunningOn(t, b, "app=db")
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
`)
	waitDrainOnBudget(t, b, "a")
	b.MustKubectl("patch", "pdb", "web", "--type=merge", "-p", `{"spec":{"minAvailable":0}}`)
	WaitPolicy(t, b, "a", 120*time.Second, "switch to finish once the budget allows", Converged)

	// A budget that never allows: the drain times out and rolls back.
	labelsBefore := GetNode(t, b, "gpu-002").Labels
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: b}
spec:
  nodeSelector: {matchLabels: {pool: b}}
  mode: vgpu
  rollout: {drain: {timeoutSeconds: 15}}
`)
	s := waitRolledBack(t, b, "b", "gpu-002", 120*time.Second)
	found := false
	for _, n := range s.Nodes {
		if n.Name == "gpu-002" && strings.Contains(n.Message, "DrainTimeout") {
			found = true
		}
	}
	if !found {
		t.Errorf("status does not name the drain timeout: %+v", s.Nodes)
	}
	after := GetNode(t, b, "gpu-002").Labels
	for k, v := range labelsBefore {
		if strings.HasPrefix(k, "gpumode.io/") {
			continue
		}
		if after[k] != v {
			t.Errorf("label %s changed: %q -> %q", k, v, after[k])
		}
	}
	for uid := range dbPods {
		if _, ok := podsRunningOn(t, b, "app=db")[uid]; !ok {
			t.Errorf("pod %s was evicted against its budget", uid)
		}
	}
}

// TestDrainTimesOutOnTerminatingPod: an evicted pod that never goes (a
// finalizer holds it) ends the drain at drain.timeoutSeconds with a
// rollback, as kubectl drain --timeout would, instead of keeping the node
// cordoned in Draining for ever.
func TestDrainTimesOutOnTerminatingPod(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	Apply(t, b, strings.Replace(workload("held", 1, "{pool: a}"),
		"metadata: {labels: {app: held}}",
		"metadata: {labels: {app: held}, finalizers: [gpumode.test/hold]}", 1))
	Eventually(t, 60*time.Second, "the workload running", func(ctx context.Context) error {
		if n := len(podsRunningOn(t, b, "app=held")); n != 1 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	defer func() {
		// Let the held pods go, so the bed tears down as usual.
		pl, _ := b.CS.CoreV1().Pods("default").List(context.Background(), metav1.ListOptions{LabelSelector: "app=held"})
		for _, p := range pl.Items {
			b.Kubectl("patch", "pod", p.Name, "--type=merge", "-p", `{"metadata":{"finalizers":null}}`)
		}
	}()
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
  rollout: {drain: {timeoutSeconds: 10}}
`)
	s := waitRolledBack(t, b, "a", "gpu-001", 90*time.Second)
	if len(s.Nodes) != 1 || !strings.Contains(s.Nodes[0].Message, "DrainTimeout") || !strings.Contains(s.Nodes[0].Message, "terminating") {
		t.Errorf("status does not name the drain timeout on a terminating pod: %+v", s.Nodes)
	}
}

// A compute process still on a GPU when the agent starts: the container
// of a pod deleted with --force, which leaves the API at once while the
// kubelet still stops it, or a short job on the host. The agent waits for
// it to exit (up to --in-use-wait, 60 s) instead of refusing at once with
// GPUInUse, and the switch completes on its first attempt.
func TestComputeProcessExitsDuringSwitch(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	LabelNodes(t, b, "gpumode.io/mode=full", "gpu-001")
	FakeSMI(t, b, "gpu-001", "--fake-process", "add", "0", "4242", "python3", "1024")
	ctl := StartController(t, b)
	Apply(t, b, policyAMig1g)
	applied := time.Now()
	Eventually(t, 60*time.Second, "the agent waiting for the process", func(context.Context) error {
		logs, _ := filepath.Glob(filepath.Join(b.Dir, "pods", "gpumode-system_gpumode-gpu-001-apply-*", "agent.log"))
		for _, l := range logs {
			if raw, err := os.ReadFile(l); err == nil && strings.Contains(string(raw), "waiting up to 60 s for them to exit") {
				return nil
			}
		}
		return fmt.Errorf("no apply agent waiting (logs %v)", logs)
	})
	time.Sleep(3 * time.Second)
	FakeSMI(t, b, "gpu-001", "--fake-process", "remove", "4242")
	WaitPolicy(t, b, "a", 90*time.Second, "mig", Converged)
	if log := ctl.Log(); strings.Contains(log, "GPUInUse") || strings.Contains(log, "rolling back") {
		t.Errorf("the switch failed on the process:\n%s", tailLines(log, 30))
	}
	t.Logf("converged %v after the policy was applied", time.Since(applied).Round(time.Second))
}

// The agent's image cannot be pulled (a private registry with no pull
// secret): the apply pod stays Pending. After helperTimeoutSeconds the
// switch fails, but the agent never ran, so the GPUs are untouched: even a
// node gpumode never switched before is rolled back and uncordoned, its
// GPU clients running again, rather than held cordoned for a person.
func TestHelperImageNotPulled(t *testing.T) {
	requireE2E(t)
	b := unpullableAgentBed(t)
	before := GetNode(t, b, "gpu-001").Labels
	StartController(t, b)
	Apply(t, b, policyAMig1g)
	checkNeverStarted(t, b, before)
}

// TestHelperNotPulledWhileNoController: the same, with the controller away
// past the apply pod's activeDeadlineSeconds. The kubelet fails the pod
// (DeadlineExceeded) before its container ever started; the controller
// that comes back sees that the agent never ran and rolls the node back
// untouched, as it does for a pod still Pending at the timeout.
func TestHelperNotPulledWhileNoController(t *testing.T) {
	requireE2E(t)
	b := unpullableAgentBed(t)
	before := GetNode(t, b, "gpu-001").Labels
	ctl := StartController(t, b)
	Apply(t, b, policyAMig1g)
	var apply string
	Eventually(t, 90*time.Second, "an apply pod that cannot pull its image", func(ctx context.Context) error {
		pl, err := b.CS.CoreV1().Pods("gpumode-system").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, p := range pl.Items {
			if strings.Contains(p.Name, "-apply-") && len(p.Status.ContainerStatuses) > 0 &&
				p.Status.ContainerStatuses[0].State.Waiting != nil {
				apply = p.Name
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
	ctl.Kill()
	waitDeadlineExceeded(t, b, apply)
	ctl.Restart()
	checkNeverStarted(t, b, before)
}

// unpullableAgentBed is a one-node H100 bed in pool a whose controller
// config names an agent image no node can pull, with helpers timing out
// after 30 s.
func unpullableAgentBed(t *testing.T) *Bed {
	t.Helper()
	return agentImageBed(t, nil, "registry.example.com/private/gpumode:0.1.0", "helperTimeoutSeconds: 30\n")
}

// agentImageBed is a one-node H100 bed (simulator environment env) in
// pool a whose controller config names agentImage image, and has extra
// appended.
func agentImageBed(t *testing.T, env []string, image, extra string) *Bed {
	t.Helper()
	b := StartBed(t, env, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	cfgPath := filepath.Join(b.Dir, "controller.yaml")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	cfg := regexp.MustCompile(`(?m)^agentImage: .*$`).ReplaceAllString(string(raw), "agentImage: "+image)
	if cfg == string(raw) {
		t.Fatalf("no agentImage line in %s", cfgPath)
	}
	if err := os.WriteFile(cfgPath, []byte(cfg+extra), 0o644); err != nil {
		t.Fatal(err)
	}
	return b
}

// checkNeverStarted waits for gpu-001's switch to fail with HelperTimeout,
// never started, and to be rolled back (checkNeverRan).
func checkNeverStarted(t *testing.T, b *Bed, before map[string]string) {
	t.Helper()
	checkNeverRan(t, b, before, "HelperTimeout", "never started")
}

// checkNeverRan waits for gpu-001's switch to fail with reason, its
// message holding msg, and to be rolled back as one whose agent never
// ran: uncordoned, the GPUs recorded as untouched, every operand label as
// before, and no mode label.
func checkNeverRan(t *testing.T, b *Bed, before map[string]string, reason, msg string) {
	t.Helper()
	WaitPolicy(t, b, "a", 120*time.Second, "failed and rolled back", func(s *PolicyStatus) error {
		n := GetNode(t, b, "gpu-001")
		if s.Summary.Failed != 1 || n.Spec.Unschedulable || n.Labels["gpumode.io/state"] != "failed" {
			return fmt.Errorf("summary %+v unschedulable %v state %q", s.Summary, n.Spec.Unschedulable, n.Labels["gpumode.io/state"])
		}
		return nil
	})
	n := GetNode(t, b, "gpu-001")
	rec := SwitchAnnotation(n)
	if rec == nil || rec["reason"] != reason || !strings.Contains(fmt.Sprint(rec["message"]), msg) {
		t.Errorf("switch record %v, want %s, %q", rec, reason, msg)
	}
	if rec != nil && rec["reconfigured"] == true {
		t.Errorf("the GPUs are recorded as changed: %v", rec)
	}
	for _, k := range []string{"nvidia.com/gpu.deploy.device-plugin", "nvidia.com/gpu.deploy.gpu-feature-discovery",
		"nvidia.com/gpu.deploy.dcgm", "nvidia.com/gpu.deploy.dcgm-exporter"} {
		if n.Labels[k] != before[k] {
			t.Errorf("label %s %q, was %q", k, n.Labels[k], before[k])
		}
	}
	if _, ok := n.Labels["gpumode.io/mode"]; ok {
		t.Errorf("mode label %q set on a node whose switch never ran", n.Labels["gpumode.io/mode"])
	}
}

// TestAgentStartErrorIsUntouched: agentImage names an image without
// gpumode-agent (a wrong image pushed under the name). The runtime cannot
// start the apply pod's container (StartError, startedAt at the Unix
// epoch), so the agent never ran: the switch fails at once with the
// runtime's words, and even a node gpumode never switched is rolled back
// and uncordoned as untouched, not held cordoned for a person. As from a
// kubelet, no helper pod is ever seen Running.
func TestAgentStartErrorIsUntouched(t *testing.T) {
	requireE2E(t)
	b := agentImageBed(t, []string{"SIM_IMAGE_MAP=example/not-the-agent=/bin/true"}, "registry.example.com/example/not-the-agent:1", "")
	before := GetNode(t, b, "gpu-001").Labels
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := b.CS.CoreV1().Pods("gpumode-system").Watch(ctx, metav1.ListOptions{LabelSelector: "app.kubernetes.io/name=gpumode-agent"})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var running []string
	go func() {
		for ev := range w.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && p.Status.Phase == corev1.PodRunning {
				mu.Lock()
				running = append(running, p.Name)
				mu.Unlock()
			}
		}
	}()
	StartController(t, b)
	Apply(t, b, policyAMig1g)
	checkNeverRan(t, b, before, "AgentFailed", "the agent never started; its container said: failed to create containerd task")
	mu.Lock()
	defer mu.Unlock()
	if len(running) > 0 {
		t.Errorf("helper pods seen Running though their container never started: %v", running)
	}
}

// TestPolicyDeletedWhileDraining: deleting the policy while a drain waits
// on a PodDisruptionBudget cancels the switch: the drain's options went
// with the policy, so nothing more is evicted, and the node is put back
// as it was (uncordoned, no record, not failed).
func TestPolicyDeletedWhileDraining(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	LabelNodes(t, b, "gpumode.io/mode=full", "gpu-001")
	LabelNodes(t, b, "gpumode.io/state=ready", "gpu-001")
	Apply(t, b, workload("web", 1, "{pool: a}"))
	Apply(t, b, fmt.Sprintf(pdb, "web", 1))
	Eventually(t, 60*time.Second, "the workload running", func(ctx context.Context) error {
		if n := len(podsRunningOn(t, b, "app=web")); n != 1 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	before := podsRunningOn(t, b, "app=web")
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
`)
	waitDrainOnBudget(t, b, "a")
	b.MustKubectl("delete", "gpumodepolicy", "a")
	Eventually(t, 30*time.Second, "the node put back", func(ctx context.Context) error {
		n := GetNode(t, b, "gpu-001")
		if n.Spec.Unschedulable || SwitchAnnotation(n) != nil || n.Labels["gpumode.io/state"] != "ready" || n.Labels["gpumode.io/mode"] != "full" {
			return fmt.Errorf("unschedulable %v record %v labels %v", n.Spec.Unschedulable, SwitchAnnotation(n), n.Labels)
		}
		return nil
	})
	for uid := range before {
		if _, ok := podsRunningOn(t, b, "app=web")[uid]; !ok {
			t.Errorf("pod %s was evicted", uid)
		}
	}
}

// refusedMigBed starts an A100-80GB bed of nodes (gpus per node, 0: the
// model's default) whose gpu-001, labelled pool=a and, with full,
// gpumode.io/mode=full, has an nvidia-smi that refuses every command
// matching match with Insufficient Resources. The controller runs, and
// policy a asks pool a for two 3g.40gb instances per GPU with rollout (a
// YAML flow map, or "").
func refusedMigBed(t *testing.T, nodes, gpus int, full bool, match, rollout string) *Bed {
	t.Helper()
	args := []string{"--nodes", strconv.Itoa(nodes), "--gpu-model", "A100-SXM4-80GB"}
	if gpus > 0 {
		args = append(args, "--gpus-per-node", strconv.Itoa(gpus))
	}
	b := StartBed(t, nil, args...)
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	if full {
		LabelNodes(t, b, "gpumode.io/mode=full", "gpu-001")
	}
	FakeSMI(t, b, "gpu-001", "--fake-inject", "--match", match, "--exit", "255", "--times", "-1",
		"--stdout", "Unable to create a GPU instance on GPU  0 using profile 9: Insufficient Resources\nFailed to create GPU instances: Insufficient Resources\n")
	StartController(t, b)
	if rollout != "" {
		rollout = "\n  rollout: " + rollout
	}
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: mig
  mig: {layout: [{migDevices: {"3g.40gb": 2}}]}`+rollout+"\n")
	return b
}

// TestAgentFailureRollsBack: nvidia-smi fails to create instances; the node
// goes back to full and is uncordoned; a retry after the fault clears
// completes.
func TestAgentFailureRollsBack(t *testing.T) {
	requireE2E(t)
	b := refusedMigBed(t, 2, 0, true, "-cgi", "")
	s := WaitPolicy(t, b, "a", 120*time.Second, "failure and rollback", func(s *PolicyStatus) error {
		n := GetNode(t, b, "gpu-001")
		if s.Summary.Failed != 1 || n.Spec.Unschedulable || Allocatable(n, "nvidia.com/gpu") != 8 {
			return fmt.Errorf("summary %+v unschedulable %v gpus %d", s.Summary, n.Spec.Unschedulable, Allocatable(n, "nvidia.com/gpu"))
		}
		return nil
	})
	n := GetNode(t, b, "gpu-001")
	if n.Labels["gpumode.io/mode"] != "full" || n.Labels["gpumode.io/state"] != "failed" {
		t.Errorf("labels after rollback: mode=%q state=%q", n.Labels["gpumode.io/mode"], n.Labels["gpumode.io/state"])
	}
	// The hardware changed and was put back: every operand the switch
	// stopped runs again as before it (device plugin, feature discovery,
	// DCGM, the exporter, and mig-manager, which was on), and no vGPU
	// plugin.
	for k, v := range n.Labels {
		if strings.HasPrefix(k, "nvidia.com/gpu.deploy.") && v == "false" {
			t.Errorf("after the rollback %s=%q", k, v)
		}
	}
	if v := n.Labels["nvidia.com/vgpu.deploy.device-plugin"]; v != "false" {
		t.Errorf("after the rollback nvidia.com/vgpu.deploy.device-plugin=%q, want false", v)
	}
	if rec := SwitchAnnotation(n); rec == nil || rec["reason"] != "InsufficientResources" {
		t.Errorf("switch record %v", rec)
	}
	if !strings.Contains(fmt.Sprint(s.Nodes), "Insufficient Resources") {
		t.Errorf("status lacks nvidia-smi's message: %+v", s.Nodes)
	}
	// The failure and the rollback are on the policy too (kubectl describe
	// gmp), not only on the node.
	Eventually(t, 30*time.Second, "SwitchFailed and RolledBack events on the policy", func(ctx context.Context) error {
		out, _ := b.Kubectl("get", "events", "-A", "--field-selector", "involvedObject.kind=GPUModePolicy", "-o", "custom-columns=R:.reason,M:.message", "--no-headers")
		if !strings.Contains(out, "SwitchFailed") || !strings.Contains(out, "gpu-001 full -> mig failed") || !strings.Contains(out, "RolledBack") {
			return fmt.Errorf("policy events:\n%s", out)
		}
		return nil
	})
	FakeSMI(t, b, "gpu-001", "--fake-clear-faults")
	b.MustKubectl("annotate", "node", "gpu-001", "gpumode.io/retry=1")
	WaitPolicy(t, b, "a", 120*time.Second, "retry to converge", Converged)
	if _, ok := GetNode(t, b, "gpu-001").Annotations["gpumode.io/retry"]; ok {
		t.Errorf("retry annotation not cleared")
	}
}

// TestFailureFromUnknownModeHolds: a node gpumode never switched before (no
// gpumode.io/mode) fails after its hardware changed. There is no known mode
// to put back, so it is held cordoned for a person rather than given its
// old plugin labels over MIG hardware and uncordoned; a retry then
// finishes the switch.
func TestFailureFromUnknownModeHolds(t *testing.T) {
	requireE2E(t)
	b := refusedMigBed(t, 1, 0, false, "-cgi", "")
	s := WaitPolicy(t, b, "a", 120*time.Second, "the failure, held", func(s *PolicyStatus) error {
		n := GetNode(t, b, "gpu-001")
		if s.Summary.Failed != 1 || n.Labels["gpumode.io/state"] != "failed" {
			return fmt.Errorf("summary %+v state %q", s.Summary, n.Labels["gpumode.io/state"])
		}
		return nil
	})
	time.Sleep(3 * time.Second) // and it stays so
	n := GetNode(t, b, "gpu-001")
	if !n.Spec.Unschedulable {
		t.Errorf("the node was uncordoned with its hardware changed and no mode to return to")
	}
	if !strings.Contains(fmt.Sprint(s.Nodes), "cannot be rolled back") {
		t.Errorf("status does not say why the node is held: %+v", s.Nodes)
	}
	FakeSMI(t, b, "gpu-001", "--fake-clear-faults")
	b.MustKubectl("annotate", "node", "gpu-001", "gpumode.io/retry=1")
	WaitPolicy(t, b, "a", 120*time.Second, "retry to converge", Converged)
	if n := GetNode(t, b, "gpu-001"); n.Spec.Unschedulable || n.Labels["gpumode.io/mode"] != "mig" {
		t.Errorf("after the retry: unschedulable %v mode %q", n.Spec.Unschedulable, n.Labels["gpumode.io/mode"])
	}
}

// TestHostHolder: something on the host that gpumode does not stop
// (nvidia-persistenced here) keeps the GPUs open, so a MIG mode change is
// left pending with nvidia-smi exiting 0 and a reset is refused. A Hopper
// GPU would drop the pending mode on a reboot: the switch fails GPUInUse
// and rolls back without rebooting, and once the holder is gone a retry
// completes. An A100 keeps the pending mode and applies it at boot: with
// allowReboot the node reboots and the switch completes, holder and all.
func TestHostHolder(t *testing.T) {
	requireE2E(t)
	policy := func(profile string) string {
		return fmt.Sprintf(`
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: mig
  mig: {layout: [{migDevices: {"%s": 2}}]}
  rollout: {allowReboot: true}
`, profile)
	}
	start := func(t *testing.T, model string) (*Bed, string) {
		b := StartBed(t, nil, "--nodes", "1", "--gpu-model", model, "--gpus-per-node", "2")
		InstallGpumode(t, b)
		LabelNodes(t, b, "pool=a", "gpu-001")
		LabelNodes(t, b, "gpumode.io/mode=full", "gpu-001")
		FakeSMI(t, b, "gpu-001", "--fake-holder", "add", "all", "nvidia-persistenced")
		boot := GetNode(t, b, "gpu-001").Status.NodeInfo.BootID
		StartController(t, b)
		return b, boot
	}
	t.Run("Hopper", func(t *testing.T) {
		b, boot := start(t, "H100-80GB")
		Apply(t, b, policy("3g.40gb"))
		s := WaitPolicy(t, b, "a", 120*time.Second, "GPUInUse and the rollback", func(s *PolicyStatus) error {
			n := GetNode(t, b, "gpu-001")
			if s.Summary.Failed != 1 || n.Spec.Unschedulable || n.Labels["gpumode.io/mode"] != "full" || Allocatable(n, "nvidia.com/gpu") != 2 {
				return fmt.Errorf("summary %+v unschedulable %v mode %q gpus %d", s.Summary, n.Spec.Unschedulable,
					n.Labels["gpumode.io/mode"], Allocatable(n, "nvidia.com/gpu"))
			}
			return nil
		})
		if msg := fmt.Sprint(s.Nodes); !strings.Contains(msg, "GPUInUse") || !strings.Contains(msg, "In use by another client") {
			t.Errorf("status does not say the GPU is held: %s", msg)
		}
		if n := GetNode(t, b, "gpu-001"); n.Status.NodeInfo.BootID != boot {
			t.Errorf("the node was rebooted, which drops a Hopper GPU's pending mode")
		}
		FakeSMI(t, b, "gpu-001", "--fake-holder", "remove", "all", "nvidia-persistenced")
		b.MustKubectl("annotate", "node", "gpu-001", "gpumode.io/retry=1")
		WaitPolicy(t, b, "a", 120*time.Second, "the retry to converge", Converged)
		if n := GetNode(t, b, "gpu-001"); Allocatable(n, "nvidia.com/mig-3g.40gb") != 4 {
			t.Errorf("3g.40gb after the retry: %d", Allocatable(n, "nvidia.com/mig-3g.40gb"))
		}
	})
	t.Run("Ampere", func(t *testing.T) {
		b, boot := start(t, "A100-SXM4-80GB")
		Apply(t, b, policy("3g.40gb"))
		WaitPolicy(t, b, "a", 180*time.Second, "converged after a reboot", Converged)
		n := GetNode(t, b, "gpu-001")
		if n.Status.NodeInfo.BootID == boot || Allocatable(n, "nvidia.com/mig-3g.40gb") != 4 || n.Spec.Unschedulable {
			t.Errorf("bootID %s (was %s), 3g.40gb %d, unschedulable %v", n.Status.NodeInfo.BootID, boot,
				Allocatable(n, "nvidia.com/mig-3g.40gb"), n.Spec.Unschedulable)
		}
	})
}

// TestRetryOfHeldNodeFollowsPolicy: a held node (onFailure: Hold) is
// retried the way a person fixes one: the layout its GPUs refuse is
// replaced in the policy, which is paused meanwhile, and the node is
// annotated for a retry. While paused the retry waits; on resume it goes to
// the new layout (the old one would fail again: its fault stays armed),
// and the node ends uncordoned with the retry mark used up.
func TestRetryOfHeldNodeFollowsPolicy(t *testing.T) {
	requireE2E(t)
	// Only 3g.40gb instances are refused; 1g.10gb ones are not.
	b := refusedMigBed(t, 1, 0, true, "-cgi 3g", "{onFailure: Hold}")
	WaitPolicy(t, b, "a", 120*time.Second, "the failure, held", func(s *PolicyStatus) error {
		n := GetNode(t, b, "gpu-001")
		if rec := SwitchAnnotation(n); s.Summary.Failed != 1 || rec == nil || rec["phase"] != "Failed" || !n.Spec.Unschedulable {
			return fmt.Errorf("summary %+v record %v unschedulable %v", s.Summary, rec, n.Spec.Unschedulable)
		}
		return nil
	})
	b.MustKubectl("patch", "gmp", "a", "--type=merge", "-p",
		`{"spec":{"mig":{"layout":[{"migDevices":{"1g.10gb":7}}]},"rollout":{"paused":true}}}`)
	b.MustKubectl("annotate", "node", "gpu-001", "gpumode.io/retry=1")
	WaitPolicy(t, b, "a", 60*time.Second, "the retry waiting on the pause", func(s *PolicyStatus) error {
		if s.Summary.Pending != 1 || !strings.Contains(fmt.Sprint(s.Nodes), "rollout paused") {
			return fmt.Errorf("summary %+v nodes %+v", s.Summary, s.Nodes)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // and it keeps waiting
	n := GetNode(t, b, "gpu-001")
	if rec := SwitchAnnotation(n); rec == nil || rec["phase"] != "Failed" || n.Annotations["gpumode.io/retry"] != "1" {
		t.Fatalf("a paused policy's node was retried: record %v annotations %v", rec, n.Annotations)
	}
	b.MustKubectl("patch", "gmp", "a", "--type=merge", "-p", `{"spec":{"rollout":{"paused":false}}}`)
	WaitPolicy(t, b, "a", 120*time.Second, "the retry to converge", Converged)
	n = GetNode(t, b, "gpu-001")
	if n.Spec.Unschedulable || n.Labels["gpumode.io/mode"] != "mig" || Allocatable(n, "nvidia.com/mig-1g.10gb") != 56 {
		t.Errorf("after the retry: unschedulable %v mode %q 1g.10gb %d", n.Spec.Unschedulable, n.Labels["gpumode.io/mode"], Allocatable(n, "nvidia.com/mig-1g.10gb"))
	}
	if _, ok := n.Annotations["gpumode.io/retry"]; ok {
		t.Errorf("retry annotation not cleared")
	}
}

// TestRetryReleasesUnselectedNode: a person takes a held node out of its
// policy (removes the label the policy selects) and retries it. No policy
// selects it, so the retry releases it: the MIG hardware the failed attempt
// left is rolled back to full and the node uncordoned, not switched on to
// the old target. Nothing of the switch stays: no record, state ready (a
// Failed record would keep it state=failed with no policy left to retry).
func TestRetryReleasesUnselectedNode(t *testing.T) {
	requireE2E(t)
	b := refusedMigBed(t, 1, 2, true, "-cgi", "{onFailure: Hold}")
	WaitPolicy(t, b, "a", 120*time.Second, "the failure, held", func(s *PolicyStatus) error {
		if s.Summary.Failed != 1 || !GetNode(t, b, "gpu-001").Spec.Unschedulable {
			return fmt.Errorf("summary %+v", s.Summary)
		}
		return nil
	})
	b.MustKubectl("label", "node", "gpu-001", "pool-")
	b.MustKubectl("annotate", "node", "gpu-001", "gpumode.io/retry=1")
	Eventually(t, 120*time.Second, "the node released: full again, uncordoned", func(context.Context) error {
		n := GetNode(t, b, "gpu-001")
		_, retry := n.Annotations["gpumode.io/retry"]
		rec := SwitchAnnotation(n)
		if n.Spec.Unschedulable || retry || rec != nil || n.Labels["gpumode.io/mode"] != "full" ||
			n.Labels["gpumode.io/state"] != "ready" || Allocatable(n, "nvidia.com/gpu") != 2 {
			return fmt.Errorf("unschedulable %v retry %v mode %q state %q gpus %d record %v", n.Spec.Unschedulable, retry,
				n.Labels["gpumode.io/mode"], n.Labels["gpumode.io/state"], Allocatable(n, "nvidia.com/gpu"), rec)
		}
		return nil
	})
	// Events are posted after the write, and rate-limited.
	Eventually(t, 30*time.Second, "the release event", func(context.Context) error {
		got, _ := b.Kubectl("get", "events", "--field-selector", "involvedObject.name=gpu-001,reason=RolledBack",
			"-o", "jsonpath={.items[*].message}")
		if !strings.Contains(got, "released: back in full") {
			return fmt.Errorf("RolledBack events: %q", got)
		}
		return nil
	})
}

// TestRetryDrainFailureHolds: a held node (its MIG hardware half laid by
// the failed attempt) is uncordoned by a person and a pod no controller
// manages lands on it; the policy is set to roll back failures, and the
// node retried. The retry cannot drain it (such a pod is not evicted
// without drain.force), and the hardware is not laid back under it: the
// node is held again, cordoned, the pod still running, rather than rolled
// back to full under the pod.
func TestRetryDrainFailureHolds(t *testing.T) {
	requireE2E(t)
	b := refusedMigBed(t, 1, 2, true, "-cgi", "{onFailure: Hold, drain: {gpuPodsOnly: false}}")
	WaitPolicy(t, b, "a", 120*time.Second, "the failure, held", func(s *PolicyStatus) error {
		if s.Summary.Failed != 1 || !GetNode(t, b, "gpu-001").Spec.Unschedulable {
			return fmt.Errorf("summary %+v", s.Summary)
		}
		return nil
	})
	b.MustKubectl("uncordon", "gpu-001")
	Apply(t, b, `
apiVersion: v1
kind: Pod
metadata: {name: bare, namespace: default, labels: {app: bare}}
spec:
  nodeSelector: {pool: a}
  terminationGracePeriodSeconds: 0
  containers: [{name: c, image: registry.example/tool:1}]
`)
	Eventually(t, 60*time.Second, "the bare pod running", func(context.Context) error {
		if n := len(podsRunningOn(t, b, "app=bare")); n != 1 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})
	before := podsRunningOn(t, b, "app=bare")
	b.MustKubectl("patch", "gmp", "a", "--type=merge", "-p", `{"spec":{"rollout":{"onFailure":"Rollback"}}}`)
	WaitPolicy(t, b, "a", 30*time.Second, "the edit seen", func(s *PolicyStatus) error {
		if s.ObservedGeneration != s.Generation {
			return fmt.Errorf("observedGeneration %d, generation %d", s.ObservedGeneration, s.Generation)
		}
		return nil
	})
	b.MustKubectl("annotate", "node", "gpu-001", "gpumode.io/retry=1")
	Eventually(t, 90*time.Second, "the retry held on the pod", func(context.Context) error {
		n := GetNode(t, b, "gpu-001")
		rec := SwitchAnnotation(n)
		_, retry := n.Annotations["gpumode.io/retry"]
		if rec == nil || retry || rec["phase"] != "Failed" || rec["reason"] != "DrainBlocked" {
			return fmt.Errorf("retry mark %v record %v", retry, rec)
		}
		return nil
	})
	n := GetNode(t, b, "gpu-001")
	rec := SwitchAnnotation(n)
	if !n.Spec.Unschedulable || n.Labels["gpumode.io/state"] != "failed" || rec["rollingBack"] == true ||
		!strings.Contains(fmt.Sprint(rec["message"]), "not laid back under the pods") {
		t.Errorf("unschedulable %v state %q record %v", n.Spec.Unschedulable, n.Labels["gpumode.io/state"], rec)
	}
	for uid := range before {
		if _, ok := podsRunningOn(t, b, "app=bare")[uid]; !ok {
			t.Errorf("pod %s is gone", uid)
		}
	}
	// Nothing moves it on by itself: a few seconds later it is still held.
	time.Sleep(5 * time.Second)
	if rec := SwitchAnnotation(GetNode(t, b, "gpu-001")); rec["phase"] != "Failed" || rec["rollingBack"] == true {
		t.Errorf("the held node moved on: %v", rec)
	}
}

// TestMissingPluginConfigWaits: with devicePluginConfigMap set, a switch
// whose node would select a device plugin config that is not in the
// ConfigMap is not started. A time-sliced node goes to mig (its config
// kept aside); someone removes the time-slicing key; the policy goes back
// to full. The node is not drained for a plugin that could not start: the
// policy stalls with InvalidPluginConfig naming the node and the key, the
// node stays in mig, schedulable. Once the key is back, the switch runs.
func TestMissingPluginConfigWaits(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	LabelNodes(t, b, "nvidia.com/device-plugin.config=time-slicing", "gpu-001")
	b.MustKubectl("delete", "pod", "-n", "gpu-operator", "-l", "app in (nvidia-device-plugin-daemonset,gpu-feature-discovery)")
	Eventually(t, 60*time.Second, "the node time-sliced", func(context.Context) error {
		if got := Allocatable(GetNode(t, b, "gpu-001"), "nvidia.com/gpu"); got != 32 {
			return fmt.Errorf("nvidia.com/gpu=%d", got)
		}
		return nil
	})
	AppendControllerConfig(t, b, "devicePluginConfigMap: {namespace: gpu-operator, name: device-plugin-config}\n")
	StartController(t, b)
	Apply(t, b, policyAMig1g)
	WaitPolicy(t, b, "a", 120*time.Second, "mig", Converged)
	cms := b.CS.CoreV1().ConfigMaps("gpu-operator")
	cm, err := cms.Get(context.Background(), "device-plugin-config", metav1.GetOptions{})
	if err != nil || cm.Data["time-slicing"] == "" {
		t.Fatalf("the bed's device plugin configs: %v %v", err, cm)
	}
	saved := cm.Data["time-slicing"]
	b.MustKubectl("patch", "configmap", "-n", "gpu-operator", "device-plugin-config", "--type=json",
		"-p", `[{"op":"remove","path":"/data/time-slicing"}]`)
	PatchPolicy(t, b, "a", `{"spec":{"mode":"full","mig":null}}`)
	WaitPolicy(t, b, "a", 60*time.Second, "InvalidPluginConfig", func(s *PolicyStatus) error {
		st, reason, msg := s.Cond("Stalled")
		if st != "True" || reason != "InvalidPluginConfig" || !strings.Contains(msg, "node gpu-001: the device plugin config time-slicing is not in ConfigMap gpu-operator/device-plugin-config") {
			return fmt.Errorf("Stalled=%s %s %q", st, reason, msg)
		}
		return nil
	})
	time.Sleep(3 * time.Second) // and nothing starts meanwhile
	n := GetNode(t, b, "gpu-001")
	if SwitchAnnotation(n) != nil || n.Spec.Unschedulable || n.Labels["gpumode.io/mode"] != "mig" || Allocatable(n, "nvidia.com/mig-1g.10gb") != 56 {
		t.Fatalf("the node was touched: record %v unschedulable %v mode %q", SwitchAnnotation(n), n.Spec.Unschedulable, n.Labels["gpumode.io/mode"])
	}

	// kubectl gpumode plan checks as the controller does once it reads
	// the controller's config from its ConfigMap, as installed.
	full := filepath.Join(t.TempDir(), "full.yaml")
	if err := os.WriteFile(full, []byte("apiVersion: gpumode.io/v1alpha1\nkind: GPUModePolicy\nmetadata: {name: a}\n"+
		"spec:\n  nodeSelector: {matchLabels: {pool: a}}\n  mode: full\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	const refused = "the device plugin config time-slicing is not in ConfigMap gpu-operator/device-plugin-config"
	out, err := plugin(t, b, "plan", "-f", full)
	if err != nil || strings.Contains(out, refused) ||
		!strings.Contains(out, "the controller's config (ConfigMap gpumode-system/gpumode-config) was not found") {
		t.Errorf("plan without the controller's ConfigMap: %v\n%s", err, out)
	}
	b.MustKubectl("create", "configmap", "-n", "gpumode-system", "gpumode-config",
		"--from-file=controller.yaml="+filepath.Join(b.Dir, "controller.yaml"))
	out, err = plugin(t, b, "plan", "-f", full)
	if err == nil || !strings.Contains(out, "InvalidPluginConfig") || !strings.Contains(out, refused) ||
		strings.Contains(out, "gpumode-config") {
		t.Errorf("plan with the controller's ConfigMap: %v\n%s", err, out)
	}
	cm, err = cms.Get(context.Background(), "device-plugin-config", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cm.Data["time-slicing"] = saved
	if _, err := cms.Update(context.Background(), cm, metav1.UpdateOptions{}); err != nil {
		t.Fatal(err)
	}
	WaitPolicy(t, b, "a", 120*time.Second, "full, time-sliced again", ConvergedOffering(t, b, "gpu-001", "nvidia.com/gpu", 32))
}

// TestRollbackToVgpuKeepsSplit: a node in vgpu mode with 4 vGPUs per GPU
// fails to go to mig; the rollback restores vgpu as it was, and its
// verification expects the node's own split (HAMi's per-node entry), not
// the new policy's (which has no vgpu section) nor HAMi's default of 10.
func TestRollbackToVgpuKeepsSplit(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
  vgpu: {splitCount: 4}
`)
	WaitPolicy(t, b, "a", 120*time.Second, "vgpu with split 4", Converged)
	if got := Allocatable(GetNode(t, b, "gpu-001"), "nvidia.com/vgpu"); got != 32 {
		t.Fatalf("nvidia.com/vgpu=%d, want 8 x 4", got)
	}
	FakeSMI(t, b, "gpu-001", "--fake-inject", "--match", "-cgi", "--exit", "255", "--times", "-1",
		"--stdout", "Unable to create a GPU instance on GPU  0 using profile 9: Insufficient Resources\n")
	PatchPolicy(t, b, "a", `{"spec":{"mode":"mig","vgpu":null,"mig":{"config":"all-1g.10gb"}}}`)
	WaitPolicy(t, b, "a", 120*time.Second, "failure and rollback to vgpu", func(s *PolicyStatus) error {
		n := GetNode(t, b, "gpu-001")
		if s.Summary.Failed != 1 || n.Spec.Unschedulable || Allocatable(n, "nvidia.com/vgpu") != 32 {
			return fmt.Errorf("summary %+v nodes %+v unschedulable %v vgpu %d", s.Summary, s.Nodes, n.Spec.Unschedulable, Allocatable(n, "nvidia.com/vgpu"))
		}
		return nil
	})
	n := GetNode(t, b, "gpu-001")
	if n.Labels["gpumode.io/mode"] != "vgpu" || n.Labels["gpumode.io/state"] != "failed" ||
		n.Labels["nvidia.com/vgpu.deploy.device-plugin"] != "true" {
		t.Errorf("labels after rollback: %v", n.Labels)
	}
	if rec := SwitchAnnotation(n); rec == nil || rec["reason"] != "InsufficientResources" || rec["phase"] != "Failed" {
		t.Errorf("switch record %v", rec)
	}
}

// TestRollbackToMigOnWithoutInstances: a mig node whose instances were
// all destroyed behind gpumode's back (MIG on, no instance, which the
// device plugin refuses to serve) fails to go to full once a GPU changed.
// There is no layout to put back: it is held cordoned, and its status says
// why (the agent used to refuse the empty layout as an argument error). A
// retry finishes the switch.
func TestRollbackToMigOnWithoutInstances(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	StartController(t, b)
	Apply(t, b, policyAMig1g)
	WaitPolicy(t, b, "a", 120*time.Second, "mig with 1g.10gb", Converged)
	FakeSMI(t, b, "gpu-001", "mig", "-dci")
	FakeSMI(t, b, "gpu-001", "mig", "-dgi")

	// GPU 0's MIG goes off, GPU 1's cannot: the agent fails, having
	// changed the node.
	FakeSMI(t, b, "gpu-001", "--fake-inject", "--match", "^-i 1 -mig 0$", "--exit", "255", "--times", "-1",
		"--stdout", "Unable to disable MIG Mode for GPU 00000000:08:00.0: Unknown Error\n")
	PatchPolicy(t, b, "a", `{"spec":{"mode":"full","mig":null}}`)
	s := WaitPolicy(t, b, "a", 120*time.Second, "the failure, held", func(s *PolicyStatus) error {
		n := GetNode(t, b, "gpu-001")
		if s.Summary.Failed != 1 || n.Labels["gpumode.io/state"] != "failed" {
			return fmt.Errorf("summary %+v nodes %+v state %q", s.Summary, s.Nodes, n.Labels["gpumode.io/state"])
		}
		return nil
	})
	n := GetNode(t, b, "gpu-001")
	if !n.Spec.Unschedulable {
		t.Errorf("the node was uncordoned with nothing to put back")
	}
	if rec := SwitchAnnotation(n); rec == nil || rec["reason"] != "NoLayout" {
		t.Errorf("switch record %v", rec)
	}
	if !strings.Contains(fmt.Sprint(s.Nodes), "every GPU had MIG on and no instance") {
		t.Errorf("status does not say why the node is held: %+v", s.Nodes)
	}
	FakeSMI(t, b, "gpu-001", "--fake-clear-faults")
	b.MustKubectl("annotate", "node", "gpu-001", "gpumode.io/retry=1")
	WaitPolicy(t, b, "a", 120*time.Second, "retry to converge", ConvergedOffering(t, b, "gpu-001", "nvidia.com/gpu", 8))
	if n := GetNode(t, b, "gpu-001"); n.Spec.Unschedulable || n.Labels["gpumode.io/mode"] != "full" {
		t.Errorf("after the retry: unschedulable %v mode %q", n.Spec.Unschedulable, n.Labels["gpumode.io/mode"])
	}
}

// TestSettingsChangeSwitchesWithinMode: a converged node is switched again
// when its policy's settings change under the same mode — a new MIG layout is
// laid out, a new vGPU split reaches HAMi — and gpumode.io/settings says
// what the node was verified with.
func TestSettingsChangeSwitchesWithinMode(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	StartController(t, b)
	Apply(t, b, policyAMig1g)
	WaitPolicy(t, b, "a", 90*time.Second, "mig with 1g.10gb", Converged)
	n := GetNode(t, b, "gpu-001")
	if got := Allocatable(n, "nvidia.com/mig-1g.10gb"); got != 56 {
		t.Fatalf("1g.10gb=%d, want 8 x 7", got)
	}
	if s := n.Annotations["gpumode.io/settings"]; !strings.Contains(s, `"strategy":"mixed"`) || !strings.Contains(s, `"1g.10gb":7`) {
		t.Errorf("gpumode.io/settings %q", s)
	}

	PatchPolicy(t, b, "a", `{"spec":{"mig":{"layout":[{"migDevices":{"3g.40gb":2}}]}}}`)
	WaitPolicy(t, b, "a", 90*time.Second, "mig re-laid with 3g.40gb", func(s *PolicyStatus) error {
		if err := Converged(s); err != nil {
			return err
		}
		n := GetNode(t, b, "gpu-001")
		if big, small := Allocatable(n, "nvidia.com/mig-3g.40gb"), Allocatable(n, "nvidia.com/mig-1g.10gb"); big != 16 || small > 0 {
			return fmt.Errorf("3g.40gb=%d 1g.10gb=%d, want 16 and none", big, small)
		}
		return nil
	})
	n = GetNode(t, b, "gpu-001")
	if s := n.Annotations["gpumode.io/settings"]; !strings.Contains(s, `"3g.40gb":2`) {
		t.Errorf("gpumode.io/settings after the re-lay %q", s)
	}
	if n.Spec.Unschedulable || n.Labels["gpumode.io/state"] != "ready" {
		t.Errorf("after the re-lay: unschedulable %v state %q", n.Spec.Unschedulable, n.Labels["gpumode.io/state"])
	}

	PatchPolicy(t, b, "a", `{"spec":{"mode":"vgpu","mig":null,"vgpu":{"splitCount":4}}}`)
	WaitPolicy(t, b, "a", 90*time.Second, "vgpu with split 4", ConvergedOffering(t, b, "gpu-001", "nvidia.com/vgpu", 32))
	PatchPolicy(t, b, "a", `{"spec":{"vgpu":{"splitCount":2}}}`)
	WaitPolicy(t, b, "a", 90*time.Second, "vgpu with split 2", ConvergedOffering(t, b, "gpu-001", "nvidia.com/vgpu", 16))
	n = GetNode(t, b, "gpu-001")
	if s := n.Annotations["gpumode.io/settings"]; s != `{"splitCount":2,"memoryScaling":1,"coreScaling":1}` {
		t.Errorf("gpumode.io/settings in vgpu %q", s)
	}

	PatchPolicy(t, b, "a", `{"spec":{"mode":"full","vgpu":null}}`)
	WaitPolicy(t, b, "a", 90*time.Second, "full", Converged)
	if s, ok := GetNode(t, b, "gpu-001").Annotations["gpumode.io/settings"]; ok {
		t.Errorf("gpumode.io/settings left in full mode: %q", s)
	}
}

// TestDaemonSetMIGStrategyOutranksTheConfig: a ClusterPolicy with
// mig.strategy set makes the operator put MIG_STRATEGY on the device
// plugin's DaemonSet, which outranks the per-node config gpumode selects.
// A mixed switch then meets a plugin offering nvidia.com/gpu: it waits in
// Verifying, saying why and what to check, and converges once the variable
// is gone.
func TestDaemonSetMIGStrategyOutranksTheConfig(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	b.MustKubectl("-n", "gpu-operator", "set", "env", "daemonset/nvidia-device-plugin-daemonset", "MIG_STRATEGY=single")
	StartController(t, b)
	Apply(t, b, policyAMig1g)
	WaitPolicy(t, b, "a", 120*time.Second, "verification that names MIG_STRATEGY", func(s *PolicyStatus) error {
		msg := fmt.Sprint(s.Nodes)
		if !strings.Contains(msg, "Verifying") ||
			!strings.Contains(msg, "the plugin offers nvidia.com/gpu: it runs another MIG strategy than mixed; is MIG_STRATEGY set on its DaemonSet") {
			return fmt.Errorf("nodes %+v", s.Nodes)
		}
		return nil
	})
	if got := Allocatable(GetNode(t, b, "gpu-001"), "nvidia.com/gpu"); got != 56 {
		t.Errorf("under MIG_STRATEGY=single the plugin offers nvidia.com/gpu=%d, want 56", got)
	}
	b.MustKubectl("-n", "gpu-operator", "set", "env", "daemonset/nvidia-device-plugin-daemonset", "MIG_STRATEGY-")
	WaitPolicy(t, b, "a", 120*time.Second, "mixed once the variable is gone", ConvergedOffering(t, b, "gpu-001", "nvidia.com/mig-1g.10gb", 56))
}

// TestSingleStrategyFollowsFeatureDiscovery: under the single MIG strategy
// the device plugin offers MIG devices as nvidia.com/gpu, and feature
// discovery relabels the node to match once it restarts:
// nvidia.com/gpu.product gains "-MIG-<profile>" and nvidia.com/gpu.count
// counts MIG devices (56), not GPUs (8). A converged node stays converged
// under those labels (no switch loop), a re-lay to another profile
// verifies against the GPUs the agent saw (16 devices; 16 x 2 = 32 or
// 56 x 2 if it used the label), and full mode brings the plain labels
// back.
func TestSingleStrategyFollowsFeatureDiscovery(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	product := GetNode(t, b, "gpu-001").Labels["nvidia.com/gpu.product"]
	StartController(t, b)
	labelled := func(what, gpus, wantProduct, wantCount string) func(*PolicyStatus) error {
		return func(s *PolicyStatus) error {
			if err := Converged(s); err != nil {
				return err
			}
			n := GetNode(t, b, "gpu-001")
			if got := fmt.Sprint(Allocatable(n, "nvidia.com/gpu")); got != gpus {
				return fmt.Errorf("%s: nvidia.com/gpu=%s, want %s", what, got, gpus)
			}
			if p, c := n.Labels["nvidia.com/gpu.product"], n.Labels["nvidia.com/gpu.count"]; p != wantProduct || c != wantCount {
				return fmt.Errorf("%s: feature discovery says product %q count %q, want %q %q", what, p, c, wantProduct, wantCount)
			}
			return nil
		}
	}
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: mig
  mig: {strategy: single, layout: [{migDevices: {"1g.10gb": 7}}]}
`)
	WaitPolicy(t, b, "a", 90*time.Second, "single 1g.10gb, relabelled", labelled("1g.10gb", "56", product+"-MIG-1g.10gb", "56"))
	n := GetNode(t, b, "gpu-001")
	settings, rv := n.Annotations["gpumode.io/settings"], n.ResourceVersion
	if n.Labels["nvidia.com/mig.strategy"] != "single" || n.Labels["gpumode.io/state"] != "ready" {
		t.Errorf("mig.strategy %q state %q", n.Labels["nvidia.com/mig.strategy"], n.Labels["gpumode.io/state"])
	}
	// The relabel is no reason to switch again.
	time.Sleep(3 * time.Second)
	n = GetNode(t, b, "gpu-001")
	if rec := SwitchAnnotation(n); rec != nil || n.Spec.Unschedulable || n.Annotations["gpumode.io/settings"] != settings {
		t.Fatalf("switched again after the relabel (resourceVersion %s -> %s): record %v unschedulable %v", rv, n.ResourceVersion, rec, n.Spec.Unschedulable)
	}

	PatchPolicy(t, b, "a", `{"spec":{"mig":{"layout":[{"migDevices":{"3g.40gb":2}}]}}}`)
	WaitPolicy(t, b, "a", 90*time.Second, "single 3g.40gb, relabelled", labelled("3g.40gb", "16", product+"-MIG-3g.40gb", "16"))

	PatchPolicy(t, b, "a", `{"spec":{"mode":"full","mig":null}}`)
	WaitPolicy(t, b, "a", 90*time.Second, "full, plain labels", labelled("full", "8", product, "8"))
	// The full node's config sets no strategy: the plugin's default, none,
	// under which feature discovery writes no strategy label.
	if s, ok := GetNode(t, b, "gpu-001").Labels["nvidia.com/mig.strategy"]; ok {
		t.Errorf("mig.strategy back in full mode %q, want none (no label)", s)
	}
}

// TestTimeSlicedNodeKeepsItsConfig: full nodes time-sliced by their own
// device plugin config (4 replicas; one renamed to nvidia.com/gpu.shared;
// one naming GPUs 0 and 1 in devices, which the plugin ignores) keep it
// through mig, where the label names the strategy and the node's own
// value waits in gpumode.io/plugin-config, and through vgpu, where it is
// left alone; in full they are verified at 8 GPUs x 4. The controller
// reads the configs (devicePluginConfigMap), which it checks before each
// switch.
func TestTimeSlicedNodeKeepsItsConfig(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "3", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001", "gpu-002", "gpu-003")
	product := GetNode(t, b, "gpu-001").Labels["nvidia.com/gpu.product"]
	own := map[string]string{"gpu-001": "time-slicing", "gpu-002": "time-slicing-renamed", "gpu-003": "time-slicing-some"}
	for node, config := range own {
		LabelNodes(t, b, "nvidia.com/device-plugin.config="+config, node)
	}
	// The real config-manager restarts them when the label changes; the
	// simulated ones read the config when they start.
	b.MustKubectl("delete", "pod", "-n", "gpu-operator", "-l", "app in (nvidia-device-plugin-daemonset,gpu-feature-discovery)")
	timeSliced := func(what string) error {
		for node, config := range own {
			n := GetNode(t, b, node)
			// time-slicing-some names GPUs 0 and 1: the plugin ignores
			// devices and shares all eight.
			res, wantProduct, want := "nvidia.com/gpu", product+"-SHARED", int64(32)
			if config == "time-slicing-renamed" {
				res, wantProduct = "nvidia.com/gpu.shared", product
			}
			if c := n.Labels["nvidia.com/device-plugin.config"]; c != config {
				return fmt.Errorf("%s, %s: device-plugin.config %q, want its own %q", what, node, c, config)
			}
			if got := Allocatable(n, res); got != want {
				return fmt.Errorf("%s, %s: %s=%d, want %d", what, node, res, got, want)
			}
			if p, r := n.Labels["nvidia.com/gpu.product"], n.Labels["nvidia.com/gpu.replicas"]; p != wantProduct || r != "4" {
				return fmt.Errorf("%s, %s: feature discovery says product %q replicas %q", what, node, p, r)
			}
		}
		return nil
	}
	Eventually(t, 60*time.Second, "the nodes time-sliced", func(context.Context) error { return timeSliced("before") })
	AppendControllerConfig(t, b, "devicePluginConfigMap: {name: "+sim.PluginConfigMap+"}\n")
	StartController(t, b)
	Apply(t, b, policyAMig1g)
	PatchPolicy(t, b, "a", `{"spec":{"rollout":{"maxUnavailable":3}}}`)
	WaitPolicy(t, b, "a", 120*time.Second, "mig, own configs kept aside", func(s *PolicyStatus) error {
		if err := Converged(s); err != nil {
			return err
		}
		for node, config := range own {
			n := GetNode(t, b, node)
			if c, a := n.Labels["nvidia.com/device-plugin.config"], n.Annotations["gpumode.io/plugin-config"]; c != "mixed" || a != config {
				return fmt.Errorf("%s in mig: device-plugin.config %q, gpumode.io/plugin-config %q", node, c, a)
			}
			if got := Allocatable(n, "nvidia.com/mig-1g.10gb"); got != 56 {
				return fmt.Errorf("%s in mig: nvidia.com/mig-1g.10gb=%d", node, got)
			}
		}
		return nil
	})
	for _, mode := range []string{"full", "vgpu", "full"} {
		PatchPolicy(t, b, "a", fmt.Sprintf(`{"spec":{"mode":%q,"mig":null}}`, mode))
		WaitPolicy(t, b, "a", 120*time.Second, mode+", own configs back", func(s *PolicyStatus) error {
			if err := Converged(s); err != nil {
				return err
			}
			for node, config := range own {
				n := GetNode(t, b, node)
				if c, ok := n.Annotations["gpumode.io/plugin-config"]; ok {
					return fmt.Errorf("%s in %s: gpumode.io/plugin-config %q left", node, mode, c)
				}
				if c := n.Labels["nvidia.com/device-plugin.config"]; c != config {
					return fmt.Errorf("%s in %s: device-plugin.config %q, want %q", node, mode, c, config)
				}
			}
			if mode == "full" {
				return timeSliced(mode)
			}
			return nil
		})
	}
}

// TestRollbackAfterVerifyFailure: a node whose own device plugin config
// names a key the ConfigMap lacks comes back from mig with that config, so
// the plugin and feature discovery crash-loop and verification times out.
// DCGM and its exporter started again with the plugin and hold the GPUs:
// the rollback stops them before the layout goes back, and the node ends
// in mig, uncordoned, failed, with its config kept aside.
func TestRollbackAfterVerifyFailure(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	LabelNodes(t, b, "nvidia.com/device-plugin.config=no-such-config", "gpu-001")
	AppendControllerConfig(t, b, "clientsTimeoutSeconds: 10\n")
	StartController(t, b)
	Apply(t, b, policyAMig1g)
	WaitPolicy(t, b, "a", 90*time.Second, "mig", Converged)
	if a := GetNode(t, b, "gpu-001").Annotations["gpumode.io/plugin-config"]; a != "no-such-config" {
		t.Fatalf("gpumode.io/plugin-config %q", a)
	}
	PatchPolicy(t, b, "a", `{"spec":{"mode":"full","mig":null}}`)
	s := waitRolledBack(t, b, "a", "gpu-001", 120*time.Second)
	if len(s.Nodes) != 1 || !strings.Contains(s.Nodes[0].Message, "PluginNotReady") {
		t.Errorf("status does not name the verification: %+v", s.Nodes)
	}
	n := GetNode(t, b, "gpu-001")
	if n.Labels["gpumode.io/mode"] != "mig" || n.Labels["nvidia.com/device-plugin.config"] != "mixed" ||
		n.Annotations["gpumode.io/plugin-config"] != "no-such-config" {
		t.Errorf("after the rollback: mode %q, device-plugin.config %q, gpumode.io/plugin-config %q",
			n.Labels["gpumode.io/mode"], n.Labels["nvidia.com/device-plugin.config"], n.Annotations["gpumode.io/plugin-config"])
	}
	if got := Allocatable(n, "nvidia.com/mig-1g.10gb"); got != 56 {
		t.Errorf("after the rollback: nvidia.com/mig-1g.10gb=%d, want 56", got)
	}
}

// startForDrift starts the controller with a 3 s resourcesGraceSeconds and
// returns a reading of gpumode_nodes_resources_differ{policy="a"}.
func startForDrift(t *testing.T, b *Bed) func() string {
	t.Helper()
	AppendControllerConfig(t, b, "resourcesGraceSeconds: 3\n")
	port := freePort(t)
	StartController(t, b, "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port), "--health-addr", fmt.Sprintf("127.0.0.1:%d", port))
	// Without --leader-elect the one replica acts, and its gauge says so.
	Eventually(t, 30*time.Second, "gpumode_leader 1", func(context.Context) error {
		if _, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", port)); !strings.Contains(body, "\ngpumode_leader 1\n") {
			return fmt.Errorf("gpumode_leader is not 1")
		}
		return nil
	})
	return func() string {
		_, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
		for _, l := range strings.Split(body, "\n") {
			if v, ok := strings.CutPrefix(l, `gpumode_nodes_resources_differ{policy="a"} `); ok {
				return v
			}
		}
		return "absent"
	}
}

// waitDiffer waits for the gauge differ reads to say want.
func waitDiffer(t *testing.T, differ func() string, want string) {
	t.Helper()
	Eventually(t, 30*time.Second, "gpumode_nodes_resources_differ "+want, func(context.Context) error {
		if v := differ(); v != want {
			return fmt.Errorf("gpumode_nodes_resources_differ %s", v)
		}
		return nil
	})
}

// TestResourcesThatDifferAreNamed: a converged MIG node whose GPU 0 loses
// its instances by hand offers nothing once its device plugin restarts
// (the plugin refuses a MIG-enabled GPU without MIG devices). gpumode does not drain it on its own (the change may be a
// person's); the policy's status names it, with what it offers and what
// it was verified with, and `gpumode.io/settings=unknown` lays it again.
func TestResourcesThatDifferAreNamed(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	differ := startForDrift(t, b)
	Apply(t, b, policyAMig1g)
	WaitPolicy(t, b, "a", 90*time.Second, "mig with 1g.10gb", Converged)
	const verified = "nvidia.com/mig-1g.10gb=56"
	if a := GetNode(t, b, "gpu-001").Annotations; a["gpumode.io/resources"] != verified || a["gpumode.io/gpus"] != "" {
		t.Fatalf("gpumode.io/resources %q, want %q; gpumode.io/gpus %q, only full has it", a["gpumode.io/resources"], verified, a["gpumode.io/gpus"])
	}

	// By hand on the host: GPU 0's instances go; the plugin restarts.
	FakeSMI(t, b, "gpu-001", "mig", "-dci", "-i", "0")
	FakeSMI(t, b, "gpu-001", "mig", "-dgi", "-i", "0")
	b.MustKubectl("delete", "pod", "-n", "gpu-operator", "-l", "app=nvidia-device-plugin-daemonset", "--field-selector", "spec.nodeName=gpu-001")
	want := "1 node advertises other GPU resources than it was verified with"
	WaitPolicy(t, b, "a", 90*time.Second, "the node named", func(s *PolicyStatus) error {
		st, _, msg := s.Cond("Ready")
		if st != "True" || !strings.Contains(msg, want) ||
			!strings.Contains(msg, "gpu-001 offers none, verified with "+verified) {
			return fmt.Errorf("Ready=%s %q", st, msg)
		}
		return nil
	})
	n := GetNode(t, b, "gpu-001")
	if n.Annotations["gpumode.io/switch"] != "" || n.Spec.Unschedulable {
		t.Fatalf("switched on its own: unschedulable %v record %q", n.Spec.Unschedulable, n.Annotations["gpumode.io/switch"])
	}
	waitDiffer(t, differ, "1")
	if out, err := plugin(t, b, "status", "a"); err != nil || !strings.Contains(out, "note: "+want) {
		t.Errorf("kubectl gpumode status has no note (%v):\n%s", err, out)
	}

	b.MustKubectl("annotate", "--overwrite", "node", "gpu-001", "gpumode.io/settings=unknown")
	WaitPolicy(t, b, "a", 90*time.Second, "laid again", func(s *PolicyStatus) error {
		if err := Converged(s); err != nil {
			return err
		}
		if _, _, msg := s.Cond("Ready"); strings.Contains(msg, want) {
			return fmt.Errorf("still named: %q", msg)
		}
		if got := Allocatable(GetNode(t, b, "gpu-001"), "nvidia.com/mig-1g.10gb"); got != 56 {
			return fmt.Errorf("1g.10gb=%d", got)
		}
		return nil
	})
	if got := GetNode(t, b, "gpu-001").Annotations["gpumode.io/settings"]; !strings.Contains(got, `"1g.10gb":7`) {
		t.Errorf("gpumode.io/settings after the switch %q", got)
	}
	waitDiffer(t, differ, "0")
}

// TestOwnConfigChangeIsNotDrift: a person time-slices a converged full
// node's GPUs through its own device plugin config label, as NVIDIA's
// documentation has them do; the config-manager restarts the plugin and
// feature discovery, and the node offers 4 replicas of each GPU. That is
// not drift: the node has the GPUs it was verified with; nor is taking the
// label off again. A config the plugin cannot load is: the plugin
// crash-loops and the node offers none until the label is put right; the
// policy names the config as the cause. A GPU lost afterwards is drift
// too.
func TestOwnConfigChangeIsNotDrift(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	AppendControllerConfig(t, b, "devicePluginConfigMap: {namespace: gpu-operator, name: device-plugin-config}\n")
	differ := startForDrift(t, b)
	Apply(t, b, policyAFull)
	WaitPolicy(t, b, "a", 90*time.Second, "full", ConvergedOffering(t, b, "gpu-001", "nvidia.com/gpu", 8))
	n := GetNode(t, b, "gpu-001")
	if n.Annotations["gpumode.io/resources"] != "nvidia.com/gpu=8" || n.Annotations["gpumode.io/gpus"] != "8" {
		t.Fatalf("verified with resources %q, gpus %q", n.Annotations["gpumode.io/resources"], n.Annotations["gpumode.io/gpus"])
	}

	offers := func(gpus int64, replicas string) {
		t.Helper()
		Eventually(t, 60*time.Second, "the plugin restarted", func(context.Context) error {
			n := GetNode(t, b, "gpu-001")
			if got := Allocatable(n, "nvidia.com/gpu"); got != gpus || n.Labels["nvidia.com/gpu.replicas"] != replicas {
				return fmt.Errorf("nvidia.com/gpu=%d, gpu.replicas %q", got, n.Labels["nvidia.com/gpu.replicas"])
			}
			return nil
		})
		// Past the grace, and then some: nothing is named.
		time.Sleep(6 * time.Second)
		WaitPolicy(t, b, "a", 10*time.Second, "nothing named", func(s *PolicyStatus) error {
			if err := Converged(s); err != nil {
				return err
			}
			if _, _, msg := s.Cond("Ready"); strings.Contains(msg, "advertises other GPU resources") {
				return fmt.Errorf("named: %q", msg)
			}
			if v := differ(); v != "0" {
				return fmt.Errorf("gpumode_nodes_resources_differ %s", v)
			}
			return nil
		})
		if n := GetNode(t, b, "gpu-001"); SwitchAnnotation(n) != nil || n.Spec.Unschedulable {
			t.Fatalf("switched: record %v unschedulable %v", SwitchAnnotation(n), n.Spec.Unschedulable)
		}
	}
	LabelNodes(t, b, "nvidia.com/device-plugin.config=time-slicing", "gpu-001")
	offers(32, "4")
	b.MustKubectl("label", "node", "gpu-001", "nvidia.com/device-plugin.config-")
	offers(8, "1")
	LabelNodes(t, b, "nvidia.com/device-plugin.config=time-slicing", "gpu-001")
	offers(32, "4")

	// A config with a typo (replica for replicas): the plugin refuses it.
	b.MustKubectl("patch", "configmap", "-n", "gpu-operator", "device-plugin-config", "--type=merge", "-p",
		`{"data":{"broken":"version: v1\nsharing:\n  timeSlicing:\n    resources:\n    - name: nvidia.com/gpu\n      replica: 4\n"}}`)
	LabelNodes(t, b, "nvidia.com/device-plugin.config=broken", "gpu-001")
	WaitPolicy(t, b, "a", 60*time.Second, "the node named", func(s *PolicyStatus) error {
		if _, _, msg := s.Cond("Ready"); !strings.Contains(msg, "gpu-001 offers none, verified with nvidia.com/gpu=8 "+
			"(the device plugin config broken in ConfigMap gpu-operator/device-plugin-config: "+
			"sharing.timeSlicing.resources[0].replicas: missing)") {
			return fmt.Errorf("Ready %q", msg)
		}
		return nil
	})
	waitDiffer(t, differ, "1")
	plugin := b.MustKubectl("get", "pod", "-n", "gpu-operator", "-l", "app=nvidia-device-plugin-daemonset",
		"--field-selector", "spec.nodeName=gpu-001", "-o", "jsonpath={.items[0].status.containerStatuses[0].state.waiting.reason}")
	if strings.TrimSpace(plugin) != "CrashLoopBackOff" {
		t.Errorf("device plugin with the broken config: waiting reason %q, want CrashLoopBackOff", plugin)
	}
	LabelNodes(t, b, "nvidia.com/device-plugin.config=time-slicing", "gpu-001")
	offers(32, "4")

	// GPU 3 falls off the bus; the plugin and feature discovery restart.
	FakeSMI(t, b, "gpu-001", "--fake-lost", "3", "true")
	b.MustKubectl("delete", "pod", "-n", "gpu-operator", "-l", "app in (nvidia-device-plugin-daemonset,gpu-feature-discovery)",
		"--field-selector", "spec.nodeName=gpu-001")
	WaitPolicy(t, b, "a", 90*time.Second, "the node named", func(s *PolicyStatus) error {
		_, _, msg := s.Cond("Ready")
		if !strings.Contains(msg, "gpu-001 offers nvidia.com/gpu=28, verified with nvidia.com/gpu=8") {
			return fmt.Errorf("Ready %q", msg)
		}
		return nil
	})
	waitDiffer(t, differ, "1")
}

// TestUpstreamHAMiProfile: profile hami, for HAMi's upstream chart, whose
// plugin DaemonSet selects gpu=on and registers nvidia.com/gpu, the name
// the NVIDIA plugin registers too. A node goes to vgpu, to mig and back
// to full; the two plugins never run on it at once. Into mig the GPU
// Operator's feature discovery and DCGM exporter, which hold the GPUs,
// must be stopped too (the profile once stopped only the plugins, and the
// MIG mode change failed "In use by another client").
func TestUpstreamHAMiProfile(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	useUpstreamHAMi(t, b)
	stop := make(chan struct{})
	defer close(stop)
	overlaps := watchPluginOverlap(t, b, stop)
	AppendControllerConfig(t, b, "profile: hami\n")
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
  vgpu: {splitCount: 4}
`)
	WaitPolicy(t, b, "a", 120*time.Second, "vgpu", ConvergedOffering(t, b, "gpu-001", "nvidia.com/gpu", 32))
	n := GetNode(t, b, "gpu-001")
	if n.Labels["gpu"] != "on" || n.Labels["nvidia.com/gpu.deploy.device-plugin"] != "false" ||
		n.Annotations["gpumode.io/resources"] != "nvidia.com/gpu=32" {
		t.Fatalf("in vgpu: gpu %q, gpu.deploy.device-plugin %q, gpumode.io/resources %q",
			n.Labels["gpu"], n.Labels["nvidia.com/gpu.deploy.device-plugin"], n.Annotations["gpumode.io/resources"])
	}
	PatchPolicy(t, b, "a", `{"spec":{"mode":"mig","vgpu":null,"mig":{"layout":[{"migDevices":{"1g.10gb":7}}]}}}`)
	WaitPolicy(t, b, "a", 120*time.Second, "mig", ConvergedOffering(t, b, "gpu-001", "nvidia.com/mig-1g.10gb", 56))
	n = GetNode(t, b, "gpu-001")
	if _, on := n.Labels["gpu"]; on || n.Labels["nvidia.com/gpu.deploy.gpu-feature-discovery"] != "true" ||
		n.Labels["nvidia.com/gpu.deploy.mig-manager"] != "false" {
		t.Fatalf("in mig: gpu %q (%v), gpu.deploy.gpu-feature-discovery %q, gpu.deploy.mig-manager %q", n.Labels["gpu"], on,
			n.Labels["nvidia.com/gpu.deploy.gpu-feature-discovery"], n.Labels["nvidia.com/gpu.deploy.mig-manager"])
	}
	PatchPolicy(t, b, "a", `{"spec":{"mode":"full","mig":null}}`)
	WaitPolicy(t, b, "a", 120*time.Second, "full", ConvergedOffering(t, b, "gpu-001", "nvidia.com/gpu", 8))
	n = GetNode(t, b, "gpu-001")
	if _, on := n.Labels["gpu"]; on || n.Labels["nvidia.com/gpu.deploy.device-plugin"] != "true" || n.Annotations["gpumode.io/gpus"] != "8" {
		t.Fatalf("in full: gpu %q (%v), gpu.deploy.device-plugin %q, gpumode.io/gpus %q",
			n.Labels["gpu"], on, n.Labels["nvidia.com/gpu.deploy.device-plugin"], n.Annotations["gpumode.io/gpus"])
	}
	if o := overlaps(); len(o) > 0 {
		t.Errorf("both device plugins ran at once: %s", strings.Join(o, "; "))
	}
}

// useUpstreamHAMi turns the bed's HAMi DaemonSet into what HAMi's upstream
// chart deploys: on gpu=on, registering nvidia.com/gpu.
func useUpstreamHAMi(t *testing.T, b *Bed) {
	t.Helper()
	b.MustKubectl("patch", "daemonset", "-n", "kube-system", "hami-device-plugin", "--type=merge", "-p",
		`{"spec":{"template":{"metadata":{"annotations":{"`+sim.HAMiResourceAnnotation+`":"nvidia.com/gpu"}},`+
			`"spec":{"nodeSelector":{"gpu":"on","nvidia.com/vgpu.deploy.device-plugin":null}}}}}`)
}

// TestWideVgpuRolloutWritesHAMiOnce: 20 nodes reach their HAMi entry
// together. Each writing the one ConfigMap itself met the others' writes
// (409s, and seconds of retries per switch); the controller's one writer
// batches them, against the real API server's resourceVersion checks.
func TestWideVgpuRolloutWritesHAMiOnce(t *testing.T) {
	requireE2E(t)
	const nodes = 20
	b := StartBed(t, nil, "--nodes", fmt.Sprint(nodes), "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	labelAll(t, b, nodes, nodes, map[string]string{"gpumode.io/mode": "full", "gpumode.io/state": "ready", "pool": "wide"})
	StartController(t, b)
	patches0 := apiserverRequests(t, b, `resource="configmaps"`, `verb="PATCH"`)
	conflicts0 := apiserverRequests(t, b, `resource="configmaps"`, `verb="PATCH"`, `code="409"`)
	Apply(t, b, fmt.Sprintf(`
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: wide}
spec:
  nodeSelector: {matchLabels: {pool: wide}}
  mode: vgpu
  vgpu: {splitCount: 4}
  rollout: {maxUnavailable: %d}
`, nodes))
	WaitPolicy(t, b, "wide", 3*time.Minute, "the rollout", Converged)
	patches := apiserverRequests(t, b, `resource="configmaps"`, `verb="PATCH"`) - patches0
	conflicts := apiserverRequests(t, b, `resource="configmaps"`, `verb="PATCH"`, `code="409"`) - conflicts0
	t.Logf("HAMi ConfigMap: %.0f PATCHes, %.0f answered 409, for %d nodes", patches, conflicts, nodes)
	// One write per node, as before, took 45 PATCHes and 25 409s here;
	// batched, runs took 5 to 11, depending on how the switches arrive. A
	// cache slower than the writer's 2 s patience may cost a 409 or two.
	if conflicts > 2 || patches > nodes+2 {
		t.Errorf("HAMi ConfigMap: %.0f PATCHes, %.0f of them 409, for %d nodes (want at most %d and 2)", patches, conflicts, nodes, nodes+2)
	}
	cm, err := b.CS.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "hami-device-plugin", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for i := 1; i <= nodes; i++ {
		name := nodeName(i, nodes)
		names = append(names, name)
		if !strings.Contains(cm.Data["config.json"], `"name":"`+name+`"`) {
			t.Errorf("no HAMi entry for %s", name)
		}
	}
	// Every entry is marked as gpumode's, in the same writes.
	sort.Strings(names)
	if got := cm.Annotations["gpumode.io/hami-nodes"]; got != strings.Join(names, ",") {
		t.Errorf("gpumode.io/hami-nodes %q, want the %d nodes", got, nodes)
	}
}

// TestSplitWithoutHAMiConfigMap: without HAMi's per-node ConfigMap a
// splitCount cannot be written. The node still switches (HAMi's defaults)
// and records {}, plan says why, a split change drains nothing, and the
// ConfigMap's arrival switches the node again to apply the split.
func TestSplitWithoutHAMiConfigMap(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	b.MustKubectl("-n", "kube-system", "delete", "configmap", "hami-device-plugin")
	policy := `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
  vgpu: {splitCount: 4}
`
	file := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(file, []byte(policy), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := plugin(t, b, "plan", "-f", file)
	if err != nil || !strings.Contains(out, "spec.vgpu.splitCount 4 is not written: ConfigMap kube-system/hami-device-plugin does not exist") {
		t.Errorf("plan without HAMi's ConfigMap: %v\n%s", err, out)
	}
	StartController(t, b)
	Apply(t, b, policy)
	WaitPolicy(t, b, "a", 90*time.Second, "vgpu with HAMi's defaults", ConvergedOffering(t, b, "gpu-001", "nvidia.com/vgpu", 80))
	if s := GetNode(t, b, "gpu-001").Annotations["gpumode.io/settings"]; s != "{}" {
		t.Errorf("gpumode.io/settings %q, want {}: no split was written", s)
	}
	notice := "spec.vgpu.splitCount 4 is not written: ConfigMap kube-system/hami-device-plugin does not exist (hamiConfigMap in the controller's config names it), so HAMi runs with its defaults"
	WaitPolicy(t, b, "a", 10*time.Second, "the notice in Ready's message", func(s *PolicyStatus) error {
		if st, _, msg := s.Cond("Ready"); st != "True" || msg != "1/1 nodes in vgpu. "+notice {
			return fmt.Errorf("Ready=%s %q", st, msg)
		}
		return nil
	})
	if out, err := plugin(t, b, "status", "a"); err != nil || !strings.Contains(out, "note: "+notice) {
		t.Errorf("status without HAMi's ConfigMap: %v\n%s", err, out)
	}
	Eventually(t, 30*time.Second, "a SwitchCompleted event that names the ConfigMap", func(ctx context.Context) error {
		out, _ := b.Kubectl("get", "events.events.k8s.io", "-A", "--field-selector", "reason=SwitchCompleted", "-o", "custom-columns=NOTE:.note")
		if !strings.Contains(out, "with HAMi's defaults, not splitCount 4: ConfigMap kube-system/hami-device-plugin was not found") {
			return fmt.Errorf("events:\n%s", out)
		}
		return nil
	})

	// A split change has nothing to write: no drain. Every version of the
	// node from before the change until 3 s after the controller saw it
	// is looked at, so a switch that came and went is caught too.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	w, err := b.CS.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{
		FieldSelector:   fields.OneTermEqualSelector("metadata.name", "gpu-001").String(),
		ResourceVersion: GetNode(t, b, "gpu-001").ResourceVersion})
	if err != nil {
		t.Fatal(err)
	}
	touched := make(chan string, 1)
	go func() {
		for ev := range w.ResultChan() {
			if n, ok := ev.Object.(*corev1.Node); ok && (n.Annotations["gpumode.io/switch"] != "" || n.Spec.Unschedulable || n.Annotations["gpumode.io/settings"] != "{}") {
				touched <- fmt.Sprintf("switch %q unschedulable %v settings %q", n.Annotations["gpumode.io/switch"], n.Spec.Unschedulable, n.Annotations["gpumode.io/settings"])
				return
			}
		}
	}()
	PatchPolicy(t, b, "a", `{"spec":{"vgpu":{"splitCount":2}}}`)
	WaitPolicy(t, b, "a", 30*time.Second, "the new generation seen", Converged)
	select {
	case what := <-touched:
		t.Fatalf("a split change without the ConfigMap touched the node: %s", what)
	case <-time.After(3 * time.Second):
	}
	w.Stop()

	b.MustKubectl("-n", "kube-system", "create", "configmap", "hami-device-plugin", `--from-literal=config.json={"nodeconfig": []}`)
	WaitPolicy(t, b, "a", 90*time.Second, "the split applied once the ConfigMap exists", func(s *PolicyStatus) error {
		n := GetNode(t, b, "gpu-001")
		if got := Allocatable(n, "nvidia.com/vgpu"); got != 16 {
			return fmt.Errorf("nvidia.com/vgpu=%d, want 8 x 2", got)
		}
		if s := n.Annotations["gpumode.io/settings"]; s != `{"splitCount":2,"memoryScaling":1,"coreScaling":1}` {
			return fmt.Errorf("gpumode.io/settings %q", s)
		}
		if _, _, msg := s.Cond("Ready"); msg != "1/1 nodes in vgpu" {
			return fmt.Errorf("Ready's message %q", msg)
		}
		return Converged(s)
	})

	// The ConfigMap loses the node's entry (re-created by a HAMi upgrade,
	// say): the node is left alone and named; the annotation the notice
	// gives switches it again and writes the entry back.
	b.MustKubectl("-n", "kube-system", "patch", "configmap", "hami-device-plugin", "--type=merge", "-p", `{"data":{"config.json":"{\"nodeconfig\": []}"}}`)
	WaitPolicy(t, b, "a", 30*time.Second, "the lost entry named", func(s *PolicyStatus) error {
		want := "1/1 nodes in vgpu. 1 node's HAMi entry in ConfigMap kube-system/hami-device-plugin differs from what it was verified with " +
			"(HAMi takes the entry when the plugin restarts; annotating a node gpumode.io/settings=unknown switches it again): gpu-001"
		if st, _, msg := s.Cond("Ready"); st != "True" || msg != want {
			return fmt.Errorf("Ready=%s %q", st, msg)
		}
		return nil
	})
	if n := GetNode(t, b, "gpu-001"); n.Annotations["gpumode.io/switch"] != "" || n.Spec.Unschedulable {
		t.Errorf("a lost entry drained the node")
	}
	b.MustKubectl("annotate", "node", "gpu-001", "--overwrite", "gpumode.io/settings=unknown")
	WaitPolicy(t, b, "a", 90*time.Second, "the entry written back", func(s *PolicyStatus) error {
		if s := GetNode(t, b, "gpu-001").Annotations["gpumode.io/settings"]; s != `{"splitCount":2,"memoryScaling":1,"coreScaling":1}` {
			return fmt.Errorf("gpumode.io/settings %q", s)
		}
		if _, _, msg := s.Cond("Ready"); msg != "1/1 nodes in vgpu" {
			return fmt.Errorf("Ready's message %q", msg)
		}
		return Converged(s)
	})
	cm, err := b.CS.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "hami-device-plugin", metav1.GetOptions{})
	if err != nil || !strings.Contains(cm.Data["config.json"], `"devicesplitcount":2`) {
		t.Errorf("HAMi's entry not written back: %v %v", err, cm.Data)
	}
}

// TestCordonedAndSkippedNodes: a node a person cordoned stays cordoned; a
// node labelled gpumode.io/skip=true is never touched.
func TestCordonedAndSkippedNodes(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "3", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001", "gpu-002", "gpu-003")
	LabelNodes(t, b, "gpumode.io/skip=true", "gpu-003")
	b.MustKubectl("cordon", "gpu-001")
	// gpu-002 failed once with no switch record left, and a person asked
	// for a retry: the switch that starts uses the mark up.
	LabelNodes(t, b, "gpumode.io/state=failed", "gpu-002")
	b.MustKubectl("annotate", "node", "gpu-002", "gpumode.io/retry=1")
	// A person turned the exporter off on gpu-002: a switch stops it and
	// gives it back as it was, not on.
	LabelNodes(t, b, "nvidia.com/gpu.deploy.dcgm-exporter=false", "gpu-002")
	skipped := GetNode(t, b, "gpu-003")
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
  rollout: {maxUnavailable: 2}
`)
	WaitPolicy(t, b, "a", 120*time.Second, "converged", Converged)
	if !GetNode(t, b, "gpu-001").Spec.Unschedulable {
		t.Errorf("gpu-001 was cordoned by a person and got uncordoned")
	}
	if GetNode(t, b, "gpu-002").Spec.Unschedulable {
		t.Errorf("gpu-002 left cordoned")
	}
	if v := GetNode(t, b, "gpu-002").Labels["nvidia.com/gpu.deploy.dcgm-exporter"]; v != "false" {
		t.Errorf("gpu-002's dcgm-exporter label is %q after the switch, want false as before", v)
	}
	if v, ok := GetNode(t, b, "gpu-002").Annotations["gpumode.io/retry"]; ok {
		t.Errorf("gpu-002's retry mark %q was not cleared by the switch it started", v)
	}
	after := GetNode(t, b, "gpu-003")
	if fmt.Sprint(after.Labels) != fmt.Sprint(skipped.Labels) || len(after.Annotations) != len(skipped.Annotations) || after.Spec.Unschedulable {
		t.Errorf("skipped node was touched:\nbefore %v\nafter  %v", skipped.Labels, after.Labels)
	}
}

// TestRebootRequired: a GPU whose reset is unsupported needs a reboot;
// without allowReboot the node fails with RebootRequired, with it the node
// reboots (simulated) and completes.
func TestRebootRequired(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "A100-SXM4-40GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	LabelNodes(t, b, "gpumode.io/mode=full", "gpu-001")
	FakeSMI(t, b, "gpu-001", "--fake-reset-unsupported", "all", "true")
	// A workload of no GPU, behind a budget: the GPU-only drain leaves it,
	// and the reboot would end it.
	Apply(t, b, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: cpu, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: cpu}}
  template:
    metadata: {labels: {app: cpu}}
    spec:
      terminationGracePeriodSeconds: 30
      nodeSelector: {kubernetes.io/hostname: gpu-001}
      containers: [{name: c, image: registry.example/web:1}]
`)
	Apply(t, b, fmt.Sprintf(pdb, "cpu", 1))
	Eventually(t, 60*time.Second, "the CPU workload running", func(ctx context.Context) error {
		if len(podsRunningOn(t, b, "app=cpu")) != 1 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	cpuPods := podsRunningOn(t, b, "app=cpu")
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: mig
  mig: {layout: [{migDevices: {"3g.20gb": 2}}]}
`)
	WaitPolicy(t, b, "a", 120*time.Second, "RebootRequired", func(s *PolicyStatus) error {
		if s.Summary.Failed == 1 && strings.Contains(fmt.Sprint(s.Nodes), "RebootRequired") {
			return nil
		}
		return fmt.Errorf("summary %+v nodes %+v", s.Summary, s.Nodes)
	})
	boot := GetNode(t, b, "gpu-001").Status.NodeInfo.BootID
	PatchPolicy(t, b, "a", `{"spec":{"rollout":{"allowReboot":true}}}`)
	b.MustKubectl("annotate", "node", "gpu-001", "gpumode.io/retry=1")
	// Before the reboot the CPU workload is evicted too, so its budget
	// holds the reboot back until it allows the eviction.
	WaitPolicy(t, b, "a", 120*time.Second, "the reboot held by the budget", func(s *PolicyStatus) error {
		for _, n := range s.Nodes {
			if n.Phase == "Rebooting" && strings.Contains(n.Message, "blocked by PodDisruptionBudget") {
				return nil
			}
		}
		return fmt.Errorf("nodes %+v", s.Nodes)
	})
	if got := GetNode(t, b, "gpu-001").Status.NodeInfo.BootID; got != boot {
		t.Fatalf("rebooted (%s -> %s) before the budget allowed the eviction", boot, got)
	}
	b.MustKubectl("patch", "pdb", "cpu", "--type=merge", "-p", `{"spec":{"minAvailable":0}}`)
	WaitPolicy(t, b, "a", 180*time.Second, "converged after a reboot", Converged)
	for uid := range cpuPods {
		if podsRunningOn(t, b, "app=cpu")[uid] != "" {
			t.Errorf("the CPU workload's pod %s outlived the reboot: not evicted", uid)
		}
	}
	n := GetNode(t, b, "gpu-001")
	if n.Status.NodeInfo.BootID == boot {
		t.Errorf("node did not reboot")
	}
	if n.Annotations["gpumode.io/boot-id"] != n.Status.NodeInfo.BootID {
		t.Errorf("boot-id annotation %q, node bootID %q", n.Annotations["gpumode.io/boot-id"], n.Status.NodeInfo.BootID)
	}
}

// TestRebootWaitsForTheDriver: where the GPU Operator runs the driver in a
// container, a node is Ready after a reboot before its driver pod has
// loaded the driver, and nvidia-smi fails until then. The switch waits for
// that pod to be Ready, then lays the GPUs; an agent started at once would
// have failed on the missing driver and held the node.
func TestRebootWaitsForTheDriver(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "A100-SXM4-40GB", "--gpus-per-node", "2", "--driver-container")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	LabelNodes(t, b, "gpumode.io/mode=full", "gpu-001")
	FakeSMI(t, b, "gpu-001", "--fake-reset-unsupported", "all", "true")
	boot := GetNode(t, b, "gpu-001").Status.NodeInfo.BootID
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: mig
  mig: {layout: [{migDevices: {"3g.20gb": 2}}]}
  rollout: {allowReboot: true}
`)
	WaitPolicy(t, b, "a", 120*time.Second, "the wait for the driver pod", func(s *PolicyStatus) error {
		for _, n := range s.Nodes {
			if strings.Contains(n.Message, "waiting for the GPU driver pod gpu-operator/nvidia-driver-daemonset-") {
				return nil
			}
		}
		return fmt.Errorf("nodes %+v", s.Nodes)
	})
	if got := GetNode(t, b, "gpu-001").Status.NodeInfo.BootID; got == boot {
		t.Errorf("waiting for the driver pod before the node rebooted")
	}
	WaitPolicy(t, b, "a", 120*time.Second, "converged after the driver loaded", ConvergedOffering(t, b, "gpu-001", "nvidia.com/mig-3g.20gb", 4))
}

// TestRebootRelaysOutsideWindow: a mig node that reboots loses its layout
// (Hopper even its MIG mode: the plugin offers whole GPUs again). gpumode
// re-lays it at once, although the policy's window is closed: the reboot,
// not gpumode, took the node out of service.
func TestRebootRelaysOutsideWindow(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB", "--gpus-per-node", "2")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	LabelNodes(t, b, "gpumode.io/mode=full", "gpu-001")
	StartController(t, b)
	Apply(t, b, policyAMig1g)
	WaitPolicy(t, b, "a", 120*time.Second, "mig", Converged)
	// A window open only on the day after tomorrow: closed now.
	day := strings.ToLower(time.Now().UTC().AddDate(0, 0, 2).Weekday().String()[:3])
	PatchPolicy(t, b, "a", fmt.Sprintf(`{"spec":{"rollout":{"window":{"days":["%s"],"start":"00:00","end":"00:00"}}}}`, day))
	WaitPolicy(t, b, "a", 30*time.Second, "the window seen", Converged)
	boot := GetNode(t, b, "gpu-001").Status.NodeInfo.BootID
	if _, err := testbed(t, nil, "reboot", "--dir", b.Dir, "--down", "2s", "gpu-001"); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 120*time.Second, "the layout back after the reboot", func(context.Context) error {
		n := GetNode(t, b, "gpu-001")
		if n.Status.NodeInfo.BootID == boot || n.Annotations["gpumode.io/boot-id"] != n.Status.NodeInfo.BootID ||
			n.Spec.Unschedulable || Allocatable(n, "nvidia.com/mig-1g.10gb") != 14 || Allocatable(n, "nvidia.com/gpu") > 0 {
			return fmt.Errorf("bootID %s (was %s), annotation %s, unschedulable %v, 1g.10gb %d, gpu %d",
				n.Status.NodeInfo.BootID, boot, n.Annotations["gpumode.io/boot-id"], n.Spec.Unschedulable,
				Allocatable(n, "nvidia.com/mig-1g.10gb"), Allocatable(n, "nvidia.com/gpu"))
		}
		return nil
	})
}

// TestKillControllerInEveryPhase: SIGKILL the controller once in every
// phase it passes through; the switch completes, no agent step runs twice
// and nothing is left changed.
func TestKillControllerInEveryPhase(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	LabelNodes(t, b, "gpumode.io/mode=full", "gpu-001")
	before := GetNode(t, b, "gpu-001").Labels
	Apply(t, b, workload("job", 1, "{pool: a}"))
	Eventually(t, 60*time.Second, "workload running", func(ctx context.Context) error {
		if len(podsRunningOn(t, b, "app=job")) != 1 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	// Slow the hardware step so the controller can die in the middle of it.
	FakeSMI(t, b, "gpu-001", "--fake-inject", "--match", "-cgi", "--delay-ms", "3000", "--passthrough", "--times", "-1")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	// By UID: a helper deleted and made again has the same name (it names
	// the node, step, attempt and arguments), and would count once.
	helpers := map[types.UID]string{}
	var hmu sync.Mutex
	hw, err := b.CS.CoreV1().Pods("gpumode-system").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		for ev := range hw.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added {
				hmu.Lock()
				helpers[p.UID] = p.Name
				hmu.Unlock()
			}
		}
	}()
	ctl := StartController(t, b)
	Apply(t, b, policyAMig1g)
	killed := map[string]bool{}
	nw, err := b.CS.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", "gpu-001").String()})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.After(180 * time.Second)
loop:
	for {
		select {
		case ev := <-nw.ResultChan():
			n, ok := ev.Object.(*corev1.Node)
			if !ok {
				continue
			}
			rec := SwitchAnnotation(n)
			if rec == nil {
				if n.Labels["gpumode.io/mode"] == "mig" && n.Labels["gpumode.io/state"] == "ready" {
					break loop
				}
				continue
			}
			phase, _ := rec["phase"].(string)
			if !killed[phase] {
				killed[phase] = true
				t.Logf("killing the controller in phase %s", phase)
				ctl.Restart()
			}
		case <-deadline:
			st, _ := GetPolicyStatus(t, b, "a")
			pl, _ := b.CS.CoreV1().Pods("").List(ctx, metav1.ListOptions{})
			var pods []string
			for _, p := range pl.Items {
				pods = append(pods, fmt.Sprintf("%s/%s %s ready=%v deleting=%v", p.Namespace, p.Name, p.Status.Phase, runningReady(&p), p.DeletionTimestamp != nil))
			}
			n := GetNode(t, b, "gpu-001")
			t.Fatalf("switch did not complete; killed in %v\nstatus %+v\nallocatable %v\nlabels %v\npods:\n%s", killed, st, n.Status.Allocatable, n.Labels, strings.Join(pods, "\n"))
		}
	}
	t.Logf("killed in phases %v", killed)
	if len(killed) < 4 {
		t.Errorf("only %d phases seen: %v", len(killed), killed)
	}
	n := GetNode(t, b, "gpu-001")
	if n.Spec.Unschedulable {
		t.Errorf("node left cordoned")
	}
	// The operands stopped while the hardware changed are back as they
	// were, the mode's labels are set, nothing else changed.
	wantMode := modeLabels("mig", false)
	for k, v := range wantMode {
		if got := n.Labels[k]; got != v {
			t.Errorf("label %s %q, want %q", k, got, v)
		}
	}
	for k, v := range before {
		if _, modes := wantMode[k]; !modes && !switchOwnedLabel(k) && n.Labels[k] != v {
			t.Errorf("label %s changed %q -> %q", k, v, n.Labels[k])
		}
	}
	hmu.Lock()
	applies := 0
	for _, name := range helpers {
		if strings.Contains(name, "-apply-") {
			applies++
		}
	}
	hmu.Unlock()
	if applies != 1 {
		t.Errorf("%d apply helper pods were created, want 1: %v", applies, helpers)
	}
	if strings.Contains(ctl.Log(), "unreadable switch record") {
		t.Errorf("a restart could not read the record")
	}
}

// TestHelperPodSpec checks the helper pod as created: pinned, tolerating
// every taint, privileged, no shell, a deterministic name, cleaned up.
func TestHelperPodSpec(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	hw, err := b.CS.CoreV1().Pods("gpumode-system").Watch(ctx, metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan *corev1.Pod, 10)
	go func() {
		for ev := range hw.ResultChan() {
			if p, ok := ev.Object.(*corev1.Pod); ok && ev.Type == watch.Added {
				got <- p
			}
		}
	}()
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
`)
	var p *corev1.Pod
	select {
	case p = <-got:
	case <-time.After(90 * time.Second):
		t.Fatal("no helper pod")
	}
	if p.Spec.NodeName != "gpu-001" || p.Spec.RestartPolicy != corev1.RestartPolicyNever {
		t.Errorf("nodeName %q restartPolicy %q", p.Spec.NodeName, p.Spec.RestartPolicy)
	}
	if len(p.Spec.Tolerations) != 1 || p.Spec.Tolerations[0].Operator != corev1.TolerationOpExists || p.Spec.Tolerations[0].Key != "" {
		t.Errorf("tolerations %+v", p.Spec.Tolerations)
	}
	c := p.Spec.Containers[0]
	if c.SecurityContext == nil || c.SecurityContext.Privileged == nil || !*c.SecurityContext.Privileged {
		t.Errorf("helper is not privileged")
	}
	// The host's PID namespace, so nvidia-smi can name the processes on
	// a GPU (the driver reports host PIDs); no host network.
	if !p.Spec.HostPID || p.Spec.HostNetwork {
		t.Errorf("apply helper: hostPID %v (want true), hostNetwork %v (want false)", p.Spec.HostPID, p.Spec.HostNetwork)
	}
	if c.Command[0] != "gpumode-agent" || len(c.Args) != 0 {
		t.Errorf("command %v args %v", c.Command, c.Args)
	}
	for _, a := range c.Command {
		if a == "sh" || a == "/bin/sh" || a == "bash" || a == "-c" {
			t.Errorf("a shell in the command: %v", c.Command)
		}
	}
	if p.Spec.AutomountServiceAccountToken == nil || *p.Spec.AutomountServiceAccountToken {
		t.Errorf("helper mounts a service account token")
	}
	if !strings.HasPrefix(p.Name, "gpumode-gpu-001-apply-") {
		t.Errorf("name %q", p.Name)
	}
	WaitPolicy(t, b, "a", 120*time.Second, "converged", Converged)
	Eventually(t, 30*time.Second, "helper pods cleaned up", func(ctx context.Context) error {
		pl, err := b.CS.CoreV1().Pods("gpumode-system").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		if len(pl.Items) > 0 {
			return fmt.Errorf("%d left", len(pl.Items))
		}
		return nil
	})
}

// TestRollbackRestoresMigLayout: leaving MIG fails; the rollback puts back
// the very layout the node had (read by a probe before the change).
func TestRollbackRestoresMigLayout(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: mig
  mig: {layout: [{devices: [0, 1], migDevices: {"1g.10gb": 7}}, {migDevices: {"3g.40gb": 2}}]}
`)
	WaitPolicy(t, b, "a", 90*time.Second, "mig", Converged)
	n := GetNode(t, b, "gpu-001")
	small, big := Allocatable(n, "nvidia.com/mig-1g.10gb"), Allocatable(n, "nvidia.com/mig-3g.40gb")
	if small != 14 || big != 12 {
		t.Fatalf("layout: 1g.10gb=%d 3g.40gb=%d", small, big)
	}
	FakeSMI(t, b, "gpu-001", "--fake-inject", "--match", "-mig 0", "--exit", "255", "--times", "1",
		"--stdout", "Unable to disable MIG Mode for GPU 00000000:07:00.0: Unknown Error\n")
	PatchPolicy(t, b, "a", `{"spec":{"mode":"full","mig":null}}`)
	WaitPolicy(t, b, "a", 120*time.Second, "failure and rollback", func(s *PolicyStatus) error {
		n := GetNode(t, b, "gpu-001")
		if s.Summary.Failed != 1 || n.Spec.Unschedulable {
			return fmt.Errorf("summary %+v unschedulable %v", s.Summary, n.Spec.Unschedulable)
		}
		return nil
	})
	n = GetNode(t, b, "gpu-001")
	if got := [2]int64{Allocatable(n, "nvidia.com/mig-1g.10gb"), Allocatable(n, "nvidia.com/mig-3g.40gb")}; got != [2]int64{14, 12} {
		t.Errorf("after rollback: 1g.10gb=%d 3g.40gb=%d, want 14 and 12", got[0], got[1])
	}
	if n.Labels["gpumode.io/mode"] != "mig" || n.Labels["gpumode.io/state"] != "failed" {
		t.Errorf("labels mode=%q state=%q", n.Labels["gpumode.io/mode"], n.Labels["gpumode.io/state"])
	}
}

// TestRollbackToSingleStrategy: a node in mig under the single strategy
// (its plugin offers the instances as nvidia.com/gpu) whose switch to full
// fails once the instances are gone is laid back and verified under the
// strategy it had, not the switch's: it ends back in mig, held as failed
// and uncordoned, rather than cordoned waiting for nvidia.com/mig-1g.10gb.
func TestRollbackToSingleStrategy(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: mig
  mig: {strategy: single, layout: [{migDevices: {"1g.10gb": 7}}]}
`)
	WaitPolicy(t, b, "a", 90*time.Second, "mig single", Converged)
	if got := Allocatable(GetNode(t, b, "gpu-001"), "nvidia.com/gpu"); got != 56 {
		t.Fatalf("single 1g.10gb: nvidia.com/gpu=%d, want 56", got)
	}
	FakeSMI(t, b, "gpu-001", "--fake-inject", "--match", "-mig 0", "--exit", "255", "--times", "1",
		"--stdout", "Unable to disable MIG Mode for GPU 00000000:07:00.0: Unknown Error\n")
	PatchPolicy(t, b, "a", `{"spec":{"mode":"full","mig":null}}`)
	WaitPolicy(t, b, "a", 120*time.Second, "failure and rollback", func(s *PolicyStatus) error {
		n := GetNode(t, b, "gpu-001")
		rec := SwitchAnnotation(n)
		if s.Summary.Failed != 1 || n.Spec.Unschedulable || rec == nil || rec["rollingBack"] == true {
			return fmt.Errorf("summary %+v unschedulable %v record %v", s.Summary, n.Spec.Unschedulable, rec)
		}
		return nil
	})
	n := GetNode(t, b, "gpu-001")
	if got := Allocatable(n, "nvidia.com/gpu"); got != 56 {
		t.Errorf("after rollback: nvidia.com/gpu=%d, want 56", got)
	}
	if n.Labels["gpumode.io/mode"] != "mig" || n.Labels["gpumode.io/state"] != "failed" || n.Labels["nvidia.com/device-plugin.config"] != "single" {
		t.Errorf("labels mode=%q state=%q device-plugin.config=%q", n.Labels["gpumode.io/mode"], n.Labels["gpumode.io/state"], n.Labels["nvidia.com/device-plugin.config"])
	}
}

// hamiSplit is gpu-001's devicesplitcount in HAMi's per-node ConfigMap, 0
// without an entry.
func hamiSplit(t *testing.T, b *Bed) int {
	t.Helper()
	cm, err := b.CS.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "hami-device-plugin", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		NodeConfig []struct {
			Name  string `json:"name"`
			Split int    `json:"devicesplitcount"`
		} `json:"nodeconfig"`
	}
	if err := json.Unmarshal([]byte(cm.Data["config.json"]), &cfg); err != nil {
		t.Fatalf("HAMi's config.json: %v", err)
	}
	for _, e := range cfg.NodeConfig {
		if e.Name == "gpu-001" {
			return e.Split
		}
	}
	return 0
}

// TestRollbackPutsHAMiEntryBack: a vgpu node switched to another split
// whose HAMi plugin does not come back fails and rolls back; the rollback
// puts the node's entry in HAMi's ConfigMap back to the split the node
// was verified with, for the old clients to read when they start.
func TestRollbackPutsHAMiEntryBack(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	AppendControllerConfig(t, b, "clientsTimeoutSeconds: 10\n")
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
  vgpu: {splitCount: 10}
`)
	WaitPolicy(t, b, "a", 90*time.Second, "vgpu", Converged)
	if got := hamiSplit(t, b); got != 10 {
		t.Fatalf("HAMi entry split %d, want 10", got)
	}
	// HAMi's plugin can no longer start on the node.
	b.MustKubectl("patch", "daemonset", "-n", "kube-system", "hami-device-plugin", "--type=merge", "-p",
		`{"spec":{"template":{"spec":{"nodeSelector":{"no-such-label":"x"}}}}}`)
	PatchPolicy(t, b, "a", `{"spec":{"vgpu":{"splitCount":4}}}`)
	WaitPolicy(t, b, "a", 120*time.Second, "the switch to fail", func(s *PolicyStatus) error {
		rec := SwitchAnnotation(GetNode(t, b, "gpu-001"))
		if s.Summary.Failed != 1 || rec == nil || rec["phase"] != "Failed" {
			return fmt.Errorf("summary %+v record %v", s.Summary, rec)
		}
		return nil
	})
	rec := SwitchAnnotation(GetNode(t, b, "gpu-001"))
	if rec["reason"] != "PluginNotReady" {
		t.Errorf("switch record %v, want reason PluginNotReady", rec)
	}
	if got := hamiSplit(t, b); got != 10 {
		t.Errorf("after the rollback HAMi's entry has split %d, want 10 (what the node was verified with)", got)
	}
}

// hamiEntry is node's only entry in HAMi's per-node ConfigMap, decoded,
// or nil; two entries of the node fail the test.
func hamiEntry(t *testing.T, b *Bed, node string) map[string]any {
	t.Helper()
	cm, err := b.CS.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "hami-device-plugin", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		NodeConfig []map[string]any `json:"nodeconfig"`
	}
	if err := json.Unmarshal([]byte(cm.Data["config.json"]), &cfg); err != nil {
		t.Fatalf("HAMi's config.json: %v", err)
	}
	var out map[string]any
	for _, e := range cfg.NodeConfig {
		if e["name"] == node {
			if out != nil {
				t.Fatalf("%s named twice in HAMi's config: %s", node, cm.Data["config.json"])
			}
			out = e
		}
	}
	return out
}

// TestHAMiEntryKeepsOthersKeys: a person left a GPU out of HAMi on two
// nodes (by index on one, by uuid on the other) in the nodes' entries. A
// vgpu switch writes its split into those entries and keeps the rest;
// verification counts the vGPUs of the GPUs HAMi serves, and the
// ConfigMap's gpumode.io/hami-nodes names the nodes whose entries hold
// gpumode's keys. A third node's entry goes when the node is deleted. The
// second node is deleted while no controller runs: the next one takes
// gpumode's keys out of its entry, and leaves the entry of a node to come
// that a person wrote. A later policy with HAMi's defaults takes out only
// what gpumode wrote.
func TestHAMiEntryKeepsOthersKeys(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "3", "--gpu-model", "L40S", "--gpus-per-node", "4")
	installManifests(t, b) // their RBAC: the sweep may only list nodes
	LabelNodes(t, b, "pool=a", "gpu-001", "gpu-002", "gpu-003")
	uuids := strings.Fields(FakeSMI(t, b, "gpu-002", "--query-gpu=uuid", "--format=csv,noheader"))
	if len(uuids) != 4 {
		t.Fatalf("gpu-002's uuids: %q", uuids)
	}
	config, _ := json.Marshal(map[string]any{"nodeconfig": []any{
		map[string]any{"name": "gpu-001", "migstrategy": "none", "filterdevices": map[string]any{"index": []int{1}}},
		map[string]any{"name": "gpu-002", "filterdevices": map[string]any{"uuid": []string{uuids[3]}}},
		map[string]any{"name": "gpu-009", "devicesplitcount": 2},
	}})
	patch, _ := json.Marshal(map[string]any{"data": map[string]string{"config.json": string(config)}})
	b.MustKubectl("-n", "kube-system", "patch", "configmap", "hami-device-plugin", "--type=merge", "-p", string(patch))
	c := startControllerAsSA(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
  vgpu: {splitCount: 5}
  rollout: {maxUnavailable: 3}
`)
	// 3 GPUs served x 5 on each node.
	WaitPolicy(t, b, "a", 120*time.Second, "vgpu with a GPU left out", func(s *PolicyStatus) error {
		for _, n := range []string{"gpu-001", "gpu-002"} {
			if got := Allocatable(GetNode(t, b, n), "nvidia.com/vgpu"); got != 15 {
				return fmt.Errorf("%s: nvidia.com/vgpu=%d, want 15", n, got)
			}
		}
		return Converged(s)
	})
	e := hamiEntry(t, b, "gpu-001")
	if e["devicesplitcount"] != float64(5) || e["migstrategy"] != "none" || fmt.Sprint(e["filterdevices"]) != "map[index:[1]]" {
		t.Errorf("gpu-001's entry after the switch: %v", e)
	}
	if e := hamiEntry(t, b, "gpu-002"); e["devicesplitcount"] != float64(5) || fmt.Sprint(e["filterdevices"]) != fmt.Sprintf("map[uuid:[%s]]", uuids[3]) {
		t.Errorf("gpu-002's entry after the switch: %v", e)
	}
	if e := hamiEntry(t, b, "gpu-003"); e["devicesplitcount"] != float64(5) {
		t.Errorf("gpu-003's entry after the switch: %v", e)
	}

	if got := hamiMarks(t, b); got != "gpu-001,gpu-002,gpu-003" {
		t.Errorf("gpumode.io/hami-nodes after the switches: %q", got)
	}

	// gpu-003 is scaled away: what gpumode wrote for it goes (here its
	// whole entry), the others' stay.
	b.MustKubectl("delete", "node", "gpu-003")
	Eventually(t, 30*time.Second, "gpu-003's entry gone", func(ctx context.Context) error {
		if e := hamiEntry(t, b, "gpu-003"); e != nil {
			return fmt.Errorf("gpu-003's entry: %v", e)
		}
		if got := hamiMarks(t, b); got != "gpu-001,gpu-002" {
			return fmt.Errorf("gpumode.io/hami-nodes: %q", got)
		}
		return nil
	})
	if e := hamiEntry(t, b, "gpu-001"); e["devicesplitcount"] != float64(5) {
		t.Errorf("gpu-001's entry after gpu-003 went: %v", e)
	}

	// gpu-002 goes while no controller runs: no watch sees it go. The
	// next controller finds it marked and not in the cluster.
	c.Stop()
	b.MustKubectl("delete", "node", "gpu-002")
	c.start()
	Eventually(t, 60*time.Second, "gpumode's keys out of gpu-002's entry", func(ctx context.Context) error {
		e := hamiEntry(t, b, "gpu-002")
		if len(e) != 2 || fmt.Sprint(e["filterdevices"]) != fmt.Sprintf("map[uuid:[%s]]", uuids[3]) {
			return fmt.Errorf("gpu-002's entry: %v", e)
		}
		if got := hamiMarks(t, b); got != "gpu-001" {
			return fmt.Errorf("gpumode.io/hami-nodes: %q", got)
		}
		return nil
	})
	if e := hamiEntry(t, b, "gpu-009"); e["devicesplitcount"] != float64(2) {
		t.Errorf("the entry a person wrote for gpu-009, a node to come: %v", e)
	}
	if e := hamiEntry(t, b, "gpu-001"); e["devicesplitcount"] != float64(5) {
		t.Errorf("gpu-001's entry after gpu-002 went: %v", e)
	}

	PatchPolicy(t, b, "a", `{"spec":{"vgpu":null}}`)
	WaitPolicy(t, b, "a", 120*time.Second, "HAMi's defaults", func(s *PolicyStatus) error {
		node := GetNode(t, b, "gpu-001")
		if got := Allocatable(node, "nvidia.com/vgpu"); got != 30 || node.Annotations["gpumode.io/settings"] != "{}" {
			return fmt.Errorf("gpu-001: nvidia.com/vgpu=%d (want 30) settings %q", got, node.Annotations["gpumode.io/settings"])
		}
		return Converged(s)
	})
	e = hamiEntry(t, b, "gpu-001")
	if fmt.Sprint(e) != "map[filterdevices:map[index:[1]] migstrategy:none name:gpu-001]" {
		t.Errorf("gpu-001's entry with HAMi's defaults: %v", e)
	}
	// No entry holds gpumode's keys now: the annotation goes.
	if got, ok := hamiMarksSet(t, b); ok {
		t.Errorf("gpumode.io/hami-nodes with no entry of gpumode's: %q", got)
	}
}

// hamiMarks is HAMi's ConfigMap's gpumode.io/hami-nodes annotation.
func hamiMarks(t *testing.T, b *Bed) string {
	t.Helper()
	v, _ := hamiMarksSet(t, b)
	return v
}

// hamiMarksSet is the annotation, and whether it is there.
func hamiMarksSet(t *testing.T, b *Bed) (string, bool) {
	t.Helper()
	cm, err := b.CS.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "hami-device-plugin", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	v, ok := cm.Annotations["gpumode.io/hami-nodes"]
	return v, ok
}

// TestGPUUseWithoutRequestIsDrained: a pod that asks for no GPU resource
// but names the GPUs to the NVIDIA runtime (NVIDIA_VISIBLE_DEVICES=all in
// its spec) holds them all. gpuPodsOnly drains it like a pod that asks,
// rather than leaving it for the agent to find the GPUs busy.
func TestGPUUseWithoutRequestIsDrained(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "L40S", "--gpus-per-node", "2")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	Apply(t, b, `
apiVersion: apps/v1
kind: Deployment
metadata: {name: smi, namespace: default}
spec:
  replicas: 1
  selector: {matchLabels: {app: smi}}
  template:
    metadata: {labels: {app: smi}}
    spec:
      terminationGracePeriodSeconds: 1
      nodeSelector: {pool: a}
      containers:
      - name: c
        image: registry.example/cuda-tools:1
        env: [{name: NVIDIA_VISIBLE_DEVICES, value: all}]
`)
	var before map[string]string
	// The simulated kubelet starts the processes just after the status.
	Eventually(t, 60*time.Second, "the pod running on both GPUs", func(ctx context.Context) error {
		before = podsRunningOn(t, b, "app=smi")
		if len(before) != 1 {
			return fmt.Errorf("running: %v", before)
		}
		if out := FakeSMI(t, b, "gpu-001", "--query-compute-apps=pid", "--format=csv,noheader"); len(strings.Fields(out)) != 2 {
			return fmt.Errorf("the pod's processes on gpu-001's GPUs: %q, want one on each of 2", out)
		}
		return nil
	})
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
`)
	WaitPolicy(t, b, "a", 120*time.Second, "vgpu", ConvergedOffering(t, b, "gpu-001", "nvidia.com/vgpu", 20))
	for uid := range before {
		if _, ok := podsRunningOn(t, b, "app=smi")[uid]; ok {
			t.Errorf("the pod naming every GPU outlived the switch")
		}
	}
}

// TestGPUsWithoutMIG: L40S nodes, whose nvidia-smi prints [N/A] for every
// MIG field, switch between full and vgpu like any other; a mig policy
// for them is Stalled, names the model, and touches no node.
func TestGPUsWithoutMIG(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "2", "--gpu-model", "L40S", "--gpus-per-node", "4")
	InstallGpumode(t, b)
	if l := GetNode(t, b, "gpu-001").Labels; l["nvidia.com/mig.capable"] != "false" || l["nvidia.com/gpu.product"] != "NVIDIA-L40S" {
		t.Fatalf("the bed's L40S node: mig.capable %q, product %q", l["nvidia.com/mig.capable"], l["nvidia.com/gpu.product"])
	}
	LabelNodes(t, b, "pool=a", "gpu-001", "gpu-002")
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
  vgpu: {splitCount: 5}
  rollout: {maxUnavailable: 2}
`)
	WaitPolicy(t, b, "a", 120*time.Second, "vgpu on L40S", ConvergedOffering(t, b, "gpu-001", "nvidia.com/vgpu", 20))

	Apply(t, b, policyAMig1g)
	WaitPolicy(t, b, "a", 60*time.Second, "a mig policy refused", func(s *PolicyStatus) error {
		st, reason, msg := s.Cond("Stalled")
		if st != "True" || reason != "InvalidLayout" || !strings.Contains(msg, "NVIDIA-L40S is not known to support MIG") {
			return fmt.Errorf("Stalled=%s %s %q", st, reason, msg)
		}
		return nil
	})
	for _, name := range []string{"gpu-001", "gpu-002"} {
		n := GetNode(t, b, name)
		if SwitchAnnotation(n) != nil || n.Spec.Unschedulable || n.Labels["gpumode.io/mode"] != "vgpu" {
			t.Errorf("%s touched by a mig policy for GPUs without MIG: mode %q record %v", name, n.Labels["gpumode.io/mode"], SwitchAnnotation(n))
		}
	}

	Apply(t, b, policyAFull)
	WaitPolicy(t, b, "a", 120*time.Second, "full on L40S", ConvergedOffering(t, b, "gpu-002", "nvidia.com/gpu", 4))
}

// TestDriverReloadIsNamed: the driver of a Hopper node in mig is loaded
// again (its container restarted), the node not rebooted: the GPUs come
// back with MIG off and no instances under the same boot ID, so nothing
// says the layout is lost. Once the device plugin restarts, as the GPU
// Operator restarts it after a driver reload, the node offers whole GPUs
// and the policy names it; annotating it settings=unknown lays it again.
func TestDriverReloadIsNamed(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB", "--gpus-per-node", "2")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	differ := startForDrift(t, b)
	Apply(t, b, policyAMig1g)
	WaitPolicy(t, b, "a", 90*time.Second, "mig with 1g.10gb", ConvergedOffering(t, b, "gpu-001", "nvidia.com/mig-1g.10gb", 14))
	boot := GetNode(t, b, "gpu-001").Status.NodeInfo.BootID

	FakeSMI(t, b, "gpu-001", "--fake-driver", "unloaded")
	FakeSMI(t, b, "gpu-001", "--fake-driver", "loaded")
	b.MustKubectl("delete", "pod", "-n", "gpu-operator", "-l", "app=nvidia-device-plugin-daemonset", "--field-selector", "spec.nodeName=gpu-001")
	WaitPolicy(t, b, "a", 90*time.Second, "the node named", func(s *PolicyStatus) error {
		_, _, msg := s.Cond("Ready")
		if !strings.Contains(msg, "1 node advertises other GPU resources than it was verified with") ||
			!strings.Contains(msg, "gpu-001 offers nvidia.com/gpu=2, verified with nvidia.com/mig-1g.10gb=14") {
			return fmt.Errorf("Ready message %q", msg)
		}
		return nil
	})
	if got := GetNode(t, b, "gpu-001").Status.NodeInfo.BootID; got != boot {
		t.Fatalf("the boot ID changed (%s -> %s): a reboot, not a driver reload", boot, got)
	}
	waitDiffer(t, differ, "1")

	b.MustKubectl("annotate", "--overwrite", "node", "gpu-001", "gpumode.io/settings=unknown")
	WaitPolicy(t, b, "a", 90*time.Second, "laid again", ConvergedOffering(t, b, "gpu-001", "nvidia.com/mig-1g.10gb", 14))
}

// TestHelperDeadlineWhileNoController: the controller dies while an apply
// pod's nvidia-smi is creating instances, and stays away past the pod's
// activeDeadlineSeconds (helperTimeoutSeconds). The kubelet stops the pod,
// and the nvidia-smi the agent started goes with its container; the pod
// is Failed with reason DeadlineExceeded. The controller that comes back
// names that (HelperTimeout) rather than reporting an agent failure with
// no result, and rolls the node back.
func TestHelperDeadlineWhileNoController(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "A100-SXM4-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	LabelNodes(t, b, "gpumode.io/mode=full", "gpu-001")
	AppendControllerConfig(t, b, "helperTimeoutSeconds: 30\n")
	FakeSMI(t, b, "gpu-001", "--fake-inject", "--match", "-cgi", "--delay-ms", "45000", "--passthrough", "--times", "-1")
	ctl := StartController(t, b)
	Apply(t, b, policyAMig1g)
	var apply string
	Eventually(t, 90*time.Second, "the agent creating instances", func(ctx context.Context) error {
		pl, err := b.CS.CoreV1().Pods("gpumode-system").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, p := range pl.Items {
			if strings.Contains(p.Name, "-apply-") && p.Status.Phase == corev1.PodRunning {
				apply = p.Name
			}
		}
		if apply == "" || len(fakeSMIRunning(b, "-cgi")) == 0 {
			return fmt.Errorf("apply pod %q, no nvidia-smi -cgi running", apply)
		}
		return nil
	})
	ctl.Kill()
	waitDeadlineExceeded(t, b, apply)
	if pids := fakeSMIRunning(b, "-cgi"); len(pids) > 0 {
		t.Errorf("nvidia-smi -cgi still running (pids %v) after its pod's container stopped", pids)
	}
	FakeSMI(t, b, "gpu-001", "--fake-clear-faults")
	ctl.Restart()
	waitRolledBackToFull(t, b)
	rec := SwitchAnnotation(GetNode(t, b, "gpu-001"))
	if rec == nil || rec["reason"] != "HelperTimeout" || !strings.Contains(fmt.Sprint(rec["message"]), "activeDeadlineSeconds") {
		t.Errorf("switch record %v, want HelperTimeout naming activeDeadlineSeconds", rec)
	}
	if log := FakeSMI(t, b, "gpu-001", "--fake-log"); strings.Contains(log, "-cgi") {
		t.Errorf("an instance create ran after its agent was stopped:\n%s", log)
	}
}

// TestAgentKilledMidwayQuotesItsLog: the agent is killed (SIGKILL, as
// the OOM killer would) while its nvidia-smi creates instances. It leaves
// no result, so the kubelet hands out the tail of its log as the
// container's termination message (the helper pod's
// FallbackToLogsOnError), and the switch fails with AgentFailed quoting
// the last nvidia-smi commands the agent ran (its log lines, on one
// line); the node, whose GPUs may have changed, is rolled back to full.
func TestAgentKilledMidwayQuotesItsLog(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "A100-SXM4-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	LabelNodes(t, b, "gpumode.io/mode=full", "gpu-001")
	FakeSMI(t, b, "gpu-001", "--fake-inject", "--match", "-cgi", "--delay-ms", "60000", "--passthrough", "--times", "-1")
	StartController(t, b)
	Apply(t, b, policyAMig1g)
	var agent int
	Eventually(t, 90*time.Second, "the agent creating instances", func(ctx context.Context) error {
		for _, pid := range fakeSMIRunning(b, "-cgi") {
			if ppid := parentOf(pid); ppid > 0 && strings.Contains(cmdlineOf(ppid), "gpumode-agent") {
				agent = ppid
				return nil
			}
		}
		return fmt.Errorf("no gpumode-agent running nvidia-smi -cgi")
	})
	if err := syscall.Kill(agent, syscall.SIGKILL); err != nil {
		t.Fatalf("kill agent %d: %v", agent, err)
	}
	FakeSMI(t, b, "gpu-001", "--fake-clear-faults")
	waitRolledBackToFull(t, b)
	rec := SwitchAnnotation(GetNode(t, b, "gpu-001"))
	msg := fmt.Sprint(rec["message"])
	if rec == nil || rec["reason"] != "AgentFailed" || !strings.Contains(msg, "the agent left no result; its container said: ") ||
		!strings.Contains(msg, `msg="nvidia-smi mig -lgip: exit 0"`) || strings.Contains(msg, "\n") {
		t.Errorf("switch record %v, want AgentFailed quoting the agent's log on one line", rec)
	}
}

// waitRolledBackToFull waits for policy a to count gpu-001 failed, the
// node rolled back to full: uncordoned, its 8 GPUs offered.
func waitRolledBackToFull(t *testing.T, b *Bed) {
	t.Helper()
	WaitPolicy(t, b, "a", 120*time.Second, "failure and rollback", func(s *PolicyStatus) error {
		n := GetNode(t, b, "gpu-001")
		if s.Summary.Failed != 1 || n.Spec.Unschedulable || Allocatable(n, "nvidia.com/gpu") != 8 {
			return fmt.Errorf("summary %+v unschedulable %v gpus %d", s.Summary, n.Spec.Unschedulable, Allocatable(n, "nvidia.com/gpu"))
		}
		return nil
	})
}

// parentOf returns the parent process of pid, or 0.
func parentOf(pid int) int {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// The command (field 2) may hold spaces; fields after its ')' are plain.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 2 {
		return 0
	}
	ppid, _ := strconv.Atoi(f[1])
	return ppid
}

// cmdlineOf returns pid's arguments joined by spaces.
func cmdlineOf(pid int) string {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	return strings.ReplaceAll(string(raw), "\x00", " ")
}

// waitDeadlineExceeded waits for the kubelet to fail helper pod name at
// its activeDeadlineSeconds.
func waitDeadlineExceeded(t *testing.T, b *Bed, name string) {
	t.Helper()
	Eventually(t, 60*time.Second, "the kubelet to fail "+name+" at its deadline", func(ctx context.Context) error {
		p, err := b.CS.CoreV1().Pods("gpumode-system").Get(ctx, name, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if p.Status.Phase != corev1.PodFailed || p.Status.Reason != "DeadlineExceeded" {
			return fmt.Errorf("phase %s reason %q", p.Status.Phase, p.Status.Reason)
		}
		return nil
	})
}

// fakeSMIRunning lists the fake nvidia-smi processes of bed b whose
// arguments include arg.
func fakeSMIRunning(b *Bed, arg string) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		env, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "environ"))
		args := strings.Split(string(cmdline), "\x00")
		if len(args) == 0 || filepath.Base(args[0]) != "nvidia-smi" || !strings.Contains(string(env), b.Dir) {
			continue
		}
		for _, a := range args[1:] {
			if a == arg {
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}
