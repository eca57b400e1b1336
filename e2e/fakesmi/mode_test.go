package fakesmi

import (
	"strings"
	"testing"
)

const bus0 = "00000000:07:00.0"

func TestAmpereEnablePendingUntilReset(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 2)
	expect(t, smi(t, p, "-i 0 -mig 1"), 0, "Enabled MIG Mode for GPU "+bus0+"\nAll done.\n")
	if got := migMode(t, p, "0"); got != "Disabled, Enabled" {
		t.Fatalf("after -mig 1: %q, want pending enable", got)
	}
	// Instances cannot be created while the mode is only pending.
	expect(t, smi(t, p, "mig -cgi 19 -i 0"), ExitNotFound, "No MIG-enabled devices found.\n")
	expect(t, smi(t, p, "-i 0 -r"), 0, "GPU "+bus0+" was successfully reset.\nAll done.\n")
	if got := migMode(t, p, "0"); got != "Enabled, Enabled" {
		t.Fatalf("after reset: %q", got)
	}
	if got := migMode(t, p, "1"); got != "Disabled, Disabled" {
		t.Fatalf("GPU 1 changed: %q", got)
	}
	// Disabling is pending as well.
	expect(t, smi(t, p, "-i 0 -mig 0"), 0, "Disabled MIG Mode for GPU "+bus0+"\nAll done.\n")
	if got := migMode(t, p, "0"); got != "Enabled, Disabled" {
		t.Fatalf("after -mig 0: %q", got)
	}
	must(t, p, "-i 0 -r")
	if got := migMode(t, p, "0"); got != "Disabled, Disabled" {
		t.Fatalf("after second reset: %q", got)
	}
}

func TestAmpereAutoResetIsImmediate(t *testing.T) {
	p := node(t, "A100-SXM4-80GB", 1)
	update(t, p, func(s *State) error { s.AmpereAutoReset = true; return nil })
	must(t, p, "-i 0 -mig 1")
	if got := migMode(t, p, "0"); got != "Enabled, Enabled" {
		t.Fatalf("got %q", got)
	}
}

func TestHopperImmediateWhenFree(t *testing.T) {
	for _, model := range []string{"H100-80GB", "H200"} {
		p := node(t, model, 2)
		expect(t, smi(t, p, "-mig 1"), 0,
			"Enabled MIG Mode for GPU 00000000:07:00.0\nEnabled MIG Mode for GPU 00000000:0F:00.0\nAll done.\n")
		for _, i := range []string{"0", "1"} {
			if got := migMode(t, p, i); got != "Enabled, Enabled" {
				t.Fatalf("%s GPU %s: %q", model, i, got)
			}
		}
		must(t, p, "-i 1 -mig 0")
		if got := migMode(t, p, "1"); got != "Disabled, Disabled" {
			t.Fatalf("%s disable: %q", model, got)
		}
	}
}

func inUseWarning(state, bus string) string {
	return "Warning: MIG mode is in pending " + state + " state for GPU " + bus + ":In use by another client\n" +
		bus + " is currently being used by one or more other processes (e.g. CUDA application or a monitoring " +
		"application such as another instance of nvidia-smi). Please first kill all processes using the device and " +
		"retry the command or reboot the system to make MIG mode effective.\n"
}

func TestInUsePendingWarning(t *testing.T) {
	for _, model := range []string{"A100-SXM4-40GB", "H100-80GB"} {
		t.Run(model, func(t *testing.T) {
			p := node(t, model, 1)
			update(t, p, func(s *State) error { return s.AddHolder(AllGPUs, "dcgm-exporter") })
			expect(t, smi(t, p, "-i 0 -mig 1"), 0, inUseWarning("enable", bus0)+"All done.\n")
			if got := migMode(t, p, "0"); got != "Disabled, Enabled" {
				t.Fatalf("got %q", got)
			}
			// A compute process blocks the same way.
			update(t, p, func(s *State) error {
				s.RemoveHolder(AllGPUs, "dcgm-exporter")
				return s.AddProcess(0, Process{PID: 4242, Name: "python3", UsedMiB: 1000})
			})
			expect(t, smi(t, p, "-i 0 -mig 1"), 0, inUseWarning("enable", bus0)+"All done.\n")
			update(t, p, func(s *State) error { s.RemoveProcess(4242); return nil })
			must(t, p, "-i 0 -mig 1")
			want := "Enabled, Enabled" // Hopper: immediate once free
			if model == "A100-SXM4-40GB" {
				want = "Disabled, Enabled" // Ampere: still needs a reset
			}
			if got := migMode(t, p, "0"); got != want {
				t.Fatalf("after freeing: %q want %q", got, want)
			}
		})
	}
}

