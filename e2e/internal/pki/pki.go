// Package pki generates the certificates and keys a test control plane needs:
// one CA, the apiserver serving certificate, client certificates for each
// component and the admin, and the service-account signing key.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"time"
)

// CA is a certificate authority held in memory.
type CA struct {
	Cert *x509.Certificate
	Key  crypto.Signer
	PEM  []byte
}

func newKey() (*ecdsa.PrivateKey, error) { return ecdsa.GenerateKey(elliptic.P256(), rand.Reader) }

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	return n
}

// NewCA makes a self-signed CA valid for ten years.
func NewCA(cn string) (*CA, []byte, error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: cn},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.AddDate(10, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return &CA{Cert: cert, Key: key, PEM: pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})}, keyPEM, nil
}

// Issue makes a certificate signed by the CA. Client certificates carry the
// user in CN and groups in O; serving certificates carry hosts as SANs.
func (ca *CA) Issue(cn string, orgs []string, hosts []string, client, server bool) (certPEM, keyPEM []byte, err error) {
	return ca.issue(cn, orgs, hosts, client, server, time.Now().AddDate(1, 0, 0))
}

// IssueClientUntil makes a client certificate that expires at notAfter.
func (ca *CA) IssueClientUntil(cn string, orgs []string, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	return ca.issue(cn, orgs, nil, true, false, notAfter)
}

func (ca *CA) issue(cn string, orgs []string, hosts []string, client, server bool, notAfter time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := newKey()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: cn, Organization: orgs},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
	}
	if client {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageClientAuth)
	}
	if server {
		tmpl.ExtKeyUsage = append(tmpl.ExtKeyUsage, x509.ExtKeyUsageServerAuth)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// LoadCA reads a CA that Write stored (certificate and PKCS#8 key).
func LoadCA(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, fmt.Errorf("%s or %s: no PEM block", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("%s: key cannot sign", keyPath)
	}
	return &CA{Cert: cert, Key: signer, PEM: certPEM}, nil
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

// ServiceAccountKey makes the RSA key pair the apiserver signs tokens with.
func ServiceAccountKey() (privPEM, pubPEM []byte, err error) {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, nil, err
	}
	privPEM = pem.EncodeToMemory(&pem.Block{Type: "RSA PRIVATE KEY", Bytes: x509.MarshalPKCS1PrivateKey(key)})
	pubDER, err := x509.MarshalPKIXPublicKey(&key.PublicKey)
	if err != nil {
		return nil, nil, err
	}
	return privPEM, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER}), nil
}

// Pair is a certificate and key in PEM.
type Pair struct{ Cert, Key []byte }

// Bundle is everything a bed needs.
type Bundle struct {
	CA, CAKey       []byte
	APIServer       Pair
	Admin           Pair
	ControllerMgr   Pair
	Scheduler       Pair
	Sim             Pair
	SAKey, SAPubKey []byte
	// The front proxy (aggregation layer) has its own CA, as kubeadm sets it up.
	FrontProxyCA     []byte
	FrontProxyClient Pair
}

// Generate makes a full bundle. serviceIP is the first IP of the service
// CIDR (the "kubernetes" service).
func Generate(serviceIP string) (*Bundle, error) {
	ca, caKey, err := NewCA("gpumode-e2e-ca")
	if err != nil {
		return nil, err
	}
	b := &Bundle{CA: ca.PEM, CAKey: caKey}
	issue := func(p *Pair, cn string, orgs, hosts []string, client, server bool) {
		if err != nil {
			return
		}
		p.Cert, p.Key, err = ca.Issue(cn, orgs, hosts, client, server)
	}
	issue(&b.APIServer, "kube-apiserver", nil, []string{"127.0.0.1", "::1", "localhost", serviceIP,
		"kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, false, true)
	issue(&b.Admin, "kubernetes-admin", []string{"system:masters"}, nil, true, false)
	issue(&b.ControllerMgr, "system:kube-controller-manager", nil, nil, true, false)
	issue(&b.Scheduler, "system:kube-scheduler", nil, nil, true, false)
	// The simulator acts for every node and kubelet at once; the Node
	// authorizer would confine a node identity to its own node, so it runs
	// as a cluster admin.
	issue(&b.Sim, "gpumode-e2e-sim", []string{"system:masters"}, nil, true, false)
	if err != nil {
		return nil, err
	}
	fp, _, err := NewCA("front-proxy-ca")
	if err != nil {
		return nil, err
	}
	b.FrontProxyCA = fp.PEM
	if b.FrontProxyClient.Cert, b.FrontProxyClient.Key, err = fp.Issue("front-proxy-client", nil, nil, true, false); err != nil {
		return nil, err
	}
	b.SAKey, b.SAPubKey, err = ServiceAccountKey()
	if err != nil {
		return nil, err
	}
	return b, nil
}

// Files are the paths Write puts the bundle at.
type Files struct {
	Dir                           string
	CA, CAKey                     string
	APIServerCert, APIServerKey   string
	SAKey, SAPub                  string
	FrontProxyCA                  string
	FrontProxyCert, FrontProxyKey string
}

// Write stores the files the components read by path; client pairs go
// into kubeconfigs instead.
func (b *Bundle) Write(dir string) (Files, error) {
	f := FilesIn(dir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return f, err
	}
	for path, data := range map[string][]byte{
		f.CA: b.CA, f.CAKey: b.CAKey, f.APIServerCert: b.APIServer.Cert, f.APIServerKey: b.APIServer.Key,
		f.SAKey: b.SAKey, f.SAPub: b.SAPubKey,
		f.FrontProxyCA: b.FrontProxyCA, f.FrontProxyCert: b.FrontProxyClient.Cert, f.FrontProxyKey: b.FrontProxyClient.Key,
	} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			return f, fmt.Errorf("write %s: %w", path, err)
		}
	}
	return f, nil
}

// FilesIn names the files Write puts in dir.
func FilesIn(dir string) Files {
	return Files{
		Dir: dir, CA: filepath.Join(dir, "ca.crt"), CAKey: filepath.Join(dir, "ca.key"),
		APIServerCert: filepath.Join(dir, "apiserver.crt"), APIServerKey: filepath.Join(dir, "apiserver.key"),
		SAKey: filepath.Join(dir, "sa.key"), SAPub: filepath.Join(dir, "sa.pub"),
		FrontProxyCA:   filepath.Join(dir, "front-proxy-ca.crt"),
		FrontProxyCert: filepath.Join(dir, "front-proxy-client.crt"), FrontProxyKey: filepath.Join(dir, "front-proxy-client.key"),
	}
}
