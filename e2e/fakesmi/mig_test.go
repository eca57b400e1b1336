package fakesmi

import (
	"fmt"
	"strings"
	"testing"
)

func TestCreateListDestroyExact(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 1)
	enableMIG(t, p)
	expect(t, smi(t, p, "mig -cgi 9,3g.20gb -C"), 0,
		"Successfully created GPU instance ID  2 on GPU  0 using profile MIG 3g.20gb (ID  9)\n"+
			"Successfully created compute instance ID  0 on GPU  0 GPU instance ID  2 using profile MIG 3g.20gb (ID  2)\n"+
			"Successfully created GPU instance ID  1 on GPU  0 using profile MIG 3g.20gb (ID  9)\n"+
			"Successfully created compute instance ID  0 on GPU  0 GPU instance ID  1 using profile MIG 3g.20gb (ID  2)\n")
	expect(t, smi(t, p, "mig -lgi"), 0, ""+
		"+---------------------------------------------------------+\n"+
		"| GPU instances:                                          |\n"+
		"| GPU   Name               Profile  Instance   Placement  |\n"+
		"|                            ID       ID       Start:Size |\n"+
		"|=========================================================|\n"+
		"|   0  MIG 3g.20gb            9        1          0:4     |\n"+
		"+---------------------------------------------------------+\n"+
		"|   0  MIG 3g.20gb            9        2          4:4     |\n"+
		"+---------------------------------------------------------+\n")
	r := must(t, p, "mig -lci")
	for _, want := range []string{
		"|   0      1       MIG 3g.20gb            2         0          0:3     |",
		"|   0      2       MIG 3g.20gb            2         0          0:3     |",
	} {
		if !strings.Contains(r.out, want+"\n") {
			t.Errorf("-lci lacks %q:\n%s", want, r.out)
		}
	}
	r = must(t, p, "-L")
	ls := r.lines()
	if len(ls) != 3 || !strings.HasPrefix(ls[0], "GPU 0: NVIDIA A100-SXM4-40GB (UUID: GPU-") ||
		!strings.HasPrefix(ls[1], "  MIG 3g.20gb     Device  0: (UUID: MIG-") ||
		!strings.HasPrefix(ls[2], "  MIG 3g.20gb     Device  1: (UUID: MIG-") {
		t.Errorf("-L:\n%s", r.out)
	}
	expect(t, smi(t, p, "mig -dci -gi 1"), 0,
		"Successfully destroyed compute instance ID  0 from GPU  0 GPU instance ID  1\n")
	expect(t, smi(t, p, "mig -dgi -gi 1"), 0, "Successfully destroyed GPU instance ID  1 from GPU  0\n")
	expect(t, smi(t, p, "mig -dci"), 0,
		"Successfully destroyed compute instance ID  0 from GPU  0 GPU instance ID  2\n")
	expect(t, smi(t, p, "mig -dgi"), 0, "Successfully destroyed GPU instance ID  2 from GPU  0\n")
	expect(t, smi(t, p, "mig -lgi"), ExitNotFound, "No GPU instances found: Not Found\n")
	expect(t, smi(t, p, "mig -lci"), ExitNotFound, "No compute instances found: Not Found\n")
	expect(t, smi(t, p, "mig -dgi"), ExitNotFound, "Failed to destroy GPU instances: Not Found\n")
	expect(t, smi(t, p, "mig -dci"), ExitNotFound, "Failed to destroy compute instances: Not Found\n")
	if r := must(t, p, "-L"); len(r.lines()) != 1 {
		t.Errorf("-L after destroy:\n%s", r.out)
	}
}

func TestDestroyGIWithComputeInstancesInUse(t *testing.T) {
	p := node(t, "H100-80GB", 1)
	enableMIG(t, p)
	must(t, p, "mig -cgi 9 -C")
	expect(t, smi(t, p, "mig -dgi"), ExitOther,
		"Unable to destroy GPU instance ID  2 from GPU  0: In use by another client\n"+
			"Failed to destroy GPU instances: In use by another client\n")
	// A process on the instance blocks destroying its compute instance.
	update(t, p, func(s *State) error {
		gi := 2
		return s.AddProcess(0, Process{PID: 99, Name: "train", UsedMiB: 500, GI: &gi})
	})
	expect(t, smi(t, p, "mig -dci"), ExitOther,
		"Unable to destroy compute instance ID  0 from GPU  0 GPU instance ID  2: In use by another client\n"+
			"Failed to destroy compute instances: In use by another client\n")
}

