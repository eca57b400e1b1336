package tests

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
)

// smi runs the fake nvidia-smi against a node's state.
func (b *Bed) smi(node string, args ...string) (string, error) {
	bin := filepath.Join(filepath.Dir(e2eDir(b.t)), "build", "e2e", "bin", "nvidia-smi")
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), "FAKE_NVIDIA_SMI_STATE="+filepath.Join(b.Dir, "nodes", node, "nvidia-smi.json"))
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func (b *Bed) label(t *testing.T, node string, kv map[string]string) {
	t.Helper()
	labels := map[string]any{}
	for k, v := range kv {
		labels[k] = v
	}
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	if _, err := b.CS.CoreV1().Nodes().Patch(context.Background(), node, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
		t.Fatal(err)
	}
}

// waitAllocatable waits until the node advertises exactly want for the
// given resources.
func (b *Bed) waitAllocatable(t *testing.T, node string, want map[string]int64) {
	t.Helper()
	Eventually(t, 30*time.Second, fmt.Sprintf("%s allocatable %v", node, want), func(ctx context.Context) error {
		n, err := b.CS.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		for r, v := range want {
			q := n.Status.Allocatable[corev1.ResourceName(r)]
			if q.Value() != v {
				return fmt.Errorf("%s = %s", r, q.String())
			}
		}
		return nil
	})
}

// TestGPUModes walks one Hopper node through what the controller will do:
// the device plugin holds the GPUs while it runs; a GPU workload is a
// compute process; stopping the plugin drops its resources; MIG instances
// appear as nvidia.com/mig-* once the plugin restarts; HAMi publishes
// vgpu; a reboot loses Hopper's MIG mode and changes the boot ID.
func TestGPUModes(t *testing.T) {
	requireE2E(t)
	b := StartBed(t, nil, "--nodes", "2", "--gpu-model", "H100-80GB", "--gpus-per-node", "2")
	ctx := context.Background()
	node := "gpu-001"
	b.waitAllocatable(t, node, map[string]int64{"nvidia.com/gpu": 2})
	if out, err := b.smi(node, "-i", "0", "-mig", "1"); err == nil && !strings.Contains(out, "In use") && !strings.Contains(out, "pending") {
		t.Fatalf("MIG mode changed while the device plugin holds the GPU:\n%s", out)
	}

	// A GPU workload shows up as a compute process.
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: "cuda", Namespace: "default"},
		Spec: corev1.PodSpec{NodeName: node, Containers: []corev1.Container{{Name: "c", Image: "cuda",
			Resources: corev1.ResourceRequirements{Limits: corev1.ResourceList{"nvidia.com/gpu": resourceOne()}}}}},
	}
	if _, err := b.CS.CoreV1().Pods("default").Create(ctx, pod, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	Eventually(t, 30*time.Second, "compute process of the GPU pod", func(context.Context) error {
		out, err := b.smi(node, "--query-compute-apps=pid,gpu_uuid", "--format=csv,noheader")
		if err != nil || strings.TrimSpace(out) == "" {
			return fmt.Errorf("%q %v", out, err)
		}
		return nil
	})
	zero := int64(0)
	if err := b.CS.CoreV1().Pods("default").Delete(ctx, "cuda", metav1.DeleteOptions{GracePeriodSeconds: &zero}); err != nil {
		t.Fatal(err)
	}

	// Stop every GPU client: resources drop to zero, the GPUs are free.
	b.label(t, node, map[string]string{
		"nvidia.com/gpu.deploy.device-plugin": "false", "nvidia.com/gpu.deploy.gpu-feature-discovery": "false",
		"nvidia.com/gpu.deploy.dcgm-exporter": "false", "nvidia.com/gpu.deploy.mig-manager": "false"})
	b.waitAllocatable(t, node, map[string]int64{"nvidia.com/gpu": 0})
	Eventually(t, 30*time.Second, "GPUs free", func(context.Context) error {
		out, err := b.smi(node, "--query-compute-apps=pid", "--format=csv,noheader")
		if err != nil || strings.TrimSpace(out) != "" {
			return fmt.Errorf("%q %v", out, err)
		}
		out, err = b.smi(node, "-mig", "1")
		if err != nil || strings.Contains(out, "Warning") {
			return fmt.Errorf("enable MIG: %v\n%s", err, out)
		}
		return nil
	})
	if out, err := b.smi(node, "mig", "-cgi", "1g.10gb,1g.10gb,3g.40gb", "-C"); err != nil {
		t.Fatalf("create instances: %v\n%s", err, out)
	}
	b.label(t, node, map[string]string{"nvidia.com/gpu.deploy.device-plugin": "true", "nvidia.com/device-plugin.config": "mixed"})
	b.waitAllocatable(t, node, map[string]int64{"nvidia.com/gpu": 0, "nvidia.com/mig-1g.10gb": 4, "nvidia.com/mig-3g.40gb": 2})

	// Reboot: Hopper forgets MIG mode; the plugin comes back with full GPUs.
	n0, err := b.CS.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := testbed(t, nil, "reboot", "--dir", b.Dir, "--down", "2s", node); err != nil {
		t.Fatal(err)
	}
	// The kubelet's first status after the boot has the new boot ID and
	// Ready=False while the container runtime starts; Ready follows.
	ready := func(n *corev1.Node) corev1.ConditionStatus {
		for _, c := range n.Status.Conditions {
			if c.Type == corev1.NodeReady {
				return c.Status
			}
		}
		return ""
	}
	Eventually(t, 30*time.Second, "new boot ID", func(ctx context.Context) error {
		n, err := b.CS.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if n.Status.NodeInfo.BootID == n0.Status.NodeInfo.BootID {
			return fmt.Errorf("boot ID unchanged")
		}
		if r := ready(n); r != corev1.ConditionFalse {
			t.Errorf("first seen with the new boot ID Ready=%s, want False while the runtime starts", r)
		}
		return nil
	})
	Eventually(t, 30*time.Second, "Ready after the boot", func(ctx context.Context) error {
		n, err := b.CS.CoreV1().Nodes().Get(ctx, node, metav1.GetOptions{})
		if err != nil {
			return err
		}
		if r := ready(n); r != corev1.ConditionTrue {
			return fmt.Errorf("Ready=%s", r)
		}
		return nil
	})
	b.waitAllocatable(t, node, map[string]int64{"nvidia.com/gpu": 2, "nvidia.com/mig-1g.10gb": 0, "nvidia.com/mig-3g.40gb": 0})

	// vgpu: the NVIDIA plugin off, HAMi on.
	b.label(t, node, map[string]string{"nvidia.com/gpu.deploy.device-plugin": "false", "nvidia.com/vgpu.deploy.device-plugin": "true"})
	b.waitAllocatable(t, node, map[string]int64{"nvidia.com/gpu": 0, "nvidia.com/vgpu": 20, "nvidia.com/gpucores": 200, "nvidia.com/gpumem": 2 * 81559})
}
