package sim

import (
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

func TestBinaryFor(t *testing.T) {
	s := &Sim{opts: Options{ImageMap: map[string]string{"gpumode/agent": "/b/gpumode-agent"}}}
	for image, ok := range map[string]bool{
		"gpumode/agent:dev": true, "registry.local:5000/gpumode/agent:v1": true,
		"gpumode/agent@sha256:abc": true, "gpumode/agent": true,
		"gpumode/agentx:dev": false, "busybox": false, "other/gpumode/agentsmith:1": false,
	} {
		if bin, got := s.binaryFor(image); got != ok || (ok && bin != "/b/gpumode-agent") {
			t.Errorf("%s: %q %v", image, bin, got)
		}
	}
}

func TestFlagValue(t *testing.T) {
	args := []string{"--confirm", "--boot-id", "b-0", "--log-level=info"}
	if v := flagValue(args, "--boot-id"); v != "b-0" {
		t.Errorf("--boot-id = %q", v)
	}
	if v := flagValue(args, "--log-level"); v != "info" {
		t.Errorf("--log-level = %q", v)
	}
	if v := flagValue([]string{"--confirm", "--boot-id"}, "--boot-id"); v != "" {
		t.Errorf("a flag without its value = %q", v)
	}
}

func TestRunDuration(t *testing.T) {
	s := &Sim{opts: Options{JobSeconds: 5}}
	yes := true
	job := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{OwnerReferences: []metav1.OwnerReference{{Kind: "Job", Controller: &yes}}}}
	if d, ok := s.runDuration(job); !ok || d != 5*time.Second {
		t.Errorf("job pod: %v %v", d, ok)
	}
	job.Annotations = map[string]string{RunSecondsAnnotation: "0.5"}
	if d, ok := s.runDuration(job); !ok || d != 500*time.Millisecond {
		t.Errorf("annotated job pod: %v %v", d, ok)
	}
	if _, ok := s.runDuration(&corev1.Pod{}); ok {
		t.Error("plain pod finishes")
	}
}

func TestRequestsGPU(t *testing.T) {
	pod := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{
		{Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/mig-1g.10gb": resourceQ("2"), "nvidia.com/gpumem": resourceQ("1000")}}},
		{Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": resourceQ("1"), corev1.ResourceCPU: resourceQ("4")}}},
	}}}
	if n := requestsGPU(pod); n != 3 {
		t.Errorf("requestsGPU = %d, want 3", n)
	}
}

func resourceQ(s string) resource.Quantity { return resource.MustParse(s) }

func TestContainerUID(t *testing.T) {
	root, other := int64(0), int64(1000)
	pod := func(ctr, pd *int64, image string) *corev1.Pod {
		p := &corev1.Pod{Spec: corev1.PodSpec{Containers: []corev1.Container{{Image: image}}}}
		if ctr != nil {
			p.Spec.Containers[0].SecurityContext = &corev1.SecurityContext{RunAsUser: ctr}
		}
		if pd != nil {
			p.Spec.SecurityContext = &corev1.PodSecurityContext{RunAsUser: pd}
		}
		return p
	}
	for _, c := range []struct {
		p    *corev1.Pod
		want int64
	}{
		{pod(nil, nil, "gpumode/agent:dev"), 65532}, // the image's USER
		{pod(&root, nil, "gpumode/agent:dev"), 0},
		{pod(nil, &root, "gpumode/agent:dev"), 0},
		{pod(&other, &root, "gpumode/agent:dev"), 1000},
		{pod(nil, nil, "busybox"), 0},
	} {
		if got := containerUID(c.p); got != c.want {
			t.Errorf("%+v: uid %d, want %d", c.p.Spec, got, c.want)
		}
	}
}

// started is pod admitted ago before now (status.startTime).
func started(pod *corev1.Pod, ago time.Duration) *corev1.Pod {
	p := pod.DeepCopy()
	at := metav1.NewTime(time.Now().Add(-ago))
	p.Status.StartTime = &at
	return p
}

func TestDeadlineLeft(t *testing.T) {
	d := int64(30)
	pod := &corev1.Pod{Spec: corev1.PodSpec{ActiveDeadlineSeconds: &d}}
	if _, ok := deadlineLeft(pod); ok {
		t.Error("a pod not admitted has a deadline")
	}
	left, ok := deadlineLeft(started(pod, 20*time.Second))
	if !ok || left < 9*time.Second || left > 10*time.Second {
		t.Errorf("20 s into 30: %v %v", left, ok)
	}
	if left, _ := deadlineLeft(started(pod, 31*time.Second)); left > 0 {
		t.Errorf("31 s into 30: %v left", left)
	}
	if _, ok := deadlineLeft(started(&corev1.Pod{}, 0)); ok {
		t.Error("a pod without activeDeadlineSeconds has a deadline")
	}
}

// A helper's container ends whole: what its process started in a process
// group of its own (as the agent starts nvidia-smi) goes with it; what
// left the session does not.
func TestKillSession(t *testing.T) {
	cmd := exec.Command("sh", "-c", "setsid sleep 60 >/dev/null 2>&1 & echo $! >&2; sleep 60 >/dev/null 2>&1 & echo $!; exit 0")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(out)))
	other, _ := strconv.Atoi(strings.TrimSpace(stderr.String()))
	defer syscall.Kill(child, syscall.SIGKILL)
	defer syscall.Kill(other, syscall.SIGKILL)
	sid := cmd.Process.Pid
	// The setsid one leaves the session once it has run setsid(2).
	var members []int
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if members = sessionMembers(sid); len(members) == 1 && members[0] == child {
			break
		}
	}
	if len(members) != 1 || members[0] != child {
		t.Fatalf("session %d: %v, want [%d] (the setsid one left it)", sid, members, child)
	}
	killSession(sid)
	for deadline := time.Now().Add(5 * time.Second); len(sessionMembers(sid)) > 0 && time.Now().Before(deadline); {
		time.Sleep(10 * time.Millisecond)
	}
	if m := sessionMembers(sid); len(m) > 0 {
		t.Errorf("left running: %v", m)
	}
	if err := syscall.Kill(other, 0); err != nil {
		t.Errorf("the process that left the session was killed too: %v", err)
	}
}
