package tests

// make chaos (and a short run in make test): switches under SIGKILLs of the
// controller at random moments, an API server restart mid-rollout, a forced
// 410 by etcd compaction and nvidia-smi faults. Every cycle must end with
// each node converged or failed with a reason; nothing left cordoned by
// gpumode without a failed state; no label changed beyond the mode's own;
// the PodDisruptionBudget never violated (ready pods watched, and every
// pod gpumode removed evicted, by the API server's audit log); no helper
// pod left behind; the
// NVIDIA device plugin and HAMi's never running on one node at once.
// TestChaosHAMiProfile does the same under the hami profile, with HAMi as
// its upstream chart deploys it (gpu=on, registering nvidia.com/gpu).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/tools/cache"

	"gpumode.io/e2e/internal/sim"
)

// Labels a switch may change beyond the mode's own (modeLabels): gpumode's,
// the plugin config (checked on its own), and the ones feature discovery
// derives from the MIG devices (mixed strategy; gpu.replicas is 0 while
// every GPU is MIG-enabled). The operands stopped while the hardware
// changes (feature discovery, DCGM, the exporter) are not among them: they
// must come back as they were.
func switchOwnedLabel(k string) bool {
	return strings.HasPrefix(k, "gpumode.io/") ||
		k == "nvidia.com/gpu.replicas" ||
		k == "nvidia.com/device-plugin.config" ||
		strings.HasPrefix(k, "nvidia.com/mig-") && (strings.HasSuffix(k, ".count") || strings.HasSuffix(k, ".memory"))
}

// modeLabels: the labels a node in mode carries under the profile (hami or
// gpu-operator-hami), "" for a label that must be absent. mig-manager stays
// off in every mode, so that it cannot undo a layout.
func modeLabels(mode string, hami bool) map[string]string {
	on := func(b bool) string {
		if b {
			return "true"
		}
		return "false"
	}
	m := map[string]string{
		"nvidia.com/gpu.deploy.device-plugin": on(mode != "vgpu"),
		"nvidia.com/gpu.deploy.mig-manager":   "false",
	}
	if hami {
		m["gpu"] = ""
		if mode == "vgpu" {
			m["gpu"] = "on"
		}
	} else {
		m["nvidia.com/vgpu.deploy.device-plugin"] = on(mode == "vgpu")
	}
	return m
}

func TestChaos(t *testing.T) { runChaos(t, false) }

func TestChaosHAMiProfile(t *testing.T) { runChaos(t, true) }

