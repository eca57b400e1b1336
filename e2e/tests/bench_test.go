package tests

// make bench: figures, not pass/fail. Runs only with GPUMODE_BENCH=1 and
// prints Markdown tables (also appended to $BENCH_OUT when set).

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/fields"
	"k8s.io/apimachinery/pkg/types"

	"gpumode.io/e2e/internal/bed"
)

func requireBench(t *testing.T) {
	if os.Getenv("GPUMODE_BENCH") != "1" {
		t.Skip("benchmark: set GPUMODE_BENCH=1 (make bench does)")
	}
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil && v > 0 {
		return v
	}
	return def
}

func report(t *testing.T, lines ...string) {
	text := strings.Join(lines, "\n") + "\n"
	t.Log("\n" + text)
	fmt.Print(text)
	if out := os.Getenv("BENCH_OUT"); out != "" {
		f, err := os.OpenFile(out, os.O_APPEND|os.O_CREATE|os.O_WRONLY, 0o644)
		if err == nil {
			f.WriteString(text + "\n")
			f.Close()
		}
	}
}

// runSynced starts a cache program and returns its first "synced" report.
func runSynced(t *testing.T, bin string, args ...string) (map[string]any, func() map[string]any) {
	cmd := exec.Command(bin, args...)
	out, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan map[string]any, 16)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			var m map[string]any
			if json.Unmarshal(sc.Bytes(), &m) == nil && m["event"] != nil {
				lines <- m
			}
		}
		close(lines)
	}()
	var synced map[string]any
	deadline := time.After(5 * time.Minute)
	for synced == nil {
		select {
		case m, ok := <-lines:
			if !ok {
				t.Fatalf("%s exited", bin)
			}
			if m["event"] == "synced" {
				synced = m
			}
		case <-deadline:
			t.Fatalf("%s did not sync", bin)
		}
	}
	stop := func() map[string]any {
		cmd.Process.Signal(syscall.SIGTERM)
		var last map[string]any
		for m := range lines {
			last = m
		}
		cmd.Wait()
		return last
	}
	return synced, stop
}

func num(m map[string]any, k string) float64 {
	v, _ := m[k].(float64)
	return v
}

// cpuSeconds of a process (user + system), from /proc.
func cpuSeconds(pid int) float64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(raw)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	ut, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (ut + st) / 100 // USER_HZ
}

// componentCPU reads the CPU seconds used so far by each of the bed's
// processes (their pid records in DIR/run), by component name.
func componentCPU(b *Bed) map[string]float64 {
	out := map[string]float64{}
	files, _ := filepath.Glob(filepath.Join(b.Dir, "run", "*.json"))
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		var rec struct {
			Pid int `json:"pid"`
		}
		if json.Unmarshal(raw, &rec) != nil || rec.Pid == 0 {
			continue
		}
		out[strings.TrimSuffix(filepath.Base(f), ".json")] = cpuSeconds(rec.Pid)
	}
	return out
}

func peakRSS(pid int) int {
	raw, _ := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	for _, l := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			n, _ := strconv.Atoi(strings.Fields(v)[0])
			return n
		}
	}
	return 0
}

// apiRequests sums gpumode_api_requests_total from the controller's metrics.
func apiRequests(t *testing.T, port int) float64 {
	_, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	total := 0.0
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, "gpumode_api_requests_total{") {
			f := strings.Fields(l)
			v, _ := strconv.ParseFloat(f[len(f)-1], 64)
			total += v
		}
	}
	return total
}

// apiserverRequests sums the API server's apiserver_request_total over the
// series whose labels contain every one of want (e.g. `verb="PATCH"`).
func apiserverRequests(t *testing.T, b *Bed, want ...string) float64 {
	raw, err := b.CS.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0.0
next:
	for _, l := range strings.Split(string(raw), "\n") {
		if !strings.HasPrefix(l, "apiserver_request_total{") {
			continue
		}
		for _, w := range want {
			if !strings.Contains(l, w) {
				continue next
			}
		}
		f := strings.Fields(l)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		n += v
	}
	return n
}

