package sim

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/klog/v2"

	"gpumode.io/e2e/fakesmi"
)

// TerminationMessageEnv names the file a helper command should write its
// termination message to. The simulated kubelet reads it as the kubelet reads
// the container's terminationMessagePath (which on this machine would be
// shared by every helper). A program can honour it with
// "path = $GPUMODE_TERMINATION_LOG or /dev/termination-log".
const TerminationMessageEnv = "GPUMODE_TERMINATION_LOG"

// ---- helper pods: run the container's command locally ----

type helperProc struct {
	cmd     *exec.Cmd
	done    chan struct{}
	msgPath string
	logPath string
	policy  corev1.TerminationMessagePolicy

	mu       sync.Mutex
	exitCode int
	reason   string
	message  string
	finished time.Time
}

func (s *Sim) isHelper(pod *corev1.Pod) bool {
	return pod.Labels[HelperLabelKey] == HelperLabelValue
}

// binaryFor maps an image to a local binary: "gpumode/agent:dev" and
// "registry/gpumode/agent@sha256:..." both match the key "gpumode/agent".
func (s *Sim) binaryFor(image string) (string, bool) {
	ref := image
	if i := strings.Index(ref, "@"); i >= 0 {
		ref = ref[:i]
	}
	if i := strings.LastIndex(ref, ":"); i > strings.LastIndex(ref, "/") {
		ref = ref[:i]
	}
	for k, v := range s.opts.ImageMap {
		if ref == k || strings.HasSuffix(ref, "/"+k) {
			return v, true
		}
	}
	return "", false
}

// entrypointName is the program name an image is known to contain: the
// agent image holds gpumode-agent.
func entrypointName(image string) string {
	if strings.Contains(image, "gpumode/agent") {
		return "gpumode-agent"
	}
	return ""
}

// containerUID is the user a pod's first container runs as: its own
// securityContext's runAsUser, else the pod's, else its image's USER
// (gpumode's image is built with USER 65532, see Dockerfile), else root.
// The fake nvidia-smi refuses changes to a container not running as root.
func containerUID(pod *corev1.Pod) int64 {
	c := pod.Spec.Containers[0]
	if c.SecurityContext != nil && c.SecurityContext.RunAsUser != nil {
		return *c.SecurityContext.RunAsUser
	}
	if pod.Spec.SecurityContext != nil && pod.Spec.SecurityContext.RunAsUser != nil {
		return *pod.Spec.SecurityContext.RunAsUser
	}
	if entrypointName(c.Image) == "gpumode-agent" {
		return 65532
	}
	return 0
}

func fieldValue(pod *corev1.Pod, node *Node, path string) string {
	switch path {
	case "metadata.name":
		return pod.Name
	case "metadata.namespace":
		return pod.Namespace
	case "metadata.uid":
		return string(pod.UID)
	case "spec.nodeName":
		return pod.Spec.NodeName
	case "spec.serviceAccountName":
		return pod.Spec.ServiceAccountName
	case "status.hostIP":
		return node.IP
	}
	return ""
}

// flagValue is the value of a --name VALUE or --name=VALUE argument, or "".
func flagValue(args []string, name string) string {
	for i, a := range args {
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
	}
	return ""
}

