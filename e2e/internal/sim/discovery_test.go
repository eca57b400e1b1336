package sim

import (
	"io"
	"strings"
	"testing"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes/fake"

	"gpumode.io/e2e/fakesmi"
	"gpumode.io/e2e/internal/gpus"
)

// smi runs fake nvidia-smi commands against st, failing the test on a
// non-zero exit.
func smi(t *testing.T, st *fakesmi.State, cmds ...[]string) {
	t.Helper()
	for _, c := range cmds {
		if code := fakesmi.Execute(st, c, io.Discard); code != 0 {
			t.Fatalf("nvidia-smi %v: exit %d", c, code)
		}
	}
}

func TestDiscoveryLabels(t *testing.T) {
	m := gpus.Lookup("H100-80GB")
	newState := func() *fakesmi.State {
		st, err := fakesmi.NewStateSeeded("H100-80GB", 2, t.Name())
		if err != nil {
			t.Fatal(err)
		}
		return st
	}
	check := func(what string, got map[string]string, want map[string]string) {
		t.Helper()
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: %s=%q, want %q (all: %v)", what, k, got[k], v, got)
			}
		}
	}
	absent := func(what string, got map[string]string, keys ...string) {
		t.Helper()
		for _, k := range keys {
			if v, ok := got[k]; ok {
				t.Errorf("%s: %s=%q, want no such label", what, k, v)
			}
		}
	}

	st := newState()
	full := map[string]string{"nvidia.com/gpu.product": m.Product, "nvidia.com/gpu.count": "2",
		"nvidia.com/gpu.memory": "81559", "nvidia.com/gpu.replicas": "1"}
	check("full, mixed", discoveryLabels(m, st, strat("mixed")), full)
	check("full, single", discoveryLabels(m, st, strat("single")), full)

	// Both GPUs in MIG, 7 x 1g.10gb each.
	smi(t, st, []string{"-mig", "1"}, []string{"mig", "-cgi", "1g.10gb,1g.10gb,1g.10gb,1g.10gb,1g.10gb,1g.10gb,1g.10gb", "-C"})
	got := discoveryLabels(m, st, strat("mixed"))
	check("mig, mixed", got, map[string]string{"nvidia.com/mig.strategy": "mixed", "nvidia.com/gpu.product": m.Product,
		"nvidia.com/gpu.count": "2", "nvidia.com/mig-1g.10gb.count": "14", "nvidia.com/mig-1g.10gb.memory": "9984"})
	got = discoveryLabels(m, st, strat("single"))
	check("mig, single", got, map[string]string{"nvidia.com/mig.strategy": "single",
		"nvidia.com/gpu.product": m.Product + "-MIG-1g.10gb", "nvidia.com/gpu.count": "14", "nvidia.com/gpu.memory": "9984"})
	absent("mig, single", got, "nvidia.com/mig-1g.10gb.count")

	// A second device type does not suit the single strategy.
	smi(t, st, []string{"mig", "-dci", "-i", "1"}, []string{"mig", "-dgi", "-i", "1"},
		[]string{"mig", "-i", "1", "-cgi", "3g.40gb,3g.40gb", "-C"})
	got = discoveryLabels(m, st, strat("single"))
	check("two types, single", got, map[string]string{"nvidia.com/gpu.product": m.Product + "-MIG-INVALID",
		"nvidia.com/gpu.count": "0", "nvidia.com/gpu.memory": "0", "nvidia.com/gpu.replicas": "0"})
	check("two types, mixed", discoveryLabels(m, st, strat("mixed")), map[string]string{
		"nvidia.com/mig-1g.10gb.count": "7", "nvidia.com/mig-3g.40gb.count": "2"})

	// A MIG-enabled GPU without devices does not either; mixed ignores it.
	smi(t, st, []string{"mig", "-dci", "-i", "1"}, []string{"mig", "-dgi", "-i", "1"})
	check("empty GPU, single", discoveryLabels(m, st, strat("single")), map[string]string{"nvidia.com/gpu.product": m.Product + "-MIG-INVALID"})
	got = discoveryLabels(m, st, strat("mixed"))
	check("empty GPU, mixed", got, map[string]string{"nvidia.com/mig-1g.10gb.count": "7", "nvidia.com/gpu.count": "2"})
	absent("empty GPU, mixed", got, "nvidia.com/mig-3g.40gb.count")

	// Media-engine profiles: '+' is '.' in label keys and values.
	me := newState()
	smi(t, me, []string{"-mig", "1"}, []string{"mig", "-cgi", "1g.10gb+me", "-C"})
	check("+me, mixed", discoveryLabels(m, me, strat("mixed")), map[string]string{"nvidia.com/mig-1g.10gb.me.count": "2"})
	check("+me, single", discoveryLabels(m, me, strat("single")), map[string]string{"nvidia.com/gpu.product": m.Product + "-MIG-1g.10gb.me"})

	// GPU 0 in MIG next to GPU 1 without.
	smi(t, st, []string{"-i", "1", "-mig", "0"})
	check("MIG next to full, single", discoveryLabels(m, st, strat("single")), map[string]string{"nvidia.com/gpu.product": m.Product + "-MIG-INVALID"})
}