func TestDisableWithInstancesIsPendingInUse(t *testing.T) {
	p := node(t, "H100-80GB", 1)
	enableMIG(t, p)
	must(t, p, "mig -cgi 19 -C")
	expect(t, smi(t, p, "-i 0 -mig 0"), 0, inUseWarning("disable", bus0)+"All done.\n")
	if got := migMode(t, p, "0"); got != "Enabled, Disabled" {
		t.Fatalf("got %q", got)
	}
}

func TestResetUnsupported(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 1)
	update(t, p, func(s *State) error { return s.SetResetUnsupported(0, true) })
	expect(t, smi(t, p, "-i 0 -mig 1"), 0,
		"Warning: MIG mode is in pending enable state for GPU "+bus0+":Not Supported\n"+
			"Reboot the system or try nvidia-smi --gpu-reset to make MIG mode effective on GPU "+bus0+"\n"+
			"All done.\n")
	expect(t, smi(t, p, "-i 0 -r"), ExitNotSupported, "Resetting GPU "+bus0+" is not supported.\n")
	if got := migMode(t, p, "0"); got != "Disabled, Enabled" {
		t.Fatalf("got %q", got)
	}
	// Only a reboot makes it effective (and Ampere keeps it).
	update(t, p, func(s *State) error { s.Reboot(); return nil })
	if got := migMode(t, p, "0"); got != "Enabled, Enabled" {
		t.Fatalf("after reboot: %q", got)
	}
}

func TestResetInUse(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 1)
	must(t, p, "-i 0 -mig 1")
	update(t, p, func(s *State) error { return s.AddHolder(0, "nvidia-device-plugin") })
	r := smi(t, p, "-i 0 -r")
	if r.code != ExitOther || !strings.HasPrefix(r.out, "GPU "+bus0+" is currently in use by another process.\n") {
		t.Fatalf("exit %d:\n%s", r.code, r.out)
	}
	if got := migMode(t, p, "0"); got != "Disabled, Enabled" {
		t.Fatalf("reset in use changed the mode: %q", got)
	}
	update(t, p, func(s *State) error { return s.RemoveHolder(0, "nvidia-device-plugin") })
	must(t, p, "-i 0 -r")
}

func TestResetDropsInstances(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 1)
	enableMIG(t, p)
	must(t, p, "mig -cgi 9,9 -C")
	expect(t, smi(t, p, "--gpu-reset"), 0, "GPU "+bus0+" was successfully reset.\nAll done.\n")
	if gs := load(t, p).GPUs[0]; len(gs.Instances) != 0 || !gs.MIGCurrent {
		t.Fatalf("after reset: %+v", gs)
	}
	expect(t, smi(t, p, "mig -lgi"), ExitNotFound, "No GPU instances found: Not Found\n")
}

func TestNonMIGGPU(t *testing.T) {
	p := node(t, "T4", 1)
	expect(t, smi(t, p, "-i 0 -mig 1"), ExitNotSupported,
		"Unable to enable MIG Mode for GPU "+bus0+": Not Supported\nTerminating early due to previous errors.\n")
	expect(t, smi(t, p, "mig -lgip"), ExitNotFound, "No MIG-supported devices found.\n")
}

