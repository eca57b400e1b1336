package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/intstr"

	"gpumode.io/e2e/internal/sim"
)

func int32p(v int32) *int32 { return &v }
func int64p(v int64) *int64 { return &v }

func podsOf(ctx context.Context, b *Bed, ns, selector string) ([]corev1.Pod, error) {
	pl, err := b.CS.CoreV1().Pods(ns).List(ctx, metav1.ListOptions{LabelSelector: selector})
	if err != nil {
		return nil, err
	}
	return pl.Items, nil
}

func runningReady(p *corev1.Pod) bool {
	if p.Status.Phase != corev1.PodRunning || p.DeletionTimestamp != nil {
		return false
	}
	for _, c := range p.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// TestSmoke brings up a 3-node bed and checks what every other e2e test
// relies on: nodes Ready with GPU capacity, DaemonSet pods running on them,
// the disruption controller blocking an eviction (429), graceful deletion,
// Job completion, ServiceAccount tokens, helper pods and an apiserver
// restart.
func TestSmoke(t *testing.T) {
	requireE2E(t)
	agentDir := t.TempDir()
	agent := filepath.Join(agentDir, "gpumode-agent")
	script := `#!/bin/sh
echo "agent $*" >&2
n=$("$NVIDIA_SMI" --query-gpu=count --format=csv,noheader | head -n1)
msg="{\"ok\":true,\"gpus\":$n,\"node\":\"$SIM_NODE_NAME\"}"
echo "$msg"
printf '%s' "$msg" > "$` + sim.TerminationMessageEnv + `"
[ "$1" = fail ] && exit 3
exit 0
`
	if err := os.WriteFile(agent, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	b := StartBed(t, []string{"GPUMODE_AGENT_BIN=" + agent}, "--nodes", "3", "--gpu-model", "mixed", "--gpus-per-node", "4")
	ctx := context.Background()

	t.Run("nodes", func(t *testing.T) {
		out := b.MustKubectl("get", "nodes", "--no-headers")
		if n := strings.Count(out, " Ready "); n != 3 {
			t.Fatalf("want 3 Ready nodes, kubectl says:\n%s", out)
		}
		nl, err := b.CS.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		for _, n := range nl.Items {
			q := n.Status.Allocatable["nvidia.com/gpu"]
			if q.Value() != 4 {
				t.Errorf("node %s: allocatable nvidia.com/gpu = %s, want 4", n.Name, q.String())
			}
			if n.Labels["nvidia.com/mig.capable"] != "true" || n.Labels["nvidia.com/gpu.product"] == "" || n.Status.NodeInfo.BootID == "" {
				t.Errorf("node %s: labels %v bootID %q", n.Name, n.Labels, n.Status.NodeInfo.BootID)
			}
			if _, err := b.CS.CoordinationV1().Leases("kube-node-lease").Get(ctx, n.Name, metav1.GetOptions{}); err != nil {
				t.Errorf("node %s lease: %v", n.Name, err)
			}
		}
		if got := nl.Items[0].Labels["nvidia.com/gpu.product"]; got != "NVIDIA-A100-SXM4-40GB" {
			t.Errorf("first node of a mixed bed: product %q", got)
		}
	})

	t.Run("daemonset", func(t *testing.T) {
		ds := &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "default"},
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: map[string]string{"app": "smoke"}},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: map[string]string{"app": "smoke"}},
					Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
				},
			},
		}
		if _, err := b.CS.AppsV1().DaemonSets("default").Create(ctx, ds, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 60*time.Second, "DaemonSet pods running on every node", func(ctx context.Context) error {
			pods, err := podsOf(ctx, b, "default", "app=smoke")
			if err != nil {
				return err
			}
			nodes := map[string]bool{}
			for i := range pods {
				if runningReady(&pods[i]) {
					nodes[pods[i].Spec.NodeName] = true
				}
			}
			if len(nodes) != 3 {
				return fmt.Errorf("running on %v", nodes)
			}
			got, err := b.CS.AppsV1().DaemonSets("default").Get(ctx, "smoke", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if got.Status.NumberReady != 3 {
				return fmt.Errorf("numberReady %d", got.Status.NumberReady)
			}
			return nil
		})
	})

	t.Run("eviction-blocked-by-pdb", func(t *testing.T) {
		ns := "team-a"
		if _, err := b.CS.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: ns}}, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		labels := map[string]string{"app": "train"}
		dep := &appsv1.Deployment{
			ObjectMeta: metav1.ObjectMeta{Name: "train", Namespace: ns},
			Spec: appsv1.DeploymentSpec{
				Replicas: int32p(2),
				Selector: &metav1.LabelSelector{MatchLabels: labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: labels},
					Spec: corev1.PodSpec{
						TerminationGracePeriodSeconds: int64p(30),
						Containers: []corev1.Container{{Name: "c", Image: "trainer",
							Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": resourceOne()}}}},
					},
				},
			},
		}
		if _, err := b.CS.AppsV1().Deployments(ns).Create(ctx, dep, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		zero := intstr.FromInt32(0)
		pdb := &policyv1.PodDisruptionBudget{
			ObjectMeta: metav1.ObjectMeta{Name: "train", Namespace: ns},
			Spec:       policyv1.PodDisruptionBudgetSpec{MaxUnavailable: &zero, Selector: &metav1.LabelSelector{MatchLabels: labels}},
		}
		if _, err := b.CS.PolicyV1().PodDisruptionBudgets(ns).Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		var victim corev1.Pod
		Eventually(t, 60*time.Second, "2 ready pods and the PDB computed", func(ctx context.Context) error {
			pods, err := podsOf(ctx, b, ns, "app=train")
			if err != nil {
				return err
			}
			ready := 0
			for i := range pods {
				if runningReady(&pods[i]) {
					ready++
					victim = pods[i]
				}
			}
			got, err := b.CS.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "train", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if ready != 2 || got.Status.ObservedGeneration != got.Generation || got.Status.CurrentHealthy != 2 {
				return fmt.Errorf("%d ready; pdb status %+v", ready, got.Status)
			}
			return nil
		})
		ev := &policyv1.Eviction{ObjectMeta: metav1.ObjectMeta{Name: victim.Name, Namespace: ns}}
		err := b.CS.PolicyV1().Evictions(ns).Evict(ctx, ev)
		if !apierrors.IsTooManyRequests(err) {
			t.Fatalf("eviction of %s: want 429 TooManyRequests, got %v", victim.Name, err)
		}
		t.Logf("eviction answered: %v", err)

		// Allow one disruption: the eviction goes through and the simulated
		// kubelet finishes the graceful deletion (30 s x grace factor).
		got, err := b.CS.PolicyV1().PodDisruptionBudgets(ns).Get(ctx, "train", metav1.GetOptions{})
		if err != nil {
			t.Fatal(err)
		}
		one := intstr.FromInt32(1)
		got.Spec.MaxUnavailable = &one
		if _, err := b.CS.PolicyV1().PodDisruptionBudgets(ns).Update(ctx, got, metav1.UpdateOptions{}); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 30*time.Second, "eviction allowed", func(ctx context.Context) error {
			return b.CS.PolicyV1().Evictions(ns).Evict(ctx, ev)
		})
		Eventually(t, 30*time.Second, "evicted pod gone", func(ctx context.Context) error {
			p, err := b.CS.CoreV1().Pods(ns).Get(ctx, victim.Name, metav1.GetOptions{})
			if apierrors.IsNotFound(err) || (err == nil && p.UID != victim.UID) {
				return nil
			}
			return fmt.Errorf("still there: %v", err)
		})
	})

	t.Run("job-completes", func(t *testing.T) {
		job := &batchv1.Job{
			ObjectMeta: metav1.ObjectMeta{Name: "smoke", Namespace: "default"},
			Spec: batchv1.JobSpec{Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Annotations: map[string]string{"sim.gpumode.io/run-seconds": "1"}},
				Spec: corev1.PodSpec{RestartPolicy: corev1.RestartPolicyNever,
					Containers: []corev1.Container{{Name: "c", Image: "busybox"}}},
			}},
		}
		if _, err := b.CS.BatchV1().Jobs("default").Create(ctx, job, metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 60*time.Second, "Job complete", func(ctx context.Context) error {
			j, err := b.CS.BatchV1().Jobs("default").Get(ctx, "smoke", metav1.GetOptions{})
			if err != nil {
				return err
			}
			if j.Status.Succeeded != 1 {
				return fmt.Errorf("status %+v", j.Status)
			}
			return nil
		})
	})

	t.Run("serviceaccount-token", func(t *testing.T) {
		b.MustKubectl("create", "namespace", "gpumode-system")
		b.MustKubectl("-n", "gpumode-system", "create", "serviceaccount", "gpumode-controller")
		kc, err := testbed(t, nil, "token", "--dir", b.Dir, "--sa", "gpumode-system/gpumode-controller")
		if err != nil {
			t.Fatal(err)
		}
		path := filepath.Join(t.TempDir(), "sa.kubeconfig")
		if err := os.WriteFile(path, []byte(kc), 0o600); err != nil {
			t.Fatal(err)
		}
		out, err := testbed(t, []string{"KUBECONFIG=" + path}, "kubectl", "auth", "whoami", "-o", "jsonpath={.status.userInfo.username}")
		if err != nil {
			t.Fatal(err)
		}
		if out != "system:serviceaccount:gpumode-system:gpumode-controller" {
			t.Fatalf("whoami: %q", out)
		}
		if _, err := testbed(t, []string{"KUBECONFIG=" + path}, "kubectl", "get", "nodes"); err == nil || !strings.Contains(err.Error(), "Forbidden") {
			t.Fatalf("RBAC should forbid listing nodes: %v", err)
		}
	})

	t.Run("helper-pods", func(t *testing.T) {
		for _, c := range []struct {
			name, arg string
			phase     corev1.PodPhase
			code      int32
			reason    string
		}{{"probe-ok", "probe", corev1.PodSucceeded, 0, "Completed"}, {"probe-fail", "fail", corev1.PodFailed, 3, "Error"}} {
			pod := &corev1.Pod{
				ObjectMeta: metav1.ObjectMeta{Name: c.name, Namespace: "gpumode-system",
					Labels: map[string]string{"app.kubernetes.io/name": "gpumode-agent"}},
				Spec: corev1.PodSpec{
					NodeName:      "gpu-002",
					RestartPolicy: corev1.RestartPolicyNever,
					Tolerations:   []corev1.Toleration{{Operator: corev1.TolerationOpExists}},
					Containers: []corev1.Container{{Name: "agent", Image: "gpumode/agent:dev",
						Command: []string{"/usr/local/bin/gpumode-agent"}, Args: []string{c.arg}}},
				},
			}
			if _, err := b.CS.CoreV1().Pods("gpumode-system").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			Eventually(t, 30*time.Second, c.name+" finished", func(ctx context.Context) error {
				p, err := b.CS.CoreV1().Pods("gpumode-system").Get(ctx, c.name, metav1.GetOptions{})
				if err != nil {
					return err
				}
				if p.Status.Phase != c.phase || len(p.Status.ContainerStatuses) != 1 || p.Status.ContainerStatuses[0].State.Terminated == nil {
					return fmt.Errorf("status %+v", p.Status)
				}
				term := p.Status.ContainerStatuses[0].State.Terminated
				if term.ExitCode != c.code || term.Reason != c.reason {
					return fmt.Errorf("terminated %+v", term)
				}
				var msg struct {
					OK   bool   `json:"ok"`
					GPUs int    `json:"gpus"`
					Node string `json:"node"`
				}
				if err := json.Unmarshal([]byte(term.Message), &msg); err != nil || msg.GPUs != 4 || msg.Node != "gpu-002" {
					return fmt.Errorf("termination message %q: %v", term.Message, err)
				}
				return nil
			})
		}
	})

	t.Run("metrics", func(t *testing.T) {
		out := b.MustKubectl("get", "--raw", "/metrics")
		if !strings.Contains(out, "apiserver_request_total") {
			t.Fatalf("no apiserver_request_total in /metrics")
		}
	})

	t.Run("apiserver-restart", func(t *testing.T) {
		if _, err := testbed(t, nil, "stop", "--dir", b.Dir, "kube-apiserver"); err != nil {
			t.Fatal(err)
		}
		if _, err := b.Kubectl("get", "nodes", "--request-timeout=2s"); err == nil {
			t.Fatal("kubectl worked with the apiserver stopped")
		}
		if _, err := testbed(t, nil, "start", "--dir", b.Dir, "kube-apiserver"); err != nil {
			t.Fatal(err)
		}
		Eventually(t, 60*time.Second, "nodes Ready after the restart", func(ctx context.Context) error {
			out, err := b.Kubectl("get", "nodes", "--no-headers")
			if err != nil {
				return err
			}
			if strings.Count(out, " Ready ") != 3 {
				return fmt.Errorf("%s", out)
			}
			return nil
		})
	})
}
