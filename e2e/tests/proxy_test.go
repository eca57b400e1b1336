package tests

// A kubeconfig's proxy-url: socks5:// hands the API server's name to the
// proxy, which resolves it on its side, as kubectl (Go's transport) does.
// An SSH -D tunnel into a network whose names resolve only there depends
// on it. The proxy here is a loopback SOCKS5 listener that notes the
// address it is asked for and refuses the connection.

import (
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// socksAsked serves one SOCKS5 CONNECT on l and returns the requested
// host as the client sent it: a name (address type 3) or "ip:" and the
// address bytes otherwise.
func socksAsked(l net.Listener, out chan<- string) {
	c, err := l.Accept()
	if err != nil {
		out <- "accept: " + err.Error()
		return
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	hello := make([]byte, 2)
	if _, err := io.ReadFull(c, hello); err != nil || hello[0] != 5 {
		out <- "bad greeting"
		return
	}
	io.ReadFull(c, make([]byte, hello[1]))
	c.Write([]byte{5, 0}) // no authentication
	req := make([]byte, 4)
	if _, err := io.ReadFull(c, req); err != nil {
		out <- "no request"
		return
	}
	var host string
	switch req[3] {
	case 3:
		n := make([]byte, 1)
		io.ReadFull(c, n)
		name := make([]byte, n[0])
		io.ReadFull(c, name)
		host = string(name)
	case 1:
		ip := make([]byte, 4)
		io.ReadFull(c, ip)
		host = "ip:" + net.IP(ip).String()
	default:
		host = "address type " + string('0'+req[3])
	}
	c.Write([]byte{5, 4, 0, 1, 0, 0, 0, 0, 0, 0}) // host unreachable
	out <- host
}

func TestSocksProxyResolvesTheServerName(t *testing.T) {
	requireE2E(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	asked := make(chan string, 1)
	go socksAsked(l, asked)

	// .invalid never resolves (RFC 6761): only the proxy's side could.
	dir := t.TempDir()
	kc := filepath.Join(dir, "kubeconfig")
	cfg := "apiVersion: v1\nkind: Config\ncurrent-context: c\n" +
		"clusters: [{name: c, cluster: {server: 'https://api.cluster.invalid:6443', insecure-skip-tls-verify: true, proxy-url: 'socks5://" + l.Addr().String() + "'}}]\n" +
		"users: [{name: u, user: {token: t}}]\n" +
		"contexts: [{name: c, context: {cluster: c, user: u}}]\n"
	if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(repoRoot(t), "build", "kubectl-gpumode"), "--kubeconfig", kc, "--no-color", "status")
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("status through a proxy that refuses succeeded: %s", out)
	}
	select {
	case host := <-asked:
		if host != "api.cluster.invalid" {
			t.Errorf("the proxy was asked for %q, want the name api.cluster.invalid (kubectl: %s)", host, out)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("the proxy was never asked: %s", out)
	}
}