// statusWrites counts the policy status writes the API server answered
// (only gpumode writes gpumodepolicies/status).
func statusWrites(t *testing.T, b *Bed) float64 {
	return apiserverRequests(t, b, `resource="gpumodepolicies"`, `subresource="status"`, `verb="PATCH"`)
}

// machineCPU returns the machine's busy and total CPU time from /proc/stat
// (in USER_HZ ticks).
func machineCPU() (busy, total float64) {
	raw, _ := os.ReadFile("/proc/stat")
	line, _, _ := strings.Cut(string(raw), "\n")
	for i, f := range strings.Fields(line)[1:] {
		v, _ := strconv.ParseFloat(f, 64)
		total += v
		if i != 3 && i != 4 { // idle, iowait
			busy += v
		}
	}
	return busy, total
}

// phaseSeconds reads gpumode_phase_duration_seconds from the controller's
// metrics: total seconds and observations per phase.
func phaseSeconds(t *testing.T, port int) (sum, count map[string]float64) {
	_, body := httpGet(fmt.Sprintf("http://127.0.0.1:%d/metrics", port))
	sum, count = map[string]float64{}, map[string]float64{}
	for _, l := range strings.Split(body, "\n") {
		name, rest, ok := strings.Cut(l, "{")
		if !ok || !strings.HasPrefix(name, "gpumode_phase_duration_seconds_") {
			continue
		}
		_, after, _ := strings.Cut(rest, `phase="`)
		phase, _, _ := strings.Cut(after, `"`)
		f := strings.Fields(l)
		v, _ := strconv.ParseFloat(f[len(f)-1], 64)
		switch name {
		case "gpumode_phase_duration_seconds_sum":
			sum[phase] += v
		case "gpumode_phase_duration_seconds_count":
			count[phase] += v
		}
	}
	return sum, count
}

// labelAll labels the first n of a bed of total nodes.
func labelAll(t *testing.T, b *Bed, n, total int, labels map[string]string) {
	ctx := context.Background()
	patch, _ := json.Marshal(map[string]any{"metadata": map[string]any{"labels": labels}})
	for i := 1; i <= n; i++ {
		name := nodeName(i, total)
		if _, err := b.CS.CoreV1().Nodes().Patch(ctx, name, types.MergePatchType, patch, metav1.PatchOptions{}); err != nil {
			t.Fatalf("label %s: %v", name, err)
		}
	}
}

