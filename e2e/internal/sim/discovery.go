package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"strings"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"

	"gpumode.io/e2e/fakesmi"
	"gpumode.io/e2e/internal/gpus"
)

// ---- GPU feature discovery: the node labels it publishes ----
//
// GPU feature discovery (GFD) reads the GPUs through NVML when it starts and
// publishes labels through node feature discovery, which removes the labels
// it published before and no longer produces. The simulated one labels the
// node once per run, from the GPU state at its start; the real one also
// looks again every 60 s, so a change behind its back shows within a minute
// there and only at its next restart here.
//
// What it labels (NVIDIA's GFD, internal/lm: full-GPU labels, then the MIG
// strategy's):
//   - always: nvidia.com/gpu.product, gpu.count (every GPU of the model,
//     MIG-enabled or not), gpu.memory, gpu.replicas: the config's
//     time-slicing replicas when a GPU is not MIG-enabled, 0 when all are
//     (their labels carry no sharing); shared and not renamed, the product
//     gains "-SHARED";
//   - none: nothing more, not even nvidia.com/mig.strategy;
//   - mixed: nvidia.com/mig.strategy=mixed and, per MIG device type,
//     nvidia.com/mig-<type>.count and .memory;
//   - single: nvidia.com/mig.strategy=single and, once any GPU has MIG
//     enabled, gpu.product/count/memory overridden to describe the MIG
//     devices ("<product>-MIG-1g.10gb", 56, the device's memory), or to
//     "<product>-MIG-INVALID" with count, replicas and memory 0 when the
//     layout does not suit the strategy (a MIG-enabled GPU without
//     devices, MIG-enabled next to MIG-disabled GPUs, more than one type).

// operatorMIGStrategy is the strategy plugins and GFD run when their
// config sets none. The bed's ClusterPolicy leaves mig.strategy empty, as
// the README asks, so the operator passes no MIG_STRATEGY (which would
// outrank the file) and an unset flags.migStrategy is the plugin's own
// default, none: MIG-enabled GPUs offered whole, no nvidia.com/mig.strategy
// label. Plugins and GFD take theirs from the config the node's
// nvidia.com/device-plugin.config selects (nodeSharing), unless their
// pod sets MIG_STRATEGY (as the operator does for a ClusterPolicy with
// mig.strategy set), which outranks it: never from the
// nvidia.com/mig.strategy label, which GFD itself writes.
const operatorMIGStrategy = "none"

// discoveryLabels is what GFD would publish for st under config sh.
func discoveryLabels(m *gpus.Model, st *fakesmi.State, sh sharing) map[string]string {
	strategy := sh.strategy
	out := map[string]string{
		"nvidia.com/gpu.product": m.Product,
		"nvidia.com/gpu.memory":  fmt.Sprint(m.MemoryMiB),
	}
	if strategy != "none" {
		out["nvidia.com/mig.strategy"] = strategy
	}
	count, full, enabled, empty := 0, 0, 0, 0
	devs := map[string]int{}   // MIG device type -> count
	memory := map[string]int{} // MIG device type -> MiB
	for _, g := range st.GPUs {
		if g.Lost { // NVML does not see it
			continue
		}
		count++
		if !g.MIGCurrent {
			full++
			continue
		}
		enabled++
		ds := g.MIGDevices()
		if len(ds) == 0 {
			empty++
		}
		for _, d := range ds {
			// "1g.10gb+me" is "1g.10gb.me" in resource and label names,
			// where '+' is not allowed.
			name := strings.ReplaceAll(d.Name, "+", ".")
			devs[name]++
			memory[name] = d.MemMiB
		}
	}
	out["nvidia.com/gpu.count"] = fmt.Sprint(count)
	out["nvidia.com/gpu.replicas"] = "0"
	if full > 0 {
		out["nvidia.com/gpu.replicas"] = fmt.Sprint(sh.replicas)
		if sh.replicas > 1 && sh.rename == "" {
			out["nvidia.com/gpu.product"] = m.Product + "-SHARED"
		}
	}
	switch {
	case strategy == "none":
	case strategy == "mixed":
		for name, c := range devs {
			out["nvidia.com/mig-"+name+".count"] = fmt.Sprint(c)
			out["nvidia.com/mig-"+name+".memory"] = fmt.Sprint(memory[name])
		}
	case enabled == 0: // single, nothing MIG-enabled: the full-GPU labels
	case empty > 0 || full > 0 || len(devs) != 1:
		out["nvidia.com/gpu.product"] = m.Product + "-MIG-INVALID"
		out["nvidia.com/gpu.count"] = "0"
		out["nvidia.com/gpu.replicas"] = "0"
		out["nvidia.com/gpu.memory"] = "0"
	default:
		for name, c := range devs {
			out["nvidia.com/gpu.product"] = m.Product + "-MIG-" + name
			out["nvidia.com/gpu.count"] = fmt.Sprint(c)
			out["nvidia.com/gpu.memory"] = fmt.Sprint(memory[name])
			out["nvidia.com/gpu.replicas"] = fmt.Sprint(sh.replicas)
			if sh.replicas > 1 && sh.rename == "" {
				out["nvidia.com/gpu.product"] += "-SHARED"
			}
		}
	}
	return out
}

// IsDiscoveryLabel tells whether GFD owns label k: node feature discovery
// removes such a label when the latest run did not produce it.
func IsDiscoveryLabel(k string) bool {
	switch k {
	case "nvidia.com/mig.strategy", "nvidia.com/gpu.product", "nvidia.com/gpu.count",
		"nvidia.com/gpu.memory", "nvidia.com/gpu.replicas":
		return true
	}
	return strings.HasPrefix(k, "nvidia.com/mig-") &&
		(strings.HasSuffix(k, ".count") || strings.HasSuffix(k, ".memory"))
}

// syncDiscoveryLabels publishes the labels of the node's GFD run, once per
// run: labels someone sets by hand afterwards stay until the next run.
func (s *Sim) syncDiscoveryLabels(ctx context.Context, n *Node, cur *corev1.Node) error {
	n.mu.Lock()
	pr := n.plugins[RoleFeatureDiscovery]
	var want map[string]string
	if pr != nil && pr.healthy && !pr.labelled {
		want = pr.labels
	}
	n.mu.Unlock()
	if want == nil {
		return nil
	}
	patch := map[string]any{}
	for k, v := range want {
		if cur.Labels[k] != v {
			patch[k] = v
		}
	}
	for k := range cur.Labels {
		if _, ok := want[k]; !ok && IsDiscoveryLabel(k) {
			patch[k] = nil
		}
	}
	if len(patch) > 0 {
		body, err := json.Marshal(map[string]any{"metadata": map[string]any{"labels": patch}})
		if err != nil {
			return err
		}
		if _, err := s.cs.CoreV1().Nodes().Patch(ctx, n.Name, types.MergePatchType, body, metav1.PatchOptions{}); err != nil {
			return err
		}
	}
	n.mu.Lock()
	if n.plugins[RoleFeatureDiscovery] == pr {
		pr.labelled = true
	}
	n.mu.Unlock()
	return nil
}
