package tests

// make bench, drain: gpumode's drain of a full node against `kubectl drain`
// of an identical node, one after the other on the same bed.

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/util/intstr"
)

// drainWorkload is one Deployment of the drained node's pods.
type drainWorkload struct {
	name     string
	replicas int
	gpu      bool // requests one HAMi vGPU
	emptyDir bool
	pdbMax   int // > 0: a PodDisruptionBudget with this maxUnavailable
}

// benchDeployment places replicas on target, or on spare once target is
// cordoned (the spare is cordoned while the pods are first placed).
func benchDeployment(w drainWorkload, side, target, spare string) *appsv1.Deployment {
	labels := map[string]string{"app": w.name, "side": side}
	grace := int64(30)
	c := corev1.Container{Name: "c", Image: "registry.example/" + w.name + ":1"}
	if w.gpu {
		c.Resources.Limits = corev1.ResourceList{"nvidia.com/vgpu": resource.MustParse("1")}
	}
	spec := corev1.PodSpec{
		TerminationGracePeriodSeconds: &grace,
		Containers:                    []corev1.Container{c},
		Affinity: &corev1.Affinity{NodeAffinity: &corev1.NodeAffinity{
			RequiredDuringSchedulingIgnoredDuringExecution: &corev1.NodeSelector{
				NodeSelectorTerms: []corev1.NodeSelectorTerm{{MatchExpressions: []corev1.NodeSelectorRequirement{{
					Key: "kubernetes.io/hostname", Operator: corev1.NodeSelectorOpIn, Values: []string{target, spare},
				}}}},
			},
		}},
	}
	if w.emptyDir {
		spec.Volumes = []corev1.Volume{{Name: "scratch", VolumeSource: corev1.VolumeSource{EmptyDir: &corev1.EmptyDirVolumeSource{}}}}
		spec.Containers[0].VolumeMounts = []corev1.VolumeMount{{Name: "scratch", MountPath: "/scratch"}}
	}
	replicas := int32(w.replicas)
	return &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: w.name + "-" + side, Namespace: "default"},
		Spec: appsv1.DeploymentSpec{
			Replicas: &replicas,
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{ObjectMeta: metav1.ObjectMeta{Labels: labels}, Spec: spec},
		},
	}
}

// podsOn counts the pods bound to a node: all of them, and those of
// DaemonSets.
func podsOn(t *testing.T, b *Bed, node string) (all, daemon int) {
	t.Helper()
	pl, err := b.CS.CoreV1().Pods("").List(context.Background(), metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("spec.nodeName", node).String()})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range pl.Items {
		if p.Status.Phase == corev1.PodSucceeded || p.Status.Phase == corev1.PodFailed {
			continue
		}
		all++
		for _, o := range p.OwnerReferences {
			if o.Kind == "DaemonSet" {
				daemon++
			}
		}
	}
	return all, daemon
}

// podRequests reads the apiserver's apiserver_request_total for pods:
// evictions (POST pods/eviction), those answered 429, and reads (GET or
// LIST of pods, all clients).
func podRequests(t *testing.T, b *Bed) (evictions, refused, reads float64) {
	evict := []string{`resource="pods"`, `subresource="eviction"`, `verb="POST"`}
	evictions = apiserverRequests(t, b, evict...)
	refused = apiserverRequests(t, b, append(evict, `code="429"`)...)
	reads = apiserverRequests(t, b, `resource="pods"`, `subresource=""`, `verb="GET"`) +
		apiserverRequests(t, b, `resource="pods"`, `subresource=""`, `verb="LIST"`)
	return evictions, refused, reads
}

// drainPhases times a switch's Cordoning+Draining phases from a node
// watch: from the first record seen to the first phase after Draining.
func drainPhases(t *testing.T, b *Bed, node string) func(timeout time.Duration) time.Duration {
	return recordSpan(t, b, node, "gpumode's drain", func(rec map[string]any) bool {
		return rec != nil && rec["phase"] != "Cordoning" && rec["phase"] != "Draining"
	})
}

