package gpus

import (
	"strings"
	"testing"

	"gpumode.io/e2e/fakesmi"
)

// The node labels must describe the same GPUs the fake nvidia-smi reports.
func TestModelsMatchFakeSMI(t *testing.T) {
	for _, m := range Models {
		f, err := fakesmi.LookupModel(m.Name)
		if err != nil {
			t.Fatalf("%s: %v", m.Name, err)
		}
		if want := strings.ReplaceAll(f.Name, " ", "-"); m.Product != want {
			t.Errorf("%s: product label %q, nvidia-smi name %q (GFD label %q)", m.Name, m.Product, f.Name, want)
		}
		// fakesmi's architecture says what MIG does; without MIG it is
		// "none", and the family is GFD's alone (ada-lovelace).
		noMIG := f.Arch == fakesmi.NoMIG
		if noMIG == m.MIGCapable() {
			t.Errorf("%s: MIG capable %v, fakesmi architecture %s", m.Name, m.MIGCapable(), f.Arch)
		}
		if m.MemoryMiB != f.MemoryMiB || m.DeviceID != f.DeviceID || (!noMIG && m.Family != string(f.Arch)) {
			t.Errorf("%s: %d MiB %s %s vs fakesmi %d MiB %s %s", m.Name, m.MemoryMiB, m.DeviceID, m.Family, f.MemoryMiB, f.DeviceID, f.Arch)
		}
		for p, max := range m.MIGProfiles {
			gp, ok := f.Profile(p)
			if !ok || gp.Max != max {
				t.Errorf("%s: profile %s max %d, fakesmi %v", m.Name, p, max, gp)
			}
		}
	}
}

func TestForNode(t *testing.T) {
	if ForNode("mixed", 0).Name != "A100-SXM4-40GB" || ForNode("mixed", 3).Name != "H200" || ForNode("mixed", 4).Name != "A100-SXM4-40GB" {
		t.Error("mixed does not cycle the MIG models in order")
	}
	if ForNode("L40S", 0) == nil || ForNode("L40S", 0).MIGCapable() {
		t.Error("L40S: a model without MIG")
	}
	if ForNode("H100-80GB", 7).Name != "H100-80GB" || ForNode("nope", 0) != nil {
		t.Error("ForNode by name")
	}
}
