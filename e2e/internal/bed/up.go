// Package bed starts, stops and inspects a test bed: a real Kubernetes
// control plane (etcd, kube-apiserver, kube-controller-manager,
// kube-scheduler) plus the node simulator, each a separate process of the
// same multi-call binary, all on 127.0.0.1.
package bed

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"

	"gpumode.io/e2e/internal/gpus"
	"gpumode.io/e2e/internal/pki"
)

func logf(format string, a ...any) {
	fmt.Fprintf(os.Stderr, "testbed: "+format+"\n", a...)
}

// Up implements `testbed up`.
func Up(args []string) error {
	fs := flag.NewFlagSet("up", flag.ContinueOnError)
	dir := fs.String("dir", "", "bed directory (required)")
	nodes := fs.Int("nodes", 3, "number of simulated GPU nodes")
	model := fs.String("gpu-model", "A100-SXM4-40GB", "GPU model: "+strings.Join(gpus.ModelNames(), ", ")+" or mixed")
	perNode := fs.Int("gpus-per-node", 8, "GPUs per node")
	operator := fs.Bool("gpu-operator", true, "install GPU Operator / HAMi style device plugin DaemonSets and wait for GPU capacity")
	grace := fs.Float64("grace-factor", 0.05, "simulated pods take terminationGracePeriodSeconds times this to stop")
	nodeGrace := fs.String("node-monitor-grace-period", "", "kube-controller-manager --node-monitor-grace-period (default max(60s, 3 x the lease interval): 60s up to 2000 nodes)")
	timeout := fs.Duration("timeout", 0, "give up after this long (default 3m plus 150ms per node)")
	limitCritical := fs.Bool("limit-critical-pods", false, "admit system-node-critical and system-cluster-critical pods only in namespaces with a quota for them, as GKE does")
	dcgm := fs.Bool("dcgm", false, "also run the GPU Operator's standalone DCGM DaemonSet (nvidia-dcgm, dcgm.enabled), which holds the GPUs")
	driver := fs.Bool("driver-container", false, "the GPU Operator runs the driver in a container (nvidia-driver-daemonset, Ready some seconds after each boot) instead of a driver on the host")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *dir == "" {
		return errors.New("up: --dir is required")
	}
	if *model != "mixed" && gpus.Lookup(*model) == nil {
		return fmt.Errorf("up: unknown --gpu-model %q (want %s or mixed)", *model, strings.Join(gpus.ModelNames(), ", "))
	}
	if *nodes < 0 || *perNode < 1 || *perNode > 16 {
		return errors.New("up: --nodes must be >= 0 and --gpus-per-node 1..16")
	}
	if *timeout == 0 {
		*timeout = 3*time.Minute + time.Duration(*nodes)*150*time.Millisecond
	}
	// Keep Lease writes near 100/s at most: renew every 10s, slower above
	// 1000 nodes, and give the node lifecycle controller 3 renewals of grace.
	leaseInterval := 10 * time.Second
	if d := time.Duration(*nodes) * 10 * time.Millisecond; d > leaseInterval {
		leaseInterval = d.Round(time.Second)
	}
	if *nodeGrace == "" {
		g := 3 * leaseInterval
		if g < 60*time.Second {
			g = 60 * time.Second
		}
		*nodeGrace = g.String()
	}
	d, err := filepath.Abs(*dir)
	if err != nil {
		return err
	}
	for _, c := range Components {
		if r, ok := readPid(d, c); ok && r.alive() {
			return fmt.Errorf("up: %s already runs in %s (pid %d); run `testbed down --dir %s` first", c, d, r.Pid, d)
		}
	}
	// A fresh bed every time: remove what an earlier bed left here.
	for _, sub := range []string{"etcd", "run", "logs", "pki", "nodes", "pods", "kcm-certs", "scheduler-certs"} {
		if err := os.RemoveAll(filepath.Join(d, sub)); err != nil {
			return err
		}
	}
	if err := os.MkdirAll(d, 0o755); err != nil {
		return err
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()

	ports, err := freePorts(5)
	if err != nil {
		return err
	}
	st := &State{
		Dir: d, EtcdPort: ports[0], EtcdPeerPort: ports[1], APIServerPort: ports[2], KCMPort: ports[3], SchedulerPort: ports[4],
		Nodes: *nodes, GPUModel: *model, GPUsPerNode: *perNode, ServiceCIDR: "10.96.0.0/16", ServiceIP: "10.96.0.1",
		NodePrefix: "gpu-", GPUOperator: *operator, GraceFactor: *grace, NodeGracePeriod: *nodeGrace,
		LeaseInterval: leaseInterval.String(), LimitCriticalPods: *limitCritical, DCGM: *dcgm,
		DriverContainer: *driver,
	}
	if err := st.save(); err != nil {
		return err
	}
	bundle, err := pki.Generate(st.ServiceIP)
	if err != nil {
		return err
	}
	files, err := bundle.Write(filepath.Join(d, "pki"))
	if err != nil {
		return err
	}
	server := st.server()
	kcs := map[string]struct {
		user string
		pair pki.Pair
	}{
		"kubeconfig":           {"kubernetes-admin", bundle.Admin},
		"kcm.kubeconfig":       {"system:kube-controller-manager", bundle.ControllerMgr},
		"scheduler.kubeconfig": {"system:kube-scheduler", bundle.Scheduler},
		"sim.kubeconfig":       {"gpumode-e2e-sim", bundle.Sim},
	}
	for name, kc := range kcs {
		if err := writeKubeconfig(filepath.Join(d, name), kubeconfig(server, bundle.CA, kc.user, kc.pair, "")); err != nil {
			return err
		}
	}
	schedCfg := fmt.Sprintf(`apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
clientConnection:
  kubeconfig: %s
  qps: 300
  burst: 600
leaderElection:
  leaderElect: false
`, filepath.Join(d, "scheduler.kubeconfig"))
	if err := os.WriteFile(filepath.Join(d, "scheduler.yaml"), []byte(schedCfg), 0o644); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(d, "audit-policy.yaml"), []byte(auditPolicy), 0o644); err != nil {
		return err
	}
	if st.LimitCriticalPods {
		if err := os.WriteFile(filepath.Join(d, "admission.yaml"), []byte(admissionConfig), 0o644); err != nil {
			return err
		}
	}

	var started []string
	children := map[string]*exec.Cmd{}
	fail := func(err error) error {
		logf("start-up failed: %v; stopping what was started (logs in %s)", err, logDir(d))
		for i := len(started) - 1; i >= 0; i-- {
			_ = stop(d, started[i], 10*time.Second)
			if c := children[started[i]]; c != nil {
				_ = c.Wait()
			}
		}
		return err
	}
	startC := func(name string, args []string) error {
		c, err := launch(d, name, args)
		if err != nil {
			return err
		}
		started = append(started, name)
		children[name] = c
		return nil
	}

	if err := startC("etcd", etcdArgs(st)); err != nil {
		return fail(err)
	}
	if err := waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/health", st.EtcdPort), nil, "etcd", d); err != nil {
		return fail(err)
	}
	if err := startC("kube-apiserver", apiserverArgs(st, files)); err != nil {
		return fail(err)
	}
	cs, err := AdminClient(d)
	if err != nil {
		return fail(err)
	}
	if err := waitAPIServer(ctx, cs, d); err != nil {
		return fail(err)
	}
	logf("kube-apiserver ready after %.1fs", time.Since(start).Seconds())
	if err := startC("kube-controller-manager", kcmArgs(st, files)); err != nil {
		return fail(err)
	}
	if err := startC("kube-scheduler", schedulerArgs(st)); err != nil {
		return fail(err)
	}
	if *operator {
		if err := installAddons(ctx, cs, st); err != nil {
			return fail(fmt.Errorf("install GPU add-ons: %w", err))
		}
	}
	if err := startC("sim", simArgs(st)); err != nil {
		return fail(err)
	}
	insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	if err := waitHTTP(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", st.KCMPort), insecure, "kube-controller-manager", d); err != nil {
		return fail(err)
	}
	if err := waitHTTP(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", st.SchedulerPort), insecure, "kube-scheduler", d); err != nil {
		return fail(err)
	}
	if err := waitFor(ctx, "default ServiceAccount", d, func() (bool, string, error) {
		_, err := cs.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		if apierrors.IsNotFound(err) {
			return false, "not yet created", nil
		}
		return err == nil, "", err
	}); err != nil {
		return fail(err)
	}
	if err := waitForEvery(ctx, pollInterval(st.Nodes), "nodes Ready", d, func() (bool, string, error) {
		nl, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
		if err != nil {
			return false, "", err
		}
		ready := 0
		for i := range nl.Items {
			if nodeReady(&nl.Items[i]) {
				ready++
			}
		}
		return ready >= st.Nodes, fmt.Sprintf("%d/%d nodes Ready", ready, st.Nodes), nil
	}); err != nil {
		return fail(err)
	}
	if *operator {
		if err := waitForEvery(ctx, pollInterval(st.Nodes), "GPU capacity", d, func() (bool, string, error) {
			nl, err := cs.CoreV1().Nodes().List(ctx, metav1.ListOptions{ResourceVersion: "0"})
			if err != nil {
				return false, "", err
			}
			n := 0
			for i := range nl.Items {
				q := nl.Items[i].Status.Allocatable[corev1.ResourceName("nvidia.com/gpu")]
				if q.Value() > 0 {
					n++
				}
			}
			return n >= st.Nodes, fmt.Sprintf("%d/%d nodes advertise nvidia.com/gpu", n, st.Nodes), nil
		}); err != nil {
			return fail(err)
		}
	}
	if err := writeControllerConfig(d); err != nil {
		return fail(err)
	}
	// Children now run on their own; release them.
	for _, c := range children {
		_ = c.Process.Release()
	}
	logf("bed up in %.1fs: %d nodes; kubeconfig %s", time.Since(start).Seconds(), st.Nodes, filepath.Join(d, "kubeconfig"))
	fmt.Println(filepath.Join(d, "kubeconfig"))
	return nil
}

