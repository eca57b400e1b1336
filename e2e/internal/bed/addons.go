package bed

import (
	"context"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"

	"gpumode.io/e2e/internal/sim"
)

// MigPartedConfig is the mig-parted v1 config the GPU Operator ships as
// ConfigMap gpu-operator/default-mig-parted-config (a subset of its layouts).
const MigPartedConfig = `version: v1
mig-configs:
  all-disabled:
    - devices: all
      mig-enabled: false
  all-enabled:
    - devices: all
      mig-enabled: true
      mig-devices: {}
  all-1g.5gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 7
  all-1g.10gb:
    - device-filter: ["0x20B210DE", "0x233010DE"]
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 7
    - device-filter: ["0x20B010DE"]
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 4
  all-2g.20gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "2g.20gb": 3
  all-3g.40gb:
    - devices: all
      mig-enabled: true
      mig-devices:
        "3g.40gb": 2
  all-balanced:
    - device-filter: ["0x20B010DE"]
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.5gb": 2
        "2g.10gb": 1
        "3g.20gb": 1
    - device-filter: ["0x20B210DE", "0x233010DE"]
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.10gb": 2
        "2g.20gb": 1
        "3g.40gb": 1
    - device-filter: ["0x233510DE"]
      devices: all
      mig-enabled: true
      mig-devices:
        "1g.18gb": 2
        "2g.35gb": 1
        "3g.71gb": 1
`

// HAMiConfig is HAMi's per-node device plugin config (ConfigMap
// kube-system/hami-device-plugin, key config.json), empty: defaults apply.
const HAMiConfig = `{"nodeconfig": []}
`

type addonDS struct {
	ns, name, image, role, selectorKey string
	labels                             map[string]string
}

var addonDaemonSets = []addonDS{
	{"gpu-operator", "nvidia-device-plugin-daemonset", "nvcr.io/nvidia/k8s-device-plugin:v0.17.0", sim.RoleNvidiaPlugin,
		"nvidia.com/gpu.deploy.device-plugin", map[string]string{"app": "nvidia-device-plugin-daemonset"}},
	{"gpu-operator", "gpu-feature-discovery", "nvcr.io/nvidia/k8s-device-plugin:v0.17.0", sim.RoleFeatureDiscovery,
		"nvidia.com/gpu.deploy.gpu-feature-discovery", map[string]string{"app": "gpu-feature-discovery"}},
	{"gpu-operator", "nvidia-dcgm-exporter", "nvcr.io/nvidia/k8s/dcgm-exporter:3.3.9-3.6.1-ubuntu22.04", sim.RoleDCGMExporter,
		"nvidia.com/gpu.deploy.dcgm-exporter", map[string]string{"app": "nvidia-dcgm-exporter"}},
	{"gpu-operator", "nvidia-mig-manager", "nvcr.io/nvidia/cloud-native/k8s-mig-manager:v0.10.0-ubuntu20.04", sim.RoleMIGManager,
		"nvidia.com/gpu.deploy.mig-manager", map[string]string{"app": "nvidia-mig-manager"}},
	{"kube-system", "hami-device-plugin", "projecthami/hami:v2.5.0", sim.RoleHAMiPlugin,
		"nvidia.com/vgpu.deploy.device-plugin", map[string]string{"app.kubernetes.io/component": "hami-device-plugin", "app.kubernetes.io/name": "hami"}},
}

// CreateCriticalPodsQuota lets namespace ns hold pods of the critical
// priority classes (see admissionConfig), as many as a bed can have.
func CreateCriticalPodsQuota(ctx context.Context, cs kubernetes.Interface, ns string) error {
	q := &corev1.ResourceQuota{
		ObjectMeta: metav1.ObjectMeta{Namespace: ns, Name: "critical-pods"},
		Spec: corev1.ResourceQuotaSpec{
			Hard: corev1.ResourceList{corev1.ResourcePods: resource.MustParse("1000000")},
			ScopeSelector: &corev1.ScopeSelector{MatchExpressions: []corev1.ScopedResourceSelectorRequirement{{
				ScopeName: corev1.ResourceQuotaScopePriorityClass, Operator: corev1.ScopeSelectorOpIn,
				Values: []string{"system-node-critical", "system-cluster-critical"},
			}}},
		},
	}
	_, err := cs.CoreV1().ResourceQuotas(ns).Create(ctx, q, metav1.CreateOptions{})
	return ignoreExists(err)
}

