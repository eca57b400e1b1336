package sim

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strconv"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/types"
	"k8s.io/client-go/tools/cache"
	"k8s.io/klog/v2"
)

// podRun is the simulated kubelet's memory of one pod (by UID).
type podRun struct {
	uid       types.UID
	key       string
	node      *Node
	startedAt time.Time
	role      string
	// proc is set while a helper command runs.
	proc *helperProc
	// exited is set when the containers have finished.
	exited   bool
	exitCode int
	reason   string
	message  string
	finished time.Time
	// terminal is set once the terminal status was written.
	terminal bool
	// gpuPIDs are the fake compute processes of a workload using GPUs.
	gpuPIDs []int
	// boot is the node's boot count when the containers started.
	boot int
	// stopAt is set when spec.activeDeadlineSeconds ran out: the
	// containers have until then to stop before they are killed.
	stopAt time.Time
	// adopted: found running by a restarted simulator.
	adopted bool
}

func (s *Sim) podWorker(ctx context.Context) {
	for {
		key, quit := s.podQ.Get()
		if quit {
			return
		}
		err := s.syncPod(ctx, key)
		if err != nil && ctx.Err() == nil {
			if !apierrors.IsConflict(err) {
				klog.Warningf("sync pod %s: %v", key, err)
			}
			s.podQ.AddRateLimited(key)
		} else {
			s.podQ.Forget(key)
		}
		s.podQ.Done(key)
	}
}

func containerID(uid types.UID, name string, restarts int32) string {
	h := sha256.Sum256([]byte(fmt.Sprintf("%s/%s/%d", uid, name, restarts)))
	return "containerd://" + hex.EncodeToString(h[:])
}

func imageID(image string) string {
	h := sha256.Sum256([]byte(image))
	return image + "@sha256:" + hex.EncodeToString(h[:])
}

func (s *Sim) podIP(n *Node, uid types.UID) string {
	h := sha256.Sum256([]byte(uid))
	return fmt.Sprintf("10.%d.%d.%d", 128+n.Index/256, n.Index%256, 2+int(h[0])%250)
}

func setCondition(st *corev1.PodStatus, t corev1.PodConditionType, status corev1.ConditionStatus, reason string, now metav1.Time) {
	for i := range st.Conditions {
		if st.Conditions[i].Type == t {
			if st.Conditions[i].Status != status {
				st.Conditions[i].LastTransitionTime = now
			}
			st.Conditions[i].Status, st.Conditions[i].Reason = status, reason
			return
		}
	}
	st.Conditions = append(st.Conditions, corev1.PodCondition{Type: t, Status: status, Reason: reason, LastTransitionTime: now})
}

