package tests

// Harness for end-to-end tests of gpumode itself: install the CRD, run
// build/gpumode-controller against a bed, apply policies, read status.

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/tools/clientcmd"
)

var gmpGVR = schema.GroupVersionResource{Group: "gpumode.io", Version: "v1alpha1", Resource: "gpumodepolicies"}

// Controller is a running gpumode-controller.
type Controller struct {
	t    *testing.T
	b    *Bed
	cmd  *exec.Cmd
	log  string
	args []string
	id   int
	n    int
}

var controllerIDs int

// InstallGpumode applies the CRD and creates the controller's namespace.
func InstallGpumode(t *testing.T, b *Bed) {
	t.Helper()
	b.MustKubectl("apply", "-f", filepath.Join(repoRoot(t), "crd", "gpumodepolicy.yaml"))
	b.MustKubectl("wait", "--for=condition=Established", "--timeout=60s", "crd/gpumodepolicies.gpumode.io")
	if _, err := b.CS.CoreV1().Namespaces().Create(context.Background(),
		&corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gpumode-system"}}, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatal(err)
	}
}

// StartController runs the controller with the bed's kubeconfig and config.
func StartController(t *testing.T, b *Bed, args ...string) *Controller {
	t.Helper()
	c := &Controller{t: t, b: b, args: args}
	c.start()
	t.Cleanup(func() {
		c.Stop()
		if t.Failed() {
			if raw, err := os.ReadFile(c.log); err == nil {
				t.Logf("---- controller log (tail) ----\n%s", tailLines(string(raw), 80))
			}
		}
	})
	return c
}

func (c *Controller) start() {
	c.t.Helper()
	if c.id == 0 {
		controllerIDs++
		c.id = controllerIDs
	}
	c.n++
	c.log = filepath.Join(c.b.Dir, fmt.Sprintf("controller-%d-%d.log", c.id, c.n))
	f, err := os.Create(c.log)
	if err != nil {
		c.t.Fatal(err)
	}
	args := append([]string{
		"--kubeconfig", filepath.Join(c.b.Dir, "kubeconfig"),
		"--config", filepath.Join(c.b.Dir, "controller.yaml"),
		"--metrics-addr", "0", "--health-addr", "0", "--log-level", "debug",
	}, c.args...)
	c.cmd = exec.Command(filepath.Join(repoRoot(c.t), "build", "gpumode-controller"), args...)
	c.cmd.Stdout, c.cmd.Stderr = f, f
	if err := c.cmd.Start(); err != nil {
		c.t.Fatalf("start controller: %v (run make)", err)
	}
	f.Close()
}

// Kill stops the controller with SIGKILL: no cleanup of any kind.
func (c *Controller) Kill() {
	if c.cmd != nil && c.cmd.Process != nil {
		c.cmd.Process.Signal(syscall.SIGKILL)
		c.cmd.Wait()
	}
	c.cmd = nil
}

// Restart kills and starts again.
func (c *Controller) Restart() {
	c.Kill()
	c.start()
}

// Stop ends the controller with SIGTERM and waits.
func (c *Controller) Stop() {
	if c.cmd == nil || c.cmd.Process == nil {
		return
	}
	c.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { c.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		c.t.Errorf("controller did not exit within 15 s of SIGTERM")
		c.cmd.Process.Signal(syscall.SIGKILL)
		<-done
	}
	c.cmd = nil
}

// Log returns the controller's logs so far (every run).
func (c *Controller) Log() string {
	var sb strings.Builder
	for i := 1; i <= c.n; i++ {
		raw, _ := os.ReadFile(filepath.Join(c.b.Dir, fmt.Sprintf("controller-%d-%d.log", c.id, i)))
		sb.Write(raw)
	}
	return sb.String()
}

// Apply applies YAML text with kubectl.
func Apply(t *testing.T, b *Bed, yaml string) {
	t.Helper()
	f := filepath.Join(t.TempDir(), "obj.yaml")
	if err := os.WriteFile(f, []byte(yaml), 0o644); err != nil {
		t.Fatal(err)
	}
	b.MustKubectl("apply", "-f", f)
}