// runChaos runs CHAOS_CYCLES cycles (3 by default) under the default
// profile, or under hami.
func runChaos(t *testing.T, hami bool) {
	requireE2E(t)
	cycles := envInt("CHAOS_CYCLES", 3)
	const nodes = 8
	seed := time.Now().UnixNano()
	rng := rand.New(rand.NewSource(seed))
	t.Logf("chaos seed %d, %d cycles of %d nodes", seed, cycles, nodes)
	b := StartBed(t, nil, "--nodes", "10", "--gpu-model", "mixed")
	InstallGpumode(t, b)
	if hami {
		useUpstreamHAMi(t, b)
		AppendControllerConfig(t, b, "profile: hami\n")
	}
	var names []string
	for i := 1; i <= nodes; i++ {
		names = append(names, nodeName(i, 10))
	}
	LabelNodes(t, b, "pool=chaos", names...)
	// Every third node is time-sliced through a device plugin config of
	// its own, which mig replaces with the strategy's and leaving mig puts
	// back; the controller checks the configs before it drains.
	ownConfig := map[string]string{}
	for i := 0; i < nodes; i += 3 {
		ownConfig[names[i]] = "time-slicing"
		LabelNodes(t, b, "nvidia.com/device-plugin.config=time-slicing", names[i])
	}
	AppendControllerConfig(t, b, "devicePluginConfigMap: {namespace: gpu-operator, name: device-plugin-config}\n")
	Eventually(t, 60*time.Second, "the time-sliced nodes relabelled", func(context.Context) error {
		for n := range ownConfig {
			if r := GetNode(t, b, n).Labels["nvidia.com/gpu.replicas"]; r != "4" {
				return fmt.Errorf("%s: gpu.replicas %q", n, r)
			}
		}
		return nil
	})
	before := map[string]map[string]string{}
	for _, n := range names {
		before[n] = GetNode(t, b, n).Labels
	}
	Apply(t, b, workload("train", 6, "{}"))
	Apply(t, b, fmt.Sprintf(pdb, "train", 4))
	Eventually(t, 90*time.Second, "workload running", func(ctx context.Context) error {
		if n := len(podsRunningOn(t, b, "app=train")); n != 6 {
			return fmt.Errorf("%d running", n)
		}
		return nil
	})

	// Watch the budget: ready train pods must never fall below 4 through
	// evictions. (Scheduling a replacement takes a moment; evictions are
	// only allowed while more than 4 are healthy, so the count stays >= 4.)
	// An informer, not a bare watch: it lists and watches again across the
	// API server restarts below, so the floor is kept for the whole run.
	var mu sync.Mutex
	ready := map[string]bool{}
	minReady := 6
	counting := false
	observe := func(name string, r bool) {
		mu.Lock()
		defer mu.Unlock()
		ready[name] = r
		c := 0
		for _, v := range ready {
			if v {
				c++
			}
		}
		// The first list delivers one add per pod: count from the moment
		// all six have been seen ready.
		if c == 6 {
			counting = true
		}
		if counting && c < minReady {
			minReady = c
		}
	}
	factory := informers.NewSharedInformerFactoryWithOptions(b.CS, 0, informers.WithNamespace("default"),
		informers.WithTweakListOptions(func(o *metav1.ListOptions) { o.LabelSelector = "app=train" }))
	podInformer := factory.Core().V1().Pods().Informer()
	podInformer.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { p := o.(*corev1.Pod); observe(p.Name, runningReady(p)) },
		UpdateFunc: func(_, o any) { p := o.(*corev1.Pod); observe(p.Name, runningReady(p)) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				observe(p.Name, false)
			}
		},
	})
	stop := make(chan struct{})
	defer close(stop)
	factory.Start(stop)
	if !cache.WaitForCacheSync(stop, podInformer.HasSynced) {
		t.Fatal("pod informer did not sync")
	}

	overlaps := watchPluginOverlap(t, b, stop)

	ctl := StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: chaos}
spec:
  nodeSelector: {matchLabels: {pool: chaos}}
  mode: full
  rollout: {maxUnavailable: 2, maxFailures: 8}
