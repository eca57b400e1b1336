package bed

import (
	"context"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"go.etcd.io/etcd/server/v3/embed"

	"gpumode.io/e2e/internal/pki"
)

func etcdArgs(st *State) []string {
	return []string{"--data-dir", filepath.Join(st.Dir, "etcd"),
		"--client-port", strconv.Itoa(st.EtcdPort), "--peer-port", strconv.Itoa(st.EtcdPeerPort)}
}

// admissionConfig (up --limit-critical-pods) makes the bed's API server
// limit the critical priority classes as GKE does: a pod asking for
// system-node-critical or system-cluster-critical is admitted only in a
// namespace whose ResourceQuota covers that class (the bed gives
// kube-system and gpu-operator one, as GKE and the GPU Operator's GKE
// install do; gpumode's manifests ship one for gpumode-system). Off by
// default: upstream Kubernetes admits them anywhere, and every pod
// created under a quota also writes the quota's status.
const admissionConfig = `apiVersion: apiserver.config.k8s.io/v1
kind: AdmissionConfiguration
plugins:
- name: ResourceQuota
  configuration:
    apiVersion: apiserver.config.k8s.io/v1
    kind: ResourceQuotaConfiguration
    limitedResources:
    - resource: pods
      matchScopes:
      - scopeName: PriorityClass
        operator: In
        values: [system-node-critical, system-cluster-critical]
`

// auditPolicy records every eviction and every pod deletion (metadata
// only) in logs/audit.log, so tests can check how pods were removed: by
// the Eviction API, which enforces PodDisruptionBudgets, or directly.
const auditPolicy = `apiVersion: audit.k8s.io/v1
kind: Policy
omitStages: [RequestReceived, ResponseStarted]
rules:
- level: Metadata
  verbs: [create]
  resources: [{group: "", resources: [pods/eviction]}]
- level: Metadata
  verbs: [delete, deletecollection]
  resources: [{group: "", resources: [pods]}]
- level: None
`

// AuditLog is where the API server writes the audit events of auditPolicy.
func AuditLog(dir string) string { return filepath.Join(logDir(dir), "audit.log") }

func apiserverArgs(st *State, f pki.Files) []string {
	args := []string{
		"--etcd-servers=" + fmt.Sprintf("http://127.0.0.1:%d", st.EtcdPort),
		"--bind-address=127.0.0.1",
		"--advertise-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(st.APIServerPort),
		"--tls-cert-file=" + f.APIServerCert,
		"--tls-private-key-file=" + f.APIServerKey,
		"--client-ca-file=" + f.CA,
		"--service-account-key-file=" + f.SAPub,
		"--service-account-signing-key-file=" + f.SAKey,
		"--service-account-issuer=https://kubernetes.default.svc.cluster.local",
		"--authorization-mode=Node,RBAC",
		"--enable-admission-plugins=NodeRestriction",
		"--service-cluster-ip-range=" + st.ServiceCIDR,
		"--allow-privileged=true",
		// The advertise address is loopback, which Endpoints may not hold;
		// nothing in the bed reaches the apiserver through its Service.
		"--endpoint-reconciler-type=none",
		"--requestheader-client-ca-file=" + f.FrontProxyCA,
		"--requestheader-allowed-names=front-proxy-client",
		"--requestheader-username-headers=X-Remote-User",
		"--requestheader-group-headers=X-Remote-Group",
		"--requestheader-extra-headers-prefix=X-Remote-Extra-",
		"--proxy-client-cert-file=" + f.FrontProxyCert,
		"--proxy-client-key-file=" + f.FrontProxyKey,
		"--profiling=false",
		"--audit-policy-file=" + filepath.Join(st.Dir, "audit-policy.yaml"),
		"--audit-log-path=" + AuditLog(st.Dir),
		"--audit-log-format=json",
		"--audit-log-maxbackup=1",
		"--cert-dir=" + filepath.Join(st.Dir, "pki"),
		"--v=0",
	}
	if st.LimitCriticalPods {
		args = append(args, "--admission-control-config-file="+filepath.Join(st.Dir, "admission.yaml"))
	}
	return args
}