// startHelper runs the helper pod's first container as a local process: the
// image's binary with the container's arguments, with env NVIDIA_SMI and
// FAKE_NVIDIA_SMI_STATE pointing at the fake nvidia-smi and this node's
// GPU state (volumes are not mounted: GPUMODE_DRIVER_ROOT is dropped).
func (s *Sim) startHelper(pod *corev1.Pod, run *podRun, bin string) (*helperProc, error) {
	c := pod.Spec.Containers[0]
	var argv []string
	switch {
	case len(c.Command) == 0:
		argv = append([]string{bin}, c.Args...)
	case filepath.Base(c.Command[0]) == filepath.Base(bin) || filepath.Base(c.Command[0]) == entrypointName(c.Image):
		argv = append(append([]string{bin}, c.Command[1:]...), c.Args...)
	default:
		return nil, fmt.Errorf("failed to create containerd task: exec: %q: executable file not found in $PATH (the simulator runs only the image's own binary %s)", c.Command[0], filepath.Base(bin))
	}
	// A helper that asks for a reboot must never reach this machine (the
	// agent would write to /proc/sysrq-trigger as root): the simulator
	// reboots the simulated node instead and the container "succeeds".
	// Like the agent, it leaves a node alone whose boot is no longer the
	// one --boot-id names.
	rebootAsked := len(argv) > 1 && argv[1] == "reboot"
	laterBoot := ""
	if rebootAsked {
		run.node.mu.Lock()
		now := run.node.bootID
		run.node.mu.Unlock()
		if asked := flagValue(argv[2:], "--boot-id"); asked != "" && asked != now {
			laterBoot = fmt.Sprintf("the node has rebooted since (boot ID %s, not %s); not rebooting again", now, asked)
		}
		argv = []string{"/bin/true"}
	}
	podDir := filepath.Join(s.opts.Dir, "pods", fmt.Sprintf("%s_%s_%s", pod.Namespace, pod.Name, pod.UID))
	if err := os.MkdirAll(podDir, 0o755); err != nil {
		return nil, err
	}
	hp := &helperProc{done: make(chan struct{}), msgPath: filepath.Join(podDir, "termination-log"),
		logPath: filepath.Join(podDir, c.Name+".log"), policy: c.TerminationMessagePolicy}
	msg := []byte(nil)
	switch {
	case rebootAsked && laterBoot != "":
		msg, _ = json.Marshal(map[string]any{"ok": true, "command": "reboot", "gpus": []any{}, "needs": "none", "message": laterBoot})
	case rebootAsked:
		msg = []byte(`{"ok":true,"command":"reboot","needs":"none","message":"rebooting (simulated)"}`)
		go s.reboot(run.node, 3*time.Second, pod.UID)
	}
	if err := os.WriteFile(hp.msgPath, msg, 0o644); err != nil {
		return nil, err
	}
	logf, err := os.Create(hp.logPath)
	if err != nil {
		return nil, err
	}
	env := []string{
		"PATH=" + filepath.Dir(s.opts.NvidiaSmi) + ":/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
		"HOSTNAME=" + pod.Name,
		"HOME=/root",
	}
	for _, e := range c.Env {
		// The driver root is a hostPath mount the agent chroots into; the
		// simulator mounts nothing (NVIDIA_SMI below points at the fake
		// nvidia-smi on this machine), so it is not passed on.
		if e.Name == "GPUMODE_DRIVER_ROOT" {
			continue
		}
		v := e.Value
		if e.ValueFrom != nil && e.ValueFrom.FieldRef != nil {
			v = fieldValue(pod, run.node, e.ValueFrom.FieldRef.FieldPath)
		}
		env = append(env, e.Name+"="+v)
	}
	env = append(env,
		"NVIDIA_SMI="+s.opts.NvidiaSmi,
		fakesmi.StateEnv+"="+run.node.StatePath,
		fmt.Sprintf("%s=%d", fakesmi.UIDEnv, containerUID(pod)),
		TerminationMessageEnv+"="+hp.msgPath,
		"SIM_NODE_NAME="+run.node.Name,
		"SIM_REBOOT_FILE="+RebootRequestPath(s.opts.Dir, run.node.Name),
	)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = env
	cmd.Dir = podDir
	if c.WorkingDir != "" {
		if fi, err := os.Stat(c.WorkingDir); err == nil && fi.IsDir() {
			cmd.Dir = c.WorkingDir
		}
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	// Each helper leads a session of its own, standing for its container:
	// what it starts (the agent runs nvidia-smi in a process group of its
	// own) stays in that session, and ends with it, as the runtime ends
	// every process of a container that stopped. Helpers die with the
	// simulator.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL, Setsid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, err
	}
	hp.cmd = cmd
	klog.Infof("pod %s/%s: started %v (pid %d)", pod.Namespace, pod.Name, argv, cmd.Process.Pid)
	go func() {
		err := cmd.Wait()
		killSession(cmd.Process.Pid)
		logf.Close()
		code := 0
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			code = ee.ExitCode()
			if ws, ok := ee.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				code = 128 + int(ws.Signal())
			}
		} else if err != nil {
			code = 128
		}
		msg, _ := os.ReadFile(hp.msgPath)
		if len(msg) == 0 && code != 0 && hp.policy == corev1.TerminationMessageFallbackToLogsOnError {
			msg = logTail(hp.logPath, 80, 2048)
		}
		if len(msg) > 4096 {
			msg = msg[:4096]
		}
		hp.mu.Lock()
		hp.exitCode, hp.message, hp.finished = code, string(msg), time.Now()
		hp.mu.Unlock()
		close(hp.done)
		klog.Infof("pod %s: process exited with %d", run.key, code)
		s.podQ.Add(run.key)
	}()
	return hp, nil
}

