#!/usr/bin/env bash
# make demo: a local control plane with six simulated GPU nodes (A100 and
# H100), GPU workloads behind a PodDisruptionBudget, the gpumode controller,
# and policies that move nodes through all three modes while you watch.
#
#   scripts/demo.sh                    interactive: pauses between acts
#   scripts/demo.sh --non-interactive  runs to the end; exit 0 only if every
#                                      node converged
#   scripts/demo.sh --down             stops the demo's bed and controller
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
dir="${DEMO_DIR:-$root/build/demo}"
bed="$dir/bed"
interactive=1
case "${1:-}" in
--down)
	[ -f "$dir/controller.pid" ] && kill "$(cat "$dir/controller.pid")" 2>/dev/null || true
	rm -f "$dir/controller.pid"
	[ -d "$bed" ] && "$root/e2e/testbed" down --dir "$bed" || true
	echo "demo stopped"
	exit 0
	;;
--non-interactive) interactive=0 ;;
"") [ -t 0 ] || interactive=0 ;;
*)
	echo "usage: $0 [--non-interactive|--down]" >&2
	exit 2
	;;
esac

bold() { if [ -t 1 ]; then printf '\033[1m%s\033[0m\n' "$*"; else printf '%s\n' "$*"; fi; }
step() { printf '\n'; bold "==> $*"; }
pause() {
	if [ "$interactive" = 1 ]; then
		printf '\n(press Enter to continue) '
		read -r _
	fi
}

export KUBECONFIG="$bed/kubeconfig"
kubectl() { "$root/build/e2e/bin/kubectl" "$@"; }
gpumode() { "$root/build/kubectl-gpumode" "$@"; }

step "Building the control plane (kube-apiserver, etcd, controller-manager, scheduler, kubectl)"
echo "    from the published Kubernetes Go modules; the first build takes ~10 minutes"
echo "    on two cores, later ones seconds (Go's caches)."
start=$(date +%s)
mkdir -p "$dir"
"$root/e2e/testbed" help >/dev/null 2>"$dir/build.log" || { cat "$dir/build.log"; exit 1; }
echo "    ready after $(($(date +%s) - start))s"

step "Starting a test bed with 6 simulated GPU nodes"
echo "    with the GPU Operator's DaemonSets (device plugin, feature discovery, DCGM,"
echo "    dcgm-exporter, mig-manager) and HAMi's; the simulated nvidia-smi refuses"
echo "    MIG changes while any of them holds a GPU, so gpumode stops them first."
mkdir -p "$dir"
"$0" --down >/dev/null 2>&1 || true
TESTBED_NO_BUILD=1 "$root/e2e/testbed" up --dir "$bed" --nodes 6 --gpu-model mixed --dcgm
kubectl get nodes -L nvidia.com/gpu.product,nvidia.com/gpu.count

step "Installing gpumode: the CRD and the controller's namespace"
kubectl apply -f "$root/crd/gpumodepolicy.yaml"
kubectl wait --for=condition=Established --timeout=60s crd/gpumodepolicies.gpumode.io >/dev/null
kubectl create namespace gpumode-system --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl label node gpu-001 gpu-002 gpu-003 pool=inference --overwrite >/dev/null
kubectl label node gpu-004 gpu-005 pool=dev --overwrite >/dev/null
kubectl label node gpu-006 pool=training --overwrite >/dev/null

step "Running GPU workloads: 4 training pods behind a PodDisruptionBudget (minAvailable 3)"
kubectl apply -f - <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata: {name: train, namespace: default}
spec:
  replicas: 4
  selector: {matchLabels: {app: train}}
  template:
    metadata: {labels: {app: train}}
    spec:
      terminationGracePeriodSeconds: 30
      containers:
      - name: trainer
        image: registry.example/trainer:1
        resources: {limits: {nvidia.com/gpu: 1}}
---
apiVersion: policy/v1
kind: PodDisruptionBudget
metadata: {name: train, namespace: default}
spec:
  minAvailable: 3
  selector: {matchLabels: {app: train}}
