// Package fakesmi is a faithful fake of nvidia-smi for end-to-end tests.
//
// A simulated node's GPUs live in a JSON state file; every invocation of the
// fake (Run, or the nvidia-smi command in e2e/cmd/nvidia-smi) loads it under
// an exclusive flock, acts like the real tool (MIG mode rules per
// architecture, placement-aware GPU instances, resets, queries) and saves it
// atomically. Node simulators change the state through Update and the State
// methods (AddHolder, Reboot, InjectFault...), or through the fake's own
// --fake-* commands. README.md documents the formats and what is approximate.
package fakesmi