func dyn(t *testing.T, b *Bed) dynamic.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(b.Dir, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	d, err := dynamic.NewForConfig(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// PolicyStatus is what tests read of a policy's status.
type PolicyStatus struct {
	ObservedGeneration int64 `json:"observedGeneration"`
	Conditions         []struct {
		Type, Status, Reason, Message string
	} `json:"conditions"`
	Summary struct {
		Matched, Converged, Switching, Pending, Failed, Conflicted int
	} `json:"summary"`
	Nodes []struct {
		Name, Phase, From, To, Message string
	} `json:"nodes"`
	Generation int64 `json:"-"`
}

func (s *PolicyStatus) Cond(typ string) (status, reason, msg string) {
	for _, c := range s.Conditions {
		if c.Type == typ {
			return c.Status, c.Reason, c.Message
		}
	}
	return "", "", ""
}

func GetPolicyStatus(t *testing.T, b *Bed, name string) (*PolicyStatus, error) {
	u, err := dyn(t, b).Resource(gmpGVR).Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		return nil, err
	}
	raw, _ := json.Marshal(u.Object["status"])
	var s PolicyStatus
	json.Unmarshal(raw, &s)
	s.Generation = u.GetGeneration()
	return &s, nil
}

// WaitPolicy waits until cond holds for the policy's status.
func WaitPolicy(t *testing.T, b *Bed, name string, timeout time.Duration, what string, cond func(*PolicyStatus) error) *PolicyStatus {
	t.Helper()
	var last *PolicyStatus
	Eventually(t, timeout, what, func(ctx context.Context) error {
		s, err := GetPolicyStatus(t, b, name)
		if err != nil {
			return err
		}
		last = s
		return cond(s)
	})
	return last
}

// ConvergedOffering: Converged, and node advertises want of resource.
func ConvergedOffering(t *testing.T, b *Bed, node, resource string, want int64) func(*PolicyStatus) error {
	return func(s *PolicyStatus) error {
		if err := Converged(s); err != nil {
			return err
		}
		if got := Allocatable(GetNode(t, b, node), resource); got != want {
			return fmt.Errorf("%s: %s=%d, want %d", node, resource, got, want)
		}
		return nil
	}
}

// Converged: every matched node converged, at the current generation.
func Converged(s *PolicyStatus) error {
	if s.ObservedGeneration != s.Generation {
		return fmt.Errorf("observedGeneration %d, generation %d", s.ObservedGeneration, s.Generation)
	}
	if s.Summary.Matched == 0 || s.Summary.Converged != s.Summary.Matched {
		return fmt.Errorf("summary %+v nodes %+v", s.Summary, s.Nodes)
	}
	if st, _, _ := s.Cond("Ready"); st != "True" {
		return fmt.Errorf("Ready=%s", st)
	}
	return nil
}

func PatchPolicy(t *testing.T, b *Bed, name, mergePatch string) {
	t.Helper()
	if _, err := dyn(t, b).Resource(gmpGVR).Patch(context.Background(), name, types.MergePatchType, []byte(mergePatch), metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

func DeletePolicy(t *testing.T, b *Bed, name string) {
	t.Helper()
	dyn(t, b).Resource(gmpGVR).Delete(context.Background(), name, metav1.DeleteOptions{})
}

func GetNode(t *testing.T, b *Bed, name string) *corev1.Node {
	t.Helper()
	n, err := b.CS.CoreV1().Nodes().Get(context.Background(), name, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// AppendControllerConfig adds YAML lines to the bed's controller config
// file, read by the next StartController.
func AppendControllerConfig(t *testing.T, b *Bed, lines string) {
	t.Helper()
	f, err := os.OpenFile(filepath.Join(b.Dir, "controller.yaml"), os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := f.WriteString(lines); err != nil {
		t.Fatal(err)
	}
}

func LabelNodes(t *testing.T, b *Bed, kv string, nodes ...string) {
	t.Helper()
	for _, n := range nodes {
		b.MustKubectl("label", "node", n, kv, "--overwrite")
	}
}

// Allocatable of a resource on a node, or -1.
func Allocatable(n *corev1.Node, res string) int64 {
	q, ok := n.Status.Allocatable[corev1.ResourceName(res)]
	if !ok {
		return -1
	}
	return q.Value()
}

// FakeSMI runs the bed's fake nvidia-smi control commands on a node.
func FakeSMI(t *testing.T, b *Bed, node string, args ...string) string {
	t.Helper()
	bin := filepath.Join(repoRoot(t), "build", "e2e", "bin", "nvidia-smi")
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "FAKE_NVIDIA_SMI_STATE="+filepath.Join(b.Dir, "nodes", node, "nvidia-smi.json"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("fake nvidia-smi %v: %v\n%s", args, err, out)
	}
	return string(out)
}

// SwitchAnnotation returns the node's gpumode.io/switch record or nil.
// SwitchAnnotation is the node's switch record, or nil when it has none. A
// record that is there but does not decode to an object is returned as
// {"unreadable": raw}, never as nil: "no record" must mean the key is gone
// (the controller leaves a node with an unreadable record alone).
func SwitchAnnotation(n *corev1.Node) map[string]any {
	raw, ok := n.Annotations["gpumode.io/switch"]
	if !ok {
		return nil
	}
	var m map[string]any
	if err := json.Unmarshal([]byte(raw), &m); err != nil || m == nil {
		return map[string]any{"unreadable": raw}
	}
	return m
}

var _ = unstructured.Unstructured{}

func metav1GetOptions() metav1.GetOptions { return metav1.GetOptions{} }