// TestBenchDrain: two identical full nodes (110 pods each with the GPU
// plugins' DaemonSet pods: 30 requesting vGPUs, some behind
// PodDisruptionBudgets, all with terminationGracePeriodSeconds 30), each
// with a spare node for the evicted pods. gpumode drains one (the
// Cordoning and Draining phases of a vgpu -> full switch, every pod
// evicted as kubectl would), then `kubectl drain` the other.
func TestBenchDrain(t *testing.T) {
	requireBench(t)
	requireE2E(t)
	runs := envInt("BENCH_DRAIN_RUNS", 3)
	var all []drainRun
	for i := 1; i <= runs; i++ {
		t.Run(fmt.Sprintf("run%d", i), func(t *testing.T) { all = append(all, benchDrainOnce(t)) })
	}
	if len(all) == 0 {
		t.Fatal("no run finished")
	}
	r := all[0]
	lines := []string{
		fmt.Sprintf("### Drain: %d pods evicted from a node with 110 (%d DaemonSet pods skipped); %d request vGPUs; PodDisruptionBudgets on 50 of them (maxUnavailable 3 of 10, 10 of 40); terminationGracePeriodSeconds 30 (1.5 s simulated); %d runs, each on a new bed", r.evicted, 110-r.evicted, 30, len(all)),
		"",
		"| run | gpumode: Cordoning + Draining | kubectl drain --ignore-daemonsets --delete-emptydir-data | ratio | evictions (refused 429), gpumode / kubectl | pod GET+LIST, all clients, gpumode / kubectl |",
		"|---|---|---|---|---|---|",
	}
	var ratios []float64
	for i, r := range all {
		ratio := r.gm.Seconds() / r.kc.Seconds()
		ratios = append(ratios, ratio)
		lines = append(lines, fmt.Sprintf("| %d | %.1f s | %.1f s | %.2f | %.0f (%.0f) / %.0f (%.0f) | %.0f / %.0f |",
			i+1, r.gm.Seconds(), r.kc.Seconds(), ratio, r.gmEvict, r.gmRefused, r.kcEvict, r.kcRefused, r.gmReads, r.kcReads))
	}
	sort.Float64s(ratios)
	lines = append(lines, "", fmt.Sprintf("Median ratio %.2f (goal <= 0.5).", ratios[len(ratios)/2]))
	report(t, lines...)
}

// drainRun is what one run measured.
type drainRun struct {
	evicted                     int
	gm, kc                      time.Duration
	gmEvict, gmRefused, gmReads float64
	kcEvict, kcRefused, kcReads float64
}

func benchDrainOnce(t *testing.T) drainRun {
	b := StartBed(t, nil, "--nodes", "4", "--gpu-model", "H100-80GB")
	ctx := context.Background()
	gm, kc := "gpu-001", "gpu-002"
	spares := map[string]string{gm: "gpu-003", kc: "gpu-004"}
	InstallGpumode(t, b)
	StartController(t, b, "--log-level", "info")
	LabelNodes(t, b, "bench=drain", "gpu-001", "gpu-002", "gpu-003", "gpu-004")
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: setup}
spec:
  nodeSelector: {matchLabels: {bench: drain}}
  mode: vgpu
  rollout: {maxUnavailable: 4}