// placement is "ID start:size" of every GPU instance, in ID order.
func placements(t *testing.T, p string) string {
	var parts []string
	for _, gi := range load(t, p).GPUs[0].Instances {
		parts = append(parts, fmt.Sprintf("%d@%d:%d", gi.ID, gi.Start, gi.Size))
	}
	return strings.Join(parts, " ")
}

func TestAutomaticPlacementMatchesNVIDIAExamples(t *testing.T) {
	// MIG user guide: 1g.5gb, 2g.10gb, 4g.20gb land at 6:1, 4:2, 0:4 (IDs 13, 5, 1).
	p := node(t, "A100-SXM4-40GB", 1)
	enableMIG(t, p)
	expect(t, smi(t, p, "mig -cgi 19,14,5 -i 0"), 0,
		"Successfully created GPU instance ID 13 on GPU  0 using profile MIG 1g.5gb (ID 19)\n"+
			"Successfully created GPU instance ID  5 on GPU  0 using profile MIG 2g.10gb (ID 14)\n"+
			"Successfully created GPU instance ID  1 on GPU  0 using profile MIG 4g.20gb (ID  5)\n")
	if got := placements(t, p); got != "1@0:4 5@4:2 13@6:1" {
		t.Errorf("placements %s", got)
	}
	// A layout seen on an A100-80GB: 3g at 4:4 (ID 2), 2g at 0:2 (ID 3), 1g at 2:1, 3:1 (IDs 9, 10).
	p = node(t, "A100-SXM4-80GB", 1)
	enableMIG(t, p)
	must(t, p, "mig -cgi 3g.40gb,2g.20gb,1g.10gb,1g.10gb -C")
	if got := placements(t, p); got != "2@4:4 3@0:2 9@2:1 10@3:1" {
		t.Errorf("placements %s", got)
	}
	r := must(t, p, "mig -lgi")
	for _, want := range []string{
		"|   0  MIG 1g.10gb           19        9          2:1     |",
		"|   0  MIG 1g.10gb           19       10          3:1     |",
		"|   0  MIG 2g.20gb           14        3          0:2     |",
		"|   0  MIG 3g.40gb            9        2          4:4     |",
	} {
		if !strings.Contains(r.out, want) {
			t.Errorf("-lgi lacks %q:\n%s", want, r.out)
		}
	}
	// -lgi lists by profile, then ID.
	if i, j := strings.Index(r.out, "1g.10gb"), strings.Index(r.out, "3g.40gb"); i > j {
		t.Errorf("-lgi order:\n%s", r.out)
	}
}

func TestInsufficientResourcesOnOverfill(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 1)
	enableMIG(t, p)
	r := smi(t, p, "mig -cgi 19,19,19,19,19,19,19,19")
	ls := r.lines()
	if r.code != ExitOther || len(ls) != 9 {
		t.Fatalf("exit %d:\n%s", r.code, r.out)
	}
	if ls[7] != "Unable to create a GPU instance on GPU  0 using profile 19: Insufficient Resources" ||
		ls[8] != "Failed to create GPU instances: Insufficient Resources" {
		t.Errorf("error lines:\n%s", r.out)
	}
	// Earlier creations stay.
	if n := len(load(t, p).GPUs[0].Instances); n != 7 {
		t.Errorf("%d instances", n)
	}
	// A full GPU: nothing else fits, 7g included.
	expect(t, smi(t, p, "mig -cgi 0"), ExitOther,
		"Unable to create a GPU instance on GPU  0 using profile 0: Insufficient Resources\n"+
			"Failed to create GPU instances: Insufficient Resources\n")
	// Profile totals: a second 4g never fits.
	p = node(t, "H100-80GB", 1)
	enableMIG(t, p)
	must(t, p, "mig -cgi 4g.40gb")
	expect(t, smi(t, p, "mig -cgi 4g.40gb"), ExitOther,
		"Unable to create a GPU instance on GPU  0 using profile 4g.40gb: Insufficient Resources\n"+
			"Failed to create GPU instances: Insufficient Resources\n")
}

