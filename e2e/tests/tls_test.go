package tests

// The C client's TLS trust: a kubeconfig's CA is the only root it trusts
// for the API server, as in client-go. libcurl also keeps its built-in CA
// directory (/etc/ssl/certs on Debian) unless told not to, so a CA
// installed on the machine, such as a TLS-inspecting proxy's, would be
// trusted to speak for the API server. The test puts the server's CA in a
// private /etc/ssl/certs (a user and mount namespace, no root needed) and
// points the kubeconfig at another CA: kubectl-gpumode must refuse the
// server. The server is a loopback TLS endpoint that refuses every request
// (403): only the handshake matters here.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"math/big"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func writePEM(t *testing.T, path string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
}

// otherCA is a CA certificate that signed nothing the server has.
func otherCA(t *testing.T) []byte {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(2),
		Subject:               pkix.Name{CommonName: "not the cluster's CA"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return der
}

func TestClusterCAIsTheOnlyRoot(t *testing.T) {
	requireE2E(t)
	if err := exec.Command("unshare", "-Urm", "true").Run(); err != nil {
		t.Skipf("no user and mount namespaces here (unshare -Urm: %v)", err)
	}
	if _, err := exec.LookPath("openssl"); err != nil {
		t.Skip("openssl (for the CA directory's hashed names) is not installed")
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		w.Write([]byte(`{"kind":"Status","apiVersion":"v1","status":"Failure","reason":"Forbidden","code":403,"message":"forbidden by the test"}`))
	}))
	srv.EnableHTTP2 = true
	srv.StartTLS()
	defer srv.Close()

	dir := t.TempDir()
	serverCA := filepath.Join(dir, "server-ca.pem")
	writePEM(t, serverCA, srv.Certificate().Raw)
	other := filepath.Join(dir, "other-ca.pem")
	writePEM(t, other, otherCA(t))
	// The machine's CA directory, as OpenSSL looks CAs up in it: by the
	// hash of their subject.
	system := filepath.Join(dir, "system-certs")
	if err := os.Mkdir(system, 0o755); err != nil {
		t.Fatal(err)
	}
	hash, err := exec.Command("openssl", "x509", "-hash", "-noout", "-in", serverCA).Output()
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, _ := os.ReadFile(serverCA)
	for _, name := range []string{strings.TrimSpace(string(hash)) + ".0", "ca-certificates.crt"} {
		if err := os.WriteFile(filepath.Join(system, name), pemBytes, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	// The CA named by its file, or carried inline as data.
	run := func(ca string, inline bool) string {
		kc := filepath.Join(dir, "kubeconfig")
		caField := "certificate-authority: '" + ca + "'"
		if inline {
			pemText, err := os.ReadFile(ca)
			if err != nil {
				t.Fatal(err)
			}
			caField = "certificate-authority-data: " + base64.StdEncoding.EncodeToString(pemText)
		}
		cfg := "apiVersion: v1\nkind: Config\ncurrent-context: c\n" +
			"clusters: [{name: c, cluster: {server: '" + srv.URL + "', " + caField + "}}]\n" +
			"users: [{name: u, user: {token: t}}]\n" +
			"contexts: [{name: c, context: {cluster: c, user: u}}]\n"
		if err := os.WriteFile(kc, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command("unshare", "-Urm", "sh", "-c", `mount --bind "$0" /etc/ssl/certs && exec "$@"`,
			system, filepath.Join(repoRoot(t), "build", "kubectl-gpumode"), "--kubeconfig", kc, "--no-color", "status")
		out, err := cmd.CombinedOutput()
		if err == nil {
			t.Fatalf("status against a server that refuses everything succeeded: %s", out)
		}
		return string(out)
	}
	for _, inline := range []bool{false, true} {
		// The server's own CA named: the handshake succeeds, the request
		// is refused.
		if out := run(serverCA, inline); !strings.Contains(out, "forbidden by the test") {
			t.Fatalf("with the server's CA (inline %v): want the server's 403, got: %s", inline, out)
		}
		// Another CA named, the server's only among the machine's:
		// refused.
		out := run(other, inline)
		if strings.Contains(out, "forbidden by the test") {
			t.Fatalf("with another CA (inline %v) the client trusted the machine's CAs and reached the server: %s", inline, out)
		}
		if !strings.Contains(strings.ToLower(out), "certificate") {
			t.Errorf("with another CA (inline %v): want a certificate error, got: %s", inline, out)
		}
	}
}
