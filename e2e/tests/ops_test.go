package tests

// End-to-end tests of running gpumode in production (issue 6): the install
// manifests and their RBAC, leader election, metrics, events, SIGTERM.

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"gpumode.io/e2e/internal/pki"
)

const saUser = "system:serviceaccount:gpumode-system:gpumode-controller"

// TestManifestsAndRBAC installs with kubectl apply -k, runs the controller
// with exactly the ServiceAccount's token, and checks what it may not do.
func TestManifestsAndRBAC(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "2", "--gpu-model", "H100-80GB", "--limit-critical-pods")
	installManifests(t, b)

	can := func(args ...string) bool {
		out, _ := b.Kubectl(append([]string{"auth", "can-i", "--as=" + saUser}, args...)...)
		return strings.TrimSpace(out) == "yes"
	}
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"get", "configmaps/device-plugin-config", "-n", "gpu-operator"}, false},
		{[]string{"get", "secrets", "-n", "gpumode-system"}, false},
		{[]string{"list", "secrets", "-A"}, false},
		{[]string{"create", "pods", "-n", "default"}, false},
		{[]string{"delete", "pods", "-n", "default"}, false},
		{[]string{"create", "pods", "-n", "gpumode-system"}, true},
		{[]string{"create", "pods", "--subresource=eviction", "-n", "default"}, true},
		{[]string{"delete", "deployments", "-n", "default"}, false},
		{[]string{"patch", "deployments", "-n", "default"}, false},
		{[]string{"update", "nodes"}, false},
		{[]string{"patch", "nodes"}, true},
		{[]string{"patch", "gpumodepolicies.gpumode.io", "--subresource=status"}, true},
		{[]string{"patch", "gpumodepolicies.gpumode.io"}, false},
		{[]string{"delete", "gpumodepolicies.gpumode.io"}, false},
		// mig-parted's layouts are read, never written (mig-manager applies
		// them on the nodes gpumode does not manage).
		{[]string{"watch", "configmaps/default-mig-parted-config", "-n", "gpu-operator"}, true},
		{[]string{"patch", "configmaps/default-mig-parted-config", "-n", "gpu-operator"}, false},
		{[]string{"patch", "configmaps/hami-device-plugin", "-n", "kube-system"}, true},
		{[]string{"update", "configmaps/hami-device-plugin", "-n", "kube-system"}, false},
		{[]string{"update", "gpumodepolicies.gpumode.io", "--subresource=status"}, false},
		// Events of cluster-scoped objects live in default, and only there.
		{[]string{"create", "events.events.k8s.io", "-n", "default"}, true},
		{[]string{"create", "events.events.k8s.io", "-n", "kube-system"}, false},
	} {
		if got := can(c.args...); got != c.want {
			t.Errorf("can-i %v: %v, want %v", c.args, got, c.want)
		}
	}

	// This bed's API server admits system-node-critical pods only under a
	// quota for that class, as GKE does; the manifests ship one for
	// gpumode-system, so the helper pods below are admitted there.
	crit := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{Name: "critical", Namespace: "default"},
		Spec: corev1.PodSpec{PriorityClassName: "system-node-critical", Containers: []corev1.Container{{Name: "c", Image: "x"}}}}
	if _, err := b.CS.CoreV1().Pods("default").Create(context.Background(), crit, metav1.CreateOptions{}); err == nil ||
		!strings.Contains(err.Error(), "insufficient quota to match these scopes") {
		t.Errorf("a system-node-critical pod outside a quota for it: %v", err)
	}

	LabelNodes(t, b, "pool=a", "gpu-001")
	// A GPU workload behind a budget: eviction and the budget watch run
	// with the ServiceAccount's rights too.
	Apply(t, b, workload("rbac", 1, "{kubernetes.io/hostname: gpu-001}"))
	Apply(t, b, fmt.Sprintf(pdb, "rbac", 1))
	Eventually(t, 60*time.Second, "workload running", func(ctx context.Context) error {
		if len(podsRunningOn(t, b, "app=rbac")) != 1 {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	before := podsRunningOn(t, b, "app=rbac")
	AppendControllerConfig(t, b, "devicePluginConfigMap: {namespace: gpu-operator, name: device-plugin-config}\n")
	c := startControllerAsSA(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: mig
  mig: {config: all-1g.10gb}
`)
	// devicePluginConfigMap is set but its Role not applied yet: the
	// controller may not read it. Planning goes on; the switch that needs a
	// config waits and the status says why.
	WaitPolicy(t, b, "a", 60*time.Second, "the unreadable ConfigMap named", func(s *PolicyStatus) error {
		st, reason, msg := s.Cond("Stalled")
		if st != "True" || reason != "InvalidPluginConfig" || !strings.Contains(msg, "ConfigMap gpu-operator/device-plugin-config could not be read") {
			return fmt.Errorf("Stalled=%s %s %q", st, reason, msg)
		}
		return nil
	})
	if n := GetNode(t, b, "gpu-001"); SwitchAnnotation(n) != nil || n.Spec.Unschedulable {
		t.Fatalf("switched without its device plugin config checked: %v", SwitchAnnotation(n))
	}
	// The Role for devicePluginConfigMap ships commented out (its name is
	// the cluster's): uncommented as the file says, it applies and grants
	// reading that one ConfigMap.
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "manifests", "rbac.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	_, block, ok := strings.Cut(string(raw), "# devicePluginConfigMap is set in controller.yaml")
	if !ok {
		t.Fatal("rbac.yaml: the devicePluginConfigMap Role is gone")
	}
	var yaml []string
	for _, l := range strings.Split(block, "\n") {
		if strings.HasPrefix(l, "# ") && !strings.Contains(l, "namespace and name set there") {
			yaml = append(yaml, strings.TrimPrefix(l, "# "))
		}
	}
	rbacFile := filepath.Join(b.Dir, "plugin-config-rbac.yaml")
	if err := os.WriteFile(rbacFile, []byte(strings.Join(yaml, "\n")+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	b.MustKubectl("apply", "-f", rbacFile)
	for _, c := range []struct {
		args []string
		want bool
	}{
		{[]string{"list", "configmaps/device-plugin-config", "-n", "gpu-operator"}, true},
		{[]string{"watch", "configmaps/device-plugin-config", "-n", "gpu-operator"}, true},
		{[]string{"get", "configmaps/device-plugin-config", "-n", "gpu-operator"}, false},
		{[]string{"update", "configmaps/device-plugin-config", "-n", "gpu-operator"}, false},
		{[]string{"get", "configmaps/other", "-n", "gpu-operator"}, false},
	} {
		if got := can(c.args...); got != c.want {
			t.Errorf("with the device plugin config Role, can-i %v: %v, want %v", c.args, got, c.want)
		}
	}
	// The list is retried with backoff (at most 30 s apart). The drain
	// then waits on the budget until it allows the eviction.
	waitDrainOnBudget(t, b, "a")
	b.MustKubectl("patch", "pdb", "rbac", "--type=merge", "-p", `{"spec":{"minAvailable":0}}`)
	WaitPolicy(t, b, "a", 120*time.Second, "a switch with the ServiceAccount's rights", Converged)
	now := podsRunningOn(t, b, "app=rbac")
	for uid := range before {
		if now[uid] != "" {
			t.Errorf("the workload pod %s was not evicted", uid)
		}
	}
	// The only permission errors are the device plugin ConfigMap's, before
	// its Role.
	for _, l := range strings.Split(c.Log(), "\n") {
		if (strings.Contains(l, "Forbidden") || strings.Contains(l, " 403 ")) && !strings.Contains(l, "device-plugin-config") {
			t.Errorf("the controller hit a permission error: %s", l)
		}
	}
}

func freePort(t *testing.T) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func httpGet(url string) (int, string) {
	resp, err := http.Get(url)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// TestLeaderElectionMetricsEvents: two replicas, one acts; killing the
// leader mid-switch hands over within 20 s and the switch completes. Metrics
// pass promtool, events name the switch, SIGTERM releases the lease.
func TestLeaderElectionMetricsEvents(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "2", "--gpu-model", "A100-SXM4-80GB")
	// With the manifests' RBAC: the Lease rules are part of what is tested.
	installManifests(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001", "gpu-002")
	LabelNodes(t, b, "gpumode.io/mode=full", "gpu-001", "gpu-002")
	// Slow the hardware step so the leader dies in the middle of a switch.
	for _, n := range []string{"gpu-001", "gpu-002"} {
		FakeSMI(t, b, n, "--fake-inject", "--match", "-cgi", "--delay-ms", "4000", "--passthrough", "--times", "-1")
	}
	p1, p2 := freePort(t), freePort(t)
	c1 := startControllerAsSA(t, b, "--leader-elect", "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", p1), "--health-addr", fmt.Sprintf("127.0.0.1:%d", p1))
	Eventually(t, 30*time.Second, "first replica leads", func(ctx context.Context) error {
		l, err := b.CS.CoordinationV1().Leases("gpumode-system").Get(ctx, "gpumode-controller", metav1.GetOptions{})
		if err != nil || l.Spec.HolderIdentity == nil || *l.Spec.HolderIdentity == "" {
			return fmt.Errorf("no holder yet")
		}
		return nil
	})
	c2 := startControllerAsSA(t, b, "--leader-elect", "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", p2), "--health-addr", fmt.Sprintf("127.0.0.1:%d", p2))
	Eventually(t, 30*time.Second, "both replicas ready", func(ctx context.Context) error {
		for _, p := range []int{p1, p2} {
			if code, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/readyz", p)); code != 200 {
				return fmt.Errorf("readyz %d: %s", code, body)
			}
		}
		return nil
	})
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: mig
  mig: {config: all-1g.10gb}
`)
	Eventually(t, 60*time.Second, "the first switch reaching the hardware step", func(ctx context.Context) error {
		n := GetNode(t, b, "gpu-001")
		if rec := SwitchAnnotation(n); rec == nil || rec["phase"] != "Reconfiguring" {
			return fmt.Errorf("record %v", rec)
		}
		return nil
	})
	if strings.Contains(c2.Log(), "starts") || strings.Contains(c2.Log(), "->") {
		t.Errorf("the standby acted:\n%s", tailLines(c2.Log(), 20))
	}
	killed := time.Now()
	c1.Kill()
	// The standby tries every retry period (2 s) plus client-go's jitter
	// (up to 1.2 x 2 s): it sees the last renewal at most 4.4 s after the
	// kill, waits the lease duration (15 s) from then, and acquires at its
	// next try, at most 4.4 s later. 23.8 s is the most a hand-over can
	// take; a run once took 20.04 s.
	const handOver = 15*time.Second + 2*4400*time.Millisecond
	Eventually(t, handOver+10*time.Second, "the standby to take over", func(ctx context.Context) error {
		if !strings.Contains(c2.Log(), "became the leader") {
			return fmt.Errorf("not yet")
		}
		return nil
	})
	if d := time.Since(killed); d > handOver+time.Second {
		t.Errorf("hand-over took %s, more than lease and two jittered retries (%s)", d, handOver)
	}
	WaitPolicy(t, b, "a", 120*time.Second, "both switches completed by the new leader", Converged)

	code, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", p2))
	if code != 200 {
		t.Fatalf("metrics: %d", code)
	}
	for _, m := range []string{`gpumode_switches_total{from="full",result="succeeded",to="mig"}`, "gpumode_leader 1",
		"gpumode_api_requests_total", "gpumode_switch_duration_seconds_bucket", "gpumode_build_info"} {
		if !strings.Contains(body, m) {
			t.Errorf("metrics lack %s", m)
		}
	}
	if promtool, err := exec.LookPath("promtool"); err == nil {
		cmd := exec.Command(promtool, "check", "metrics")
		cmd.Stdin = strings.NewReader(body)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("promtool check metrics: %v\n%s", err, out)
		}
	} else {
		t.Errorf("promtool not installed (make deps installs prometheus)")
	}
	Eventually(t, 30*time.Second, "events on the nodes", func(ctx context.Context) error {
		out, _ := b.Kubectl("get", "events.events.k8s.io", "-A", "-o", "custom-columns=REASON:.reason,OBJ:.regarding.name")
		for _, r := range []string{"SwitchStarted", "SwitchCompleted", "ClientsStopped", "Reconfigured"} {
			if !strings.Contains(out, r) {
				return fmt.Errorf("no %s event:\n%s", r, out)
			}
		}
		return nil
	})
	start := time.Now()
	c2.Stop()
	if d := time.Since(start); d > 12*time.Second {
		t.Errorf("SIGTERM took %s", d)
	}
	l, err := b.CS.CoordinationV1().Leases("gpumode-system").Get(context.Background(), "gpumode-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if l.Spec.HolderIdentity != nil && *l.Spec.HolderIdentity != "" {
		t.Errorf("lease still held by %q after SIGTERM", *l.Spec.HolderIdentity)
	}
}

// TestUnwritableHAMiConfigFailsTheSwitch: the controller, with the
// manifests' RBAC, may read HAMi's per-node ConfigMap but (someone trimmed
// its Role) not write it. A switch into vgpu with a split has its hardware
// done and then cannot write the node's entry: it waits in StartingClients,
// which the status shows, and after clientsTimeoutSeconds fails with
// HAMiConfigNotWritten and rolls back to full. (The wait once started again
// at every reconcile in Reconfiguring and never timed out, GPU clients
// stopped.)
func TestUnwritableHAMiConfigFailsTheSwitch(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	installManifests(t, b)
	b.MustKubectl("patch", "role", "-n", "kube-system", "gpumode-hami-device-plugin", "--type=json",
		"-p", `[{"op":"replace","path":"/rules/0/verbs","value":["get","list","watch"]}]`)
	LabelNodes(t, b, "pool=a", "gpu-001")
	AppendControllerConfig(t, b, "clientsTimeoutSeconds: 10\n")
	startControllerAsSA(t, b)
	Apply(t, b, policyAFull)
	WaitPolicy(t, b, "a", 60*time.Second, "full", Converged)
	PatchPolicy(t, b, "a", `{"spec":{"mode":"vgpu","vgpu":{"splitCount":4}}}`)
	WaitPolicy(t, b, "a", 60*time.Second, "the wait for HAMi's entry shown", func(s *PolicyStatus) error {
		for _, n := range s.Nodes {
			if n.Name == "gpu-001" && n.Phase == "StartingClients" && strings.Contains(n.Message, "writing HAMi's per-node config failed") {
				return nil
			}
		}
		return fmt.Errorf("nodes %+v", s.Nodes)
	})
	WaitPolicy(t, b, "a", 90*time.Second, "failed and rolled back", func(s *PolicyStatus) error {
		n := GetNode(t, b, "gpu-001")
		if s.Summary.Failed != 1 || n.Spec.Unschedulable || n.Labels["gpumode.io/mode"] != "full" || Allocatable(n, "nvidia.com/gpu") != 8 {
			return fmt.Errorf("summary %+v unschedulable %v mode %q gpus %d", s.Summary, n.Spec.Unschedulable,
				n.Labels["gpumode.io/mode"], Allocatable(n, "nvidia.com/gpu"))
		}
		return nil
	})
	if rec := SwitchAnnotation(GetNode(t, b, "gpu-001")); rec == nil || rec["reason"] != "HAMiConfigNotWritten" {
		t.Errorf("switch record %v, want reason HAMiConfigNotWritten", rec)
	}
}

// installManifests applies manifests/ as a user would, with the
// Deployment scaled to zero: its image cannot run here, the controller
// runs as a process (startControllerAsSA).
func installManifests(t *testing.T, b *Bed) {
	t.Helper()
	b.MustKubectl("apply", "-k", filepath.Join(repoRoot(t), "manifests"))
	b.MustKubectl("scale", "deployment", "-n", "gpumode-system", "gpumode-controller", "--replicas=0")
	b.MustKubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/gpumodepolicies.gpumode.io")
}

// startControllerAsSA runs the controller with the manifests'
// ServiceAccount's token, so it has their RBAC and nothing more.
func startControllerAsSA(t *testing.T, b *Bed, args ...string) *Controller {
	t.Helper()
	kc, err := testbed(t, nil, "token", "--dir", b.Dir, "--sa", "gpumode-system/gpumode-controller")
	if err != nil {
		t.Fatal(err)
	}
	saKC := filepath.Join(b.Dir, "sa.kubeconfig")
	if err := os.WriteFile(saKC, []byte(kc), 0o600); err != nil {
		t.Fatal(err)
	}
	c := &Controller{t: t, b: b, args: append([]string{"--kubeconfig", saKC}, args...)}
	c.start()
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			t.Logf("---- controller log ----\n%s", tailLines(c.Log(), 60))
		}
	})
	return c
}