// syncPod moves one pod bound to a simulated node through its life as the
// kubelet would.
func (s *Sim) syncPod(ctx context.Context, key string) error {
	ns, name, _ := cache.SplitMetaNamespaceKey(key)
	pod, err := s.podLister.Pods(ns).Get(name)
	if apierrors.IsNotFound(err) {
		s.forgetKey(key)
		return nil
	}
	if err != nil {
		return err
	}
	n := s.nodes[pod.Spec.NodeName]
	if n == nil {
		return nil
	}
	s.mu.Lock()
	run := s.runs[string(pod.UID)]
	s.mu.Unlock()
	// A pod object replaced under the same name: forget the old one.
	s.forgetKeyExcept(key, pod.UID)

	n.mu.Lock()
	down := n.down
	n.mu.Unlock()
	if down {
		return nil // a powered-off node runs nothing and reports nothing
	}
	if pod.DeletionTimestamp != nil {
		return s.terminate(ctx, pod, run)
	}
	if pod.Status.Phase == corev1.PodSucceeded || pod.Status.Phase == corev1.PodFailed {
		if run != nil {
			s.stopPlugin(run)
			run.terminal = true
		}
		return nil
	}
	if run == nil {
		run = &podRun{uid: pod.UID, key: key, node: n, role: pod.Annotations[RoleAnnotation], boot: n.curBoot()}
		if pod.Status.Phase == corev1.PodRunning {
			// Adopted after a simulator restart.
			run.adopted = true
			run.startedAt = time.Now()
			if pod.Status.StartTime != nil {
				run.startedAt = pod.Status.StartTime.Time
			}
			s.attachGPU(pod, run)
			if s.isHelper(pod) {
				// Its process died with the previous simulator.
				run.exited, run.exitCode, run.reason, run.finished = true, 137, "ContainerStatusUnknown", time.Now()
				run.message = "The container could not be located when the pod was terminated"
			}
		}
		s.mu.Lock()
		s.runs[string(pod.UID)] = run
		s.mu.Unlock()
	}
	if run.terminal {
		return nil
	}
	if !run.startedAt.IsZero() && run.boot != n.curBoot() {
		return s.restartAfterBoot(ctx, pod, run)
	}
	run.collect()
	if run.startedAt.IsZero() {
		if left, ok := deadlineLeft(pod); ok && left <= 0 {
			return s.failUnstarted(ctx, pod, run)
		} else if ok {
			s.podQ.AddAfter(key, left)
		}
		return s.startPod(ctx, pod, run)
	}
	if run.role != "" {
		s.startPlugin(pod, run)
	}
	if run.stopAt.IsZero() && !run.exited {
		if left, ok := deadlineLeft(pod); ok && left <= 0 {
			run.stopAt = time.Now().Add(s.graceOf(pod))
			if run.proc != nil {
				run.proc.term() // once, as the kubelet sends it
			}
		} else if ok {
			s.podQ.AddAfter(key, left)
		}
	}
	if !run.stopAt.IsZero() {
		return s.deadlineExceeded(ctx, pod, run)
	}
	if run.exited {
		return s.finishPod(ctx, pod, run)
	}
	if d, ok := s.runDuration(pod); ok && run.proc == nil {
		if left := time.Until(run.startedAt.Add(d)); left > 0 {
			s.podQ.AddAfter(key, left)
			return nil
		}
		code, _ := strconv.Atoi(pod.Annotations[ExitCodeAnnotation])
		run.exited, run.exitCode, run.finished = true, code, time.Now()
		return s.finishPod(ctx, pod, run)
	}
	return nil
}

// runDuration tells how long a pod's containers run before they exit, for
// pods that finish on their own.
func (s *Sim) runDuration(pod *corev1.Pod) (time.Duration, bool) {
	if v, ok := pod.Annotations[RunSecondsAnnotation]; ok {
		f, err := strconv.ParseFloat(v, 64)
		if err == nil && f >= 0 {
			return time.Duration(f * float64(time.Second)), true
		}
	}
	for _, o := range pod.OwnerReferences {
		if o.Kind == "Job" && o.Controller != nil && *o.Controller {
			return time.Duration(s.opts.JobSeconds * float64(time.Second)), true
		}
	}
	return 0, false
}

func (s *Sim) forgetKey(key string) {
	s.mu.Lock()
	var gone []*podRun
	for uid, r := range s.runs {
		if r.key == key {
			gone = append(gone, r)
			delete(s.runs, uid)
		}
	}
	s.mu.Unlock()
	for _, r := range gone {
		if r.proc != nil {
			r.proc.kill()
		}
		s.stopPlugin(r)
	}
}

func (s *Sim) forgetKeyExcept(key string, uid types.UID) {
	s.mu.Lock()
	var gone []*podRun
	for u, r := range s.runs {
		if r.key == key && u != string(uid) {
			gone = append(gone, r)
			delete(s.runs, u)
		}
	}
	s.mu.Unlock()
	for _, r := range gone {
		if r.proc != nil {
			r.proc.kill()
		}
		s.stopPlugin(r)
	}
}