func ignoreExists(err error) error {
	if apierrors.IsAlreadyExists(err) {
		return nil
	}
	return err
}

// dcgmDaemonSet is the GPU Operator's standalone DCGM (nv-hostengine),
// which it runs only with dcgm.enabled: off by default, so the benchmark
// beds keep four operand pods per node.
var dcgmDaemonSet = addonDS{"gpu-operator", "nvidia-dcgm", "nvcr.io/nvidia/cloud-native/dcgm:3.3.9-1-ubuntu22.04", sim.RoleDCGM,
	"nvidia.com/gpu.deploy.dcgm", map[string]string{"app": "nvidia-dcgm"}}

// driverDaemonSet is the GPU Operator's driver container, deployed where
// no driver is pre-installed (nvidia.com/gpu.deploy.driver=true).
var driverDaemonSet = addonDS{"gpu-operator", "nvidia-driver-daemonset", "nvcr.io/nvidia/driver:550.127.08-ubuntu22.04", sim.RoleNvidiaDriver,
	"nvidia.com/gpu.deploy.driver", map[string]string{"app": "nvidia-driver-daemonset"}}

// installAddons creates what the GPU Operator and HAMi would: their
// namespaces, ConfigMaps and device plugin / operand DaemonSets (with
// standalone DCGM and the driver container as st asks). The pods are ordinary pods; the simulator
// recognises them by the annotation sim.gpumode.io/role and acts as the
// plugin would on the node.
func installAddons(ctx context.Context, cs kubernetes.Interface, st *State) error {
	limitCritical := st.LimitCriticalPods
	if _, err := cs.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "gpu-operator"}}, metav1.CreateOptions{}); ignoreExists(err) != nil {
		return err
	}
	cms := []*corev1.ConfigMap{
		{ObjectMeta: metav1.ObjectMeta{Namespace: "gpu-operator", Name: "default-mig-parted-config"}, Data: map[string]string{"config.yaml": MigPartedConfig}},
		{ObjectMeta: metav1.ObjectMeta{Namespace: "kube-system", Name: "hami-device-plugin"}, Data: map[string]string{"config.json": HAMiConfig}},
		// ClusterPolicy devicePlugin.config.name: the configs that
		// nvidia.com/device-plugin.config selects.
		{ObjectMeta: metav1.ObjectMeta{Namespace: "gpu-operator", Name: sim.PluginConfigMap}, Data: sim.PluginConfigs},
	}
	for _, cm := range cms {
		if _, err := cs.CoreV1().ConfigMaps(cm.Namespace).Create(ctx, cm, metav1.CreateOptions{}); ignoreExists(err) != nil {
			return err
		}
	}
	// The operands ask for system-node-critical, which a bed limiting it
	// admits only under a quota for it (see admissionConfig).
	for _, ns := range []string{"gpu-operator", "kube-system"} {
		if !limitCritical {
			break
		}
		if err := CreateCriticalPodsQuota(ctx, cs, ns); err != nil {
			return err
		}
	}
	sets := addonDaemonSets
	if st.DCGM {
		sets = append(append([]addonDS{}, sets...), dcgmDaemonSet)
	}
	if st.DriverContainer {
		sets = append(append([]addonDS{}, sets...), driverDaemonSet)
	}
	for _, a := range sets {
		grace := int64(5)
		ds := &appsv1.DaemonSet{
			ObjectMeta: metav1.ObjectMeta{Namespace: a.ns, Name: a.name, Labels: a.labels},
			Spec: appsv1.DaemonSetSpec{
				Selector: &metav1.LabelSelector{MatchLabels: a.labels},
				Template: corev1.PodTemplateSpec{
					ObjectMeta: metav1.ObjectMeta{Labels: a.labels, Annotations: map[string]string{sim.RoleAnnotation: a.role}},
					Spec: corev1.PodSpec{
						NodeSelector:                  map[string]string{a.selectorKey: "true"},
						PriorityClassName:             "system-node-critical",
						TerminationGracePeriodSeconds: &grace,
						Tolerations:                   []corev1.Toleration{{Key: "nvidia.com/gpu", Operator: corev1.TolerationOpExists, Effect: corev1.TaintEffectNoSchedule}},
						Containers:                    []corev1.Container{{Name: a.name, Image: a.image}},
					},
				},
			},
		}
		if _, err := cs.AppsV1().DaemonSets(a.ns).Create(ctx, ds, metav1.CreateOptions{}); ignoreExists(err) != nil {
			return err
		}
	}
	return nil
}