// killSession kills every process left in session sid: a stopped
// container's processes end with it. Twice, for one forked during the
// first pass.
func killSession(sid int) {
	for pass := 0; pass < 2; pass++ {
		for _, pid := range sessionMembers(sid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// sessionMembers lists the live processes of session sid (zombies are
// dead already), from /proc.
func sessionMembers(sid int) []int {
	ents, _ := os.ReadDir("/proc")
	var pids []int
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == sid {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid pgrp session ...: comm may hold spaces
		// and parentheses, so the fields are counted after the last ')'.
		i := strings.LastIndexByte(string(b), ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 3 && f[0] != "Z" && f[3] == strconv.Itoa(sid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

func logTail(path string, lines, max int) []byte {
	b, _ := os.ReadFile(path)
	ls := strings.SplitAfter(string(b), "\n")
	if len(ls) > lines+1 {
		ls = ls[len(ls)-lines-1:]
	}
	out := strings.Join(ls, "")
	if len(out) > max {
		out = out[len(out)-max:]
	}
	return []byte(out)
}

func (h *helperProc) exitedResult() (code int, msg string, finished time.Time, ok bool) {
	select {
	case <-h.done:
		h.mu.Lock()
		defer h.mu.Unlock()
		return h.exitCode, h.message, h.finished, true
	default:
		return 0, "", time.Time{}, false
	}
}

func (h *helperProc) term() {
	if h.cmd != nil && h.cmd.Process != nil {
		_ = h.cmd.Process.Signal(syscall.SIGTERM)
	}
}

func (h *helperProc) kill() {
	if h.cmd != nil && h.cmd.Process != nil {
		_ = h.cmd.Process.Kill()
	}
}

func (h *helperProc) wait() {
	select {
	case <-h.done:
	case <-time.After(10 * time.Second):
	}
}

// collect moves a finished helper's result into run.
func (run *podRun) collect() {
	if run.proc == nil {
		return
	}
	if code, msg, fin, ok := run.proc.exitedResult(); ok {
		run.exited, run.exitCode, run.message, run.finished = true, code, msg, fin
		run.proc = nil
	}
}

// ---- device plugins and other GPU clients ----

// pluginRun is a GPU software pod running on a node: what it holds and,
// for device plugins, the resources it registered when it started (a real
// plugin sees MIG changes only after a restart).
type pluginRun struct {
	role      string
	uid       string
	holder    string
	resources corev1.ResourceList
	healthy   bool
	problem   string
	checked   time.Time
	// Feature discovery: the labels this run publishes, and whether they
	// have been (syncDiscoveryLabels).
	labels   map[string]string
	labelled bool
	// The device plugin config label this run started with, and one its
	// config-manager could not apply (followConfigLabel).
	configKey, refusedKey string
	// MIG_STRATEGY in the pod's environment, which the GPU Operator sets
	// from the ClusterPolicy's mig.strategy: the plugin's and feature
	// discovery's flags come from their environment before the config
	// file, so it outranks the file's flags.migStrategy.
	strategyEnv string
	// A driver container: when it has loaded the driver (and is Ready).
	loadAt time.Time
}

// migStrategyEnv is the MIG_STRATEGY a pod's containers set, or "".
func migStrategyEnv(pod *corev1.Pod) string {
	for _, c := range pod.Spec.Containers {
		for _, e := range c.Env {
			if e.Name == "MIG_STRATEGY" {
				return e.Value
			}
		}
	}
	return ""
}

// holdsGPUs tells whether this kind of pod keeps the GPUs open.
func holdsGPUs(role string) bool {
	switch role {
	case RoleNvidiaPlugin, RoleHAMiPlugin, RoleFeatureDiscovery, RoleDCGMExporter, RoleDCGM:
		return true
	}
	return false
}

func resName(profile string) corev1.ResourceName {
	return corev1.ResourceName("nvidia.com/mig-" + strings.ReplaceAll(profile, "+", "."))
}

// snapshot computes what a plugin pod starting now on the node would do.
func (s *Sim) snapshot(pod *corev1.Pod, n *Node) *pluginRun {
	role := pod.Annotations[RoleAnnotation]
	pr := &pluginRun{role: role, uid: string(pod.UID), healthy: true, checked: time.Now(),
		holder: fmt.Sprintf("%s (%s/%s)", role, pod.Namespace, pod.Name), strategyEnv: migStrategyEnv(pod)}
	if role == RoleNvidiaDriver {
		pr.healthy, pr.loadAt = false, time.Now().Add(s.opts.DriverLoad)
		return pr
	}
	if role != RoleNvidiaPlugin && role != RoleHAMiPlugin && role != RoleFeatureDiscovery {
		return pr
	}
	var labels map[string]string
	if node, err := s.nodeLister.Get(n.Name); err == nil {
		labels = node.Labels
	}
	pr.configKey = labels[configLabel]
	st, err := fakesmi.Load(n.StatePath)
	if role == RoleFeatureDiscovery && (err != nil || st.DriverUnloaded) {
		return pr // it labels nothing (a real one would crash-loop; nothing here watches it)
	}
	if err != nil {
		pr.healthy, pr.problem = false, "reading GPU state: "+err.Error()
		return pr
	}
	if st.DriverUnloaded {
		pr.healthy, pr.problem = false, "failed to initialize NVML: Driver Not Loaded"
		return pr
	}
	var sh sharing
	if role != RoleHAMiPlugin {
		var problem string
		if sh, problem, _ = s.nodeSharing(labels); problem != "" {
			// GFD shares the config-manager: it does not start either.
			pr.healthy, pr.problem = false, problem
			return pr
		}
		switch pr.strategyEnv {
		case "":
		case "none", "single", "mixed":
			sh.strategy = pr.strategyEnv
		default:
			pr.healthy, pr.problem = false, fmt.Sprintf("unknown MIG strategy %q", pr.strategyEnv)
			return pr
		}
	}
	if role == RoleFeatureDiscovery {
		pr.labels = discoveryLabels(n.Model, st, sh)
		return pr
	}
	res := corev1.ResourceList{}
	switch role {
	case RoleNvidiaPlugin:
		strategy := sh.strategy
		full, migDevs := 0, map[string]int{}
		for _, g := range st.GPUs {
			if g.Lost {
				continue
			}
			// Under none a MIG-enabled GPU is offered whole, as if MIG
			// were off.
			if !g.MIGCurrent || strategy == "none" {
				full++
				continue
			}
			devs := g.MIGDevices()
			for _, d := range devs {
				migDevs[d.Name]++
			}
			cis := len(devs)
			if cis == 0 {
				pr.healthy, pr.problem = false, fmt.Sprintf("error starting plugins: GPU %d has MIG enabled but no MIG devices", g.Index)
				return pr
			}
		}
		// Time-slicing hands out each nvidia.com/gpu device replicas
		// times, under the renamed resource when it is renamed.
		gpuRes := corev1.ResourceName("nvidia.com/gpu")
		if sh.rename != "" {
			gpuRes = corev1.ResourceName(sh.rename)
		}
		shared := func(c int) resource.Quantity {
			return *resource.NewQuantity(int64(c*sh.replicas), resource.DecimalSI)
		}
		switch {
		case strategy == "single" && len(migDevs) > 0:
			if full > 0 || len(migDevs) > 1 {
				pr.healthy, pr.problem = false, "invalid MIG configuration for the single strategy: all GPUs must be MIG enabled with one profile"
				return pr
			}
			for _, c := range migDevs {
				res[gpuRes] = shared(c)
			}
		default:
			res[gpuRes] = shared(full)
			for p, c := range migDevs {
				res[resName(p)] = *resource.NewQuantity(int64(c), resource.DecimalSI)
			}
		}
	case RoleHAMiPlugin:
		split, memScale, coreScale := 10.0, 1.0, 1.0
		cfg := s.hamiNodeConfig(n.Name)
		if cfg != nil {
			if cfg.DeviceSplitCount > 0 {
				split = float64(cfg.DeviceSplitCount)
			}
			if cfg.DeviceMemoryScaling > 0 {
				memScale = cfg.DeviceMemoryScaling
			}
			if cfg.DeviceCoreScaling > 0 {
				coreScale = cfg.DeviceCoreScaling
			}
		}
		count, mem := 0, 0
		for _, g := range st.GPUs {
			if g.Lost || g.MIGCurrent || cfg.filtered(g.UUID, g.Index) {
				continue
			}
			count++
			if m, err := fakesmi.LookupModel(g.Model); err == nil {
				mem += m.MemoryMiB
			}
		}
		vgpu := corev1.ResourceName("nvidia.com/vgpu")
		if name := pod.Annotations[HAMiResourceAnnotation]; name != "" {
			vgpu = corev1.ResourceName(name)
		}
		res[vgpu] = *resource.NewQuantity(int64(float64(count)*split), resource.DecimalSI)
		res["nvidia.com/gpumem"] = *resource.NewQuantity(int64(float64(mem)*memScale), resource.DecimalSI)
		res["nvidia.com/gpucores"] = *resource.NewQuantity(int64(float64(100*count)*coreScale), resource.DecimalSI)
	}
	pr.resources = res
	return pr
}

type hamiNodeConfig struct {
	Name                string  `json:"name"`
	OperatingMode       string  `json:"operatingmode"`
	MigStrategy         string  `json:"migstrategy"`
	DeviceSplitCount    uint    `json:"devicesplitcount"`
	DeviceMemoryScaling float64 `json:"devicememoryscaling"`
	DeviceCoreScaling   float64 `json:"devicecorescaling"`
	FilterDevices       *struct {
		UUID  []string `json:"uuid"`
		Index []uint   `json:"index"`
	} `json:"filterdevices"`
}

// hamiNodeConfig reads HAMi's per-node config (read when the plugin
// starts) as HAMi does: Go's decoder (unknown keys ignored, 4.0 refused
// for the split, and then nothing is read), every entry named the node in
// turn, a value above 0 or a filter that names a GPU replacing the one
// before.
func (s *Sim) hamiNodeConfig(node string) *hamiNodeConfig {
	cm, err := s.cs.CoreV1().ConfigMaps("kube-system").Get(context.Background(), "hami-device-plugin", metav1.GetOptions{})
	if err != nil {
		return nil
	}
	var cfg struct {
		NodeConfig []hamiNodeConfig `json:"nodeconfig"`
	}
	if json.Unmarshal([]byte(cm.Data["config.json"]), &cfg) != nil {
		return nil
	}
	var out *hamiNodeConfig
	for _, e := range cfg.NodeConfig {
		if e.Name != node {
			continue
		}
		if out == nil {
			out = &hamiNodeConfig{Name: node}
		}
		if e.DeviceSplitCount > 0 {
			out.DeviceSplitCount = e.DeviceSplitCount
		}
		if e.DeviceMemoryScaling > 0 {
			out.DeviceMemoryScaling = e.DeviceMemoryScaling
		}
		if e.DeviceCoreScaling > 0 {
			out.DeviceCoreScaling = e.DeviceCoreScaling
		}
		if e.FilterDevices != nil && (len(e.FilterDevices.UUID) > 0 || len(e.FilterDevices.Index) > 0) {
			out.FilterDevices = e.FilterDevices
		}
	}
	return out
}

// filtered says whether HAMi's plugin leaves the GPU out (its uuid or
// index is in the node's filterdevices).
func (c *hamiNodeConfig) filtered(uuid string, index int) bool {
	if c == nil || c.FilterDevices == nil {
		return false
	}
	for _, u := range c.FilterDevices.UUID {
		if u == uuid {
			return true
		}
	}
	for _, i := range c.FilterDevices.Index {
		if int(i) == index {
			return true
		}
	}
	return false
}

// applyPluginHealth computes the plugin's snapshot before its status is
// written; a plugin that cannot start shows as a crash-looping container.
func (s *Sim) applyPluginHealth(pod *corev1.Pod, run *podRun, st *corev1.PodStatus) {
	n := run.node
	n.mu.Lock()
	pr := n.plugins[run.role]
	n.mu.Unlock()
	if pr == nil || pr.uid != string(pod.UID) {
		pr = s.snapshot(pod, n)
		n.mu.Lock()
		n.pending(run.uidString(), pr)
		n.mu.Unlock()
	}
	switch {
	case pr.role == RoleNvidiaDriver && !pr.healthy:
		loadingStatus(st, metav1.Now())
	case !pr.healthy:
		crashLoopStatus(st, pr.problem, metav1.Now())
	}
}

// readyStatus shows a pod's containers running and Ready; restarted: they
// started again just now (a plugin out of its crash loop).
func readyStatus(st *corev1.PodStatus, restarted bool, now metav1.Time) {
	t := true
	for i := range st.ContainerStatuses {
		cs := &st.ContainerStatuses[i]
		cs.Ready, cs.Started = true, &t
		if restarted {
			cs.RestartCount++
			cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
		}
	}
	setCondition(st, corev1.ContainersReady, corev1.ConditionTrue, "", now)
	setCondition(st, corev1.PodReady, corev1.ConditionTrue, "", now)
}

// loadingStatus shows a driver container still building and loading the
// driver: running, its startup probe not yet passed.
func loadingStatus(st *corev1.PodStatus, now metav1.Time) {
	for i := range st.ContainerStatuses {
		f := false
		st.ContainerStatuses[i].Ready, st.ContainerStatuses[i].Started = false, &f
	}
	setCondition(st, corev1.ContainersReady, corev1.ConditionFalse, "ContainersNotReady", now)
	setCondition(st, corev1.PodReady, corev1.ConditionFalse, "ContainersNotReady", now)
}

// crashLoopStatus shows a plugin's containers failing with problem and
// waiting to be restarted.
func crashLoopStatus(st *corev1.PodStatus, problem string, now metav1.Time) {
	for i := range st.ContainerStatuses {
		cs := &st.ContainerStatuses[i]
		cs.Ready = false
		f := false
		cs.Started = &f
		cs.RestartCount++
		cs.State = corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "CrashLoopBackOff",
			Message: "back-off restarting failed container " + cs.Name}}
		cs.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 1, Reason: "Error", Message: problem, StartedAt: now, FinishedAt: now, ContainerID: cs.ContainerID}}
	}
	setCondition(st, corev1.ContainersReady, corev1.ConditionFalse, "ContainersNotReady", now)
	setCondition(st, corev1.PodReady, corev1.ConditionFalse, "ContainersNotReady", now)
}

func (run *podRun) uidString() string { return string(run.uid) }

// pending parks a plugin snapshot until its pod's status is written.
func (n *Node) pending(uid string, pr *pluginRun) {
	if n.pendingPlugins == nil {
		n.pendingPlugins = map[string]*pluginRun{}
	}
	n.pendingPlugins[uid] = pr
}

// startPlugin registers a running plugin pod on its node: it holds the
// GPUs and, if healthy, its resources appear on the node.
func (s *Sim) startPlugin(pod *corev1.Pod, run *podRun) {
	n := run.node
	uid := string(pod.UID)
	n.mu.Lock()
	if cur := n.plugins[run.role]; cur != nil && cur.uid == uid {
		crashing := !cur.healthy && time.Since(cur.checked) >= 10*time.Second
		loaded := cur.role == RoleNvidiaDriver && !cur.healthy && !time.Now().Before(cur.loadAt)
		n.mu.Unlock()
		if cur.role == RoleNvidiaDriver {
			if loaded {
				s.loadDriver(pod, run, cur)
			}
			return
		}
		if crashing {
			s.retryPlugin(pod, run)
		}
		return
	}
	pr := n.pendingPlugins[uid]
	delete(n.pendingPlugins, uid)
	n.mu.Unlock()
	if pr == nil {
		pr = s.snapshot(pod, n)
	}
	n.mu.Lock()
	old := n.plugins[run.role]
	n.plugins[run.role] = pr
	n.mu.Unlock()
	if pr.role == RoleNvidiaDriver && run.adopted && podReady(pod) {
		// It ran before this simulator: the driver is loaded.
		n.mu.Lock()
		pr.healthy = true
		n.mu.Unlock()
		return
	}
	if pr.role == RoleNvidiaDriver {
		// It starts by unloading the driver there is, to load its own.
		if err := fakesmi.Update(n.StatePath, func(st *fakesmi.State) error {
			st.DriverUnloaded = true
			return nil
		}); err != nil {
			klog.Warningf("node %s: unload the driver: %v", n.Name, err)
		}
		s.podQ.AddAfter(run.key, time.Until(pr.loadAt))
		return
	}
	if old != nil && old.holder != pr.holder && holdsGPUs(old.role) {
		_ = fakesmi.RemoveHolderFile(n.StatePath, fakesmi.AllGPUs, old.holder)
	}
	if pr.healthy && holdsGPUs(pr.role) {
		if err := fakesmi.AddHolderFile(n.StatePath, fakesmi.AllGPUs, pr.holder); err != nil {
			klog.Warningf("node %s: add GPU holder: %v", n.Name, err)
		}
	}
	s.nodeQ.Add(n.Name)
	if !pr.healthy {
		s.podQ.AddAfter(run.key, 10*time.Second)
	}
}

// loadDriver ends a driver container's loading: the driver is loaded (the
// GPUs as after a reset) and the pod Ready; the plugins find it at their
// next restart.
func (s *Sim) loadDriver(pod *corev1.Pod, run *podRun, pr *pluginRun) {
	n := run.node
	if err := fakesmi.Update(n.StatePath, func(st *fakesmi.State) error {
		if st.DriverUnloaded {
			st.ReloadDriver()
		}
		st.DriverUnloaded = false
		return nil
	}); err != nil {
		klog.Warningf("node %s: load the driver: %v", n.Name, err)
		s.podQ.AddAfter(run.key, time.Second)
		return
	}
	np := pod.DeepCopy()
	readyStatus(&np.Status, false, metav1.Now())
	if _, err := s.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(context.Background(), np, metav1.UpdateOptions{}); err != nil {
		s.podQ.AddAfter(run.key, time.Second)
		return
	}
	n.mu.Lock()
	pr.healthy = true
	n.mu.Unlock()
	klog.Infof("node %s: driver loaded by %s/%s", n.Name, pod.Namespace, pod.Name)
}

// retryPlugin restarts a crash-looping plugin: it looks at the GPUs again.
func (s *Sim) retryPlugin(pod *corev1.Pod, run *podRun) {
	n := run.node
	pr := s.snapshot(pod, n)
	if !pr.healthy {
		n.mu.Lock()
		if cur := n.plugins[run.role]; cur != nil && cur.uid == pr.uid {
			cur.checked, cur.problem = time.Now(), pr.problem
		}
		n.mu.Unlock()
		if podReady(pod) {
			// It ran until a new config stopped it, and that status
			// was not written (crashPlugin).
			s.crashPlugin(pod, pr.problem)
		}
		s.podQ.AddAfter(run.key, 10*time.Second)
		return
	}
	np := pod.DeepCopy()
	readyStatus(&np.Status, true, metav1.Now())
	if _, err := s.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(context.Background(), np, metav1.UpdateOptions{}); err != nil {
		s.podQ.AddAfter(run.key, time.Second)
		return
	}
	n.mu.Lock()
	n.plugins[run.role] = pr
	n.mu.Unlock()
	if holdsGPUs(pr.role) {
		_ = fakesmi.AddHolderFile(n.StatePath, fakesmi.AllGPUs, pr.holder)
	}
	s.nodeQ.Add(n.Name)
}

func podReady(pod *corev1.Pod) bool {
	for _, c := range pod.Status.Conditions {
		if c.Type == corev1.PodReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// crashPlugin shows a plugin pod's containers crash-looping on problem.
func (s *Sim) crashPlugin(pod *corev1.Pod, problem string) {
	np := pod.DeepCopy()
	crashLoopStatus(&np.Status, problem, metav1.Now())
	if _, err := s.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(context.Background(), np, metav1.UpdateOptions{}); err != nil {
		klog.Warningf("pod %s/%s: crash-loop status: %v", pod.Namespace, pod.Name, err)
	}
}

// stopPlugin unregisters a pod that stopped: a plugin's resources and GPU
// holds, a workload's compute process.
func (s *Sim) stopPlugin(run *podRun) {
	s.detachGPU(run)
	if run.role == "" {
		return
	}
	n := run.node
	n.mu.Lock()
	delete(n.pendingPlugins, string(run.uid))
	pr := n.plugins[run.role]
	if pr == nil || pr.uid != string(run.uid) {
		n.mu.Unlock()
		return
	}
	delete(n.plugins, run.role)
	n.mu.Unlock()
	if holdsGPUs(pr.role) {
		if err := fakesmi.RemoveHolderFile(n.StatePath, fakesmi.AllGPUs, pr.holder); err != nil {
			klog.Warningf("node %s: remove GPU holder: %v", n.Name, err)
		}
	}
	s.nodeQ.Add(n.Name)
}

// gpuResources is the set of GPU extended resources the node should
// advertise: the running healthy plugins' resources, and zero for every
// nvidia.com resource the node advertised before that no plugin serves now.
func (s *Sim) gpuResources(n *Node, cur *corev1.Node) corev1.ResourceList {
	out := corev1.ResourceList{}
	for rn := range cur.Status.Capacity {
		if strings.HasPrefix(string(rn), "nvidia.com/") {
			out[rn] = *resource.NewQuantity(0, resource.DecimalSI)
		}
	}
	n.mu.Lock()
	roles := make([]string, 0, len(n.plugins))
	for r := range n.plugins {
		roles = append(roles, r)
	}
	sort.Strings(roles)
	for _, r := range roles {
		pr := n.plugins[r]
		if !pr.healthy {
			continue
		}
		for rn, q := range pr.resources {
			if old, ok := out[rn]; ok && !old.IsZero() {
				q.Add(old)
			}
			out[rn] = q
		}
	}
	n.mu.Unlock()
	return out
}

// ---- workloads: a running pod that requested GPUs is a compute process ----

func requestsGPU(pod *corev1.Pod) int64 {
	var n int64
	for _, c := range pod.Spec.Containers {
		for rn, q := range c.Resources.Limits {
			if strings.HasPrefix(string(rn), "nvidia.com/") && rn != "nvidia.com/gpumem" && rn != "nvidia.com/gpucores" {
				n += q.Value()
			}
		}
	}
	return n
}

// visibleDevices is the NVIDIA_VISIBLE_DEVICES a pod's spec sets for the
// NVIDIA container runtime, "" when none names a GPU ("none", "void" and
// empty give none).
func visibleDevices(pod *corev1.Pod) string {
	for _, list := range [][]corev1.Container{pod.Spec.InitContainers, pod.Spec.Containers} {
		for _, c := range list {
			v := "" // the last of the name is the container's
			for _, e := range c.Env {
				if e.Name == "NVIDIA_VISIBLE_DEVICES" {
					v = e.Value
				}
			}
			if v != "" && v != "none" && v != "void" {
				return v
			}
		}
	}
	return ""
}

// named says whether NVIDIA_VISIBLE_DEVICES value vis gives the pod GPU g.
func named(vis string, g *fakesmi.GPU) bool {
	if vis == "all" {
		return true
	}
	for _, d := range strings.Split(vis, ",") {
		d = strings.TrimSpace(d)
		if d == g.UUID || d == strconv.Itoa(g.Index) {
			return true
		}
	}
	return false
}

// attachGPU makes a running pod that uses GPUs show up as compute
// processes in the node's fake nvidia-smi (so the hardware cannot be
// changed under it): one per requested device, or, with no request, one
// on each GPU its NVIDIA_VISIBLE_DEVICES names (the runtime gives them to
// the container without the scheduler knowing).
func (s *Sim) attachGPU(pod *corev1.Pod, run *podRun) {
	want := requestsGPU(pod)
	vis := visibleDevices(pod)
	if (want == 0 && vis == "") || run.role != "" || s.isHelper(pod) {
		return
	}
	h := fnv32(string(pod.UID))
	err := fakesmi.Update(run.node.StatePath, func(st *fakesmi.State) error {
		if len(st.GPUs) == 0 {
			return nil
		}
		if want == 0 {
			for i, g := range st.GPUs {
				if !named(vis, g) {
					continue
				}
				pid := 100000 + int((h+uint32(i)*7919)%800000)
				st.RemoveProcess(pid)
				if err := st.AddProcess(g.Index, fakesmi.Process{PID: pid, Name: "python3", UsedMiB: 1024}); err != nil {
					return err
				}
				run.gpuPIDs = append(run.gpuPIDs, pid)
			}
			return nil
		}
		for i := int64(0); i < want; i++ {
			pid := 100000 + int((h+uint32(i)*7919)%800000)
			gpu := int((h + uint32(i)) % uint32(len(st.GPUs)))
			st.RemoveProcess(pid) // idempotent when a restarted simulator adopts the pod
			if err := st.AddProcess(gpu, fakesmi.Process{PID: pid, Name: "python3", UsedMiB: 1024}); err != nil {
				return err
			}
			run.gpuPIDs = append(run.gpuPIDs, pid)
		}
		return nil
	})
	if err != nil {
		klog.Warningf("pod %s: add GPU processes: %v", run.key, err)
	}
}

func (s *Sim) detachGPU(run *podRun) {
	if len(run.gpuPIDs) == 0 {
		return
	}
	pids := run.gpuPIDs
	run.gpuPIDs = nil
	err := fakesmi.Update(run.node.StatePath, func(st *fakesmi.State) error {
		for _, p := range pids {
			st.RemoveProcess(p)
		}
		return nil
	})
	if err != nil && err != fakesmi.ErrNoState {
		klog.Warningf("pod %s: remove GPU processes: %v", run.key, err)
	}
}

func fnv32(s string) uint32 {
	h := uint32(2166136261)
	for i := 0; i < len(s); i++ {
		h ^= uint32(s[i])
		h *= 16777619
	}
	return h
}
