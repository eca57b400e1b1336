package fakesmi

import (
	"strings"
	"testing"
)

func TestQueryGPUFormats(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 2)
	s := load(t, p)
	u0, u1 := s.GPUs[0].UUID, s.GPUs[1].UUID
	expect(t, smi(t, p, "-i 0 --query-gpu=pci.bus_id,mig.mode.current --format=csv"), 0,
		"pci.bus_id, mig.mode.current\n"+bus0+", Disabled\n")
	all := "--query-gpu=index,uuid,name,pci.bus_id,pci.device_id,mig.mode.current,mig.mode.pending,memory.total"
	expect(t, smiArgs(t, p, all, "--format=csv"), 0, ""+
		"index, uuid, name, pci.bus_id, pci.device_id, mig.mode.current, mig.mode.pending, memory.total [MiB]\n"+
		"0, "+u0+", NVIDIA A100-SXM4-40GB, 00000000:07:00.0, 0x20B010DE, Disabled, Disabled, 40960 MiB\n"+
		"1, "+u1+", NVIDIA A100-SXM4-40GB, 00000000:0F:00.0, 0x20B010DE, Disabled, Disabled, 40960 MiB\n")
	expect(t, smiArgs(t, p, all, "--format=csv,noheader,nounits", "-i", "1"), 0,
		"1, "+u1+", NVIDIA A100-SXM4-40GB, 00000000:0F:00.0, 0x20B010DE, Disabled, Disabled, 40960\n")
	// Separate-argument forms, and -i by UUID, bus ID and comma list.
	expect(t, smiArgs(t, p, "--query-gpu", "index", "--format", "csv,noheader", "--id", u1+","+bus0), 0, "1\n0\n")
	expect(t, smi(t, p, "--query-gpu=memory.total --format=csv,nounits"), 0, "memory.total [MiB]\n40960\n40960\n")
}

func TestQueryNotApplicableOnNonMIG(t *testing.T) {
	p := node(t, "H100-80GB", 1)
	update(t, p, func(s *State) error { return s.AddGPU("L40S") })
	expect(t, smi(t, p, "--query-gpu=index,name,pci.device_id,mig.mode.current,mig.mode.pending,memory.total --format=csv,noheader"), 0,
		"0, NVIDIA H100 80GB HBM3, 0x233010DE, Disabled, Disabled, 81559 MiB\n"+
			"1, NVIDIA L40S, 0x26B910DE, [N/A], [N/A], 46068 MiB\n")
}

func TestQueryErrors(t *testing.T) {
	p := node(t, "H200", 1)
	expect(t, smi(t, p, "--query-gpu=bogus --format=csv"), ExitInvalidArg,
		"Field \"bogus\" is not a valid field to query.\n\n")
	expect(t, smi(t, p, "-i 3 --query-gpu=index --format=csv"), ExitNotFound, "No devices were found\n")
	expect(t, smi(t, p, "-i 0 -L -r"), ExitInvalidArg, msgInvalidArgs)
	expect(t, smi(t, p, "--bogus"), ExitInvalidArg, msgInvalidArgs)
	if r := smi(t, p, "--query-gpu=index"); r.code != ExitInvalidArg {
		t.Errorf("missing --format: exit %d", r.code)
	}
	if r := smi(t, p, "--query-gpu=index --format=xml"); r.code != ExitInvalidArg {
		t.Errorf("bad --format: exit %d", r.code)
	}
	expect(t, smi(t, p, "-i 0 --query-gpu=driver_version,count --format=csv,noheader"), 0, DriverVersion+", 1\n")
}

func TestQueryComputeApps(t *testing.T) {
	p := node(t, "A100-SXM4-80GB", 2)
	q := "--query-compute-apps=pid,gpu_uuid,used_memory --format=csv,noheader"
	expect(t, smi(t, p, q), 0, "")
	expect(t, smi(t, p, "--query-compute-apps=pid,gpu_uuid,used_memory --format=csv"), 0,
		"pid, gpu_uuid, used_gpu_memory [MiB]\n")
	update(t, p, func(s *State) error {
		s.AddProcess(1, Process{PID: 3001, Name: "python3", UsedMiB: 20480})
		return s.AddProcess(0, Process{PID: 3000, Name: "train", UsedMiB: 1024})
	})
	s := load(t, p)
	expect(t, smi(t, p, q), 0,
		"3000, "+s.GPUs[0].UUID+", 1024 MiB\n3001, "+s.GPUs[1].UUID+", 20480 MiB\n")
	expect(t, smi(t, p, "-i 1 --query-compute-apps=pid,process_name,used_gpu_memory --format=csv,noheader,nounits"), 0,
		"3001, python3, 20480\n")
	expect(t, smi(t, p, "-i 1 --query-gpu=memory.used,memory.free --format=csv,noheader"), 0, "20480 MiB, 61440 MiB\n")
	// Holders are not compute processes.
	update(t, p, func(s *State) error {
		s.RemoveProcess(3000)
		s.RemoveProcess(3001)
		return s.AddHolder(AllGPUs, "dcgm")
	})
	expect(t, smi(t, p, q), 0, "")
}

