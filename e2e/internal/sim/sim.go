// Package sim simulates GPU nodes and their kubelets against a real API
// server: it registers nodes labelled as the GPU Operator's feature
// discovery labels them, renews their Leases, runs the pods bound to them
// (status, graceful deletion, Job completion), runs helper pods'
// commands locally against a fake nvidia-smi, and publishes GPU resources
// while a simulated device plugin pod runs on a node.
package sim

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	coordv1 "k8s.io/api/coordination/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	corelisters "k8s.io/client-go/listers/core/v1"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/client-go/util/workqueue"
	"k8s.io/klog/v2"

	"gpumode.io/e2e/fakesmi"
	"gpumode.io/e2e/internal/gpus"
)

// Annotations and roles the simulator understands.
const (
	// RoleAnnotation on a pod (template) tells which GPU software it stands
	// for; the simulator then acts as that software would on the node.
	RoleAnnotation       = "sim.gpumode.io/role"
	RoleNvidiaPlugin     = "nvidia-device-plugin"
	RoleHAMiPlugin       = "hami-device-plugin"
	RoleFeatureDiscovery = "gpu-feature-discovery"
	RoleDCGMExporter     = "dcgm-exporter"
	RoleDCGM             = "dcgm"
	RoleMIGManager       = "mig-manager"
	// RoleNvidiaDriver is the GPU Operator's driver container: it unloads
	// what driver there is when it starts, and is Ready once it has built
	// and loaded its own (--driver-load later). Until then every
	// nvidia-smi fails as with no driver.
	RoleNvidiaDriver = "nvidia-driver"
	// HAMiResourceAnnotation on a HAMi plugin pod names the resource it
	// registers: nvidia.com/vgpu as DaoCloud packages it (the default),
	// nvidia.com/gpu as the upstream chart does.
	HAMiResourceAnnotation = "sim.gpumode.io/hami-resource"
	// RunSecondsAnnotation makes a pod's containers exit after that many
	// seconds (pods owned by Jobs default to --job-seconds).
	RunSecondsAnnotation = "sim.gpumode.io/run-seconds"
	// ExitCodeAnnotation is the exit code those containers exit with (default 0).
	ExitCodeAnnotation = "sim.gpumode.io/exit-code"
	// HelperLabel marks gpumode's helper pods (their command runs locally).
	HelperLabelKey   = "app.kubernetes.io/name"
	HelperLabelValue = "gpumode-agent"
)

// Options configure the simulator.
type Options struct {
	Kubeconfig    string
	Dir           string
	Nodes         int
	NodePrefix    string
	GPUModel      string
	GPUsPerNode   int
	GraceFactor   float64
	JobSeconds    float64
	LeaseInterval time.Duration
	StatusReport  time.Duration
	BootNotReady  time.Duration
	// DriverContainer: the GPU Operator runs the driver in a container
	// (nodes labelled nvidia.com/gpu.deploy.driver=true, not
	// pre-installed); DriverLoad is how long that container takes to
	// load it after it starts.
	DriverContainer bool
	DriverLoad      time.Duration
	Workers         int
	QPS             float64
	// ImageMap maps an image (without tag) to a local binary: helper pods
	// with that image run the binary.
	ImageMap  map[string]string
	NvidiaSmi string
}

// Node is the simulator's view of one node.
type Node struct {
	Name      string
	Index     int
	Model     *gpus.Model
	GPUs      int
	IP        string
	StatePath string // fake nvidia-smi state file
	// driverContainer: the driver is loaded by a pod of RoleNvidiaDriver,
	// so none is loaded when the node boots.
	driverContainer bool

	mu             sync.Mutex
	bootID         string
	down           bool      // powered off (rebooting): no heartbeat, no status, runs nothing
	boot           int       // boots since the simulator started
	lastReport     time.Time // last full status heartbeat
	startingUntil  time.Time // after a boot: Ready=False until then
	lease          *coordv1.Lease
	plugins        map[string]*pluginRun // role -> running plugin on this node
	pendingPlugins map[string]*pluginRun // pod UID -> snapshot not yet published
}

// Sim is a running simulator.
type Sim struct {
	opts    Options
	cs      kubernetes.Interface
	nodes   map[string]*Node
	ordered []*Node

	factory    informers.SharedInformerFactory
	podLister  corelisters.PodLister
	nodeLister corelisters.NodeLister
	podQ       workqueue.TypedRateLimitingInterface[string]
	nodeQ      workqueue.TypedRateLimitingInterface[string]

	mu   sync.Mutex
	runs map[string]*podRun // by pod UID
}

