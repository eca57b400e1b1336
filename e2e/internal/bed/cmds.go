package bed

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	authv1 "k8s.io/api/authentication/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"

	"gpumode.io/e2e/internal/pki"
	"gpumode.io/e2e/internal/sim"
)

func dirFlag(fs *flag.FlagSet) *string {
	return fs.String("dir", os.Getenv("TESTBED_DIR"), "bed directory (default $TESTBED_DIR)")
}

func absDir(d string) (string, error) {
	if d == "" {
		return "", errors.New("--dir is required")
	}
	return filepath.Abs(d)
}

// Down implements `testbed down`: stop every component, newest first, with
// its whole process group, and wait until none is left.
func Down(args []string) error {
	fs := flag.NewFlagSet("down", flag.ContinueOnError)
	dir := dirFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := absDir(*dir)
	if err != nil {
		return err
	}
	var errs []error
	for i := len(Components) - 1; i >= 0; i-- {
		if err := stop(d, Components[i], 20*time.Second); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	logf("bed in %s is down", d)
	return nil
}

// Stop implements `testbed stop --dir DIR COMPONENT...`.
func Stop(args []string) error {
	fs := flag.NewFlagSet("stop", flag.ContinueOnError)
	dir := dirFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := absDir(*dir)
	if err != nil {
		return err
	}
	for _, name := range fs.Args() {
		if !known(name) {
			return fmt.Errorf("stop: unknown component %q (one of %s)", name, strings.Join(Components, ", "))
		}
		if err := stop(d, name, 20*time.Second); err != nil {
			return err
		}
	}
	return nil
}

func known(name string) bool {
	for _, c := range Components {
		if c == name {
			return true
		}
	}
	return false
}

// Start implements `testbed start --dir DIR COMPONENT...`: start a stopped
// component again with the arguments `up` gave it, and wait until it is
// healthy.
func Start(args []string) error {
	fs := flag.NewFlagSet("start", flag.ContinueOnError)
	dir := dirFlag(fs)
	timeout := fs.Duration("timeout", 2*time.Minute, "wait this long for health")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := absDir(*dir)
	if err != nil {
		return err
	}
	st, err := LoadState(d)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	for _, name := range fs.Args() {
		if !known(name) {
			return fmt.Errorf("start: unknown component %q (one of %s)", name, strings.Join(Components, ", "))
		}
		if r, ok := readPid(d, name); ok && r.alive() {
			return fmt.Errorf("start: %s already runs (pid %d)", name, r.Pid)
		}
		var cargs []string
		switch name {
		case "etcd":
			cargs = etcdArgs(st)
		case "kube-apiserver":
			cargs = apiserverArgs(st, filesOf(d))
		case "kube-controller-manager":
			cargs = kcmArgs(st, filesOf(d))
		case "kube-scheduler":
			cargs = schedulerArgs(st)
		case "sim":
			cargs = simArgs(st)
		}
		c, err := launch(d, name, cargs)
		if err != nil {
			return err
		}
		_ = c.Process.Release()
		insecure := &http.Client{Timeout: 2 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
		check := func() error { return componentDied(d, name) }
		switch name {
		case "etcd":
			err = waitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/health", st.EtcdPort), nil, name, d)
		case "kube-apiserver":
			var cs, cerr = AdminClient(d)
			if cerr != nil {
				return cerr
			}
			err = waitAPIServer(ctx, cs, d)
		case "kube-controller-manager":
			err = waitHTTP(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", st.KCMPort), insecure, name, d)
		case "kube-scheduler":
			err = waitHTTP(ctx, fmt.Sprintf("https://127.0.0.1:%d/healthz", st.SchedulerPort), insecure, name, d)
		default:
			time.Sleep(500 * time.Millisecond)
			err = check()
		}
		if err != nil {
			return err
		}
		logf("%s started", name)
	}
	return nil
}

func filesOf(d string) pki.Files { return pki.FilesIn(filepath.Join(d, "pki")) }

// Token implements `testbed token --dir DIR --sa NS/NAME`: print a kubeconfig
// that authenticates as that ServiceAccount with a token from TokenRequest.
func Token(args []string) error {
	fs := flag.NewFlagSet("token", flag.ContinueOnError)
	dir := dirFlag(fs)
	sa := fs.String("sa", "", "ServiceAccount as NAMESPACE/NAME")
	ttl := fs.Duration("duration", time.Hour, "token lifetime")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := absDir(*dir)
	if err != nil {
		return err
	}
	ns, name, ok := strings.Cut(*sa, "/")
	if !ok || ns == "" || name == "" {
		return errors.New("token: --sa NAMESPACE/NAME is required")
	}
	cs, err := AdminClient(d)
	if err != nil {
		return err
	}
	secs := int64(ttl.Seconds())
	tr, err := cs.CoreV1().ServiceAccounts(ns).CreateToken(context.Background(), name,
		&authv1.TokenRequest{Spec: authv1.TokenRequestSpec{ExpirationSeconds: &secs}}, metav1.CreateOptions{})
	if err != nil {
		return fmt.Errorf("token: %w", err)
	}
	admin, err := clientcmd.LoadFromFile(filepath.Join(d, "kubeconfig"))
	if err != nil {
		return err
	}
	cl := admin.Clusters[admin.Contexts[admin.CurrentContext].Cluster]
	kc := kubeconfig(cl.Server, cl.CertificateAuthorityData, "system:serviceaccount:"+ns+":"+name, pki.Pair{}, tr.Status.Token)
	b, err := clientcmd.Write(*kc)
	if err != nil {
		return err
	}
	_, err = os.Stdout.Write(b)
	return err
}

// Status implements `testbed status --dir DIR`: which components run.
func Status(args []string) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	dir := dirFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := absDir(*dir)
	if err != nil {
		return err
	}
	down := 0
	for _, c := range Components {
		r, ok := readPid(d, c)
		switch {
		case !ok:
			fmt.Printf("%-24s stopped\n", c)
			down++
		case r.alive():
			fmt.Printf("%-24s running (pid %d)\n", c, r.Pid)
		default:
			fmt.Printf("%-24s dead (pid %d gone)\n", c, r.Pid)
			down++
		}
	}
	if down > 0 {
		os.Exit(3)
	}
	return nil
}

func writeControllerConfig(d string) error {
	smi := os.Getenv("TESTBED_NVIDIA_SMI")
	if smi == "" {
		self, _ := os.Executable()
		smi = filepath.Join(filepath.Dir(self), "bin", "nvidia-smi")
	}
	cfg := fmt.Sprintf(`# gpumode controller configuration for the test bed in %s
namespace: gpumode-system
profile: gpu-operator-hami
agentImage: gpumode/agent:dev
# the simulated kubelet runs helper pods on this machine, with the fake nvidia-smi
nvidiaSmiPath: %s
driverRoot: "/"
migConfigMap:
  namespace: gpu-operator
  name: default-mig-parted-config
`, d, smi)
	return os.WriteFile(filepath.Join(d, "controller.yaml"), []byte(cfg), 0o644)
}

// Reboot implements `testbed reboot --dir DIR [--down D] NODE...`: ask the
// simulator to power-cycle nodes (it stops heartbeating, its GPUs reboot, it
// comes back with a new boot ID after D).
func Reboot(args []string) error {
	fs := flag.NewFlagSet("reboot", flag.ContinueOnError)
	dir := dirFlag(fs)
	down := fs.Duration("down", 5*time.Second, "how long the node stays down")
	if err := fs.Parse(args); err != nil {
		return err
	}
	d, err := absDir(*dir)
	if err != nil {
		return err
	}
	for _, n := range fs.Args() {
		p := sim.RebootRequestPath(d, n)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, []byte(down.String()), 0o644); err != nil {
			return err
		}
	}
	return nil
}