func TestListGPUsNoMIG(t *testing.T) {
	p := node(t, "H100-80GB", 2)
	s := load(t, p)
	expect(t, smi(t, p, "-L"), 0,
		"GPU 0: NVIDIA H100 80GB HBM3 (UUID: "+s.GPUs[0].UUID+")\nGPU 1: NVIDIA H100 80GB HBM3 (UUID: "+s.GPUs[1].UUID+")\n")
	// MIG devices are listed under their GPU, numbered per GPU.
	must(t, p, "-mig 1")
	must(t, p, "mig -cgi 1g.10gb,1g.10gb -C -i 1")
	s = load(t, p)
	r := must(t, p, "-L")
	ls := r.lines()
	gi := s.GPUs[1].orderedInstances()
	want := []string{
		"GPU 0: NVIDIA H100 80GB HBM3 (UUID: " + s.GPUs[0].UUID + ")",
		"GPU 1: NVIDIA H100 80GB HBM3 (UUID: " + s.GPUs[1].UUID + ")",
		"  MIG 1g.10gb     Device  0: (UUID: " + gi[0].ComputeInstances[0].UUID + ")",
		"  MIG 1g.10gb     Device  1: (UUID: " + gi[1].ComputeInstances[0].UUID + ")",
	}
	if strings.Join(ls, "\n") != strings.Join(want, "\n") {
		t.Errorf("-L:\n%s\nwant:\n%s", r.out, strings.Join(want, "\n"))
	}
	// MIG UUIDs are name-based UUIDs, unique, and new when re-created.
	old := gi[0].ComputeInstances[0].UUID
	if !strings.HasPrefix(old, "MIG-") || old[4+14] != '5' || old == gi[1].ComputeInstances[0].UUID {
		t.Errorf("MIG UUIDs %s %s", old, gi[1].ComputeInstances[0].UUID)
	}
	must(t, p, "mig -dci -i 1")
	must(t, p, "mig -dgi -i 1")
	must(t, p, "mig -cgi 1g.10gb,1g.10gb -C -i 1")
	if n := load(t, p).GPUs[1].orderedInstances()[0].ComputeInstances[0].UUID; n == old {
		t.Errorf("re-created MIG device kept UUID %s", n)
	}
}

func TestSeededUUIDsStableAndDistinct(t *testing.T) {
	a, _ := NewStateSeeded("H200", 2, "node-a")
	b, _ := NewStateSeeded("H200", 2, "node-a")
	c, _ := NewStateSeeded("H200", 2, "node-b")
	if a.GPUs[0].UUID != b.GPUs[0].UUID || a.GPUs[0].UUID == c.GPUs[0].UUID || a.GPUs[0].UUID == a.GPUs[1].UUID {
		t.Errorf("uuids %s %s %s %s", a.GPUs[0].UUID, b.GPUs[0].UUID, c.GPUs[0].UUID, a.GPUs[1].UUID)
	}
	if _, err := NewState("B9000", 1); err == nil {
		t.Error("unknown model accepted")
	}
	if m, err := LookupModel("h100"); err != nil || m.Key != "H100-80GB" {
		t.Errorf("alias: %v %v", m, err)
	}
}

func TestDriverUnloadedAndMissingState(t *testing.T) {
	p := node(t, "T4", 1)
	must(t, p, "--fake-driver unloaded")
	expect(t, smi(t, p, "-L"), ExitNoDriver, msgNoDriver)
	must(t, p, "--fake-driver loaded")
	must(t, p, "-L")
	expect(t, smi(t, p+".missing", "-L"), ExitNoDriver, msgNoDriver)
	expect(t, smi(t, "", "-L"), ExitNoDriver, msgNoDriver)
}

func TestGPULost(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 2)
	must(t, p, "--fake-lost 1 true")
	lost := "Unable to determine the device handle for GPU 0000:0F:00.0: GPU is lost.  Reboot the system to recover this GPU\n"
	expect(t, smi(t, p, "-L"), ExitGPULost, lost)
	expect(t, smi(t, p, "-i 1 -r"), ExitGPULost, lost)
	must(t, p, "-i 0 --query-gpu=index --format=csv") // the other GPU still answers
	must(t, p, "--fake-reboot")
	must(t, p, "-L")
}

func TestSummaryTable(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 2)
	r := must(t, p, "")
	ls := r.lines()
	if len(ls) != 1+7+4*2 {
		t.Fatalf("%d lines:\n%s", len(ls), r.out)
	}
	for _, l := range ls[1:] {
		if len(l) != 91 {
			t.Errorf("width %d: %q", len(l), l)
		}
	}
	if !strings.Contains(r.out, "|   0  NVIDIA A100-SXM4-40GB          On  |   00000000:07:00.0 Off |") ||
		!strings.Contains(r.out, "|        0MiB / 40960MiB |") {
		t.Errorf("summary:\n%s", r.out)
	}
}