func TestRebootAmpereKeepsMode(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 2)
	enableMIG(t, p)
	must(t, p, "mig -cgi 9 -C -i 0")
	must(t, p, "-i 1 -mig 0") // pending disable on GPU 1
	update(t, p, func(s *State) error {
		s.AddHolder(AllGPUs, "dcgm")
		return s.AddProcess(0, Process{PID: 7, UsedMiB: 10})
	})
	if err := RebootFile(p); err != nil {
		t.Fatal(err)
	}
	s := load(t, p)
	if s.Boots != 2 {
		t.Errorf("boots %d", s.Boots)
	}
	if g := s.GPUs[0]; !g.MIGCurrent || !g.MIGPending || len(g.Instances) != 0 || len(g.Processes) != 0 {
		t.Errorf("GPU 0 after reboot: %+v", g)
	}
	if g := s.GPUs[1]; g.MIGCurrent || g.MIGPending {
		t.Errorf("GPU 1 pending disable not applied: %+v", g)
	}
	if len(s.GPUs[0].Holders) != 1 {
		t.Errorf("holders are the simulator's: %v", s.GPUs[0].Holders)
	}
}

func TestRebootHopperLosesMode(t *testing.T) {
	for _, model := range []string{"H100-80GB", "H200"} {
		p := node(t, model, 1)
		must(t, p, "-mig 1")
		must(t, p, "mig -cgi 0 -C")
		must(t, p, "--fake-reboot")
		if got := migMode(t, p, "0"); got != "Disabled, Disabled" {
			t.Fatalf("%s after reboot: %q", model, got)
		}
		if n := len(load(t, p).GPUs[0].Instances); n != 0 {
			t.Fatalf("%s instances survived: %d", model, n)
		}
	}
}

// A container not running as root may read the GPUs but not change them
// (FACTS: exit 4, no permission); the state stays as it was.
func TestChangesNeedRoot(t *testing.T) {
	p := node(t, "H100-80GB", 1)
	t.Setenv(UIDEnv, "65532")
	for _, line := range []string{"-i 0 -mig 1", "-i 0 -r", "mig -i 0 -cgi 19 -C", "mig -i 0 -dgi"} {
		r := smi(t, p, line)
		if r.code != ExitNoPermission || !strings.Contains(r.out, "Insufficient Permissions") {
			t.Errorf("%s as 65532: exit %d %q", line, r.code, r.out)
		}
	}
	must(t, p, "--query-gpu=index,mig.mode.current --format=csv,noheader")
	must(t, p, "-L")
	if got := migMode(t, p, "0"); got != "Disabled, Disabled" {
		t.Fatalf("a refused change changed the GPU: %q", got)
	}
	t.Setenv(UIDEnv, "0")
	must(t, p, "-i 0 -mig 1")
}

// A driver reload without a reboot: Hopper loses MIG mode, Ampere takes
// its pending mode, no instance survives; the boot count stays.
func TestDriverReload(t *testing.T) {
	p := node(t, "H100-80GB", 1)
	must(t, p, "-mig 1")
	must(t, p, "mig -cgi 0 -C")
	must(t, p, "--fake-driver unloaded")
	must(t, p, "--fake-driver loaded")
	if got := migMode(t, p, "0"); got != "Disabled, Disabled" {
		t.Fatalf("H100 after a driver reload: %q", got)
	}
	if s := load(t, p); len(s.GPUs[0].Instances) != 0 || s.Boots != 1 {
		t.Fatalf("H100 after a driver reload: %d instances, boot %d", len(s.GPUs[0].Instances), s.Boots)
	}
	// Loaded while loaded is no reload.
	must(t, p, "-mig 1")
	must(t, p, "--fake-driver loaded")
	if got := migMode(t, p, "0"); got != "Enabled, Enabled" {
		t.Fatalf("H100 after loaded twice: %q", got)
	}

	a := node(t, "A100-SXM4-40GB", 1)
	enableMIG(t, a)
	must(t, a, "mig -cgi 9 -C")
	must(t, a, "-mig 0") // pending disable
	must(t, a, "--fake-driver unloaded")
	must(t, a, "--fake-driver loaded")
	if got := migMode(t, a, "0"); got != "Disabled, Disabled" {
		t.Fatalf("A100 with a pending disable after a driver reload: %q", got)
	}
	if s := load(t, a); len(s.GPUs[0].Instances) != 0 {
		t.Fatalf("A100 instances survived a driver reload: %d", len(s.GPUs[0].Instances))
	}
}