`)
	modes := []string{"mig", "vgpu", "full"}
	switches, kills := 0, 0
	apiRestarted, compacted := false, false
	for c := 0; c < cycles; c++ {
		mode := modes[c%3]
		patch := map[string]string{
			"mig":  `{"spec":{"mode":"mig","vgpu":null,"mig":{"config":"all-balanced"}}}`,
			"vgpu": `{"spec":{"mode":"vgpu","mig":null,"vgpu":{"splitCount":5}}}`,
			"full": `{"spec":{"mode":"full","mig":null,"vgpu":null}}`,
		}[mode]
		// One node's nvidia-smi fails once: creating instances or
		// changing the MIG mode on the way into mig, destroying instances
		// on the way out (into vgpu). A fault armed on a node that runs
		// no such command in its cycle fires in a later one.
		faulty := names[rng.Intn(len(names))]
		switch mode {
		case "mig", "full":
			FakeSMI(t, b, faulty, "--fake-inject", "--match", "-mig [01]$|-cgi", "--exit", "255", "--times", "1",
				"--stdout", "Unable to create a GPU instance on GPU  0 using profile 9: Insufficient Resources\n")
		case "vgpu":
			FakeSMI(t, b, faulty, "--fake-inject", "--match", "-dgi", "--exit", "255", "--times", "1",
				"--stdout", "Unable to destroy GPU instance ID  1 from GPU  0: In use by another client\n")
		}
		PatchPolicy(t, b, "chaos", patch)
		deadline := time.Now().Add(6 * time.Minute)
		for {
			s, err := GetPolicyStatus(t, b, "chaos")
			if err == nil && s.ObservedGeneration == s.Generation && s.Summary.Switching == 0 &&
				s.Summary.Pending == 0 && s.Summary.Converged+s.Summary.Failed == nodes {
				if s.Summary.Failed == 0 {
					break
				}
				// Failed nodes: each says why, on the policy and, while
				// the node is marked failed (the status may be a moment
				// behind a retry), in its record; retry them, as a person
				// would.
				for _, n := range s.Nodes {
					if n.Phase != "Failed" {
						continue
					}
					node := GetNode(t, b, n.Name)
					rec := SwitchAnnotation(node)
					failed := node.Labels["gpumode.io/state"] == "failed"
					if n.Message == "" || failed && (rec == nil || rec["reason"] == nil || rec["reason"] == "") {
						t.Errorf("%s failed without saying why: message %q, record %v", n.Name, n.Message, rec)
					}
					b.MustKubectl("annotate", "node", n.Name, "gpumode.io/retry=1", "--overwrite")
				}
			}
			if time.Now().After(deadline) {
				t.Fatalf("cycle %d (%s) did not converge: %+v", c, mode, s)
			}
			time.Sleep(time.Duration(1000+rng.Intn(4000)) * time.Millisecond)
			switch {
			case !apiRestarted && c == 0:
				apiRestarted = true
				t.Logf("restarting kube-apiserver mid-rollout")
				testbed(t, nil, "stop", "--dir", b.Dir, "kube-apiserver")
				if _, err := testbed(t, nil, "start", "--dir", b.Dir, "kube-apiserver"); err != nil {
					t.Fatal(err)
				}
			case !compacted && c == 1:
				compacted = true
				t.Logf("compacting etcd and restarting kube-apiserver (410 Gone for watches)")
				etcdCompact(t, b)
				testbed(t, nil, "stop", "--dir", b.Dir, "kube-apiserver")
				if _, err := testbed(t, nil, "start", "--dir", b.Dir, "kube-apiserver"); err != nil {
					t.Fatal(err)
				}
			default:
				kills++
				ctl.Restart()
			}
		}
		switches += nodes
		checkInvariants(t, b, names, before, ownConfig, mode, hami)
	}
	mu.Lock()
	lowest := minReady
	mu.Unlock()
	t.Logf("%d switches, %d controller kills, lowest ready train pods %d", switches, kills, lowest)
	if lowest < 4 {
		t.Errorf("ready pods fell to %d, below the budget's minAvailable 4", lowest)
	}
	// Every workload pod gpumode removed went through the Eviction API,
	// which enforces the budget: the API server's audit log has each
	// eviction and each pod deletion.
	allowed, refused, direct := auditedRemovals(t, b)
	t.Logf("gpumode's evictions: %d allowed, %d refused by the budget (429)", allowed, refused)
	if allowed == 0 {
		t.Errorf("no eviction in the audit log: the drains evicted nothing, or the log is not written")
	}
	if len(direct) > 0 {
		t.Errorf("gpumode deleted workload pods directly, past their budget: %v", direct)
	}
	if o := overlaps(); len(o) > 0 {
		if len(o) > 5 {
			o = append(o[:5], fmt.Sprintf("and %d more", len(o)-5))
		}
		t.Errorf("both device plugins ran at once: %s", strings.Join(o, "; "))
	}
}

// watchPluginOverlap records every moment a node runs the NVIDIA device
// plugin and HAMi's at once (both would hold its GPUs; upstream HAMi would
// register nvidia.com/gpu too). One watch of all pods delivers changes in
// resourceVersion order, so each state of the cache was a state of the
// cluster. A pod counts from Running until it is gone or has stopped:
// a deleted pod's process runs on through its grace period.
func watchPluginOverlap(t *testing.T, b *Bed, stop <-chan struct{}) func() []string {
	t.Helper()
	var mu sync.Mutex
	running := map[string]map[string]string{} // node -> pod key -> role
	var found []string
	update := func(p *corev1.Pod, gone bool) {
		role := p.Annotations[sim.RoleAnnotation]
		if role != sim.RoleNvidiaPlugin && role != sim.RoleHAMiPlugin || p.Spec.NodeName == "" {
			return
		}
		key := p.Namespace + "/" + p.Name
		mu.Lock()
		defer mu.Unlock()
		on := running[p.Spec.NodeName]
		if on == nil {
			on = map[string]string{}
			running[p.Spec.NodeName] = on
		}
		if gone || p.Status.Phase != corev1.PodRunning {
			delete(on, key)
			return
		}
		on[key] = role
		for other, r := range on {
			if r != role {
				found = append(found, fmt.Sprintf("node %s: %s (%s) and %s (%s)", p.Spec.NodeName, key, role, other, r))
			}
		}
	}
	factory := informers.NewSharedInformerFactory(b.CS, 0)
	inf := factory.Core().V1().Pods().Informer()
	inf.AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    func(o any) { update(o.(*corev1.Pod), false) },
		UpdateFunc: func(_, o any) { update(o.(*corev1.Pod), false) },
		DeleteFunc: func(o any) {
			if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
				o = d.Obj
			}
			if p, ok := o.(*corev1.Pod); ok {
				update(p, true)
			}
		},
	})
	factory.Start(stop)
	if !cache.WaitForCacheSync(stop, inf.HasSynced) {
		t.Fatal("plugin pod informer did not sync")
	}
	return func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), found...)
	}
}

// checkInvariants checks the nodes after a cycle into mode: none left
// cordoned or with a switch record, all in mode, the mode's labels set as
// the profile says, every other label as it was but for those the switch
// owns, a node's own device plugin config (ownConfig) in place outside mig
// and kept aside in mig, no helper pod left.
func checkInvariants(t *testing.T, b *Bed, names []string, before map[string]map[string]string,
	ownConfig map[string]string, mode string, hami bool) {
	t.Helper()
	wantMode := modeLabels(mode, hami)
	for _, name := range names {
		own := ownConfig[name]
		n := GetNode(t, b, name)
		for k, v := range wantMode {
			if got := n.Labels[k]; got != v {
				t.Errorf("%s in %s: label %s %q, want %q", name, mode, k, got, v)
			}
		}
		want, kept := own, ""
		if mode == "mig" {
			want, kept = "mixed", own
		}
		if got := n.Labels["nvidia.com/device-plugin.config"]; got != want {
			t.Errorf("%s in %s: device plugin config label %q, want %q", name, mode, got, want)
		}
		if got := n.Annotations["gpumode.io/plugin-config"]; got != kept {
			t.Errorf("%s in %s: gpumode.io/plugin-config %q, want %q", name, mode, got, kept)
		}
		if n.Spec.Unschedulable {
			t.Errorf("%s left cordoned (state %q)", name, n.Labels["gpumode.io/state"])
		}
		if n.Labels["gpumode.io/mode"] != mode || n.Labels["gpumode.io/state"] != "ready" {
			t.Errorf("%s: mode %q state %q, want %s ready", name, n.Labels["gpumode.io/mode"], n.Labels["gpumode.io/state"], mode)
		}
		if _, ok := n.Annotations["gpumode.io/switch"]; ok {
			t.Errorf("%s: switch record left", name)
		}
		for _, p := range labelChanges(n.Labels, before[name], mode, wantMode, own != "", false) {
			t.Errorf("%s: %s", name, p)
		}
	}
	// Feature discovery's labels are its own, published when its pod runs
	// again: gpumode restores its deploy label (checked above, with every
	// label that is not discovery's) but verifies the switch by the
	// resources advertised, and waits for discovery's labels only where it
	// reads them (gpu.replicas in full). Its DaemonSet pod may come a while
	// later (the DaemonSet controller backs off after an API server
	// restart), so these labels are checked once they have settled; the
	// real one looks again every 60 s.
	start := time.Now()
	var stale, first []string
	for {
		stale = nil
		for _, name := range names {
			n := GetNode(t, b, name)
			own := ownConfig[name]
			if got := n.Labels["nvidia.com/mig.strategy"]; mode == "mig" && got != "mixed" {
				stale = append(stale, fmt.Sprintf("%s in mig: nvidia.com/mig.strategy %q, want mixed", name, got))
			}
			if own != "" && mode == "mig" {
				product := strings.TrimSuffix(before[name]["nvidia.com/gpu.product"], "-SHARED")
				if got := n.Labels["nvidia.com/gpu.product"]; got != product {
					stale = append(stale, fmt.Sprintf("%s in mig: feature discovery's product %q, want %q (the strategy's config, not time-sliced)", name, got, product))
				}
			}
			for _, p := range labelChanges(n.Labels, before[name], mode, wantMode, own != "", true) {
				stale = append(stale, name+": "+p)
			}
		}
		if first == nil {
			first = append([]string{}, stale...)
		}
		if len(stale) == 0 || time.Since(start) > 60*time.Second {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	for _, p := range stale {
		t.Errorf("after %s: %s", time.Since(start).Round(time.Second), p)
	}
	if len(stale) == 0 && len(first) > 0 {
		t.Logf("feature discovery's labels settled %s after the policy converged; at first: %s",
			time.Since(start).Round(100*time.Millisecond), strings.Join(first, "; "))
	}
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
}

// labelChanges lists the labels of a node in mode that differ from the
// ones it had before the first switch, other than those a switch may set:
// feature discovery's when discovery is true, every other label
// otherwise. In mig the strategy's config replaces a time-sliced node's
// own (ownConfig): discovery labels the strategy (outside mig the configs
// set none, and it labels none) and no longer names the GPU "-SHARED".
func labelChanges(now, before map[string]string, mode string, wantMode map[string]string, ownConfig, discovery bool) []string {
	owned := func(k string) bool {
		if sim.IsDiscoveryLabel(k) != discovery {
			return true // checked by the other call
		}
		_, modes := wantMode[k]
		return modes || switchOwnedLabel(k) ||
			mode == "mig" && k == "nvidia.com/mig.strategy" ||
			ownConfig && mode == "mig" && k == "nvidia.com/gpu.product"
	}
	var out []string
	for k, v := range before {
		if !owned(k) && now[k] != v {
			out = append(out, fmt.Sprintf("label %s changed %q -> %q", k, v, now[k]))
		}
	}
	for k := range now {
		if _, had := before[k]; !had && !owned(k) {
			out = append(out, fmt.Sprintf("label %s added", k))
		}
	}
	return out
}

// auditedRemovals reads the bed's API server audit log (evictions and pod
// deletions): gpumode's evictions allowed and refused with 429, and the
// pods outside gpumode-system it deleted directly (its helper pods are its
// own to delete).
func auditedRemovals(t *testing.T, b *Bed) (allowed, refused int, direct []string) {
	t.Helper()
	f, err := os.Open(filepath.Join(b.Dir, "logs", "audit.log"))
	if err != nil {
		t.Fatalf("audit log: %v", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var ev struct {
			Verb      string `json:"verb"`
			UserAgent string `json:"userAgent"`
			ObjectRef struct {
				Namespace, Name, Subresource string
			} `json:"objectRef"`
			ResponseStatus struct {
				Code int `json:"code"`
			} `json:"responseStatus"`
		}
		if json.Unmarshal(sc.Bytes(), &ev) != nil || !strings.HasPrefix(ev.UserAgent, "gpumode/") {
			continue
		}
		switch {
		case ev.ObjectRef.Subresource == "eviction" && ev.ResponseStatus.Code/100 == 2:
			allowed++
		case ev.ObjectRef.Subresource == "eviction" && ev.ResponseStatus.Code == 429:
			refused++
		case ev.Verb == "delete" && ev.ObjectRef.Subresource == "" && ev.ObjectRef.Namespace != "gpumode-system":
			direct = append(direct, ev.ObjectRef.Namespace+"/"+ev.ObjectRef.Name)
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("audit log: %v", err)
	}
	return allowed, refused, direct
}
