package pki

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"testing"
	"time"
)

func TestBundleVerifies(t *testing.T) {
	b, err := Generate("10.96.0.1")
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b.CA) {
		t.Fatal("bad CA PEM")
	}
	parse := func(p Pair) *x509.Certificate {
		if _, err := tls.X509KeyPair(p.Cert, p.Key); err != nil {
			t.Fatal(err)
		}
		blk, _ := pem.Decode(p.Cert)
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	srv := parse(b.APIServer)
	for _, host := range []string{"127.0.0.1", "localhost", "10.96.0.1", "kubernetes.default.svc"} {
		if _, err := srv.Verify(x509.VerifyOptions{Roots: pool, DNSName: host}); err != nil {
			t.Errorf("serving cert for %s: %v", host, err)
		}
	}
	for _, c := range []struct {
		p     Pair
		cn, o string
	}{{b.Admin, "kubernetes-admin", "system:masters"}, {b.ControllerMgr, "system:kube-controller-manager", ""}, {b.Scheduler, "system:kube-scheduler", ""}} {
		cert := parse(c.p)
		if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("%s: %v", c.cn, err)
		}
		if cert.Subject.CommonName != c.cn || (c.o != "" && (len(cert.Subject.Organization) != 1 || cert.Subject.Organization[0] != c.o)) {
			t.Errorf("subject %v", cert.Subject)
		}
	}
	if _, err := tls.X509KeyPair(b.FrontProxyClient.Cert, b.FrontProxyClient.Key); err != nil {
		t.Error(err)
	}
	if blk, _ := pem.Decode(b.SAPubKey); blk == nil || blk.Type != "PUBLIC KEY" {
		t.Error("service-account public key")
	}
}

// A CA written to disk signs again once loaded, with the expiry asked for.
func TestLoadCAIssuesUntil(t *testing.T) {
	b, err := Generate("10.96.0.1")
	if err != nil {
		t.Fatal(err)
	}
	f, err := b.Write(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	ca, err := LoadCA(f.CA, f.CAKey)
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Minute).Truncate(time.Second)
	certPEM, keyPEM, err := ca.IssueClientUntil("rotating", []string{"system:masters"}, until)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tls.X509KeyPair(certPEM, keyPEM); err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(certPEM)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(b.CA)
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Error(err)
	}
	if !cert.NotAfter.Equal(until) {
		t.Errorf("NotAfter %v, want %v", cert.NotAfter, until)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
		CurrentTime: until.Add(time.Second)}); err == nil {
		t.Error("verifies after NotAfter")
	}
}
