package sim

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/klog/v2"

	"gpumode.io/e2e/fakesmi"
)

// RebootRequestPath is the file that asks the simulator to reboot a node:
// create DIR/control/reboot-NODE (its content, if any, is how long the node
// stays down, as a Go duration; default 5s). Helper pods get its path in
// $SIM_REBOOT_FILE; `testbed reboot` writes it too.
func RebootRequestPath(dir, node string) string {
	return filepath.Join(dir, "control", "reboot-"+node)
}

// controlLoop picks up reboot requests once a second.
func (s *Sim) controlLoop(ctx context.Context) {
	dir := filepath.Join(s.opts.Dir, "control")
	_ = os.MkdirAll(dir, 0o755)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		ents, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, e := range ents {
			name, ok := strings.CutPrefix(e.Name(), "reboot-")
			if !ok {
				continue
			}
			path := filepath.Join(dir, e.Name())
			b, _ := os.ReadFile(path)
			_ = os.Remove(path)
			n := s.nodes[name]
			if n == nil {
				klog.Warningf("reboot request for unknown node %q", name)
				continue
			}
			down := 5 * time.Second
			if d, err := time.ParseDuration(strings.TrimSpace(string(b))); err == nil && d >= 0 {
				down = d
			}
			s.reboot(n, down, "")
		}
	}
}

// reboot powers the node off for down: it stops heartbeating and running
// anything, its helper processes die, the GPUs reboot (fake nvidia-smi:
// instances lost, Hopper MIG mode lost, pending Ampere mode applied). Then it
// boots with a new boot ID, and its pods' containers start again (helper
// pods, restartPolicy Never, fail).
//
// except is the helper pod that asked for the reboot: its process is left
// to finish (it "succeeds", as the real one would have been cut off after
// reporting).
func (s *Sim) reboot(n *Node, down time.Duration, except types.UID) {
	n.mu.Lock()
	if n.down {
		n.mu.Unlock()
		return
	}
	n.down = true
	plugins := n.plugins
	n.plugins = map[string]*pluginRun{}
	n.pendingPlugins = nil
	n.mu.Unlock()
	klog.Infof("node %s: rebooting (down %s)", n.Name, down)
	for _, pr := range plugins {
		if holdsGPUs(pr.role) {
			_ = fakesmi.RemoveHolderFile(n.StatePath, fakesmi.AllGPUs, pr.holder)
		}
	}
	s.mu.Lock()
	for _, r := range s.runs {
		if r.node == n && r.proc != nil && r.uid != except {
			r.proc.kill()
		}
	}
	s.mu.Unlock()
	if err := fakesmi.Update(n.StatePath, func(st *fakesmi.State) error {
		st.Reboot()
		// With a driver container nothing loads one at boot: its pod
		// does, once it has started again.
		if n.driverContainer {
			st.DriverUnloaded = true
		}
		return nil
	}); err != nil {
		klog.Warningf("node %s: reboot GPUs: %v", n.Name, err)
	}
	time.AfterFunc(down, func() {
		n.mu.Lock()
		n.down = false
		n.bootID = newBootID()
		n.boot++
		n.startingUntil = time.Now().Add(s.opts.BootNotReady)
		n.mu.Unlock()
		klog.Infof("node %s: booted", n.Name)
		s.nodeQ.Add(n.Name)
		s.mu.Lock()
		for _, r := range s.runs {
			if r.node == n {
				s.podQ.Add(r.key)
			}
		}
		s.mu.Unlock()
	})
}

// restartAfterBoot handles a running pod whose node rebooted: helper
// processes are gone (the pod fails), other containers start again.
func (s *Sim) restartAfterBoot(ctx context.Context, pod *corev1.Pod, run *podRun) error {
	run.gpuPIDs = nil   // the reboot ended them
	run.adopted = false // its containers start again on this boot
	if s.isHelper(pod) {
		if run.proc != nil {
			run.proc.kill() // no-op when it already exited
			run.proc.wait()
			run.collect()
		}
		if !run.exited {
			run.exited, run.exitCode, run.finished = true, 137, time.Now()
		}
		run.boot = run.node.curBoot()
		return s.finishPod(ctx, pod, run)
	}
	now := metav1.Now()
	np := pod.DeepCopy()
	t := true
	for i := range np.Status.ContainerStatuses {
		cs := &np.Status.ContainerStatuses[i]
		cs.LastTerminationState = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 255, Reason: "Unknown", StartedAt: metav1.NewTime(run.startedAt), FinishedAt: now, ContainerID: cs.ContainerID}}
		cs.RestartCount++
		cs.ContainerID = containerID(pod.UID, cs.Name, cs.RestartCount)
		cs.State = corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}}
		cs.Ready, cs.Started = true, &t
	}
	if run.role != "" {
		s.applyPluginHealth(np, run, &np.Status)
	}
	if _, err := s.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, np, metav1.UpdateOptions{}); err != nil {
		return err
	}
	run.boot = run.node.curBoot()
	run.startedAt = now.Time
	if run.role != "" {
		s.startPlugin(np, run)
	}
	s.attachGPU(np, run)
	if d, ok := s.runDuration(pod); ok {
		s.podQ.AddAfter(run.key, d)
	}
	return nil
}

func (n *Node) curBoot() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.boot
}