// startPod starts the containers: helper pods run their command locally;
// other pods just run.
func (s *Sim) startPod(ctx context.Context, pod *corev1.Pod, run *podRun) error {
	now := metav1.Now()
	st := pod.Status.DeepCopy()
	if s.isHelper(pod) {
		bin, ok := s.binaryFor(pod.Spec.Containers[0].Image)
		if !ok {
			// The kubelet could not pull an image nobody maps to a binary.
			st.Phase = corev1.PodPending
			if st.StartTime == nil {
				st.StartTime = &now // admitted: its deadline counts from here
			}
			st.HostIP, st.HostIPs = run.node.IP, []corev1.HostIP{{IP: run.node.IP}}
			st.ContainerStatuses = nil
			for _, c := range pod.Spec.Containers {
				st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{Name: c.Name, Image: c.Image,
					State: corev1.ContainerState{Waiting: &corev1.ContainerStateWaiting{Reason: "ErrImagePull",
						Message: fmt.Sprintf("simulator: no binary for image %q (see --image-map)", c.Image)}}})
			}
			_, err := s.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, &corev1.Pod{ObjectMeta: pod.ObjectMeta, Spec: pod.Spec, Status: *st}, metav1.UpdateOptions{})
			return err
		}
		p, err := s.startHelper(pod, run, bin)
		if err != nil {
			run.exited, run.exitCode, run.reason, run.message, run.finished = true, 128, "StartError", err.Error(), time.Now()
		} else {
			run.proc = p
		}
	}
	run.startedAt = now.Time
	run.boot = run.node.curBoot()
	st.Phase = corev1.PodRunning
	st.HostIP, st.HostIPs = run.node.IP, []corev1.HostIP{{IP: run.node.IP}}
	ip := s.podIP(run.node, pod.UID)
	if pod.Spec.HostNetwork {
		ip = run.node.IP
	}
	st.PodIP, st.PodIPs = ip, []corev1.PodIP{{IP: ip}}
	st.StartTime = &now
	setCondition(st, corev1.PodReadyToStartContainers, corev1.ConditionTrue, "", now)
	setCondition(st, corev1.PodInitialized, corev1.ConditionTrue, "", now)
	setCondition(st, corev1.ContainersReady, corev1.ConditionTrue, "", now)
	setCondition(st, corev1.PodReady, corev1.ConditionTrue, "", now)
	setCondition(st, corev1.PodScheduled, corev1.ConditionTrue, "", now)
	st.InitContainerStatuses = nil
	for _, c := range pod.Spec.InitContainers {
		st.InitContainerStatuses = append(st.InitContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: containerID(pod.UID, c.Name, 0),
			State: corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{ExitCode: 0, Reason: "Completed", StartedAt: now, FinishedAt: now,
				ContainerID: containerID(pod.UID, c.Name, 0)}},
			Ready: true,
		})
	}
	st.ContainerStatuses = nil
	t := true
	for _, c := range pod.Spec.Containers {
		st.ContainerStatuses = append(st.ContainerStatuses, corev1.ContainerStatus{
			Name: c.Name, Image: c.Image, ImageID: imageID(c.Image), ContainerID: containerID(pod.UID, c.Name, 0),
			State: corev1.ContainerState{Running: &corev1.ContainerStateRunning{StartedAt: now}},
			Ready: true, Started: &t,
		})
	}
	if run.role != "" {
		s.applyPluginHealth(pod, run, st)
	}
	// A container the runtime could not start is never shown running: the
	// kubelet's first status after the failure has it terminated, and with
	// restartPolicy Never the pod Failed.
	startFailed := run.reason == "StartError" && pod.Spec.RestartPolicy == corev1.RestartPolicyNever
	if startFailed {
		terminatedStatus(pod, run, st, now)
		st.Phase = corev1.PodFailed
	}
	np := pod.DeepCopy()
	np.Status = *st
	if _, err := s.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, np, metav1.UpdateOptions{}); err != nil {
		if run.proc != nil {
			run.proc.kill()
			run.proc = nil
		}
		run.startedAt = time.Time{}
		run.exited, run.reason, run.message = false, "", ""
		return err
	}
	if startFailed {
		run.terminal = true
		return nil
	}
	if run.role != "" {
		s.startPlugin(np, run)
	}
	s.attachGPU(np, run)
	if d, ok := s.runDuration(pod); ok && run.proc == nil {
		s.podQ.AddAfter(run.key, d)
	}
	if run.exited {
		s.podQ.Add(run.key)
	}
	return nil
}

// deadlineLeft is the time until spec.activeDeadlineSeconds, counted from
// status.startTime, which the kubelet sets when it admits the pod (before
// any image is pulled); ok is false without either.
func deadlineLeft(pod *corev1.Pod) (left time.Duration, ok bool) {
	if pod.Spec.ActiveDeadlineSeconds == nil || pod.Status.StartTime == nil {
		return 0, false
	}
	return time.Until(pod.Status.StartTime.Add(time.Duration(*pod.Spec.ActiveDeadlineSeconds) * time.Second)), true
}

