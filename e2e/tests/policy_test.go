package tests

// End-to-end tests of the GPUModePolicy API on the real API server
// (issue 4): admission, printer columns, explain, status and conflicts.

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPolicyValidation(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "1")
	InstallGpumode(t, b)

	// Every example applies (server-side dry run leaves nothing behind).
	examples, _ := filepath.Glob(filepath.Join(repoRoot(t), "manifests", "examples", "*.yaml"))
	if len(examples) < 5 {
		t.Fatalf("only %d examples", len(examples))
	}
	for _, f := range examples {
		if _, err := b.Kubectl("apply", "--dry-run=server", "-f", f); err != nil {
			t.Errorf("example %s rejected: %v", filepath.Base(f), err)
		}
	}

	// Every invalid policy is rejected at admission, naming the field.
	invalid, _ := filepath.Glob(filepath.Join(repoRoot(t), "e2e", "policies", "invalid", "*.yaml"))
	if len(invalid) < 15 {
		t.Fatalf("only %d invalid policies", len(invalid))
	}
	for _, f := range invalid {
		expect := expectLine(t, f)
		out, err := b.Kubectl("apply", "--dry-run=server", "-f", f)
		if err == nil {
			t.Errorf("%s: accepted:\n%s", filepath.Base(f), out)
			continue
		}
		if !strings.Contains(err.Error(), expect) {
			t.Errorf("%s: error lacks %q:\n%v", filepath.Base(f), expect, err)
		}
	}

	// A layout name with an underscore, as label values and mig-parted
	// allow, is taken.
	dryRunTaken(t, b, "a config name with an underscore", `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: underscore}
spec:
  nodeSelector: {matchLabels: {pool: none}}
  mode: mig
  mig: {config: custom_1g.10gb}
`)

	// What the layout and value rules must still take: disjoint device
	// lists beside a catch-all entry, exactly 7 compute slices, +me
	// profiles, and label values empty or with '_', '.' and '-'.
	dryRunTaken(t, b, "a layout that fits", `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: fits}
spec:
  nodeSelector:
    matchLabels: {pool: "a_b.c-1", empty: ""}
    matchExpressions: [{key: tier, operator: NotIn, values: ["", x.y_z]}]
  mode: mig
  mig:
    layout:
    - {devices: [0, 1], migDevices: {"4g.40gb": 1, "3g.40gb": 1}}
    - {devices: [2], migDevices: {"1g.10gb+me": 1, "1g.10gb": 6}}
    - {migDevices: {"7g.80gb": 1}}
`)

	// Label keys at their longest (a 253-character prefix, a 63-character
	// name) are taken, in matchLabels and in matchExpressions.
	prefix := strings.Repeat("a", 63) + "." + strings.Repeat("b", 63) + "." + strings.Repeat("c", 63) + "." + strings.Repeat("d", 61)
	key := prefix + "/" + strings.Repeat("n", 63)
	if len(prefix) != 253 {
		t.Fatalf("prefix of %d", len(prefix))
	}
	dryRunTaken(t, b, "label keys at their longest", fmt.Sprintf(`
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: longest}
spec:
  nodeSelector:
    matchLabels: {%q: a}
    matchExpressions: [{key: %q, operator: Exists}]
  mode: full
`, key, key))

	// kubectl explain teaches the fields.
	out := b.MustKubectl("explain", "gpumodepolicy.spec.rollout.drain")
	for _, f := range []string{"gpuPodsOnly", "timeoutSeconds", "deleteEmptyDirData"} {
		if !strings.Contains(out, f) {
			t.Errorf("explain lacks %s:\n%s", f, out)
		}
	}
	// Columns, short name and category.
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: cols}
spec:
  nodeSelector: {matchLabels: {pool: none}}
  mode: full
