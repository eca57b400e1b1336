package fakesmi

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestFaultOnce(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 1)
	err := InjectFaultFile(p, Fault{Match: `^-i 0 -mig 1$`, Exit: 15, Stdout: "Unable to determine the device handle\n"})
	if err != nil {
		t.Fatal(err)
	}
	// A non-matching command is untouched.
	must(t, p, "-L")
	expect(t, smi(t, p, "-i 0 -mig 1"), 15, "Unable to determine the device handle\n")
	if got := migMode(t, p, "0"); got != "Disabled, Disabled" {
		t.Fatalf("faulted command changed state: %q", got)
	}
	// One-shot: the retry works.
	expect(t, smi(t, p, "-i 0 -mig 1"), 0, "Enabled MIG Mode for GPU "+bus0+"\nAll done.\n")
	if n := len(load(t, p).Faults); n != 0 {
		t.Errorf("%d faults left", n)
	}
}

func TestFaultTimesAndForever(t *testing.T) {
	p := node(t, "H100-80GB", 1)
	update(t, p, func(s *State) error {
		return s.InjectFault(Fault{Match: `mig -cgi`, Remaining: 2, Exit: 255, Stderr: "boom\n"})
	})
	enableMIG(t, p)
	for i := 0; i < 2; i++ {
		r := smi(t, p, "mig -cgi 19 -C")
		if r.code != 255 || r.err != "boom\n" || r.out != "" {
			t.Fatalf("try %d: %+v", i, r)
		}
	}
	must(t, p, "mig -cgi 19 -C")
	update(t, p, func(s *State) error { return s.InjectFault(Fault{Match: `^-r`, Remaining: -1, Exit: 3}) })
	for i := 0; i < 3; i++ {
		if r := smi(t, p, "-r -i 0"); r.code != 3 {
			t.Fatalf("forever fault try %d: %+v", i, r)
		}
	}
	must(t, p, "--fake-clear-faults")
	must(t, p, "-r -i 0")
}

func TestFaultLatencyPassthrough(t *testing.T) {
	p := node(t, "H100-80GB", 1)
	update(t, p, func(s *State) error {
		return s.InjectFault(Fault{Match: `-mig`, DelayMS: 150, Passthrough: true})
	})
	start := time.Now()
	expect(t, smi(t, p, "-i 0 -mig 1"), 0, "Enabled MIG Mode for GPU "+bus0+"\nAll done.\n")
	if d := time.Since(start); d < 150*time.Millisecond {
		t.Errorf("no delay: %v", d)
	}
	if got := migMode(t, p, "0"); got != "Enabled, Enabled" {
		t.Fatalf("passthrough did not run the command: %q", got)
	}
	must(t, p, "--fake-latency 100")
	start = time.Now()
	must(t, p, "-L")
	if d := time.Since(start); d < 100*time.Millisecond {
		t.Errorf("no global latency: %v", d)
	}
}

