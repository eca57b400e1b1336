package sim

import (
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
	"sigs.k8s.io/yaml"

	"gpumode.io/e2e/fakesmi"
)

// ---- The device plugin's config, as the GPU Operator hands it out ----
//
// With ClusterPolicy devicePlugin.config.name set, the operator runs a
// config-manager next to the device plugin and feature discovery: it
// takes the key named by the node's nvidia.com/device-plugin.config label
// from that ConfigMap, and a key that is not there is an error ("specified
// config ... does not exist") that keeps both from starting (they
// crash-loop, holding no GPU). No label (and
// no default config) leaves them with the operator's flags. The simulated
// ones read the config when they start; the real config-manager also
// restarts them when the label changes.

// PluginConfigMap is the bed's devicePlugin.config.name, in gpu-operator.
const PluginConfigMap = "device-plugin-config"

// pluginConfig is the part of the device plugin's config file (v1) that
// changes what it advertises and what feature discovery labels.
type pluginConfig struct {
	Flags struct {
		MigStrategy string `json:"migStrategy"`
	} `json:"flags"`
	Sharing struct {
		// Raw, as the plugin's own decoder sees it: present but null
		// ("timeSlicing:" with nothing under it) is refused too.
		TimeSlicing json.RawMessage `json:"timeSlicing"`
	} `json:"sharing"`
}

// timeSlicing is sharing.timeSlicing (ReplicatedResources).
type timeSlicing struct {
	RenameByDefault bool `json:"renameByDefault"`
	Resources       []struct {
		Name     string          `json:"name"`
		Replicas *int            `json:"replicas"`
		Devices  json.RawMessage `json:"devices"`
	} `json:"resources"`
}

// sharing is what a config does to the full-GPU resource.
type sharing struct {
	strategy string // MIG strategy: none, single or mixed
	replicas int    // time-slicing replicas of nvidia.com/gpu; 1 when not shared
	rename   string // nvidia.com/gpu.shared when renamed by default, else ""
}

var (
	gpuIndexRef = regexp.MustCompile(`^[0-9]+$`)
	migIndexRef = regexp.MustCompile(`^[0-9]+:[0-9]+$`)
	uuidRef     = regexp.MustCompile(`^(GPU|MIG)-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$`)
	migPathRef  = regexp.MustCompile(`^MIG-GPU-[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}/[0-9]+/[0-9]+$`)
)

// checkReplicaDevices refuses what the plugin's loader refuses in a
// resource's devices: absent means all; else the string "all", a count
// above 0, or a list (empty too) of GPU indexes (numbers or strings), MIG
// indexes and UUIDs. Anything else, null included (it leaves the loader's
// string empty), stops the plugin. What it takes it then ignores
// (DisableResourceNamingInConfig: "Customizing the 'devices' field ... is
// not yet supported"): every device of the resource is shared.
func checkReplicaDevices(raw json.RawMessage) error {
	if raw == nil {
		return nil
	}
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		if str != "all" {
			return fmt.Errorf("devices set as '%v' but the only valid string input is 'all'", str)
		}
		return nil
	}
	var count int
	if err := json.Unmarshal(raw, &count); err == nil {
		if count <= 0 {
			return fmt.Errorf("devices set as '%v' but a count of devices must be > 0", count)
		}
		return nil
	}
	var items []json.RawMessage
	if err := json.Unmarshal(raw, &items); err != nil {
		return fmt.Errorf("unrecognized type for devices spec: %s", raw)
	}
	for _, it := range items {
		var index uint
		if json.Unmarshal(it, &index) == nil {
			continue
		}
		var ref string
		if json.Unmarshal(it, &ref) == nil && (gpuIndexRef.MatchString(ref) || migIndexRef.MatchString(ref) ||
			uuidRef.MatchString(ref) || migPathRef.MatchString(ref)) {
			continue
		}
		return fmt.Errorf("unsupported type for device in devices list: %s", it)
	}
	return nil
}

func defaultSharing() sharing { return sharing{strategy: operatorMIGStrategy, replicas: 1} }