// graceOf is the time a pod's containers get to stop after SIGTERM:
// terminationGracePeriodSeconds (30 s unset) times the grace factor.
func (s *Sim) graceOf(pod *corev1.Pod) time.Duration {
	grace := int64(30)
	if pod.Spec.TerminationGracePeriodSeconds != nil {
		grace = *pod.Spec.TerminationGracePeriodSeconds
	}
	return time.Duration(float64(grace) * s.opts.GraceFactor * float64(time.Second))
}

// deadlineExceeded stops a pod that ran past spec.activeDeadlineSeconds, as
// the kubelet does: SIGTERM, SIGKILL at the end of the grace period, then
// phase Failed with reason DeadlineExceeded (whatever the exit code, and
// whatever the restart policy).
func (s *Sim) deadlineExceeded(ctx context.Context, pod *corev1.Pod, run *podRun) error {
	if run.proc != nil && !run.exited {
		if time.Now().Before(run.stopAt) {
			s.podQ.AddAfter(run.key, time.Until(run.stopAt))
			return nil
		}
		run.proc.kill()
		run.proc.wait()
		run.collect()
	} else if run.proc == nil && !run.exited && time.Now().Before(run.stopAt) {
		s.podQ.AddAfter(run.key, time.Until(run.stopAt))
		return nil
	}
	if !run.exited {
		run.exited, run.exitCode, run.reason, run.finished = true, 137, "Error", time.Now()
	}
	np := pod.DeepCopy()
	terminatedStatus(pod, run, &np.Status, metav1.Now())
	if err := s.failAtDeadline(ctx, np, run); err != nil {
		return err
	}
	s.stopPlugin(run)
	return nil
}

// failAtDeadline writes np, its containers' state set, as the kubelet
// fails a pod past its activeDeadlineSeconds.
func (s *Sim) failAtDeadline(ctx context.Context, np *corev1.Pod, run *podRun) error {
	np.Status.Phase = corev1.PodFailed
	np.Status.Reason = "DeadlineExceeded"
	np.Status.Message = "Pod was active on the node longer than the specified deadline"
	if _, err := s.cs.CoreV1().Pods(np.Namespace).UpdateStatus(ctx, np, metav1.UpdateOptions{}); err != nil {
		return err
	}
	klog.Infof("pod %s: active deadline exceeded", run.key)
	run.terminal = true
	return nil
}

// failUnstarted fails a pod whose containers never started (its image was
// never pulled) at spec.activeDeadlineSeconds, as the kubelet does: each
// container is shown terminated with no start, ContainerStatusUnknown.
func (s *Sim) failUnstarted(ctx context.Context, pod *corev1.Pod, run *podRun) error {
	np := pod.DeepCopy()
	now := metav1.Now()
	for i := range np.Status.ContainerStatuses {
		cs := &np.Status.ContainerStatuses[i]
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: 137, Reason: "ContainerStatusUnknown",
			Message: "The container could not be located when the pod was terminated"}}
		cs.Ready = false
	}
	setCondition(&np.Status, corev1.ContainersReady, corev1.ConditionFalse, "PodFailed", now)
	setCondition(&np.Status, corev1.PodReady, corev1.ConditionFalse, "PodFailed", now)
	return s.failAtDeadline(ctx, np, run)
}

// terminatedStatus writes the containers' final state into st.
func terminatedStatus(pod *corev1.Pod, run *podRun, st *corev1.PodStatus, now metav1.Time) {
	started := metav1.NewTime(run.startedAt)
	for i := range st.ContainerStatuses {
		cs := &st.ContainerStatuses[i]
		code, reason := int32(run.exitCode), run.reason
		if reason == "" {
			reason = "Completed"
			if code != 0 {
				reason = "Error"
			}
		}
		msg := ""
		if i == 0 {
			msg = run.message
		}
		began := started
		if reason == "StartError" {
			// The runtime never started it: containerd's zero start time,
			// which the kubelet reports as the Unix epoch.
			began = metav1.NewTime(time.Unix(0, 0).UTC())
		}
		cs.State = corev1.ContainerState{Terminated: &corev1.ContainerStateTerminated{
			ExitCode: code, Reason: reason, Message: msg, StartedAt: began, FinishedAt: metav1.NewTime(run.finished),
			ContainerID: cs.ContainerID,
		}}
		cs.Ready = false
		f := false
		cs.Started = &f
	}
	setCondition(st, corev1.ContainersReady, corev1.ConditionFalse, "PodCompleted", now)
	setCondition(st, corev1.PodReady, corev1.ConditionFalse, "PodCompleted", now)
	setCondition(st, corev1.PodReadyToStartContainers, corev1.ConditionFalse, "", now)
}