func TestBadPlacement(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 1)
	enableMIG(t, p)
	// Not a valid start for 3g.
	expect(t, smi(t, p, "mig -cgi 9:2"), ExitInvalidArg,
		"Unable to create a GPU instance on GPU  0 using profile 9: Invalid Argument\n"+
			"Failed to create GPU instances: Invalid Argument\n")
	// Explicit placements.
	expect(t, smi(t, p, "mig -cgi 14:0,3g.20gb:4"), 0,
		"Successfully created GPU instance ID  3 on GPU  0 using profile MIG 2g.10gb (ID 14)\n"+
			"Successfully created GPU instance ID  2 on GPU  0 using profile MIG 3g.20gb (ID  9)\n")
	// 4g needs 0:4, which the 2g overlaps: free slots 2-3 cannot hold it.
	expect(t, smi(t, p, "mig -cgi 5"), ExitOther,
		"Unable to create a GPU instance on GPU  0 using profile 5: Insufficient Resources\n"+
			"Failed to create GPU instances: Insufficient Resources\n")
	expect(t, smi(t, p, "mig -cgi 19:4"), ExitOther,
		"Unable to create a GPU instance on GPU  0 using profile 19: Insufficient Resources\n"+
			"Failed to create GPU instances: Insufficient Resources\n")
	// Order matters: small first fragments the GPU so a 3g no longer fits,
	// although 1+1+2+3 compute slices would.
	p = node(t, "A100-SXM4-40GB", 1)
	enableMIG(t, p)
	r := smi(t, p, "mig -cgi 19,19,14,9")
	if r.code != ExitOther || !strings.Contains(r.out, "using profile 9: Insufficient Resources") {
		t.Errorf("small-first order: exit %d\n%s", r.code, r.out)
	}
	p = node(t, "A100-SXM4-40GB", 1)
	enableMIG(t, p)
	must(t, p, "mig -cgi 9,14,19,19")
}

func TestUnknownProfile(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 1)
	enableMIG(t, p)
	expect(t, smi(t, p, "mig -cgi 3g.40gb -C"), ExitInvalidArg,
		"Unable to create a GPU instance on GPU  0 using profile 3g.40gb: Invalid Argument\n"+
			"Failed to create GPU instances: Invalid Argument\n")
	expect(t, smi(t, p, "mig -cgi 99"), ExitInvalidArg,
		"Unable to create a GPU instance on GPU  0 using profile 99: Invalid Argument\n"+
			"Failed to create GPU instances: Invalid Argument\n")
	expect(t, smi(t, p, "mig -cgi 9,,"), ExitInvalidArg, msgInvalidArgs)
}

func TestMIGNotEnabled(t *testing.T) {
	p := node(t, "H100-80GB", 2)
	for _, cmd := range []string{"mig -lgi", "mig -lgip", "mig -cgi 19 -C", "mig -dci", "mig -dgi"} {
		expect(t, smi(t, p, cmd), ExitNotFound, "No MIG-enabled devices found.\n")
	}
	must(t, p, "-i 1 -mig 1")
	expect(t, smi(t, p, "mig -cgi 19 -i 0"), ExitNotFound, "No MIG-enabled devices found.\n")
	// Without -i only MIG-enabled GPUs are touched.
	expect(t, smi(t, p, "mig -cgi 19"), 0,
		"Successfully created GPU instance ID 13 on GPU  1 using profile MIG 1g.10gb (ID 19)\n")
}

func TestListProfilesExact(t *testing.T) {
	p := node(t, "H100-80GB", 1)
	enableMIG(t, p)
	r := must(t, p, "mig -lgip")
	ls := r.lines()
	want := []string{
		"+-------------------------------------------------------------------------------+",
		"| GPU instance profiles:                                                        |",
		"| GPU   Name               ID    Instances   Memory     P2P    SM    DEC   ENC  |",
		"|                                Free/Total   GiB              CE    JPEG  OFA  |",
		"|===============================================================================|",
		// The row FACTS.md quotes.
		"|   0  MIG 1g.10gb         19     7/7        9.75       No     16     1     0   |",
		"|                                                               1     1     0   |",
		"+-------------------------------------------------------------------------------+",
	}
	for i, w := range want {
		if i >= len(ls) || ls[i] != w {
			t.Fatalf("line %d:\n got %q\nwant %q\n%s", i, ls[i], w, r.out)
		}
	}
	if len(ls) != 5+3*7 {
		t.Errorf("%d lines", len(ls))
	}
	for _, l := range ls {
		if len(l) != 81 {
			t.Errorf("width %d: %q", len(l), l)
		}
	}
	if !strings.Contains(r.out, "|   0  MIG 7g.80gb          0     1/1        79.25      No    132     7     0   |\n") {
		t.Errorf("7g row:\n%s", r.out)
	}
	// Free counts follow the placements.
	must(t, p, "mig -cgi 9")
	r = must(t, p, "mig -lgip")
	for _, w := range []string{"MIG 1g.10gb         19     4/7", "MIG 3g.40gb          9     1/2",
		"MIG 4g.40gb          5     1/1", "MIG 7g.80gb          0     0/1", "MIG 2g.20gb         14     2/3"} {
		if !strings.Contains(r.out, w) {
			t.Errorf("after 3g: lacks %q\n%s", w, r.out)
		}
	}
}