func nodeReady(n *corev1.Node) bool {
	for _, c := range n.Status.Conditions {
		if c.Type == corev1.NodeReady {
			return c.Status == corev1.ConditionTrue
		}
	}
	return false
}

// AdminClient returns a clientset for DIR/kubeconfig.
func AdminClient(dir string) (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(dir, "kubeconfig"))
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = 100, 200
	cfg.ContentType = "application/vnd.kubernetes.protobuf"
	cfg.AcceptContentTypes = "application/vnd.kubernetes.protobuf,application/json"
	return kubernetes.NewForConfig(cfg)
}

func componentDied(dir, name string) error {
	if r, ok := readPid(dir, name); ok && !r.alive() {
		return fmt.Errorf("%s exited; see %s:\n%s", name, filepath.Join(logDir(dir), name+".log"), tail(filepath.Join(logDir(dir), name+".log"), 30))
	}
	return nil
}

func anyDied(dir string) error {
	for _, c := range Components {
		if err := componentDied(dir, c); err != nil {
			return err
		}
	}
	return nil
}

func tail(path string, lines int) string {
	b, _ := os.ReadFile(path)
	ls := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(ls) > lines {
		ls = ls[len(ls)-lines:]
	}
	return strings.Join(ls, "\n")
}

// waitFor polls cond every 200ms until it holds, the context ends, or a
// component of the bed dies.
func waitFor(ctx context.Context, what, dir string, cond func() (bool, string, error)) error {
	return waitForEvery(ctx, 200*time.Millisecond, what, dir, cond)
}