// TestBenchFleet: one bed of BENCH_NODES (5,000) nodes for the cache,
// idle-fleet and per-switch figures.
func TestBenchFleet(t *testing.T) {
	requireBench(t)
	requireE2E(t)
	nodes := envInt("BENCH_NODES", 5000)
	t0 := time.Now()
	// No GPU add-ons: 20,000 DaemonSet pods would take this 2-core machine
	// ten minutes to start, and the cache and idle figures do not need them.
	b := StartBed(t, nil, "--nodes", strconv.Itoa(nodes), "--gpu-model", "mixed", "--gpu-operator=false")
	bedUp := time.Since(t0)
	kc := filepath.Join(b.Dir, "kubeconfig")
	root := repoRoot(t)

	// 1. Memory and initial sync: gpumode's reflector vs a client-go
	// shared informer, each three times.
	var ours, peer []map[string]any
	for i := 0; i < 3; i++ {
		s, stop := runSynced(t, filepath.Join(root, "build", "tools", "watchcheck"), kc)
		stop()
		ours = append(ours, s)
		p, stopP := runSynced(t, filepath.Join(root, "build", "e2e", "bin", "informer-peer"), kc)
		stopP()
		peer = append(peer, p)
	}
	med := func(ms []map[string]any, k string) float64 {
		v := []float64{num(ms[0], k), num(ms[1], k), num(ms[2], k)}
		if v[0] > v[1] {
			v[0], v[1] = v[1], v[0]
		}
		if v[1] > v[2] {
			v[1], v[2] = v[2], v[1]
		}
		if v[0] > v[1] {
			v[0], v[1] = v[1], v[0]
		}
		return v[1]
	}
	oRSS, pRSS := med(ours, "peak_rss_kb"), med(peer, "peak_rss_kb")
	oMS, pMS := med(ours, "ms"), med(peer, "ms")
	oAnon, pAnon := med(ours, "anon_rss_kb"), med(peer, "anon_rss_kb")
	report(t,
		fmt.Sprintf("### Node cache, %d nodes (median of 3; bed up in %.0f s)", nodes, bedUp.Seconds()),
		"",
		"| | gpumode reflector (C) | client-go shared informer | ratio | goal |",
		"|---|---|---|---|---|",
		fmt.Sprintf("| peak RSS | %.1f MiB | %.1f MiB | %.3f | <= 0.1 |", oRSS/1024, pRSS/1024, oRSS/pRSS),
		fmt.Sprintf("| private memory when synced (RssAnon; the rest of RSS is shared library pages) | %.1f MiB | %.1f MiB | %.3f | |", oAnon/1024, pAnon/1024, oAnon/pAnon),
		fmt.Sprintf("| time to synced cache | %.0f ms | %.0f ms | %.2f | <= 1 |", oMS, pMS, oMS/pMS))

	// 2. An idle, converged fleet: CPU and API requests for a minute.
	labelAll(t, b, nodes, nodes, map[string]string{"gpumode.io/mode": "full", "gpumode.io/state": "ready", "bench": "fleet"})
	InstallGpumode(t, b)
	port := freePort(t)
	c := StartController(t, b, "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port), "--health-addr", fmt.Sprintf("127.0.0.1:%d", port), "--log-level", "info")
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: fleet}
spec:
  nodeSelector: {matchLabels: {bench: fleet}}
  mode: full
  rollout: {maxUnavailable: 50}
`)
	WaitPolicy(t, b, "fleet", 5*time.Minute, "the fleet policy ready", Converged)
	time.Sleep(5 * time.Second)
	pid := c.cmd.Process.Pid
	cpu0, req0 := cpuSeconds(pid), apiRequests(t, port)
	time.Sleep(60 * time.Second)
	cpu1, req1 := cpuSeconds(pid), apiRequests(t, port)
	report(t,
		fmt.Sprintf("### Idle: %d converged nodes, one minute", nodes),
		"",
		"| measure | value | goal |",
		"|---|---|---|",
		fmt.Sprintf("| controller CPU | %.2f%% of a core | < 1%% |", 100*(cpu1-cpu0)/60),
		fmt.Sprintf("| API requests per minute (all verbs) | %.0f | 0 beyond watches and lease renewals |", req1-req0),
		fmt.Sprintf("| controller peak RSS | %.1f MiB | |", float64(peakRSS(pid))/1024))

}

// TestBenchRollout: a rollout of BENCH_ROLLOUT_NODES (1,000) nodes with
// maxUnavailable 50 and a fixed simulated hardware time per node.
func TestBenchRollout(t *testing.T) {
	requireBench(t)
	requireE2E(t)
	nodes := envInt("BENCH_ROLLOUT_NODES", 1000)
	batch := envInt("BENCH_ROLLOUT_BATCH", 50)
	hwMS := envInt("BENCH_HW_MS", 5000)
	b := StartBed(t, nil, "--nodes", strconv.Itoa(nodes), "--gpu-model", "H100-80GB")
	for i := 1; i <= nodes; i++ {
		FakeSMI(t, b, nodeName(i, nodes), "--fake-inject", "--match", "-cgi", "--delay-ms", strconv.Itoa(hwMS), "--passthrough", "--times", "-1")
	}
	labelAll(t, b, nodes, nodes, map[string]string{"gpumode.io/mode": "full", "gpumode.io/state": "ready", "bench": "rollout"})
	InstallGpumode(t, b)
	if qps := os.Getenv("BENCH_CONTROLLER_QPS"); qps != "" {
		// The controller's client-side rate limit (default 50, burst 100).
		AppendControllerConfig(t, b, fmt.Sprintf("qps: %s\nburst: %s\n", qps, qps))
	}
	port := freePort(t)
	c := StartController(t, b, "--log-level", "info", "--metrics-addr", fmt.Sprintf("127.0.0.1:%d", port), "--health-addr", fmt.Sprintf("127.0.0.1:%d", port))
	// One node alone first: the per-node time the ideal is made of.
	LabelNodes(t, b, "solo=yes", nodeName(1, nodes))
	span := switchSpan(t, b, nodeName(1, nodes))
	Apply(t, b, `
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: solo}
spec:
  nodeSelector: {matchLabels: {solo: "yes"}}
  priority: 10
  mode: mig
  mig: {config: all-1g.10gb}
