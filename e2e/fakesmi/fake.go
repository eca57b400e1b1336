package fakesmi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
)

const fakeUsage = `fake nvidia-smi control commands (state from $FAKE_NVIDIA_SMI_STATE or --fake-state=PATH):
  --fake-init MODEL GPUS [SEED]        create the state file (overwrites)
  --fake-dump                          print the state as JSON
  --fake-log                           print the invocation log, one JSON object a line
  --fake-reboot                        reboot the node (instances lost; Hopper MIG mode lost)
  --fake-holder add|remove all|N NAME  a client holding the GPU (blocks -r and -mig)
  --fake-process add N PID NAME MIB [GI] | remove PID
  --fake-reset-unsupported all|N true|false
  --fake-lost all|N true|false         GPU fell off the bus (exit 15) until reboot
  --fake-driver loaded|unloaded        unloaded: every command exits 9; loaded
                                       after that: a driver reload (Hopper loses
                                       MIG mode, every instance is gone)
  --fake-auto-reset true|false         Ampere: reset an idle GPU during -mig (newer drivers)
  --fake-latency MS                    delay every invocation
  --fake-inject --match REGEX [--exit N] [--stdout TEXT] [--stderr TEXT]
                [--times N] [--delay-ms N] [--passthrough]
                                       fail (or delay) matching invocations; --times -1: forever
  --fake-clear-faults
`

// runFake implements the --fake-* control commands. A leading
// --fake-state=PATH overrides statePath.
func runFake(args []string, stdout, stderr io.Writer, statePath string) int {
	if strings.HasPrefix(args[0], "--fake-state=") {
		statePath = strings.TrimPrefix(args[0], "--fake-state=")
		args = args[1:]
		if len(args) == 0 {
			fmt.Fprint(stderr, fakeUsage)
			return ExitInvalidArg
		}
	}
	cmd, rest := args[0], args[1:]
	fail := func(err error) int {
		fmt.Fprintf(stderr, "fakesmi: %s: %v\n", cmd, err)
		return ExitInvalidArg
	}
	if cmd == "--fake-help" {
		fmt.Fprint(stdout, fakeUsage)
		return ExitOK
	}
	if statePath == "" {
		return fail(fmt.Errorf("no state file (set %s or --fake-state=PATH)", StateEnv))
	}
	update := func(fn func(*State) error) int {
		if err := Update(statePath, fn); err != nil {
			return fail(err)
		}
		return ExitOK
	}
	switch cmd {
	case "--fake-init":
		if len(rest) < 2 || len(rest) > 3 {
			return fail(errors.New("usage: --fake-init MODEL GPUS [SEED]"))
		}
		n, err := strconv.Atoi(rest[1])
		if err != nil {
			return fail(err)
		}
		var s *State
		if len(rest) == 3 {
			s, err = NewStateSeeded(rest[0], n, rest[2])
		} else {
			s, err = NewState(rest[0], n)
		}
		if err != nil {
			return fail(err)
		}
		if err := Save(statePath, s); err != nil {
			return fail(err)
		}
		return ExitOK
	case "--fake-dump":
		s, err := Load(statePath)
		if err != nil {
			return fail(err)
		}
		b, _ := json.MarshalIndent(s, "", "  ")
		fmt.Fprintf(stdout, "%s\n", b)
		return ExitOK
	case "--fake-log":
		s, err := Load(statePath)
		if err != nil {
			return fail(err)
		}
		for _, inv := range s.Log {
			b, _ := json.Marshal(inv)
			fmt.Fprintf(stdout, "%s\n", b)
		}
		return ExitOK
	case "--fake-reboot":
		return update(func(s *State) error { s.Reboot(); return nil })
	case "--fake-holder":
		if len(rest) != 3 {
			return fail(errors.New("usage: --fake-holder add|remove all|N NAME"))
		}
		gpu, err := parseGPUArg(rest[1])
		if err != nil {
			return fail(err)
		}
		switch rest[0] {
		case "add":
			return update(func(s *State) error { return s.AddHolder(gpu, rest[2]) })
		case "remove":
			return update(func(s *State) error { return s.RemoveHolder(gpu, rest[2]) })
		}
		return fail(errors.New("usage: --fake-holder add|remove all|N NAME"))
	case "--fake-process":
		if len(rest) == 2 && rest[0] == "remove" {
			pid, err := strconv.Atoi(rest[1])
			if err != nil {
				return fail(err)
			}
			return update(func(s *State) error { s.RemoveProcess(pid); return nil })
		}
		if (len(rest) != 5 && len(rest) != 6) || rest[0] != "add" {
			return fail(errors.New("usage: --fake-process add N PID NAME MIB [GI] | remove PID"))
		}
		var nums [3]int
		for i, v := range []string{rest[1], rest[2], rest[4]} {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fail(err)
			}
			nums[i] = n
		}
		p := Process{PID: nums[1], Name: rest[3], UsedMiB: nums[2]}
		if len(rest) == 6 {
			gi, err := strconv.Atoi(rest[5])
			if err != nil {
				return fail(err)
			}
			p.GI = &gi
		}
		return update(func(s *State) error { return s.AddProcess(nums[0], p) })
	case "--fake-reset-unsupported", "--fake-lost":
		if len(rest) != 2 {
			return fail(errors.New("usage: " + cmd + " all|N true|false"))
		}
		gpu, err := parseGPUArg(rest[0])
		if err != nil {
			return fail(err)
		}
		v, err := strconv.ParseBool(rest[1])
		if err != nil {
			return fail(err)
		}
		if cmd == "--fake-lost" {
			return update(func(s *State) error { return s.SetLost(gpu, v) })
		}
		return update(func(s *State) error { return s.SetResetUnsupported(gpu, v) })
	case "--fake-driver":
		if len(rest) != 1 || (rest[0] != "loaded" && rest[0] != "unloaded") {
			return fail(errors.New("usage: --fake-driver loaded|unloaded"))
		}
		return update(func(s *State) error {
			if rest[0] == "loaded" && s.DriverUnloaded {
				s.ReloadDriver()
			}
			s.DriverUnloaded = rest[0] == "unloaded"
			return nil
		})
	case "--fake-auto-reset":
		if len(rest) != 1 {
			return fail(errors.New("usage: --fake-auto-reset true|false"))
		}
		v, err := strconv.ParseBool(rest[0])
		if err != nil {
			return fail(err)
		}
		return update(func(s *State) error { s.AmpereAutoReset = v; return nil })
	case "--fake-latency":
		if len(rest) != 1 {
			return fail(errors.New("usage: --fake-latency MS"))
		}
		ms, err := strconv.Atoi(rest[0])
		if err != nil || ms < 0 {
			return fail(fmt.Errorf("bad latency %q", rest[0]))
		}
		return update(func(s *State) error { s.LatencyMS = ms; return nil })
	case "--fake-inject":
		f, err := parseFault(rest)
		if err != nil {
			return fail(err)
		}
		return update(func(s *State) error { return s.InjectFault(f) })
	case "--fake-clear-faults":
		return update(func(s *State) error { s.ClearFaults(); return nil })
	}
	fmt.Fprint(stderr, fakeUsage)
	return ExitInvalidArg
}