// parsePluginConfig reads one config of the ConfigMap.
func parsePluginConfig(text string) (sharing, error) {
	var c pluginConfig
	out := defaultSharing()
	// The file has more (resources, other flags): only these are read.
	if err := yaml.Unmarshal([]byte(text), &c); err != nil {
		return out, err
	}
	switch c.Flags.MigStrategy {
	case "":
	case "none", "single", "mixed":
		out.strategy = c.Flags.MigStrategy
	default:
		return out, fmt.Errorf("unknown MIG strategy %q", c.Flags.MigStrategy)
	}
	if c.Sharing.TimeSlicing == nil {
		return out, nil
	}
	ts := &timeSlicing{}
	if err := json.Unmarshal(c.Sharing.TimeSlicing, &ts); err != nil {
		return out, err
	}
	// The loader's own refusals (ReplicatedResources); a null decodes
	// to nothing, so none resources either.
	if ts == nil || len(ts.Resources) == 0 {
		return out, fmt.Errorf("no resources specified")
	}
	for _, r := range ts.Resources {
		switch {
		case r.Name == "":
			return out, fmt.Errorf("no resource name specified")
		case r.Replicas == nil:
			return out, fmt.Errorf("no replicas specified")
		case *r.Replicas < 2: // v0.17; the first releases took 1
			return out, fmt.Errorf("number of replicas must be >= 2")
		}
		if err := checkReplicaDevices(r.Devices); err != nil {
			return out, err
		}
	}
	for _, r := range ts.Resources {
		if r.Name != "nvidia.com/gpu" {
			continue
		}
		if *r.Replicas > 1 {
			out.replicas = *r.Replicas
			// The plugin and GFD ignore a resource's own rename and
			// devices (DisableResourceNamingInConfig): every GPU is
			// shared; renameByDefault gives <name>.shared.
			if ts.RenameByDefault {
				out.rename = "nvidia.com/gpu.shared"
			}
		}
	}
	return out, nil
}

// followConfigLabel is the config-manager next to the device plugin and
// feature discovery: when the node's nvidia.com/device-plugin.config label
// is not the one a running plugin started with, it points the plugin at
// the new key and signals it, and the plugin starts over with it (other
// resources, other labels). Without the ConfigMap there is no
// config-manager. A key that is not there fails the config-manager (which
// retries), and the plugin keeps the config it runs with. A config the
// plugin cannot load, or one it cannot start with on these GPUs, stops it:
// it crash-loops, offering nothing and holding no GPU, until a restart
// finds one it can (retryPlugin, every 10 s, where the kubelet backs off
// up to 5 minutes). Feature discovery crash-loops alike and its labels
// stay as they were: it publishes them through the NodeFeature API, its
// default now, whose object outlives it (with file output it removes its
// file when it restarts, and node feature discovery the labels).
func (s *Sim) followConfigLabel(n *Node, cur *corev1.Node) {
	val := cur.Labels[configLabel]
	n.mu.Lock()
	var runs []*pluginRun
	for _, role := range []string{RoleNvidiaPlugin, RoleFeatureDiscovery} {
		if pr := n.plugins[role]; pr != nil && pr.healthy && pr.configKey != val {
			runs = append(runs, pr)
		}
	}
	n.mu.Unlock()
	if len(runs) == 0 {
		return
	}
	_, err := s.cs.CoreV1().ConfigMaps("gpu-operator").Get(context.Background(), PluginConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		return
	}
	_, cfgProblem, cfgCrashes := s.nodeSharing(cur.Labels)
	for _, pr := range runs {
		problem, crashes := cfgProblem, cfgCrashes
		pod := &corev1.Pod{ObjectMeta: metav1.ObjectMeta{UID: types.UID(pr.uid),
			Annotations: map[string]string{RoleAnnotation: pr.role}}}
		if pr.strategyEnv != "" {
			pod.Spec.Containers = []corev1.Container{{Env: []corev1.EnvVar{{Name: "MIG_STRATEGY", Value: pr.strategyEnv}}}}
		}
		var np *pluginRun
		if problem == "" {
			if np = s.snapshot(pod, n); !np.healthy {
				// It loaded the config and then failed on the GPUs (a
				// strategy the MIG layout does not suit): it exits too.
				problem, crashes = np.problem, true
			}
		}
		if crashes {
			np = &pluginRun{role: pr.role, uid: pr.uid, problem: problem, checked: time.Now(), configKey: val,
				strategyEnv: pr.strategyEnv}
		}
		n.mu.Lock()
		current := n.plugins[pr.role] == pr
		if current && (problem == "" || crashes) {
			np.holder = pr.holder
			n.plugins[pr.role] = np
		}
		refusedBefore := pr.refusedKey == val
		if current && problem != "" && !crashes {
			pr.refusedKey = val
		}
		n.mu.Unlock()
		switch {
		case !current:
		case problem == "":
			klog.Infof("node %s: %s restarted with config %q", n.Name, pr.role, val)
		case crashes:
			klog.Infof("node %s: %s: %s; it crash-loops", n.Name, pr.role, problem)
			s.crashRunning(n, pr, problem)
		case !refusedBefore:
			klog.Infof("node %s: config-manager: %s; %s keeps its config", n.Name, problem, pr.role)
		}
	}
}