`)
	out = b.MustKubectl("get", "gmp")
	for _, c := range []string{"NAME", "MODE", "MATCHED", "CONVERGED", "SWITCHING", "FAILED", "READY", "AGE"} {
		if !strings.Contains(out, c) {
			t.Errorf("kubectl get gmp lacks column %s:\n%s", c, out)
		}
	}
	if out := b.MustKubectl("get", "gpu"); !strings.Contains(out, "cols") {
		t.Errorf("category gpu does not list the policy:\n%s", out)
	}
}

// dryRunTaken applies doc with a server-side dry run and fails the test,
// saying what was refused, when the API server refuses it.
func dryRunTaken(t *testing.T, b *Bed, what, doc string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "policy.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := b.Kubectl("apply", "--dry-run=server", "-f", path); err != nil {
		t.Errorf("%s is refused: %v\n%s", what, err, out)
	}
}

func expectLine(t *testing.T, path string) string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if s, ok := strings.CutPrefix(sc.Text(), "# expect: "); ok {
			return s
		}
	}
	t.Fatalf("%s has no '# expect:' line", path)
	return ""
}

// TestPolicyStatusAndConflict: status moves as nodes converge; two
// policies of equal priority selecting one node both report the conflict;
// a layout the GPU lacks stalls the policy with a message.
func TestPolicyStatusAndConflict(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "3", "--gpu-model", "H100-80GB")
	InstallGpumode(t, b)
	LabelNodes(t, b, "pool=a", "gpu-001", "gpu-002")
	LabelNodes(t, b, "team=x", "gpu-002", "gpu-003")
	StartController(t, b)
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: a}
spec:
  nodeSelector: {matchLabels: {pool: a}}
  mode: vgpu
---
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: x}
spec:
  nodeSelector: {matchLabels: {team: x}}
  mode: mig
  mig: {config: all-1g.10gb}
`)
	for _, name := range []string{"a", "x"} {
		WaitPolicy(t, b, name, 90*time.Second, "conflict on gpu-002 reported", func(s *PolicyStatus) error {
			st, reason, msg := s.Cond("Stalled")
			if st != "True" || reason != "PolicyConflict" || !strings.Contains(msg+fmt.Sprint(s.Nodes), "gpu-002") {
				return fmt.Errorf("Stalled=%s %s %q nodes %+v", st, reason, msg, s.Nodes)
			}
			if s.Summary.Matched != 1 || s.Summary.Converged != 1 {
				return fmt.Errorf("summary %+v", s.Summary)
			}
			return nil
		})
	}
	if n := GetNode(t, b, "gpu-002"); n.Annotations["gpumode.io/switch"] != "" || n.Labels["gpumode.io/mode"] != "" {
		t.Errorf("a conflicted node was touched: %v", n.Labels)
	}
	// Priority settles it.
	PatchPolicy(t, b, "x", `{"spec":{"priority":5}}`)
	WaitPolicy(t, b, "x", 120*time.Second, "x converged on both its nodes", func(s *PolicyStatus) error {
		if s.Summary.Matched != 2 {
			return fmt.Errorf("summary %+v", s.Summary)
		}
		return Converged(s)
	})
	// A profile the GPU lacks stalls the policy with a message.
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: bad-layout}
spec:
  nodeSelector: {matchLabels: {kubernetes.io/hostname: gpu-001}}
  priority: 100
  mode: mig
  mig: {layout: [{migDevices: {"1g.5gb": 7}}]}
`)
	WaitPolicy(t, b, "bad-layout", 60*time.Second, "InvalidLayout", func(s *PolicyStatus) error {
		st, reason, msg := s.Cond("Stalled")
		if st != "True" || reason != "InvalidLayout" || !strings.Contains(msg, "1g.5gb") {
			return fmt.Errorf("Stalled=%s %s %q", st, reason, msg)
		}
		return nil
	})
	if n := GetNode(t, b, "gpu-001"); n.Annotations["gpumode.io/switch"] != "" {
		t.Errorf("node switched for an invalid layout")
	}
	// A converged fleet writes no status: the resourceVersion stays.
	u1, _ := dyn(t, b).Resource(gmpGVR).Get(context.Background(), "x", metav1GetOptions())
	time.Sleep(8 * time.Second)
	u2, _ := dyn(t, b).Resource(gmpGVR).Get(context.Background(), "x", metav1GetOptions())
	if u1.GetResourceVersion() != u2.GetResourceVersion() {
		t.Errorf("status of a converged policy was rewritten: %s -> %s", u1.GetResourceVersion(), u2.GetResourceVersion())
	}
}
