package sim

import (
	"io"
	"testing"

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
	check("full, mixed", discoveryLabels(m, st, "mixed"), full)
	check("full, single", discoveryLabels(m, st, "single"), full)

	// Both GPUs in MIG, 7 x 1g.10gb each.
	smi(t, st, []string{"-mig", "1"}, []string{"mig", "-cgi", "1g.10gb,1g.10gb,1g.10gb,1g.10gb,1g.10gb,1g.10gb,1g.10gb", "-C"})
	got := discoveryLabels(m, st, "mixed")
	check("mig, mixed", got, map[string]string{"nvidia.com/mig.strategy": "mixed", "nvidia.com/gpu.product": m.Product,
		"nvidia.com/gpu.count": "2", "nvidia.com/mig-1g.10gb.count": "14", "nvidia.com/mig-1g.10gb.memory": "9984"})
	got = discoveryLabels(m, st, "single")
	check("mig, single", got, map[string]string{"nvidia.com/mig.strategy": "single",
		"nvidia.com/gpu.product": m.Product + "-MIG-1g.10gb", "nvidia.com/gpu.count": "14", "nvidia.com/gpu.memory": "9984"})
	absent("mig, single", got, "nvidia.com/mig-1g.10gb.count")

	// A second device type does not suit the single strategy.
	smi(t, st, []string{"mig", "-dci", "-i", "1"}, []string{"mig", "-dgi", "-i", "1"},
		[]string{"mig", "-i", "1", "-cgi", "3g.40gb,3g.40gb", "-C"})
	got = discoveryLabels(m, st, "single")
	check("two types, single", got, map[string]string{"nvidia.com/gpu.product": m.Product + "-MIG-INVALID",
		"nvidia.com/gpu.count": "0", "nvidia.com/gpu.memory": "0", "nvidia.com/gpu.replicas": "0"})
	check("two types, mixed", discoveryLabels(m, st, "mixed"), map[string]string{
		"nvidia.com/mig-1g.10gb.count": "7", "nvidia.com/mig-3g.40gb.count": "2"})

	// A MIG-enabled GPU without devices does not either; mixed ignores it.
	smi(t, st, []string{"mig", "-dci", "-i", "1"}, []string{"mig", "-dgi", "-i", "1"})
	check("empty GPU, single", discoveryLabels(m, st, "single"), map[string]string{"nvidia.com/gpu.product": m.Product + "-MIG-INVALID"})
	got = discoveryLabels(m, st, "mixed")
	check("empty GPU, mixed", got, map[string]string{"nvidia.com/mig-1g.10gb.count": "7", "nvidia.com/gpu.count": "2"})
	absent("empty GPU, mixed", got, "nvidia.com/mig-3g.40gb.count")

	// Media-engine profiles: '+' is '.' in label keys and values.
	me := newState()
	smi(t, me, []string{"-mig", "1"}, []string{"mig", "-cgi", "1g.10gb+me", "-C"})
	check("+me, mixed", discoveryLabels(m, me, "mixed"), map[string]string{"nvidia.com/mig-1g.10gb.me.count": "2"})
	check("+me, single", discoveryLabels(m, me, "single"), map[string]string{"nvidia.com/gpu.product": m.Product + "-MIG-1g.10gb.me"})

	// GPU 0 in MIG next to GPU 1 without.
	smi(t, st, []string{"-i", "1", "-mig", "0"})
	check("MIG next to full, single", discoveryLabels(m, st, "single"), map[string]string{"nvidia.com/gpu.product": m.Product + "-MIG-INVALID"})
}

func TestIsDiscoveryLabel(t *testing.T) {
	for k, want := range map[string]bool{
		"nvidia.com/gpu.product": true, "nvidia.com/gpu.count": true, "nvidia.com/mig.strategy": true,
		"nvidia.com/mig-1g.10gb.count": true, "nvidia.com/mig-3g.40gb.memory": true,
		"nvidia.com/mig.config": false, "nvidia.com/mig.capable": false, "nvidia.com/gpu.deploy.device-plugin": false,
		"nvidia.com/device-plugin.config": false, "pool": false,
	} {
		if got := isDiscoveryLabel(k); got != want {
			t.Errorf("isDiscoveryLabel(%q) = %v", k, got)
		}
	}
}

func TestMIGStrategyIgnoresTheLabelDiscoveryWrites(t *testing.T) {
	if s := migStrategy(map[string]string{"nvidia.com/mig.strategy": "single"}); s != "mixed" {
		t.Errorf("from GFD's own label: %q", s)
	}
	if s := migStrategy(map[string]string{"nvidia.com/device-plugin.config": "single"}); s != "single" {
		t.Errorf("from the plugin config: %q", s)
	}
	if s := migStrategy(map[string]string{"nvidia.com/device-plugin.config": "time-slicing"}); s != "mixed" {
		t.Errorf("from a config that names no strategy: %q", s)
	}
}