func TestH200Profiles(t *testing.T) {
	p := node(t, "H200", 1)
	enableMIG(t, p)
	r := must(t, p, "mig -lgip")
	if !strings.Contains(r.out, "|   0  MIG 1g.18gb         19     7/7        16.00      No     16     1     0   |\n") ||
		!strings.Contains(r.out, "MIG 7g.141gb         0     1/1") {
		t.Errorf("H200 -lgip:\n%s", r.out)
	}
	expect(t, smi(t, p, "mig -cgi 3g.71gb -C"), 0,
		"Successfully created GPU instance ID  2 on GPU  0 using profile MIG 3g.71gb (ID  9)\n"+
			"Successfully created compute instance ID  0 on GPU  0 GPU instance ID  2 using profile MIG 3g.71gb (ID  2)\n")
}

func TestListPlacementsExact(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 1)
	enableMIG(t, p)
	expect(t, smi(t, p, "mig -lgipp"), 0, ""+
		"GPU  0 Profile ID 19 Placements: {0,1,2,3,4,5,6}:1\n"+
		"GPU  0 Profile ID 20 Placements: {0,1,2,3,4,5,6}:1\n"+
		"GPU  0 Profile ID 15 Placements: {0,2,4,6}:2\n"+
		"GPU  0 Profile ID 14 Placements: {0,2,4}:2\n"+
		"GPU  0 Profile ID  9 Placements: {0,4}:4\n"+
		"GPU  0 Profile ID  5 Placements: {0}:4\n"+
		"GPU  0 Profile ID  0 Placements: {0}:8\n")
}

func TestComputeInstanceProfiles(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 1)
	enableMIG(t, p)
	must(t, p, "mig -cgi 9")
	expect(t, smi(t, p, "mig -cci 0,0,1c.3g.20gb -gi 2"), 0,
		"Successfully created compute instance ID  0 on GPU  0 GPU instance ID  2 using profile MIG 1c.3g.20gb (ID  0)\n"+
			"Successfully created compute instance ID  1 on GPU  0 GPU instance ID  2 using profile MIG 1c.3g.20gb (ID  0)\n"+
			"Successfully created compute instance ID  2 on GPU  0 GPU instance ID  2 using profile MIG 1c.3g.20gb (ID  0)\n")
	expect(t, smi(t, p, "mig -cci -gi 2"), ExitOther,
		"Unable to create a compute instance on GPU  0 GPU instance ID  2 using profile 2: Insufficient Resources\n"+
			"Failed to create compute instances: Insufficient Resources\n")
	r := must(t, p, "-L")
	if n := strings.Count(r.out, "  MIG 1c.3g.20gb  Device "); n != 3 {
		t.Errorf("-L:\n%s", r.out)
	}
	expect(t, smi(t, p, "mig -dci -ci 1"), 0,
		"Successfully destroyed compute instance ID  1 from GPU  0 GPU instance ID  2\n")
	expect(t, smi(t, p, "mig -cci 4 -gi 2"), ExitInvalidArg,
		"Unable to create a compute instance on GPU  0 GPU instance ID  2 using profile 4: Invalid Argument\n"+
			"Failed to create compute instances: Invalid Argument\n")
	expect(t, smi(t, p, "mig -cci -gi 7"), ExitNotFound, "Failed to create compute instances: Not Found\n")
}

func TestDeviceCountsForSimulators(t *testing.T) {
	p := node(t, "A100-SXM4-80GB", 3)
	must(t, p, "--fake-auto-reset true")
	must(t, p, "-i 0,1 -mig 1")
	must(t, p, "mig -cgi 3g.40gb,2g.20gb,1g.10gb,1g.10gb -C -i 0")
	must(t, p, "mig -cgi 7g.80gb -C -i 1")
	s := load(t, p)
	got := s.MIGDeviceCounts()
	if fmt.Sprint(got) != "map[1g.10gb:2 2g.20gb:1 3g.40gb:1 7g.80gb:1]" {
		t.Errorf("counts %v", got)
	}
	if f := s.FullGPUs(); len(f) != 1 || f[0].Index != 2 {
		t.Errorf("full GPUs %v", f)
	}
}
