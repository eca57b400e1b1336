package bed

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"gpumode.io/e2e/internal/pki"
)

// State is what `up` records in DIR/bed.json for later commands.
type State struct {
	Dir             string  `json:"dir"`
	EtcdPort        int     `json:"etcdPort"`
	EtcdPeerPort    int     `json:"etcdPeerPort"`
	APIServerPort   int     `json:"apiserverPort"`
	KCMPort         int     `json:"kcmPort"`
	SchedulerPort   int     `json:"schedulerPort"`
	Nodes           int     `json:"nodes"`
	GPUModel        string  `json:"gpuModel"`
	GPUsPerNode     int     `json:"gpusPerNode"`
	ServiceCIDR     string  `json:"serviceCIDR"`
	ServiceIP       string  `json:"serviceIP"`
	NodePrefix      string  `json:"nodePrefix"`
	GPUOperator     bool    `json:"gpuOperator"`
	GraceFactor     float64 `json:"graceFactor"`
	NodeGracePeriod string  `json:"nodeMonitorGracePeriod"`
	LeaseInterval   string  `json:"leaseInterval"`
	// LimitCriticalPods: the API server admits the critical priority
	// classes only under a quota for them, as GKE does (admissionConfig).
	LimitCriticalPods bool `json:"limitCriticalPods,omitempty"`
	// DCGM: the GPU Operator's standalone DCGM runs too (dcgm.enabled).
	DCGM bool `json:"dcgm,omitempty"`
	// DriverContainer: the GPU Operator runs the driver in a container
	// (nvidia-driver-daemonset) rather than finding one on the host.
	DriverContainer bool `json:"driverContainer,omitempty"`
}

func statePath(dir string) string { return filepath.Join(dir, "bed.json") }

// LoadState reads DIR/bed.json.
func LoadState(dir string) (*State, error) {
	b, err := os.ReadFile(statePath(dir))
	if err != nil {
		return nil, fmt.Errorf("no bed in %s: %w", dir, err)
	}
	var s State
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	return &s, nil
}

func (s *State) save() error {
	b, _ := json.MarshalIndent(s, "", "  ")
	return os.WriteFile(statePath(s.Dir), b, 0o644)
}

func (s *State) server() string { return fmt.Sprintf("https://127.0.0.1:%d", s.APIServerPort) }

// freePorts asks the kernel for n distinct unused loopback ports.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			l.Close()
		}
	}()
	var ports []int
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// kubeconfig builds a kubeconfig with embedded data for a client pair.
func kubeconfig(server string, ca []byte, user string, pair pki.Pair, token string) *clientcmdapi.Config {
	c := clientcmdapi.NewConfig()
	c.Clusters["gpumode-e2e"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: ca}
	ai := &clientcmdapi.AuthInfo{ClientCertificateData: pair.Cert, ClientKeyData: pair.Key, Token: token}
	c.AuthInfos[user] = ai
	c.Contexts["gpumode-e2e"] = &clientcmdapi.Context{Cluster: "gpumode-e2e", AuthInfo: user}
	c.CurrentContext = "gpumode-e2e"
	return c
}

func writeKubeconfig(path string, c *clientcmdapi.Config) error {
	return clientcmd.WriteToFile(*c, path)
}