// finishPod writes the terminal status once the containers exited.
func (s *Sim) finishPod(ctx context.Context, pod *corev1.Pod, run *podRun) error {
	if pod.Spec.RestartPolicy == corev1.RestartPolicyAlways ||
		(pod.Spec.RestartPolicy == corev1.RestartPolicyOnFailure && run.exitCode != 0) {
		// The kubelet would restart the container; the simulator keeps it
		// running instead (no crash loops for plain pods).
		run.exited = false
		return nil
	}
	now := metav1.Now()
	np := pod.DeepCopy()
	terminatedStatus(pod, run, &np.Status, now)
	np.Status.Phase = corev1.PodSucceeded
	if run.exitCode != 0 {
		np.Status.Phase = corev1.PodFailed
	}
	if _, err := s.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, np, metav1.UpdateOptions{}); err != nil {
		return err
	}
	run.terminal = true
	s.stopPlugin(run)
	return nil
}

// terminate handles a pod being deleted: its containers get
// terminationGracePeriod × grace-factor to stop (a helper process gets
// SIGTERM at once and SIGKILL at the end of it), then the terminal status is
// written and the pod deleted with grace period 0 and a UID precondition, as
// the kubelet does.
func (s *Sim) terminate(ctx context.Context, pod *corev1.Pod, run *podRun) error {
	grace := int64(0)
	if pod.DeletionGracePeriodSeconds != nil {
		grace = *pod.DeletionGracePeriodSeconds
	}
	requested := pod.DeletionTimestamp.Add(-time.Duration(grace) * time.Second)
	killAt := requested.Add(time.Duration(float64(grace) * s.opts.GraceFactor * float64(time.Second)))
	if run != nil {
		run.collect()
	}
	if run != nil && run.proc != nil && !run.exited {
		run.proc.term()
		if time.Now().Before(killAt) {
			s.podQ.AddAfter(run.key, time.Until(killAt))
			return nil
		}
		run.proc.kill()
		run.proc.wait()
		run.collect()
	} else if run != nil && !run.startedAt.IsZero() && !run.terminal && !run.exited && time.Now().Before(killAt) {
		s.podQ.AddAfter(run.key, time.Until(killAt))
		return nil
	}
	if run != nil {
		s.stopPlugin(run)
	}
	if run != nil && !run.startedAt.IsZero() && !run.terminal && pod.Status.Phase == corev1.PodRunning {
		if !run.exited {
			run.exited, run.exitCode, run.finished = true, 0, time.Now()
			if run.proc != nil {
				run.exitCode, run.reason = 137, "Error"
			}
		}
		np := pod.DeepCopy()
		now := metav1.Now()
		terminatedStatus(pod, run, &np.Status, now)
		np.Status.Phase = corev1.PodFailed
		if run.exitCode == 0 && pod.Spec.RestartPolicy != corev1.RestartPolicyAlways {
			np.Status.Phase = corev1.PodSucceeded
		}
		if _, err := s.cs.CoreV1().Pods(pod.Namespace).UpdateStatus(ctx, np, metav1.UpdateOptions{}); err != nil && !apierrors.IsNotFound(err) {
			return err
		}
		run.terminal = true
	}
	zero := int64(0)
	uid := pod.UID
	err := s.cs.CoreV1().Pods(pod.Namespace).Delete(ctx, pod.Name, metav1.DeleteOptions{
		GracePeriodSeconds: &zero, Preconditions: &metav1.Preconditions{UID: &uid}})
	if apierrors.IsNotFound(err) || apierrors.IsConflict(err) {
		return nil
	}
	return err
}

// killAll stops every helper process (simulator shutdown).
func (s *Sim) killAll() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, r := range s.runs {
		if r.proc != nil {
			r.proc.kill()
		}
	}
}