// Main implements the `sim` subcommand.
func Main(args []string) error {
	fs := flag.NewFlagSet("sim", flag.ContinueOnError)
	var o Options
	fs.StringVar(&o.Kubeconfig, "kubeconfig", "", "kubeconfig")
	fs.StringVar(&o.Dir, "dir", "", "bed directory")
	fs.IntVar(&o.Nodes, "nodes", 3, "number of nodes")
	fs.StringVar(&o.NodePrefix, "node-prefix", "gpu-", "node name prefix")
	fs.StringVar(&o.GPUModel, "gpu-model", "A100-SXM4-40GB", "GPU model or mixed")
	fs.IntVar(&o.GPUsPerNode, "gpus-per-node", 8, "GPUs per node")
	fs.Float64Var(&o.GraceFactor, "grace-factor", 0.05, "scale of terminationGracePeriodSeconds")
	fs.Float64Var(&o.JobSeconds, "job-seconds", 5, "run time of Job pods without "+RunSecondsAnnotation)
	fs.DurationVar(&o.LeaseInterval, "lease-interval", 10*time.Second, "node Lease renewal interval")
	fs.DurationVar(&o.StatusReport, "status-report", 5*time.Minute, "full node status heartbeat interval")
	fs.DurationVar(&o.BootNotReady, "boot-not-ready", 2*time.Second, "after a reboot, how long the kubelet posts Ready=False (runtime starting)")
	fs.BoolVar(&o.DriverContainer, "driver-container", false, "the driver runs in a container (a pod of role "+RoleNvidiaDriver+"), not on the host")
	fs.DurationVar(&o.DriverLoad, "driver-load", 10*time.Second, "how long a driver container takes to load the driver after it starts")
	fs.IntVar(&o.Workers, "workers", 8, "pod workers")
	fs.Float64Var(&o.QPS, "qps", 1000, "client QPS")
	agent := fs.String("agent-bin", os.Getenv("GPUMODE_AGENT_BIN"), "binary for image gpumode/agent (default $GPUMODE_AGENT_BIN or build/gpumode-agent)")
	imageMap := fs.String("image-map", os.Getenv("SIM_IMAGE_MAP"), "more IMAGE=BINARY pairs, comma-separated")
	fs.StringVar(&o.NvidiaSmi, "nvidia-smi", os.Getenv("TESTBED_NVIDIA_SMI"), "fake nvidia-smi binary (default bin/nvidia-smi beside this binary)")
	klogFlags := flag.NewFlagSet("klog", flag.ContinueOnError)
	klog.InitFlags(klogFlags)
	if err := fs.Parse(args); err != nil {
		return err
	}
	self, _ := os.Executable()
	buildDir := filepath.Dir(filepath.Dir(self)) // build/e2e/testbed-bin -> build
	if *agent == "" {
		*agent = filepath.Join(buildDir, "gpumode-agent")
	}
	if o.NvidiaSmi == "" {
		o.NvidiaSmi = filepath.Join(filepath.Dir(self), "bin", "nvidia-smi")
	}
	o.ImageMap = map[string]string{"gpumode/agent": *agent}
	for _, kv := range strings.Split(*imageMap, ",") {
		if k, v, ok := strings.Cut(strings.TrimSpace(kv), "="); ok {
			o.ImageMap[k] = v
		}
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer cancel()
	s, err := New(o)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// New builds a simulator.
func New(o Options) (*Sim, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", o.Kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = float32(o.QPS), int(o.QPS*2)
	cfg.UserAgent = "gpumode-e2e-sim"
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return nil, err
	}
	s := &Sim{opts: o, cs: cs, nodes: map[string]*Node{}, runs: map[string]*podRun{}}
	width := len(fmt.Sprint(o.Nodes))
	if width < 3 {
		width = 3
	}
	for i := 0; i < o.Nodes; i++ {
		m := gpus.ForNode(o.GPUModel, i)
		if m == nil {
			return nil, fmt.Errorf("unknown GPU model %q", o.GPUModel)
		}
		name := fmt.Sprintf("%s%0*d", o.NodePrefix, width, i+1)
		n := &Node{
			Name: name, Index: i, Model: m, GPUs: o.GPUsPerNode,
			IP:              fmt.Sprintf("127.1.%d.%d", (i+1)/256, (i+1)%256),
			StatePath:       filepath.Join(o.Dir, "nodes", name, "nvidia-smi.json"),
			plugins:         map[string]*pluginRun{},
			driverContainer: o.DriverContainer,
		}
		s.nodes[name] = n
		s.ordered = append(s.ordered, n)
	}
	s.podQ = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "pods"})
	s.nodeQ = workqueue.NewTypedRateLimitingQueueWithConfig(workqueue.DefaultTypedControllerRateLimiter[string](), workqueue.TypedRateLimitingQueueConfig[string]{Name: "nodes"})
	return s, nil
}

