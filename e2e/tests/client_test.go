package tests

// End-to-end checks of gpumode's C Kubernetes client (controller/kube/)
// against the real API server: list+watch of many nodes, surviving an API
// server restart, and a forced 410 Gone after etcd compaction. The client is
// driven through build/tools/watchcheck, which keeps a node cache with the
// product's reflector and dumps it on SIGUSR1.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

type wcLine struct {
	Event       string `json:"event"`
	Node        string `json:"node"`
	RV          string `json:"rv"`
	Nodes       int    `json:"nodes"`
	Lists       int    `json:"lists"`
	Gone        int    `json:"gone"`
	HTTPVersion int    `json:"http_version"`
	Connects    int    `json:"connects"`
	PeakRSSKB   int    `json:"peak_rss_kb"`
	MS          int    `json:"ms"`
}

type watchcheck struct {
	t     *testing.T
	cmd   *exec.Cmd
	lines chan wcLine
}

func repoRoot(t *testing.T) string { return filepath.Dir(e2eDir(t)) }

func startWatchcheck(t *testing.T, b *Bed) *watchcheck {
	t.Helper()
	bin := filepath.Join(repoRoot(t), "build", "tools", "watchcheck")
	cmd := exec.Command(bin, filepath.Join(b.Dir, "kubeconfig"))
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v (run make tools)", bin, err)
	}
	w := &watchcheck{t: t, cmd: cmd, lines: make(chan wcLine, 100000)}
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var l wcLine
			if json.Unmarshal(sc.Bytes(), &l) == nil {
				w.lines <- l
			}
		}
		close(w.lines)
	}()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGCONT)
		cmd.Process.Signal(syscall.SIGTERM)
		cmd.Wait()
	})
	return w
}

// next waits for a report with the given event.
func (w *watchcheck) next(event string, timeout time.Duration) wcLine {
	w.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case l, ok := <-w.lines:
			if !ok {
				w.t.Fatalf("watchcheck exited while waiting for %q", event)
			}
			if l.Event == event {
				return l
			}
		case <-deadline:
			w.t.Fatalf("no %q report from watchcheck in %s", event, timeout)
		}
	}
}

// dump returns the cache: node name -> resourceVersion.
func (w *watchcheck) dump() map[string]string {
	w.t.Helper()
	if err := w.cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		w.t.Fatal(err)
	}
	w.next("dump", 10*time.Second)
	m := map[string]string{}
	for l := range w.lines {
		if l.Event == "end" {
			return m
		}
		if l.Node != "" {
			m[l.Node] = l.RV
		}
	}
	w.t.Fatal("watchcheck exited during a dump")
	return nil
}

// converges waits until the cache equals the server's node list.
func (w *watchcheck) converges(b *Bed, what string) {
	w.t.Helper()
	Eventually(w.t, 60*time.Second, what, func(ctx context.Context) error {
		nl, err := b.CS.CoreV1().Nodes().List(ctx, metav1.ListOptions{})
		if err != nil {
			return err
		}
		cache := w.dump()
		if len(cache) != len(nl.Items) {
			return fmt.Errorf("cache has %d nodes, server %d", len(cache), len(nl.Items))
		}
		for _, n := range nl.Items {
			if cache[n.Name] != n.ResourceVersion {
				return fmt.Errorf("node %s: cache rv %q, server %q", n.Name, cache[n.Name], n.ResourceVersion)
			}
		}
		return nil
	})
}

func extraNode(name string) *corev1.Node {
	return &corev1.Node{ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"gpumode-e2e": "extra"}}}
}

func etcdCompact(t *testing.T, b *Bed) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(b.Dir, "bed.json"))
	if err != nil {
		t.Fatal(err)
	}
	var bed struct {
		EtcdPort int `json:"etcdPort"`
	}
	if err := json.Unmarshal(raw, &bed); err != nil {
		t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:" + strconv.Itoa(bed.EtcdPort)}, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer cli.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	st, err := cli.Status(ctx, "127.0.0.1:"+strconv.Itoa(bed.EtcdPort))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Compact(ctx, st.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	t.Logf("etcd compacted at revision %d", st.Header.Revision)
}

func TestClientListWatch(t *testing.T) {
	requireE2E(t)
	nodes := 300
	if v := os.Getenv("GPUMODE_E2E_NODES"); v != "" {
		nodes, _ = strconv.Atoi(v)
	}
	b := StartBed(t, nil, "--nodes", strconv.Itoa(nodes))
	ctx := context.Background()
	w := startWatchcheck(t, b)
	s := w.next("synced", 120*time.Second)
	if s.Nodes != nodes {
		t.Fatalf("first sync saw %d nodes, want %d", s.Nodes, nodes)
	}
	if s.HTTPVersion != 3 {
		t.Errorf("client spoke HTTP version code %d, want 3 (HTTP/2)", s.HTTPVersion)
	}
	t.Logf("synced %d nodes in %d ms, peak RSS %d KiB", s.Nodes, s.MS, s.PeakRSSKB)

	// Changes arrive through the watch.
	for i := 0; i < 20; i++ {
		if _, err := b.CS.CoreV1().Nodes().Create(ctx, extraNode(fmt.Sprintf("extra-%02d", i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 0; i < 5; i++ {
		if err := b.CS.CoreV1().Nodes().Delete(ctx, fmt.Sprintf("extra-%02d", i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w.converges(b, "cache to follow creates and deletes")

	// An API server restart breaks the watch; the client resumes.
	testbed(t, nil, "stop", "--dir", b.Dir, "kube-apiserver")
	if _, err := testbed(t, nil, "start", "--dir", b.Dir, "kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	for i := 20; i < 25; i++ {
		if _, err := b.CS.CoreV1().Nodes().Create(ctx, extraNode(fmt.Sprintf("extra-%02d", i)), metav1.CreateOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	w.converges(b, "cache after an API server restart")

	// A forced 410: freeze the client, change and compact, restart the API
	// server so its watch cache starts past our resourceVersion, thaw.
	w.cmd.Process.Signal(syscall.SIGSTOP)
	for i := 5; i < 10; i++ {
		if err := b.CS.CoreV1().Nodes().Delete(ctx, fmt.Sprintf("extra-%02d", i), metav1.DeleteOptions{}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := b.CS.CoreV1().Nodes().Create(ctx, extraNode("extra-late"), metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	etcdCompact(t, b)
	testbed(t, nil, "stop", "--dir", b.Dir, "kube-apiserver")
	if _, err := testbed(t, nil, "start", "--dir", b.Dir, "kube-apiserver"); err != nil {
		t.Fatal(err)
	}
	w.cmd.Process.Signal(syscall.SIGCONT)
	relist := w.next("synced", 120*time.Second)
	if relist.Lists < 2 || relist.Gone < 1 {
		t.Errorf("after compaction: lists=%d gone=%d, want a relist caused by 410", relist.Lists, relist.Gone)
	}
	w.converges(b, "cache after 410 Gone and relist (deletes seen through the diff)")
}