`)
	t0 := time.Now()
	WaitPolicy(t, b, "solo", 5*time.Minute, "one node", Converged)
	one := time.Since(t0)
	// The switch itself, without the once-per-rollout start and status
	// latency that `one` also holds: the ideal has that latency once, not
	// once per batch.
	sw := span(time.Minute)
	soloSum, _ := phaseSeconds(t, port)
	rest := nodes - 1
	pid := c.cmd.Process.Pid
	cpu0, req0, sw0 := cpuSeconds(pid), apiRequests(t, port), statusWrites(t, b)
	Apply(t, b, fmt.Sprintf(`
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: fleet}
spec:
  nodeSelector: {matchLabels: {bench: rollout}}
  mode: mig
  mig: {config: all-1g.10gb}
  rollout: {maxUnavailable: %d}
`, batch))
	t1 := time.Now()
	busy0, all0 := machineCPU()
	comp0 := componentCPU(b)
	// How many switches were in flight, sampled from the status while
	// enough nodes were left to fill every slot: shows whether the
	// controller keeps the budget used.
	var inFlight, samples float64
	WaitPolicy(t, b, "fleet", 60*time.Minute, "the rollout", func(s *PolicyStatus) error {
		if s.Summary.Converged+s.Summary.Conflicted >= nodes-1 && s.Summary.Switching == 0 {
			return nil
		}
		if left := nodes - 1 - s.Summary.Converged - s.Summary.Conflicted; left > batch && time.Since(t1) > 10*time.Second {
			inFlight += float64(s.Summary.Switching)
			samples++
		}
		return fmt.Errorf("%+v", s.Summary)
	})
	took := time.Since(t1)
	cpu1, req1, sw1 := cpuSeconds(pid), apiRequests(t, port), statusWrites(t, b)
	allSum, allCount := phaseSeconds(t, port)
	busy1, all1 := machineCPU()
	comp1 := componentCPU(b)
	batches := math.Ceil(float64(rest) / float64(batch))
	ideal := batches*sw.Seconds() + (one - sw).Seconds()
	report(t,
		fmt.Sprintf("### Rollout: %d nodes full -> mig, maxUnavailable %d, %d ms simulated time per instance-create call", rest, batch, hwMS),
		"",
		"| measure | value | goal |",
		"|---|---|---|",
		fmt.Sprintf("| one node alone, policy applied to status converged | %.1f s | |", one.Seconds()),
		fmt.Sprintf("| of which its switch (first record to record removed, node watch): the ideal's unit | %.1f s | |", sw.Seconds()),
		fmt.Sprintf("| ideal (%.0f batches x %.1f s, plus %.1f s to start and report once) | %.0f s | |", batches, sw.Seconds(), (one-sw).Seconds(), ideal),
		fmt.Sprintf("| measured | %.0f s | |", took.Seconds()),
		fmt.Sprintf("| efficiency (ideal / measured) | %.2f | >= 0.95 |", ideal/took.Seconds()),
		fmt.Sprintf("| switches in flight while nodes were waiting (mean of %.0f samples of the status) | %.1f of %d | |", samples, inFlight/math.Max(samples, 1), batch),
		fmt.Sprintf("| API requests per node switch (no pods to evict; events and status writes included) | %.1f | <= 15 |", (req1-req0)/float64(rest)),
		fmt.Sprintf("| of which policy status writes (apiserver_request_total) | %.1f | |", (sw1-sw0)/float64(rest)),
		fmt.Sprintf("| controller CPU per switch | %.0f ms | < 200 ms |", 1000*(cpu1-cpu0)/float64(rest)),
		fmt.Sprintf("| machine CPU busy during the rollout (bed and controller, %d cores) | %.0f%% | |", runtime.NumCPU(), 100*(busy1-busy0)/(all1-all0)),
		fmt.Sprintf("| controller peak RSS | %.1f MiB | |", float64(peakRSS(pid))/1024))
	// Who used the machine during the rollout: the bed's components
	// compete with the controller for the same cores.
	cpuLines := []string{"", "| process | CPU during the rollout (share of one core) |", "|---|---|"}
	for _, name := range append(append([]string{}, bed.Components...), "controller") {
		used := comp1[name] - comp0[name]
		if name == "controller" {
			used = cpu1 - cpu0
		}
		cpuLines = append(cpuLines, fmt.Sprintf("| %s | %.0f s (%.0f%%) |", name, used, 100*used/took.Seconds()))
	}
	report(t, cpuLines...)
	// Where a switch spends its time, alone and in the rollout (whole
	// seconds per phase as the record keeps them, so means are +-0.5 s).
	phases := []string{"Cordoning", "Draining", "StoppingClients", "Reconfiguring", "StartingClients", "Verifying", "Finishing"}
	lines := []string{"", "| phase | one node alone | mean in the rollout |", "|---|---|---|"}
	for _, ph := range phases {
		n := allCount[ph] - 1
		if n <= 0 {
			continue
		}
		lines = append(lines, fmt.Sprintf("| %s | %.0f s | %.1f s |", ph, soloSum[ph], (allSum[ph]-soloSum[ph])/n))
	}
	report(t, lines...)
}

// recordSpan times part of node's next switch from a node watch: from the
// first switch record seen to the first update for which ended(record)
// holds (record is nil once the switch is over).
func recordSpan(t *testing.T, b *Bed, node, what string, ended func(rec map[string]any) bool) func(timeout time.Duration) time.Duration {
	ctx, cancel := context.WithCancel(context.Background())
	w, err := b.CS.CoreV1().Nodes().Watch(ctx, metav1.ListOptions{FieldSelector: fields.OneTermEqualSelector("metadata.name", node).String()})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var start, end time.Time
	go func() {
		for ev := range w.ResultChan() {
			n, ok := ev.Object.(*corev1.Node)
			if !ok {
				continue
			}
			rec, now := SwitchAnnotation(n), time.Now()
			mu.Lock()
			if rec != nil && start.IsZero() {
				start = now
			}
			if !start.IsZero() && end.IsZero() && ended(rec) {
				end = now
			}
			mu.Unlock()
		}
	}()
	return func(timeout time.Duration) time.Duration {
		defer cancel()
		var took time.Duration
		Eventually(t, timeout, what+" of "+node, func(context.Context) error {
			mu.Lock()
			defer mu.Unlock()
			if start.IsZero() || end.IsZero() {
				return fmt.Errorf("start %v end %v", start, end)
			}
			took = end.Sub(start)
			return nil
		})
		return took
	}
}

// switchSpan times node's next switch: first record to record removed.
func switchSpan(t *testing.T, b *Bed, node string) func(timeout time.Duration) time.Duration {
	return recordSpan(t, b, node, "the switch", func(rec map[string]any) bool { return rec == nil })
}

// nodeName is the test bed's name for node i of total (zero-padded to the
// width of the total, at least 3).
func nodeName(i, total int) string {
	w := len(strconv.Itoa(total))
	if w < 3 {
		w = 3
	}
	return fmt.Sprintf("gpu-%0*d", w, i)
}