func newBootID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	x := hex.EncodeToString(b[:])
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// Run registers the nodes and simulates them until ctx ends; then it stops
// every helper process it started.
func (s *Sim) Run(ctx context.Context) error {
	start := time.Now()
	if err := s.registerNodes(ctx); err != nil {
		return err
	}
	klog.Infof("registered %d nodes in %s", len(s.ordered), time.Since(start).Round(time.Millisecond))

	s.factory = informers.NewSharedInformerFactory(s.cs, 0)
	podInf := s.factory.Core().V1().Pods()
	nodeInf := s.factory.Core().V1().Nodes()
	s.podLister, s.nodeLister = podInf.Lister(), nodeInf.Lister()
	_, _ = podInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.enqueuePod,
		UpdateFunc: func(_, o any) { s.enqueuePod(o) },
		DeleteFunc: s.enqueuePod,
	})
	_, _ = nodeInf.Informer().AddEventHandler(cache.ResourceEventHandlerFuncs{
		AddFunc:    s.enqueueNode,
		UpdateFunc: func(_, o any) { s.enqueueNode(o) },
	})
	s.factory.Start(ctx.Done())
	for t, ok := range s.factory.WaitForCacheSync(ctx.Done()) {
		if !ok {
			return fmt.Errorf("cache for %v did not sync", t)
		}
	}
	var wg sync.WaitGroup
	for i := 0; i < s.opts.Workers; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); s.podWorker(ctx) }()
	}
	for i := 0; i < 4; i++ {
		wg.Add(1)
		go func() { defer wg.Done(); s.nodeWorker(ctx) }()
	}
	for _, n := range s.ordered {
		wg.Add(1)
		go func(n *Node) { defer wg.Done(); s.heartbeat(ctx, n) }(n)
	}
	wg.Add(1)
	go func() { defer wg.Done(); s.controlLoop(ctx) }()
	klog.Infof("simulating %d nodes", len(s.ordered))
	<-ctx.Done()
	s.podQ.ShutDown()
	s.nodeQ.ShutDown()
	s.killAll()
	wg.Wait()
	return nil
}

func (s *Sim) enqueuePod(o any) {
	if d, ok := o.(cache.DeletedFinalStateUnknown); ok {
		o = d.Obj
	}
	p, ok := o.(*corev1.Pod)
	if !ok || s.nodes[p.Spec.NodeName] == nil {
		return
	}
	key, _ := cache.MetaNamespaceKeyFunc(p)
	s.podQ.Add(key)
}

func (s *Sim) enqueueNode(o any) {
	n, ok := o.(*corev1.Node)
	if ok && s.nodes[n.Name] != nil {
		s.nodeQ.Add(n.Name)
	}
}

