// Command testbed is a multi-call binary: a real Kubernetes control plane
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl)
// plus the testbed orchestration and the node simulator.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	_ "go.etcd.io/etcd/server/v3/embed"
	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if name == "testbed-bin" || name == "testbed" {
		if len(args) == 0 {
			fmt.Fprintln(os.Stderr, "usage: testbed SUBCOMMAND ...")
			os.Exit(2)
		}
		name, args = args[0], args[1:]
	}
	switch name {
	case "kube-apiserver":
		c := apiserver.NewAPIServerCommand()
		c.SetArgs(args)
		os.Exit(cli.Run(c))
	case "kube-controller-manager":
		c := kcm.NewControllerManagerCommand()
		c.SetArgs(args)
		os.Exit(cli.Run(c))
	case "kube-scheduler":
		c := scheduler.NewSchedulerCommand()
		c.SetArgs(args)
		os.Exit(cli.Run(c))
	case "kubectl":
		c := kubectlcmd.NewDefaultKubectlCommand()
		c.SetArgs(args)
		os.Exit(cli.Run(c))
	}
	fmt.Fprintf(os.Stderr, "testbed: unknown subcommand %q\n", name)
	os.Exit(2)
}