func TestIsDiscoveryLabel(t *testing.T) {
	for k, want := range map[string]bool{
		"nvidia.com/gpu.product": true, "nvidia.com/gpu.count": true, "nvidia.com/mig.strategy": true,
		"nvidia.com/mig-1g.10gb.count": true, "nvidia.com/mig-3g.40gb.memory": true,
		"nvidia.com/mig.config": false, "nvidia.com/mig.capable": false, "nvidia.com/gpu.deploy.device-plugin": false,
		"nvidia.com/device-plugin.config": false, "pool": false,
	} {
		if got := IsDiscoveryLabel(k); got != want {
			t.Errorf("IsDiscoveryLabel(%q) = %v", k, got)
		}
	}
}

// strat is a config that sets only a MIG strategy.
func strat(strategy string) sharing { return sharing{strategy: strategy, replicas: 1} }

func TestDiscoveryLabelsOfSharedGPUs(t *testing.T) {
	m := gpus.Lookup("H100-80GB")
	st, err := fakesmi.NewStateSeeded("H100-80GB", 2, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	ts := sharing{strategy: "none", replicas: 4}
	got := discoveryLabels(m, st, ts)
	if got["nvidia.com/gpu.product"] != m.Product+"-SHARED" || got["nvidia.com/gpu.replicas"] != "4" || got["nvidia.com/gpu.count"] != "2" {
		t.Errorf("time-sliced: %v", got)
	}
	if _, ok := got["nvidia.com/mig.strategy"]; ok {
		t.Errorf("none writes no mig.strategy: %v", got)
	}
	ts.rename = "nvidia.com/gpu.shared"
	if got := discoveryLabels(m, st, ts); got["nvidia.com/gpu.product"] != m.Product || got["nvidia.com/gpu.replicas"] != "4" {
		t.Errorf("renamed: %v", got)
	}
	// All GPUs MIG-enabled: their labels carry no sharing.
	smi(t, st, []string{"-mig", "1"}, []string{"mig", "-cgi", "3g.40gb,3g.40gb", "-C"})
	if got := discoveryLabels(m, st, strat("mixed")); got["nvidia.com/gpu.replicas"] != "0" || got["nvidia.com/gpu.product"] != m.Product {
		t.Errorf("all MIG, mixed: %v", got)
	}
}

func TestParsePluginConfig(t *testing.T) {
	ts := func(devices string) string {
		return "version: v1\nsharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 2, " + devices + "}]}}\n"
	}
	for _, c := range []struct {
		text string
		want sharing
		err  bool
	}{
		{"version: v1\nflags: {migStrategy: single}\n", sharing{"single", 1, ""}, false},
		{"version: v1\n", sharing{operatorMIGStrategy, 1, ""}, false},
		{TimeSlicingConfig, sharing{"none", 4, ""}, false},
		{"version: v1\nsharing: {timeSlicing: {renameByDefault: true, resources: [{name: nvidia.com/gpu, replicas: 2}]}}\n",
			sharing{operatorMIGStrategy, 2, "nvidia.com/gpu.shared"}, false},
		// A resource's own rename is ignored, as the plugin does.
		{"version: v1\nsharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, rename: gpu.ts, replicas: 2}]}}\n",
			sharing{operatorMIGStrategy, 2, ""}, false},
		{"version: v1\nflags: {migStrategy: half}\n", sharing{}, true},
		{"version: v1\nsharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 0}]}}\n", sharing{}, true},
		{"version: v1\nsharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replicas: 1}]}}\n", sharing{}, true},
		{"version: v1\nsharing: {timeSlicing: {resources: [{name: nvidia.com/gpu, replica: 4}]}}\n", sharing{}, true},
		{"version: v1\nsharing: {timeSlicing: {resources: []}}\n", sharing{}, true},
		{"version: v1\nsharing: {timeSlicing: {resources: [{replicas: 4}]}}\n", sharing{}, true},
		{"version: v1\nsharing: {}\n", sharing{operatorMIGStrategy, 1, ""}, false},
		{"version: v1\nsharing:\n  timeSlicing:\n", sharing{}, true},
		{"version: v1\nsharing: {timeSlicing: null}\n", sharing{}, true},
		// devices as the plugin's loader reads them; what it takes it
		// ignores, sharing every GPU.
		{ts("devices: all"), sharing{operatorMIGStrategy, 2, ""}, false},
		{ts("devices: 1"), sharing{operatorMIGStrategy, 2, ""}, false},
		{ts(`devices: [0, "1", "0:2", GPU-b1028956-cfa2-0990-bf4a-5da9abb51763]`), sharing{operatorMIGStrategy, 2, ""}, false},
		{ts("devices: []"), sharing{operatorMIGStrategy, 2, ""}, false},
		{ts("devices: some"), sharing{}, true},
		{ts("devices: 0"), sharing{}, true},
		{ts("devices: null"), sharing{}, true},
		{ts("devices: [gpu0]"), sharing{}, true},
		{ts("devices: {all: true}"), sharing{}, true},
	} {
		got, err := parsePluginConfig(c.text)
		if (err != nil) != c.err || (!c.err && got != c.want) {
			t.Errorf("%q: %+v, %v; want %+v (error %v)", c.text, got, err, c.want, c.err)
		}
	}
}

func TestNodeSharingFollowsTheConfigMap(t *testing.T) {
	label := func(v string) map[string]string {
		return map[string]string{"nvidia.com/device-plugin.config": v, "nvidia.com/mig.strategy": "single"}
	}
	// No ConfigMap: only the strategies, never GFD's own label.
	s := &Sim{cs: fake.NewSimpleClientset()}
	if sh, p, _ := s.nodeSharing(map[string]string{"nvidia.com/mig.strategy": "single"}); sh.strategy != "none" || p != "" {
		t.Errorf("from GFD's own label: %+v %q", sh, p)
	}
	if sh, _, _ := s.nodeSharing(label("single")); sh.strategy != "single" {
		t.Errorf("no ConfigMap, single: %+v", sh)
	}
	if sh, _, _ := s.nodeSharing(label("time-slicing")); sh != strat("none") {
		t.Errorf("no ConfigMap, time-slicing: %+v", sh)
	}
	s = &Sim{cs: fake.NewSimpleClientset(&corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Namespace: "gpu-operator", Name: PluginConfigMap},
		Data:       PluginConfigs,
		BinaryData: map[string][]byte{"bin": []byte(TimeSlicingConfig),
			"broken": []byte(strings.Replace(TimeSlicingConfig, "replicas:", "replica:", 1))},
	})}
	if sh, p, _ := s.nodeSharing(label("bin")); sh.replicas != 4 || p != "" {
		t.Errorf("binaryData key: %+v %q", sh, p)
	}
	if sh, p, _ := s.nodeSharing(label("time-slicing")); sh.replicas != 4 || p != "" {
		t.Errorf("time-slicing: %+v %q", sh, p)
	}
	if sh, p, _ := s.nodeSharing(label("single")); sh.strategy != "single" || p != "" {
		t.Errorf("single: %+v %q", sh, p)
	}
	if sh, p, _ := s.nodeSharing(nil); sh != strat("none") || p != "" {
		t.Errorf("no label: %+v %q", sh, p)
	}
	if _, p, crashes := s.nodeSharing(label("typo")); p != "specified config typo does not exist" || crashes {
		t.Errorf("missing key: %q, plugin crashes %v", p, crashes)
	}
	if _, p, crashes := s.nodeSharing(label("broken")); p != "unable to parse config broken: no replicas specified" || !crashes {
		t.Errorf("unloadable key: %q, plugin crashes %v", p, crashes)
	}
}