// nodeLabels are the labels a GPU Operator managed node carries after feature
// discovery, with the operands enabled (full mode).
func (n *Node) labels() map[string]string {
	m := n.Model
	l := map[string]string{
		"kubernetes.io/hostname":                      n.Name,
		"kubernetes.io/os":                            "linux",
		"kubernetes.io/arch":                          "amd64",
		"beta.kubernetes.io/os":                       "linux",
		"beta.kubernetes.io/arch":                     "amd64",
		"feature.node.kubernetes.io/pci-10de.present": "true",
		"nvidia.com/gpu.present":                      "true",
		"nvidia.com/gpu.product":                      m.Product,
		"nvidia.com/gpu.count":                        fmt.Sprint(n.GPUs),
		"nvidia.com/gpu.memory":                       fmt.Sprint(m.MemoryMiB),
		"nvidia.com/gpu.family":                       m.Family,
		"nvidia.com/gpu.compute.major":                fmt.Sprint(m.Major),
		"nvidia.com/gpu.compute.minor":                fmt.Sprint(m.Minor),
		"nvidia.com/gpu.machine":                      "DGX-SIM",
		"nvidia.com/gpu.replicas":                     "1",
		"nvidia.com/gpu.sharing-strategy":             "none",
		"nvidia.com/mig.capable":                      "true",
		"nvidia.com/mig.config":                       "all-disabled",
		"nvidia.com/mig.config.state":                 "success",
		"nvidia.com/cuda.driver.major":                "550",
		"nvidia.com/cuda.driver.minor":                "127",
		"nvidia.com/cuda.driver.rev":                  "08",
		"nvidia.com/cuda.runtime.major":               "12",
		"nvidia.com/cuda.runtime.minor":               "4",
		"nvidia.com/gpu.deploy.driver":                "pre-installed", // "true" below with a driver container
		"nvidia.com/gpu.deploy.container-toolkit":     "true",
		"nvidia.com/gpu.deploy.operator-validator":    "true",
		"nvidia.com/gpu.deploy.device-plugin":         "true",
		"nvidia.com/gpu.deploy.gpu-feature-discovery": "true",
		"nvidia.com/gpu.deploy.dcgm-exporter":         "true",
		"nvidia.com/gpu.deploy.dcgm":                  "true",
		"nvidia.com/gpu.deploy.mig-manager":           "true",
		"nvidia.com/gpu.deploy.node-status-exporter":  "true",
		"nvidia.com/vgpu.deploy.device-plugin":        "false",
	}
	if n.driverContainer {
		l["nvidia.com/gpu.deploy.driver"] = "true"
	}
	// Without MIG the operator deploys no mig-manager and GFD says so.
	if !m.MIGCapable() {
		l["nvidia.com/mig.capable"] = "false"
		delete(l, "nvidia.com/mig.config")
		delete(l, "nvidia.com/mig.config.state")
		delete(l, "nvidia.com/gpu.deploy.mig-manager")
	}
	return l
}

var baseCapacity = corev1.ResourceList{
	corev1.ResourceCPU:              resource.MustParse("64"),
	corev1.ResourceMemory:           resource.MustParse("512Gi"),
	corev1.ResourcePods:             resource.MustParse("110"),
	corev1.ResourceEphemeralStorage: resource.MustParse("1Ti"),
	"hugepages-1Gi":                 resource.MustParse("0"),
	"hugepages-2Mi":                 resource.MustParse("0"),
}

var baseAllocatable = corev1.ResourceList{
	corev1.ResourceCPU:              resource.MustParse("63"),
	corev1.ResourceMemory:           resource.MustParse("500Gi"),
	corev1.ResourcePods:             resource.MustParse("110"),
	corev1.ResourceEphemeralStorage: resource.MustParse("1000Gi"),
	"hugepages-1Gi":                 resource.MustParse("0"),
	"hugepages-2Mi":                 resource.MustParse("0"),
}

func (n *Node) nodeInfo(bootID string) corev1.NodeSystemInfo {
	return corev1.NodeSystemInfo{
		MachineID:               fmt.Sprintf("%032x", n.Index+1),
		SystemUUID:              fmt.Sprintf("00000000-0000-0000-0000-%012x", n.Index+1),
		BootID:                  bootID,
		KernelVersion:           "6.1.0-sim-amd64",
		OSImage:                 "Debian GNU/Linux 12 (bookworm)",
		ContainerRuntimeVersion: "containerd://2.0.0-sim",
		KubeletVersion:          "v1.36.3",
		KubeProxyVersion:        "",
		OperatingSystem:         "linux",
		Architecture:            "amd64",
	}
}

func readyConditions(now metav1.Time, ready bool) []corev1.NodeCondition {
	st, reason, msg := corev1.ConditionTrue, "KubeletReady", "kubelet is posting ready status"
	if !ready {
		st, reason, msg = corev1.ConditionFalse, "KubeletNotReady", "container runtime status check may not have completed yet"
	}
	return []corev1.NodeCondition{
		{Type: corev1.NodeMemoryPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientMemory", Message: "kubelet has sufficient memory available", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodeDiskPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasNoDiskPressure", Message: "kubelet has no disk pressure", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodePIDPressure, Status: corev1.ConditionFalse, Reason: "KubeletHasSufficientPID", Message: "kubelet has sufficient PID available", LastHeartbeatTime: now, LastTransitionTime: now},
		{Type: corev1.NodeReady, Status: st, Reason: reason, Message: msg, LastHeartbeatTime: now, LastTransitionTime: now},
	}
}