// crashRunning lets go of the GPUs a plugin that stopped on its config
// held, shows its pod crash-looping and has it retried.
func (s *Sim) crashRunning(n *Node, pr *pluginRun, problem string) {
	if holdsGPUs(pr.role) {
		if err := fakesmi.RemoveHolderFile(n.StatePath, fakesmi.AllGPUs, pr.holder); err != nil {
			klog.Warningf("node %s: remove GPU holder: %v", n.Name, err)
		}
	}
	s.mu.Lock()
	run := s.runs[pr.uid]
	s.mu.Unlock()
	if run == nil {
		return // the pod is gone already: nothing to retry
	}
	ns, name, _ := cache.SplitMetaNamespaceKey(run.key)
	if pod, err := s.podLister.Pods(ns).Get(name); err == nil && string(pod.UID) == pr.uid {
		s.crashPlugin(pod, problem)
	}
	s.podQ.AddAfter(run.key, 10*time.Second)
}

// configLabel selects a node's device plugin config.
const configLabel = "nvidia.com/device-plugin.config"

// nodeSharing is the config the node's plugin and feature discovery start
// with, or a problem that keeps them from starting. crashes tells the
// problem is theirs (a config they read and refuse) rather than the
// config-manager's (no such key, no ConfigMap read): one that runs
// already then crash-loops too, where the config-manager would leave it
// alone.
func (s *Sim) nodeSharing(nodeLabels map[string]string) (sh sharing, problem string, crashes bool) {
	key := nodeLabels[configLabel]
	cm, err := s.cs.CoreV1().ConfigMaps("gpu-operator").Get(context.Background(), PluginConfigMap, metav1.GetOptions{})
	if apierrors.IsNotFound(err) {
		// No config-manager: only the strategies are told apart, as the
		// beds before this ConfigMap had them.
		out := defaultSharing()
		if key == "single" || key == "mixed" {
			out.strategy = key
		}
		return out, "", false
	}
	if err != nil {
		return defaultSharing(), "reading the device plugin config: " + err.Error(), false
	}
	if key == "" {
		return defaultSharing(), "", false
	}
	// The ConfigMap's volume holds binaryData keys as files too.
	text, ok := cm.Data[key]
	if bin, isBin := cm.BinaryData[key]; !ok && isBin {
		text, ok = string(bin), true
	}
	if !ok {
		return defaultSharing(), fmt.Sprintf("specified config %s does not exist", key), false
	}
	out, err := parsePluginConfig(text)
	if err != nil {
		return out, fmt.Sprintf("unable to parse config %s: %v", key, err), true
	}
	return out, "", false
}

// TimeSlicingConfig is the GPU Operator documentation's time-slicing
// example: four replicas of every GPU, MIG strategy none.
const TimeSlicingConfig = `version: v1
flags:
  migStrategy: none
sharing:
  timeSlicing:
    resources:
    - name: nvidia.com/gpu
      replicas: 4
`

// PluginConfigs are the bed's device plugin configs: the two strategies
// gpumode selects in mig mode, and time-slicing configs a person may give
// full nodes (time-slicing-some names GPUs 0 and 1, which the plugin
// ignores: it shares every GPU, 8 x 4 on eight GPUs).
var PluginConfigs = map[string]string{
	"mixed":             "version: v1\nflags:\n  migStrategy: mixed\n",
	"single":            "version: v1\nflags:\n  migStrategy: single\n",
	"time-slicing":      TimeSlicingConfig,
	"time-slicing-some": TimeSlicingConfig + "      devices: [0, \"1\"]\n",
	"time-slicing-renamed": `version: v1
flags:
  migStrategy: none
sharing:
  timeSlicing:
    renameByDefault: true
    resources:
    - name: nvidia.com/gpu
      replicas: 4
`,
}