func parseGPUArg(v string) (int, error) {
	if v == "all" {
		return AllGPUs, nil
	}
	n, err := strconv.Atoi(v)
	if err != nil || n < 0 {
		return 0, fmt.Errorf("bad GPU %q (want all or an index)", v)
	}
	return n, nil
}

func parseFault(args []string) (Fault, error) {
	var f Fault
	hasMatch := false
	a := &argv{args: args}
	for {
		raw, ok := a.next()
		if !ok {
			break
		}
		opt, att := splitOpt(raw)
		if opt == "--passthrough" {
			f.Passthrough = true
			continue
		}
		v, ok := a.value(opt, att)
		if !ok {
			return f, fmt.Errorf("%s needs a value", opt)
		}
		var err error
		switch opt {
		case "--match":
			f.Match, hasMatch = v, true
		case "--exit":
			f.Exit, err = strconv.Atoi(v)
		case "--stdout":
			f.Stdout = unescape(v)
		case "--stderr":
			f.Stderr = unescape(v)
		case "--times":
			f.Remaining, err = strconv.Atoi(v)
			if err == nil && (f.Remaining == 0 || f.Remaining < -1) {
				err = errors.New("--times must be >= 1 or -1")
			}
		case "--delay-ms":
			f.DelayMS, err = strconv.Atoi(v)
		default:
			err = fmt.Errorf("unknown option %s", opt)
		}
		if err != nil {
			return f, err
		}
	}
	if !hasMatch {
		return f, errors.New("--match REGEX is required")
	}
	return f, nil
}

// unescape turns the two-character sequences \n and \t into newline and
// tab, so shell callers can pass multi-line messages.
func unescape(s string) string {
	return strings.NewReplacer(`\n`, "\n", `\t`, "\t", `\\`, `\`).Replace(s)
}