// registerNodes creates the nodes (or adopts them after a simulator
// restart, keeping their boot ID) and their fake nvidia-smi state files.
func (s *Sim) registerNodes(ctx context.Context) error {
	work := make(chan *Node)
	errs := make(chan error, len(s.ordered))
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range work {
				if err := s.registerNode(ctx, n); err != nil {
					errs <- fmt.Errorf("node %s: %w", n.Name, err)
				}
			}
		}()
	}
	for _, n := range s.ordered {
		work <- n
	}
	close(work)
	wg.Wait()
	close(errs)
	return <-errs
}

func (s *Sim) registerNode(ctx context.Context, n *Node) error {
	if err := os.MkdirAll(filepath.Dir(n.StatePath), 0o755); err != nil {
		return err
	}
	if _, err := fakesmi.Load(n.StatePath); err == fakesmi.ErrNoState {
		st, err := fakesmi.NewStateSeeded(n.Model.Name, n.GPUs, n.Name)
		if err != nil {
			return err
		}
		st.DriverUnloaded = n.driverContainer // until its pod loads it
		if err := fakesmi.Save(n.StatePath, st); err != nil {
			return err
		}
	} else if err != nil {
		return err
	}
	now := metav1.Now()
	n.bootID = newBootID()
	node := &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{Name: n.Name, Labels: n.labels(), Annotations: map[string]string{
			"node.alpha.kubernetes.io/ttl":                           "0",
			"volumes.kubernetes.io/controller-managed-attach-detach": "true",
		}},
		Spec: corev1.NodeSpec{PodCIDR: fmt.Sprintf("10.%d.%d.0/24", 128+n.Index/256, n.Index%256),
			PodCIDRs: []string{fmt.Sprintf("10.%d.%d.0/24", 128+n.Index/256, n.Index%256)}},
		Status: corev1.NodeStatus{
			Capacity: baseCapacity.DeepCopy(), Allocatable: baseAllocatable.DeepCopy(),
			Phase:      corev1.NodeRunning,
			Conditions: readyConditions(now, true),
			Addresses: []corev1.NodeAddress{{Type: corev1.NodeInternalIP, Address: n.IP},
				{Type: corev1.NodeHostName, Address: n.Name}},
			DaemonEndpoints: corev1.NodeDaemonEndpoints{KubeletEndpoint: corev1.DaemonEndpoint{Port: 10250}},
			NodeInfo:        n.nodeInfo(n.bootID),
		},
	}
	got, err := s.cs.CoreV1().Nodes().Create(ctx, node, metav1.CreateOptions{})
	if apierrors.IsAlreadyExists(err) {
		got, err = s.cs.CoreV1().Nodes().Get(ctx, n.Name, metav1.GetOptions{})
		if err == nil && got.Status.NodeInfo.BootID != "" {
			n.bootID = got.Status.NodeInfo.BootID
		}
	}
	if err != nil {
		return err
	}
	n.lastReport = time.Now()
	_ = got
	return s.renewLease(ctx, n)
}