`)
	WaitPolicy(t, b, "setup", 3*time.Minute, "four nodes in vgpu mode", Converged)
	DeletePolicy(t, b, "setup")
	Eventually(t, time.Minute, "the setup policy gone", func(context.Context) error {
		if _, err := GetPolicyStatus(t, b, "setup"); err == nil {
			return fmt.Errorf("still there")
		}
		return nil
	})
	// Fill both nodes to the kubelet's 110 pods; spares cordoned meanwhile.
	_, ds := podsOn(t, b, gm)
	workloads := []drainWorkload{
		{name: "train", replicas: 10, gpu: true},
		{name: "infer", replicas: 10, gpu: true, pdbMax: 3},
		{name: "notebook", replicas: 10, gpu: true, emptyDir: true},
		{name: "web", replicas: 40, pdbMax: 10},
		{name: "cache", replicas: 10, emptyDir: true},
		{name: "worker", replicas: 110 - ds - 80},
	}
	for _, n := range spares {
		b.MustKubectl("cordon", n)
	}
	for _, target := range []string{gm, kc} {
		side := map[string]string{gm: "gpumode", kc: "kubectl"}[target]
		for _, w := range workloads {
			if _, err := b.CS.AppsV1().Deployments("default").Create(ctx, benchDeployment(w, side, target, spares[target]), metav1.CreateOptions{}); err != nil {
				t.Fatal(err)
			}
			if w.pdbMax > 0 {
				max := intstr.FromInt32(int32(w.pdbMax))
				pdb := &policyv1.PodDisruptionBudget{
					ObjectMeta: metav1.ObjectMeta{Name: w.name + "-" + side, Namespace: "default"},
					Spec: policyv1.PodDisruptionBudgetSpec{
						MaxUnavailable: &max,
						Selector:       &metav1.LabelSelector{MatchLabels: map[string]string{"app": w.name, "side": side}},
					},
				}
				if _, err := b.CS.PolicyV1().PodDisruptionBudgets("default").Create(ctx, pdb, metav1.CreateOptions{}); err != nil {
					t.Fatal(err)
				}
			}
		}
	}
	Eventually(t, 5*time.Minute, "110 pods running and ready on each node", func(context.Context) error {
		for _, target := range []string{gm, kc} {
			if all, _ := podsOn(t, b, target); all != 110 {
				return fmt.Errorf("%s has %d pods", target, all)
			}
		}
		for _, side := range []string{"gpumode", "kubectl"} {
			if n := len(podsRunningOn(t, b, "side="+side)); n != 110-ds {
				return fmt.Errorf("%d of %s's pods ready", n, side)
			}
		}
		return nil
	})
	// Every budget must count its pods healthy before a drain starts.
	Eventually(t, time.Minute, "budgets observed", func(context.Context) error {
		pl, err := b.CS.PolicyV1().PodDisruptionBudgets("default").List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		for _, p := range pl.Items {
			if p.Status.DisruptionsAllowed == 0 {
				return fmt.Errorf("%s allows %d", p.Name, p.Status.DisruptionsAllowed)
			}
		}
		return nil
	})
	for _, n := range spares {
		b.MustKubectl("uncordon", n)
	}
	evicted := 110 - ds

	// gpumode: the same options kubectl is given below.
	ev0, rf0, rd0 := podRequests(t, b)
	timed := drainPhases(t, b, gm)
	Apply(t, b, fmt.Sprintf(`
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: drain}
spec:
  nodeSelector: {matchLabels: {kubernetes.io/hostname: %s}}
  mode: full
  rollout:
    drain: {gpuPodsOnly: false, deleteEmptyDirData: true, timeoutSeconds: 600}
`, gm))
	gmTook := timed(15 * time.Minute)
	ev1, rf1, rd1 := podRequests(t, b)
	WaitPolicy(t, b, "drain", 5*time.Minute, "the switch to finish", Converged)
	if all, d := podsOn(t, b, gm); all != d {
		t.Fatalf("gpumode left %d pods on %s", all-d, gm)
	}
	Eventually(t, 5*time.Minute, "gpumode's evicted pods running on the spare", func(context.Context) error {
		if n := len(podsRunningOn(t, b, "side=gpumode")); n != evicted {
			return fmt.Errorf("%d of %d", n, evicted)
		}
		return nil
	})

	// kubectl drain with the matching options, same kubectl as the tests.
	kubectl := filepath.Join(repoRoot(t), "build", "e2e", "bin", "kubectl")
	logPath := filepath.Join(b.Dir, "kubectl-drain.log")
	logf, err := os.Create(logPath)
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(kubectl, "--kubeconfig", filepath.Join(b.Dir, "kubeconfig"), "drain", kc,
		"--ignore-daemonsets", "--delete-emptydir-data", "--timeout=600s")
	cmd.Stdout, cmd.Stderr = logf, logf
	ev2, rf2, rd2 := podRequests(t, b)
	t0 := time.Now()
	err = cmd.Run()
	kcTook := time.Since(t0)
	logf.Close()
	ev3, rf3, rd3 := podRequests(t, b)
	out, _ := os.ReadFile(logPath)
	if err != nil {
		t.Fatalf("kubectl drain: %v\n%s", err, tailLines(string(out), 20))
	}
	if all, d := podsOn(t, b, kc); all != d {
		t.Fatalf("kubectl left %d pods on %s", all-d, kc)
	}
	b.MustKubectl("uncordon", kc)

	return drainRun{evicted: evicted, gm: gmTook, kc: kcTook,
		gmEvict: ev1 - ev0, gmRefused: rf1 - rf0, gmReads: rd1 - rd0,
		kcEvict: ev3 - ev2, kcRefused: rf3 - rf2, kcReads: rd3 - rd2}
}