// A client certificate rotated on disk is taken up without a refused
// request. The API server checks a client certificate's dates on every
// request, so once it has expired requests on the connection made with it
// are refused (401), lease renewals too; the controller reads the files
// again and replays the request on a connection made with the new pair.
func TestRotatedClientCertificateFiles(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	files := pki.FilesIn(filepath.Join(b.Dir, "pki"))
	ca, err := pki.LoadCA(files.CA, files.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	certPath, keyPath := filepath.Join(b.Dir, "rotating.crt"), filepath.Join(b.Dir, "rotating.key")
	// Key first, then certificate, as a careless rotation would: the pair
	// is briefly mismatched on disk.
	writePair := func(notAfter time.Time) {
		cert, key, err := ca.IssueClientUntil("gpumode-rotating", []string{"system:masters"}, notAfter)
		if err == nil {
			err = os.WriteFile(keyPath, key, 0o600)
		}
		if err == nil {
			err = os.WriteFile(certPath, cert, 0o600)
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	expires := time.Now().Add(45 * time.Second)
	writePair(expires)
	kc, err := clientcmd.LoadFromFile(filepath.Join(b.Dir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	for _, ai := range kc.AuthInfos {
		ai.ClientCertificateData, ai.ClientKeyData = nil, nil
		ai.ClientCertificate, ai.ClientKey = certPath, keyPath
	}
	kcPath := filepath.Join(b.Dir, "rotating.kubeconfig")
	if err := clientcmd.WriteToFile(*kc, kcPath); err != nil {
		t.Fatal(err)
	}
	c := StartController(t, b, "--kubeconfig", kcPath, "--leader-elect")
	Apply(t, b, policyAFull)
	WaitPolicy(t, b, "a", 40*time.Second, "full", Converged)
	if time.Now().After(expires) {
		t.Fatal("the first switch outlived the first certificate; the test proves nothing")
	}

	writePair(time.Now().Add(time.Hour))
	time.Sleep(time.Until(expires) + 2*time.Second)
	Apply(t, b, policyAMig1g)
	WaitPolicy(t, b, "a", 90*time.Second, "mig after the first certificate expired", Converged)
	// Still the leader and still renewing: the lease shows a renewal
	// made after the old certificate expired.
	time.Sleep(3 * time.Second)
	lease, err := b.CS.CoordinationV1().Leases("gpumode-system").Get(context.Background(), "gpumode-controller", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if lease.Spec.RenewTime == nil || !lease.Spec.RenewTime.Time.After(expires) {
		t.Errorf("lease renewed at %v, not after the first certificate expired at %v", lease.Spec.RenewTime, expires)
	}
	if err := c.cmd.Process.Signal(syscall.Signal(0)); err != nil {
		t.Errorf("controller gone: %v", err)
	}
	// Not one request refused on the way: before the controller read
	// the files itself, the first requests after the expiry (a lease
	// renewal, a node write, a status write) came back 401 before new
	// connections picked up the new pair.
	if strings.Contains(c.Log(), "Unauthorized") {
		t.Errorf("requests were refused after the rotation:\n%s", tailLines(c.Log(), 30))
	}
}

// An admission policy that refuses the controller's writes to nodes: the
// switch waits without changing the node, its status line and a Warning
// event on the node say why, and it goes on once the policy is lifted.
func TestRefusedNodeWriteIsShown(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	installManifests(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	startControllerAsSA(t, b)
	Apply(t, b, policyAFull)
	WaitPolicy(t, b, "a", 60*time.Second, "full", Converged)
	Apply(t, b, `
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: freeze-nodes
spec:
  failurePolicy: Fail
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: ["v1"]
      operations: ["UPDATE"]
      resources: ["nodes"]
  validations:
  - expression: request.userInfo.username != "system:serviceaccount:gpumode-system:gpumode-controller"
    message: nodes are frozen for maintenance
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: freeze-nodes
spec:
  policyName: freeze-nodes
  validationActions: [Deny]
`)
	// The binding takes effect once the API server's policy cache has it:
	// until then a write could go through. Wait for a refusal to be seen.
	// The probe patches as the controller does (its Role has no get, which
	// kubectl label and patch would need first).
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(b.Dir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.Impersonate.UserName = saUser
	asSA, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	Eventually(t, 30*time.Second, "the binding in force", func(ctx context.Context) error {
		_, err := asSA.CoreV1().Nodes().Patch(ctx, "gpu-001", types.MergePatchType,
			[]byte(`{"metadata":{"labels":{"freeze-probe":"1"}}}`), metav1.PatchOptions{})
		if err == nil {
			b.MustKubectl("label", "node", "gpu-001", "freeze-probe-")
			return fmt.Errorf("a write went through")
		}
		if !strings.Contains(err.Error(), "nodes are frozen for maintenance") {
			return fmt.Errorf("refused otherwise: %v", err)
		}
		return nil
	})
	PatchPolicy(t, b, "a", `{"spec":{"mode":"mig","mig":{"config":"all-1g.10gb"}}}`)
	WaitPolicy(t, b, "a", 60*time.Second, "the refusal shown", func(s *PolicyStatus) error {
		for _, n := range s.Nodes {
			if n.Name == "gpu-001" && strings.HasPrefix(n.Message, "updating the node failed, retrying: Invalid: ") &&
				strings.Contains(n.Message, "nodes are frozen for maintenance") {
				return nil
			}
		}
		return fmt.Errorf("nodes %+v", s.Nodes)
	})
	Eventually(t, 30*time.Second, "a FailedUpdate event on the node", func(ctx context.Context) error {
		out, _ := b.Kubectl("get", "events", "-n", "default", "--field-selector",
			"involvedObject.kind=Node,involvedObject.name=gpu-001,reason=FailedUpdate",
			"-o", "custom-columns=T:.type,M:.message", "--no-headers")
		if !strings.Contains(out, "Warning") || !strings.Contains(out, "Updating the node was refused (Invalid)") ||
			!strings.Contains(out, "nodes are frozen for maintenance") {
			return fmt.Errorf("events: %q", out)
		}
		return nil
	})
	if n := GetNode(t, b, "gpu-001"); n.Spec.Unschedulable || n.Labels["gpumode.io/mode"] != "full" {
		t.Errorf("refused writes changed the node: unschedulable %v mode %q", n.Spec.Unschedulable, n.Labels["gpumode.io/mode"])
	}
	b.MustKubectl("delete", "validatingadmissionpolicybinding", "freeze-nodes")
	WaitPolicy(t, b, "a", 120*time.Second, "mig", Converged)
	s, err := GetPolicyStatus(t, b, "a")
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range s.Nodes {
		if n.Message != "" {
			t.Errorf("node %s still says %q", n.Name, n.Message)
		}
	}
}

// frozenRelay forwards TCP connections to an address. Freeze makes the
// connections open at that moment stop carrying bytes while their sockets
// stay open, so the kernel still ACKs: an API server process wedged, or a
// proxy in front of it that lost its backend. Later connections work.
type frozenRelay struct {
	ln     net.Listener
	target string
	frozen chan struct{} // closed by Freeze
	done   chan struct{} // closed when the test ends
	mu     sync.Mutex
	conns  []net.Conn
	before map[net.Conn]bool // open at Freeze
}

func startRelay(t *testing.T, target string) *frozenRelay {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &frozenRelay{ln: ln, target: target, frozen: make(chan struct{}), done: make(chan struct{})}
	t.Cleanup(func() {
		close(r.done)
		ln.Close()
		r.mu.Lock()
		for _, c := range r.conns {
			c.Close()
		}
		r.mu.Unlock()
	})
	go func() {
		for {
			in, err := ln.Accept()
			if err != nil {
				return
			}
			out, err := net.Dial("tcp", target)
			if err != nil {
				in.Close()
				continue
			}
			r.mu.Lock()
			r.conns = append(r.conns, in, out)
			old := r.before != nil
			r.mu.Unlock()
			go r.pipe(in, out, !old)
			go r.pipe(out, in, !old)
		}
	}()
	return r
}

// pipe copies src to dst; a connection open at Freeze (mayFreeze) then
// stops reading and writing, its sockets left open.
func (r *frozenRelay) pipe(src, dst net.Conn, mayFreeze bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if mayFreeze {
			select {
			case <-r.frozen:
				<-r.done // held open until the test ends
				return
			default:
			}
		}
		if n > 0 {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			dst.Close()
			return
		}
	}
}

func (r *frozenRelay) Freeze() {
	r.mu.Lock()
	r.before = map[net.Conn]bool{}
	for _, c := range r.conns {
		r.before[c] = true
	}
	r.mu.Unlock()
	close(r.frozen)
}

// TestFrozenConnectionIsAbandoned: the controller's one HTTP/2 connection
// to the API server stops carrying bytes while TCP stays up. Its watches
// are cut for silence (watchIdleSeconds, 20 s here rather than 120 s so
// the test waits less) and would re-open on that same connection
// for good (libcurl reuses it, and the kernel sees nothing wrong); the
// transport instead asks /livez on it, gets no answer, and drops it, so
// the controller sees the policy change made meanwhile and switches.
func TestFrozenConnectionIsAbandoned(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001")
	// The controller's kubeconfig, its server the relay.
	cfg, err := clientcmd.LoadFromFile(filepath.Join(b.Dir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	var r *frozenRelay
	for _, c := range cfg.Clusters {
		u, err := url.Parse(c.Server)
		if err != nil {
			t.Fatal(err)
		}
		if r == nil {
			r = startRelay(t, u.Host)
		}
		c.Server = "https://" + r.ln.Addr().String()
	}
	relayed := filepath.Join(b.Dir, "relayed.kubeconfig")
	if err := clientcmd.WriteToFile(*cfg, relayed); err != nil {
		t.Fatal(err)
	}
	AppendControllerConfig(t, b, "watchIdleSeconds: 20\n")
	StartController(t, b, "--kubeconfig", relayed)
	Apply(t, b, policyAFull)
	WaitPolicy(t, b, "a", 120*time.Second, "full", Converged)
	r.Freeze()
	PatchPolicy(t, b, "a", `{"spec":{"mode":"vgpu"}}`)
	WaitPolicy(t, b, "a", 120*time.Second, "vgpu over a new connection", func(s *PolicyStatus) error {
		if err := Converged(s); err != nil {
			return err
		}
		if m := GetNode(t, b, "gpu-001").Labels["gpumode.io/mode"]; m != "vgpu" {
			return fmt.Errorf("mode %q", m)
		}
		return nil
	})
}

// TestUninstallAsREADMESays runs README.md's "Uninstalling" commands as
// they are written, with a switch in flight: the pause lets it finish, the
// wait sees it end, the controller stops, and `kubectl delete -k
// manifests/` takes its namespace and the CRD with every policy. The
// nodes are left serving, uncordoned, each in the mode it was verified
// in, the paused node's labels as they were, the vgpu node's HAMi entry
// in place; the cleanup then leaves nothing of gpumode's on nodes or on
// HAMi's ConfigMap.
func TestUninstallAsREADMESays(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "3", "--gpu-model", "A100-SXM4-80GB")
	installManifests(t, b)
	ctl := startControllerAsSA(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001", "gpu-002")
	LabelNodes(t, b, "pool=b", "gpu-003")
	LabelNodes(t, b, "gpumode.io/mode=full", "gpu-001", "gpu-002", "gpu-003")
	before := map[string]map[string]string{}
	for _, n := range []string{"gpu-001", "gpu-002"} {
		before[n] = GetNode(t, b, n).Labels
	}
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: b}
spec:
  nodeSelector: {matchLabels: {pool: b}}
  mode: vgpu
  vgpu: {splitCount: 4}
`)
	WaitPolicy(t, b, "b", 120*time.Second, "vgpu converged", func(s *PolicyStatus) error {
		if s.Summary.Converged != 1 {
			return fmt.Errorf("summary %+v", s.Summary)
		}
		return nil
	})
	// A switch in the bed takes under a second; creating the instances
	// (the first command doing so) takes 10 s here, so the first switch is
	// still in flight when the README's commands pause the policy, and the
	// second one never starts.
	for _, n := range []string{"gpu-001", "gpu-002"} {
		FakeSMI(t, b, n, "--fake-inject", "--match", "-cgi", "--delay-ms", "10000", "--passthrough", "--times", "1")
	}
	Apply(t, b, policyAMig1g+"  rollout: {maxUnavailable: 1}\n")
	var switching string
	Eventually(t, 60*time.Second, "a node switching", func(ctx context.Context) error {
		for _, n := range []string{"gpu-001", "gpu-002"} {
			if GetNode(t, b, n).Labels["gpumode.io/state"] == "switching" {
				switching = n
				return nil
			}
		}
		return fmt.Errorf("none switching yet")
	})
	blocks := readmeShellBlocks(t, "### Uninstalling")
	if len(blocks) != 3 {
		t.Fatalf("README's Uninstalling has %d sh blocks, want 3 (pause and wait, removal, cleanup)", len(blocks))
	}
	runShell(t, b, blocks[0])
	// The controller here runs outside the bed as the Deployment's
	// ServiceAccount; the Deployment scaled to 0 would stop its pod.
	ctl.Stop()
	runShell(t, b, blocks[1])

	if out, err := b.Kubectl("get", "crd", "gpumodepolicies.gpumode.io"); err == nil {
		t.Errorf("the CRD is still there: %s", out)
	}
	if out, err := b.Kubectl("get", "namespace", "gpumode-system"); err == nil {
		t.Errorf("namespace gpumode-system is still there: %s", out)
	}
	for _, name := range []string{"gpu-001", "gpu-002", "gpu-003"} {
		n := GetNode(t, b, name)
		if n.Spec.Unschedulable || n.Annotations["gpumode.io/switch"] != "" {
			t.Errorf("%s: unschedulable %v, switch record %q", name, n.Spec.Unschedulable, n.Annotations["gpumode.io/switch"])
		}
		switch {
		case name == "gpu-003":
			if n.Labels["gpumode.io/mode"] != "vgpu" || Allocatable(n, "nvidia.com/vgpu") != 32 {
				t.Errorf("%s: mode %q, %d vGPUs offered; want vgpu, 32", name, n.Labels["gpumode.io/mode"], Allocatable(n, "nvidia.com/vgpu"))
			}
		case name == switching:
			if n.Labels["gpumode.io/mode"] != "mig" || Allocatable(n, "nvidia.com/mig-1g.10gb") != 56 {
				t.Errorf("%s (switching at the pause): mode %q, %d 1g.10gb offered; want mig, 56", name,
					n.Labels["gpumode.io/mode"], Allocatable(n, "nvidia.com/mig-1g.10gb"))
			}
		default:
			// The pause held it: never switched, its labels as before.
			if Allocatable(n, "nvidia.com/gpu") != 8 {
				t.Errorf("%s (paused before it started): %d GPUs offered, want 8", name, Allocatable(n, "nvidia.com/gpu"))
			}
			for k, v := range before[name] {
				if n.Labels[k] != v {
					t.Errorf("%s: label %s=%q, was %q", name, k, n.Labels[k], v)
				}
			}
		}
	}
	if marks := hamiMarks(t, b); marks != "gpu-003" {
		t.Errorf("HAMi's marks before the cleanup: %q, want gpu-003", marks)
	}

	runShell(t, b, blocks[2])
	for _, name := range []string{"gpu-001", "gpu-002", "gpu-003"} {
		n := GetNode(t, b, name)
		for _, m := range []map[string]string{n.Labels, n.Annotations} {
			for k := range m {
				if strings.HasPrefix(k, "gpumode.io/") {
					t.Errorf("%s: %s left after the cleanup", name, k)
				}
			}
		}
	}
	cm, err := b.CS.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "hami-device-plugin", metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := cm.Annotations["gpumode.io/hami-nodes"]; ok {
		t.Errorf("HAMi's ConfigMap keeps gpumode.io/hami-nodes")
	}
	if !strings.Contains(cm.Data["config.json"], `"gpu-003"`) {
		t.Errorf("gpu-003's HAMi entry is gone: %s", cm.Data["config.json"])
	}
}

// readmeShellBlocks returns the ```sh blocks of README.md between heading
// (a whole line) and the next heading.
func readmeShellBlocks(t *testing.T, heading string) []string {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(repoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	var blocks []string
	in, block := false, -1
	for _, line := range strings.Split(string(raw), "\n") {
		switch {
		case block < 0 && line == heading:
			in = true
		case in && block < 0 && strings.HasPrefix(line, "#"):
			return blocks
		case in && block < 0 && line == "```sh":
			blocks = append(blocks, "")
			block = len(blocks) - 1
		case block >= 0 && line == "```":
			block = -1
		case block >= 0:
			blocks[block] += line + "\n"
		}
	}
	if !in {
		t.Fatalf("README.md has no %q", heading)
	}
	return blocks
}

// runShell runs script with bash at the repository's root as a reader
// would: kubectl (the bed's) and kubectl-gpumode on PATH, KUBECONFIG the
// bed's. A failing command fails the test.
func runShell(t *testing.T, b *Bed, script string) {
	t.Helper()
	root := repoRoot(t)
	cmd := exec.Command("bash", "-euo", "pipefail", "-c", script)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "KUBECONFIG="+filepath.Join(b.Dir, "kubeconfig"),
		"PATH="+filepath.Join(root, "build", "e2e", "bin")+":"+filepath.Join(root, "build")+":"+os.Getenv("PATH"))
	done := make(chan struct{})
	var out []byte
	var err error
	go func() { out, err = cmd.CombinedOutput(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Minute):
		_ = cmd.Process.Kill()
		<-done
		t.Fatalf("still running after 5 minutes:\n%s\n%s", script, out)
	}
	t.Logf("$ %s%s", script, out)
	if err != nil {
		t.Fatalf("%v", err)
	}
}