// heartbeat renews the node's Lease every LeaseInterval (started at a random
// offset so renewals spread out) and queues a full status report every
// StatusReport, as the kubelet does.
func (s *Sim) heartbeat(ctx context.Context, n *Node) {
	interval := s.opts.LeaseInterval
	offset := time.Duration(int64(n.Index) * int64(interval) / int64(len(s.ordered)+1))
	select {
	case <-ctx.Done():
		return
	case <-time.After(offset):
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		n.mu.Lock()
		down := n.down
		report := time.Since(n.lastReport) > s.opts.StatusReport
		n.mu.Unlock()
		if !down {
			if err := s.renewLease(ctx, n); err != nil && ctx.Err() == nil {
				klog.Warningf("lease %s: %v", n.Name, err)
			}
			if report {
				s.nodeQ.Add(n.Name)
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Sim) renewLease(ctx context.Context, n *Node) error {
	leases := s.cs.CoordinationV1().Leases(corev1.NamespaceNodeLease)
	now := metav1.NewMicroTime(time.Now())
	n.mu.Lock()
	l := n.lease
	n.mu.Unlock()
	var err error
	if l != nil {
		l = l.DeepCopy()
		l.Spec.RenewTime = &now
		l, err = leases.Update(ctx, l, metav1.UpdateOptions{})
		if err == nil {
			n.mu.Lock()
			n.lease = l
			n.mu.Unlock()
			return nil
		}
		if !apierrors.IsConflict(err) && !apierrors.IsNotFound(err) {
			return err
		}
	}
	return wait.ExponentialBackoff(wait.Backoff{Duration: 100 * time.Millisecond, Factor: 2, Steps: 5}, func() (bool, error) {
		cur, err := leases.Get(ctx, n.Name, metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			dur := int32(4 * s.opts.LeaseInterval / time.Second)
			holder := n.Name
			cur, err = leases.Create(ctx, &coordv1.Lease{
				ObjectMeta: metav1.ObjectMeta{Name: n.Name, Namespace: corev1.NamespaceNodeLease},
				Spec:       coordv1.LeaseSpec{HolderIdentity: &holder, LeaseDurationSeconds: &dur, RenewTime: &now},
			}, metav1.CreateOptions{})
			if apierrors.IsAlreadyExists(err) {
				return false, nil
			}
		} else if err == nil {
			cur.Spec.RenewTime = &now
			cur, err = leases.Update(ctx, cur, metav1.UpdateOptions{})
			if apierrors.IsConflict(err) {
				return false, nil
			}
		}
		if err != nil {
			return false, err
		}
		n.mu.Lock()
		n.lease = cur
		n.mu.Unlock()
		return true, nil
	})
}

func (s *Sim) nodeWorker(ctx context.Context) {
	for {
		name, quit := s.nodeQ.Get()
		if quit {
			return
		}
		err := s.syncNode(ctx, name)
		if err != nil && ctx.Err() == nil {
			if !apierrors.IsConflict(err) {
				klog.Warningf("sync node %s: %v", name, err)
			}
			s.nodeQ.AddRateLimited(name)
		} else {
			s.nodeQ.Forget(name)
		}
		s.nodeQ.Done(name)
	}
}

// syncNode makes the Node's status match the simulated node: Ready (unless
// powered off), boot ID, and GPU resources from the running device plugins,
// then publishes feature discovery's labels. It writes status only on
// change, or when a status report is due.
func (s *Sim) syncNode(ctx context.Context, name string) error {
	n := s.nodes[name]
	cur, err := s.nodeLister.Get(name)
	if apierrors.IsNotFound(err) {
		return nil
	}
	if err != nil {
		return err
	}
	n.mu.Lock()
	down, bootID := n.down, n.bootID
	report := time.Since(n.lastReport) > s.opts.StatusReport
	starting := time.Until(n.startingUntil)
	n.mu.Unlock()
	if down {
		return nil // a rebooting node is silent
	}
	if starting > 0 {
		// The first status after a boot carries the new boot ID with
		// Ready=False while the container runtime starts, as the kubelet
		// posts it; Ready follows.
		s.nodeQ.AddAfter(name, starting)
	}
	s.followConfigLabel(n, cur)
	ext := s.gpuResources(n, cur)

	node := cur.DeepCopy()
	changed := false
	now := metav1.Now()
	var ready *corev1.NodeCondition
	for i := range node.Status.Conditions {
		if node.Status.Conditions[i].Type == corev1.NodeReady {
			ready = &node.Status.Conditions[i]
		}
	}
	want := corev1.ConditionTrue
	if starting > 0 {
		want = corev1.ConditionFalse
	}
	if ready == nil || ready.Status != want {
		node.Status.Conditions = readyConditions(now, want == corev1.ConditionTrue)
		changed = true
	}
	if node.Status.NodeInfo.BootID != bootID {
		node.Status.NodeInfo.BootID = bootID
		changed = true
	}
	for rn, q := range ext {
		if c, ok := node.Status.Capacity[rn]; !ok || c.Cmp(q) != 0 {
			changed = true
		}
		if a, ok := node.Status.Allocatable[rn]; !ok || a.Cmp(q) != 0 {
			changed = true
		}
		node.Status.Capacity[rn] = q
		node.Status.Allocatable[rn] = q
	}
	if !changed && !report {
		return s.syncDiscoveryLabels(ctx, n, cur)
	}
	if report && !changed {
		for i := range node.Status.Conditions {
			node.Status.Conditions[i].LastHeartbeatTime = now
		}
	}
	if _, err := s.cs.CoreV1().Nodes().UpdateStatus(ctx, node, metav1.UpdateOptions{}); err != nil {
		return err
	}
	n.mu.Lock()
	n.lastReport = time.Now()
	n.mu.Unlock()
	// After the status: a label patch first would make this update's
	// resourceVersion stale. A merge patch of labels needs none.
	return s.syncDiscoveryLabels(ctx, n, cur)
}
