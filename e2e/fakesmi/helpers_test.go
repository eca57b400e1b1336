package fakesmi

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestMain lets the test binary act as the fake nvidia-smi itself, so tests
// can run truly concurrent processes against one state file.
func TestMain(m *testing.M) {
	if os.Getenv("FAKESMI_TEST_HELPER") == "1" {
		os.Exit(Run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv(StateEnv)))
	}
	os.Exit(m.Run())
}

// node creates a state file for a node of n GPUs of model.
func node(t *testing.T, model string, n int) string {
	t.Helper()
	s, err := NewStateSeeded(model, n, t.Name())
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "state.json")
	if err := Save(path, s); err != nil {
		t.Fatal(err)
	}
	return path
}

type result struct {
	out, err string
	code     int
}

func (r result) lines() []string {
	return strings.Split(strings.TrimSuffix(r.out, "\n"), "\n")
}

// smi runs the fake with a space-separated argument line.
func smi(t *testing.T, path string, line string) result {
	t.Helper()
	return smiArgs(t, path, strings.Fields(line)...)
}

func smiArgs(t *testing.T, path string, args ...string) result {
	t.Helper()
	var o, e bytes.Buffer
	code := Run(args, &o, &e, path)
	return result{o.String(), e.String(), code}
}

// must runs a command that must succeed.
func must(t *testing.T, path, line string) result {
	t.Helper()
	r := smi(t, path, line)
	if r.code != 0 {
		t.Fatalf("nvidia-smi %s: exit %d\n%s%s", line, r.code, r.out, r.err)
	}
	return r
}

// expect checks exit code and exact stdout.
func expect(t *testing.T, r result, code int, want string) {
	t.Helper()
	if r.code != code {
		t.Errorf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", r.code, code, r.out, r.err)
	}
	if r.out != want {
		t.Errorf("stdout mismatch\n got:\n%s\nwant:\n%s", r.out, want)
	}
}

func load(t *testing.T, path string) *State {
	t.Helper()
	s, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func update(t *testing.T, path string, fn func(*State) error) {
	t.Helper()
	if err := Update(path, fn); err != nil {
		t.Fatal(err)
	}
}

// migMode queries "current, pending" of GPU i.
func migMode(t *testing.T, path string, i string) string {
	t.Helper()
	r := must(t, path, "-i "+i+" --query-gpu=mig.mode.current,mig.mode.pending --format=csv,noheader")
	return strings.TrimSpace(r.out)
}

func enableMIG(t *testing.T, path string) {
	t.Helper()
	update(t, path, func(s *State) error {
		for _, g := range s.GPUs {
			g.MIGCurrent, g.MIGPending = true, true
		}
		return nil
	})
}