// pollInterval for conditions that list every node: cheap on a small bed,
// not a load of its own on a big one.
func pollInterval(nodes int) time.Duration {
	d := time.Duration(nodes) * time.Millisecond
	if d < 200*time.Millisecond {
		d = 200 * time.Millisecond
	}
	return d
}

func waitForEvery(ctx context.Context, every time.Duration, what, dir string, cond func() (bool, string, error)) error {
	var last string
	var lastErr error
	for {
		ok, msg, err := cond()
		if ok {
			return nil
		}
		if msg != "" {
			last = msg
		}
		lastErr = err
		if err := anyDied(dir); err != nil {
			return err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("timed out waiting for %s (%s; last error: %v)", what, last, lastErr)
		case <-time.After(every):
		}
	}
}

func waitHTTP(ctx context.Context, url string, c *http.Client, what, dir string) error {
	if c == nil {
		c = &http.Client{Timeout: 2 * time.Second}
	}
	return waitFor(ctx, what, dir, func() (bool, string, error) {
		resp, err := c.Get(url)
		if err != nil {
			return false, "", err
		}
		resp.Body.Close()
		return resp.StatusCode == 200, "HTTP " + strconv.Itoa(resp.StatusCode), nil
	})
}

func waitAPIServer(ctx context.Context, cs *kubernetes.Clientset, dir string) error {
	return waitFor(ctx, "kube-apiserver /readyz", dir, func() (bool, string, error) {
		var code int
		res := cs.Discovery().RESTClient().Get().AbsPath("/readyz").Do(ctx).StatusCode(&code)
		if res.Error() != nil {
			return false, fmt.Sprintf("HTTP %d", code), res.Error()
		}
		return code == 200, "", nil
	})
}
