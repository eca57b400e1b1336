// Command testbed is a multi-call binary: a real Kubernetes control plane
// (etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl)
// plus the test bed orchestration (up, down, token, ...) and the node
// simulator. It dispatches on its first argument, or on the name it was
// called by (a symlink named kubectl runs kubectl).
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/component-base/cli"
	kubectlcmd "k8s.io/kubectl/pkg/cmd"
	cmdutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	kcm "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"

	"gpumode.io/e2e/internal/bed"
	"gpumode.io/e2e/internal/sim"
)

const usage = `usage: testbed COMMAND [flags]

Bed commands:
  up      --dir DIR [--nodes N] [--gpu-model MODEL|mixed] [--gpus-per-node G]
          start a control plane and N simulated GPU nodes in the background
  down    --dir DIR                stop everything the bed started
  token   --dir DIR --sa NS/NAME   print a kubeconfig for a ServiceAccount
  status  --dir DIR                show which components run
  stop    --dir DIR COMPONENT...   stop components (etcd, kube-apiserver,
                                   kube-controller-manager, kube-scheduler, sim)
  start   --dir DIR COMPONENT...   start them again
  reboot  --dir DIR [--down 5s] NODE...  power-cycle simulated nodes
  kubectl ARGS...                  kubectl (KUBECONFIG, or $TESTBED_DIR/kubeconfig)

Components (run by up):
  etcd, kube-apiserver, kube-controller-manager, kube-scheduler, sim
`

func main() {
	name := filepath.Base(os.Args[0])
	args := os.Args[1:]
	if strings.HasPrefix(name, "testbed") {
		if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
			fmt.Fprint(os.Stderr, usage)
			if len(args) == 0 {
				os.Exit(2)
			}
			return
		}
		name, args = args[0], args[1:]
	}
	var err error
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
		if os.Getenv("KUBECONFIG") == "" && os.Getenv("TESTBED_DIR") != "" {
			os.Setenv("KUBECONFIG", filepath.Join(os.Getenv("TESTBED_DIR"), "kubeconfig"))
		}
		c := kubectlcmd.NewDefaultKubectlCommand()
		c.SetArgs(args)
		if err := cli.RunNoErrOutput(c); err != nil {
			cmdutil.CheckErr(err) // prints the error as kubectl does and exits
		}
		return
	case "etcd":
		err = bed.Etcd(args)
	case "sim":
		err = sim.Main(args)
	case "up":
		err = bed.Up(args)
	case "down":
		err = bed.Down(args)
	case "token":
		err = bed.Token(args)
	case "status":
		err = bed.Status(args)
	case "stop":
		err = bed.Stop(args)
	case "start":
		err = bed.Start(args)
	case "reboot":
		err = bed.Reboot(args)
	default:
		fmt.Fprintf(os.Stderr, "testbed: unknown command %q\n\n%s", name, usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "testbed %s: %v\n", name, err)
		os.Exit(1)
	}
}
