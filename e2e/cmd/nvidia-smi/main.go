// Command nvidia-smi is a fake nvidia-smi for end-to-end tests: it keeps a
// simulated node's GPUs in the JSON state file named by
// $FAKE_NVIDIA_SMI_STATE and answers like the real tool. See
// e2e/fakesmi/README.md.
package main

import (
	"os"

	"gpumode.io/e2e/fakesmi"
)

func main() {
	os.Exit(fakesmi.Run(os.Args[1:], os.Stdout, os.Stderr, os.Getenv(fakesmi.StateEnv)))
}