func TestFakeCommandsAndLog(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 2)
	r := smiArgs(t, p, "--fake-inject", "--match", `^mig -dgi`, "--exit", "255", "--stdout",
		`Unable to destroy GPU instance ID  1 from GPU  0: In use by another client\nFailed to destroy GPU instances: In use by another client\n`)
	if r.code != 0 {
		t.Fatalf("inject: %+v", r)
	}
	enableMIG(t, p)
	expect(t, smi(t, p, "mig -dgi"), 255,
		"Unable to destroy GPU instance ID  1 from GPU  0: In use by another client\nFailed to destroy GPU instances: In use by another client\n")
	for _, c := range []string{
		"--fake-holder add all dcgm", "--fake-holder add 1 nvidia-device-plugin", "--fake-holder remove 0 dcgm",
		"--fake-process add 1 555 train 100 ", "--fake-reset-unsupported 0 true", "--fake-auto-reset true",
	} {
		must(t, p, c)
	}
	s := load(t, p)
	if fmt.Sprint(s.GPUs[0].Holders, s.GPUs[1].Holders) != "[] [dcgm nvidia-device-plugin]" ||
		len(s.GPUs[1].Processes) != 1 || !s.GPUs[0].ResetUnsupported || !s.AmpereAutoReset {
		t.Errorf("state: %+v %+v", s.GPUs[0], s.GPUs[1])
	}
	must(t, p, "--fake-process remove 555")
	if r := smi(t, p, "--fake-holder add 9 x"); r.code == 0 {
		t.Error("bad GPU accepted")
	}
	if r := smi(t, p, "--fake-nonsense"); r.code != ExitInvalidArg || !strings.Contains(r.err, "--fake-inject") {
		t.Errorf("usage: %+v", r)
	}
	// The log records invocations with their exit codes; faults are flagged.
	r = must(t, p, "--fake-log")
	var last Invocation
	for _, l := range r.lines() {
		if err := json.Unmarshal([]byte(l), &last); err != nil {
			t.Fatalf("log line %q: %v", l, err)
		}
	}
	// Control commands are not logged: the last entry is the faulted -dgi.
	if !last.Fault || last.Exit != 255 || strings.Join(last.Args, " ") != "mig -dgi" {
		t.Errorf("log:\n%s", r.out)
	}
	// --fake-init and --fake-dump through an explicit state path.
	q := p + ".2"
	must(t, "", "--fake-state="+q+" --fake-init H200 3 seed")
	r = must(t, "", "--fake-state="+q+" --fake-dump")
	var st State
	if err := json.Unmarshal([]byte(r.out), &st); err != nil || len(st.GPUs) != 3 || st.GPUs[2].Model != "H200" {
		t.Errorf("dump: %v\n%s", err, r.out)
	}
}

// TestConcurrentInvocations runs many invocations at once, in goroutines and
// in separate processes, and checks that no update is lost.
func TestConcurrentInvocations(t *testing.T) {
	p := node(t, "A100-SXM4-40GB", 1)
	enableMIG(t, p)
	var wg sync.WaitGroup
	codes := make(chan int, 40)
	for i := 0; i < 10; i++ {
		wg.Add(3)
		go func() { defer wg.Done(); codes <- smi(t, p, "mig -cgi 19 -C").code }()
		go func(i int) {
			defer wg.Done()
			if err := AddHolderFile(p, 0, fmt.Sprintf("h%d", i)); err != nil {
				t.Error(err)
			}
		}(i)
		go func() { defer wg.Done(); smi(t, p, "mig -lgi") }()
	}
	wg.Wait()
	close(codes)
	ok, fail := 0, 0
	for c := range codes {
		if c == 0 {
			ok++
		} else {
			fail++
		}
	}
	s := load(t, p)
	if ok != 7 || fail != 3 || len(s.GPUs[0].Instances) != 7 || len(s.GPUs[0].Holders) != 10 {
		t.Fatalf("ok %d fail %d instances %d holders %d", ok, fail, len(s.GPUs[0].Instances), len(s.GPUs[0].Holders))
	}
	seen := map[int]bool{}
	for _, gi := range s.GPUs[0].Instances {
		if seen[gi.Start] {
			t.Fatalf("overlapping instances: %+v", s.GPUs[0].Instances)
		}
		seen[gi.Start] = true
	}

	// Separate processes: the test binary acts as nvidia-smi (see TestMain).
	must(t, p, "mig -dci")
	must(t, p, "mig -dgi")
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	created := 0
	var pw sync.WaitGroup
	for i := 0; i < 12; i++ {
		pw.Add(1)
		go func() {
			defer pw.Done()
			cmd := exec.Command(exe, "mig", "-cgi", "19", "-C")
			cmd.Env = append(os.Environ(), "FAKESMI_TEST_HELPER=1", StateEnv+"="+p)
			var out bytes.Buffer
			cmd.Stdout = &out
			err := cmd.Run()
			if err == nil {
				mu.Lock()
				created++
				mu.Unlock()
			} else if !strings.Contains(out.String(), "Insufficient Resources") {
				t.Errorf("process: %v %s", err, out.String())
			}
		}()
	}
	pw.Wait()
	s = load(t, p)
	if created != 7 || len(s.GPUs[0].Instances) != 7 {
		t.Fatalf("processes: created %d, instances %d", created, len(s.GPUs[0].Instances))
	}
	if len(s.Log) == 0 {
		t.Error("empty log")
	}
}