EOF
kubectl rollout status deployment/train --timeout=120s
kubectl get pods -o wide

step "Starting gpumode-controller (log: $dir/controller.log)"
"$root/build/gpumode-controller" --kubeconfig "$KUBECONFIG" --config "$bed/controller.yaml" \
	--metrics-addr 127.0.0.1:0 --health-addr 127.0.0.1:0 >"$dir/controller.log" 2>&1 &
echo $! >"$dir/controller.pid"
sleep 1
pause

# watch_until POLICY...: shows progress until every named policy converged.
watch_until() {
	local deadline=$(($(date +%s) + 300))
	while :; do
		local done=1
		for p in "$@"; do
			local r
			r=$(kubectl get gmp "$p" -o jsonpath='{.status.summary.matched} {.status.summary.converged} {.status.conditions[?(@.type=="Ready")].status} {.status.observedGeneration} {.metadata.generation}' 2>/dev/null || true)
			read -r m c ready og g <<<"$r"
			if [ -z "${m:-}" ] || [ "$m" = 0 ] || [ "$m" != "$c" ] || [ "$ready" != True ] || [ "$og" != "$g" ]; then
				done=0
			fi
		done
		if [ -t 1 ]; then clear; fi
		date '+%H:%M:%S'
		gpumode status 2>/dev/null || kubectl get gmp
		echo
		kubectl get nodes -L gpumode.io/mode,gpumode.io/state,pool
		[ "$done" = 1 ] && return 0
		if [ "$(date +%s)" -gt "$deadline" ]; then
			echo "policies did not converge in 5 minutes; see $dir/controller.log" >&2
			return 1
		fi
		sleep 2
	done
}

# The training node is verified first: it is where evicted training pods
# can go once the other pools leave whole GPUs. Switching every pool at once
# could deadlock on the budget: a node going to MIG takes the one disruption
# it allows while the only full node is itself still draining.
step "Act 1a: the training node stays full; gpumode verifies it (and drains it to do so)"
kubectl apply -f - <<'EOF'
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: training}
spec:
  nodeSelector: {matchLabels: {pool: training}}
  mode: full
EOF
watch_until training
kubectl get pods -o wide

step "Act 1b: inference nodes to MIG (layout all-1g.10gb), dev nodes to vGPU"
kubectl apply -f - <<'EOF'
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: inference}
spec:
  nodeSelector: {matchLabels: {pool: inference}}
  mode: mig
  mig: {config: all-1g.10gb, strategy: mixed}
  rollout: {maxUnavailable: 1}
---
apiVersion: gpumode.io/v1alpha1
kind: GPUModePolicy
metadata: {name: dev}
spec:
  nodeSelector: {matchLabels: {pool: dev}}
  mode: vgpu
  vgpu: {splitCount: 4}
EOF
watch_until inference dev training
kubectl get pods -o wide
pause

step "Act 2: the dev pool goes back to whole GPUs, inference moves to vGPU"
kubectl patch gmp dev --type=merge -p '{"spec":{"mode":"full","vgpu":null}}'
kubectl patch gmp inference --type=merge -p '{"spec":{"mode":"vgpu","mig":null}}'
watch_until inference dev training

step "Act 3: inference back to MIG, now the all-balanced layout (per GPU model)"
kubectl patch gmp inference --type=merge -p '{"spec":{"mode":"mig","mig":{"config":"all-balanced"}}}'
if ! watch_until inference dev training; then
	exit 1
fi

step "Summary"
kubectl get gmp
echo
kubectl get nodes -L gpumode.io/mode,gpumode.io/state,nvidia.com/gpu.product
echo
kubectl get pods -o wide
cat <<EOF

Every node converged. The bed and the controller are still running:

  export KUBECONFIG=$KUBECONFIG
  $root/build/e2e/bin/kubectl get gmp              # policies and their progress
  $root/build/kubectl-gpumode status               # the same, per node
  $root/build/e2e/bin/kubectl apply -f manifests/examples/full.yaml   # another policy
  tail -f $dir/controller.log                      # what the controller does

Stop everything with: make demo-down
EOF
