// informer-peer is the yardstick for gpumode's node cache in make bench: a
// client-go shared informer on Nodes, as a Go controller would keep it. It
// prints one JSON line when synced (time, peak RSS, anonymous RSS) and another on SIGTERM.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"k8s.io/client-go/informers"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/cache"
	"k8s.io/client-go/tools/clientcmd"
)

// statusKB reads a "Key:" line of /proc/self/status in kB (VmHWM: peak
// RSS; RssAnon: private anonymous memory now).
func statusKB(key string) int {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), key); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return -1
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: informer-peer KUBECONFIG")
		os.Exit(2)
	}
	start := time.Now()
	cfg, err := clientcmd.BuildConfigFromFlags("", os.Args[1])
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	cfg.QPS, cfg.Burst = 50, 100
	cs := kubernetes.NewForConfigOrDie(cfg)
	f := informers.NewSharedInformerFactory(cs, 0)
	inf := f.Core().V1().Nodes().Informer()
	stop := make(chan struct{})
	f.Start(stop)
	cache.WaitForCacheSync(stop, inf.HasSynced)
	out := json.NewEncoder(os.Stdout)
	out.Encode(map[string]any{"event": "synced", "nodes": len(inf.GetStore().List()),
		"ms": time.Since(start).Milliseconds(), "peak_rss_kb": statusKB("VmHWM:"), "anon_rss_kb": statusKB("RssAnon:")})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	<-sig
	out.Encode(map[string]any{"event": "exit", "nodes": len(inf.GetStore().List()),
		"peak_rss_kb": statusKB("VmHWM:")})
	close(stop)
}