func kcmArgs(st *State, f pki.Files) []string {
	kc := filepath.Join(st.Dir, "kcm.kubeconfig")
	return []string{
		"--kubeconfig=" + kc,
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(st.KCMPort),
		"--cert-dir=" + filepath.Join(st.Dir, "kcm-certs"),
		"--leader-elect=false",
		"--use-service-account-credentials=true",
		"--service-account-private-key-file=" + f.SAKey,
		"--root-ca-file=" + f.CA,
		"--cluster-signing-cert-file=" + f.CA,
		"--cluster-signing-key-file=" + f.CAKey,
		"--controllers=*",
		"--node-monitor-grace-period=" + st.NodeGracePeriod,
		"--kube-api-qps=300",
		"--kube-api-burst=600",
		"--concurrent-daemonset-syncs=4",
		"--profiling=false",
		"--v=0",
	}
}

func schedulerArgs(st *State) []string {
	kc := filepath.Join(st.Dir, "scheduler.kubeconfig")
	return []string{
		"--config=" + filepath.Join(st.Dir, "scheduler.yaml"),
		"--authentication-kubeconfig=" + kc,
		"--authorization-kubeconfig=" + kc,
		"--bind-address=127.0.0.1",
		"--secure-port=" + strconv.Itoa(st.SchedulerPort),
		"--cert-dir=" + filepath.Join(st.Dir, "scheduler-certs"),
		"--profiling=false",
		"--v=0",
	}
}

func simArgs(st *State) []string {
	args := []string{
		"--kubeconfig=" + filepath.Join(st.Dir, "sim.kubeconfig"),
		"--dir=" + st.Dir,
		"--nodes=" + strconv.Itoa(st.Nodes),
		"--node-prefix=" + st.NodePrefix,
		"--gpu-model=" + st.GPUModel,
		"--gpus-per-node=" + strconv.Itoa(st.GPUsPerNode),
		"--grace-factor=" + strconv.FormatFloat(st.GraceFactor, 'g', -1, 64),
		"--lease-interval=" + st.LeaseInterval,
	}
	if st.DriverContainer {
		args = append(args, "--driver-container")
	}
	return args
}

// Etcd implements the `etcd` subcommand: an embedded single-member etcd on
// loopback, without TLS and without fsync (test data only).
func Etcd(args []string) error {
	fs := flag.NewFlagSet("etcd", flag.ContinueOnError)
	dataDir := fs.String("data-dir", "", "data directory")
	clientPort := fs.Int("client-port", 2379, "client port on 127.0.0.1")
	peerPort := fs.Int("peer-port", 2380, "peer port on 127.0.0.1")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg := embed.NewConfig()
	cfg.Name = "gpumode-e2e"
	cfg.Dir = *dataDir
	cu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", *clientPort))
	pu, _ := url.Parse(fmt.Sprintf("http://127.0.0.1:%d", *peerPort))
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*cu}, []url.URL{*cu}
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*pu}, []url.URL{*pu}
	cfg.InitialCluster = cfg.InitialClusterFromName(cfg.Name)
	cfg.LogLevel = "error"
	cfg.UnsafeNoFsync = true
	cfg.QuotaBackendBytes = 8 << 30
	cfg.AutoCompactionMode = "periodic"
	cfg.AutoCompactionRetention = "5m"
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		return err
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(60 * time.Second):
		e.Close()
		return fmt.Errorf("etcd did not become ready")
	}
	fmt.Fprintf(os.Stderr, "etcd ready on %s\n", cu)
	ctx, stopSig := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopSig()
	select {
	case <-ctx.Done():
	case err := <-e.Err():
		e.Close()
		return err
	}
	e.Close()
	return nil
}
