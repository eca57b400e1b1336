package fakesmi

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"
)

// Messages printed by the real tool (see FACTS.md); the fake prints them, like
// nvidia-smi, on standard output.
const (
	msgNoDriver = "NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver. " +
		"Make sure that the latest NVIDIA driver is installed and running.\n"
	msgInvalidArgs  = "Invalid combination of input arguments. Please run 'nvidia-smi -h' for help.\n"
	msgNoDevices    = "No devices were found\n"
	msgTerminating  = "Terminating early due to previous errors.\n"
	msgNoMIGSupport = "No MIG-supported devices found.\n"
	msgNoMIGEnabled = "No MIG-enabled devices found.\n"
	// DriverVersion is what driver_version reports.
	DriverVersion = "550.127.05"
	cudaVersion   = "12.4"
)

// UIDEnv names the environment variable with the user the calling
// container runs as (the simulator sets it); unset or "0": root.
const UIDEnv = "FAKE_NVIDIA_SMI_UID"

// msgNoPermission is not nvidia-smi's exact wording (FACTS gives only the
// exit code); the agent reports whatever text comes with exit 4.
const msgNoPermission = "Insufficient Permissions: changing MIG mode, resetting or changing GPU instances needs root\n"

// mutates reports whether args change the GPUs: -mig, -r, or mig with an
// instance create or destroy.
func mutates(args []string) bool {
	isMig := len(args) > 0 && args[0] == "mig"
	for _, a := range args {
		switch a {
		case "-mig", "--multi-instance-gpu", "-r", "--gpu-reset":
			if !isMig {
				return true
			}
		}
		if isMig {
			switch migActions[a] {
			case "cgi", "cci", "dci", "dgi":
				return true
			}
		}
	}
	return false
}

// Run executes one fake nvidia-smi invocation: args are the arguments
// without the program name, statePath the node's state file (usually from
// $FAKE_NVIDIA_SMI_STATE). It returns the exit code. Arguments starting
// with --fake- run the fake's own control commands (see fake.go).
func Run(args []string, stdout, stderr io.Writer, statePath string) int {
	if len(args) > 0 && strings.HasPrefix(args[0], "--fake-") {
		return runFake(args, stdout, stderr, statePath)
	}
	// FACTS: exit 4 is "no permission". Changing MIG mode, resetting and
	// creating or destroying instances need root; reading does not. The
	// simulator says which user the container runs as.
	if uid := os.Getenv(UIDEnv); uid != "" && uid != "0" && mutates(args) {
		io.WriteString(stdout, msgNoPermission)
		return ExitNoPermission
	}
	if statePath == "" {
		fmt.Fprintf(stderr, "fakesmi: no state file (set %s)\n", StateEnv)
		io.WriteString(stdout, msgNoDriver)
		return ExitNoDriver
	}
	var out bytes.Buffer
	var fault *Fault
	var delay time.Duration
	code, done := 0, false
	err := Update(statePath, func(s *State) error {
		if s.DriverUnloaded {
			out.WriteString(msgNoDriver)
			code, done = ExitNoDriver, true
			s.record(args, code, false)
			return nil
		}
		fault = s.takeFault(args)
		delay = time.Duration(s.LatencyMS) * time.Millisecond
		if fault != nil {
			delay += time.Duration(fault.DelayMS) * time.Millisecond
			if !fault.Passthrough {
				s.record(args, fault.Exit, true)
			}
		}
		if fault == nil && delay == 0 {
			code, done = execute(s, args, &out), true
			s.record(args, code, false)
		}
		return nil
	})
	if errors.Is(err, ErrNoState) {
		fmt.Fprintf(stderr, "fakesmi: no state file at %s\n", statePath)
		io.WriteString(stdout, msgNoDriver)
		return ExitNoDriver
	}
	if err != nil {
		fmt.Fprintf(stderr, "fakesmi: %v\n", err)
		return ExitOther
	}
	if done {
		stdout.Write(out.Bytes())
		return code
	}
	time.Sleep(delay)
	if fault != nil {
		io.WriteString(stdout, fault.Stdout)
		io.WriteString(stderr, fault.Stderr)
		if !fault.Passthrough {
			return fault.Exit
		}
	}
	err = Update(statePath, func(s *State) error {
		if s.DriverUnloaded {
			out.WriteString(msgNoDriver)
			code = ExitNoDriver
		} else {
			code = execute(s, args, &out)
		}
		s.record(args, code, fault != nil)
		return nil
	})
	if err != nil {
		fmt.Fprintf(stderr, "fakesmi: %v\n", err)
		return ExitOther
	}
	stdout.Write(out.Bytes())
	return code
}

// Execute runs args against an in-memory state, without files, locks,
// faults or latency. Useful in unit tests of callers.
func Execute(s *State, args []string, stdout io.Writer) int {
	var out bytes.Buffer
	code := execute(s, args, &out)
	stdout.Write(out.Bytes())
	return code
}

// argv walks an argument vector; it understands "-x v", "--xx v" and
// "--xx=v".
type argv struct {
	args []string
	i    int
}

func (a *argv) next() (string, bool) {
	if a.i >= len(a.args) {
		return "", false
	}
	a.i++
	return a.args[a.i-1], true
}

// value returns the value of option opt (either attached with = or the next
// argument).
func (a *argv) value(opt string, attached *string) (string, bool) {
	if attached != nil {
		return *attached, true
	}
	return a.next()
}

// splitOpt splits "--opt=value".
func splitOpt(arg string) (string, *string) {
	if strings.HasPrefix(arg, "-") {
		if k := strings.IndexByte(arg, '='); k > 0 {
			v := arg[k+1:]
			return arg[:k], &v
		}
	}
	return arg, nil
}

type topOpts struct {
	ids       string
	hasIDs    bool
	list      bool
	queryGPU  *string
	queryApps *string
	format    *string
	mig       *string
	reset     bool
	help      bool
}

func execute(s *State, args []string, out *bytes.Buffer) int {
	if len(args) > 0 && args[0] == "mig" {
		return runMIG(s, args[1:], out)
	}
	var o topOpts
	a := &argv{args: args}
	for {
		raw, ok := a.next()
		if !ok {
			break
		}
		opt, att := splitOpt(raw)
		var v string
		needValue := func() bool {
			var ok bool
			v, ok = a.value(opt, att)
			return ok
		}
		switch opt {
		case "-i", "--id":
			if !needValue() {
				return invalidArgs(out)
			}
			o.ids, o.hasIDs = v, true
		case "-L", "--list-gpus":
			o.list = true
		case "--query-gpu":
			if !needValue() {
				return invalidArgs(out)
			}
			o.queryGPU = &v
		case "--query-compute-apps":
			if !needValue() {
				return invalidArgs(out)
			}
			o.queryApps = &v
		case "--format":
			if !needValue() {
				return invalidArgs(out)
			}
			o.format = &v
		case "-mig", "--multi-instance-gpu":
			if !needValue() {
				return invalidArgs(out)
			}
			o.mig = &v
		case "-r", "--gpu-reset":
			o.reset = true
		case "-h", "--help":
			o.help = true
		default:
			return invalidArgs(out)
		}
	}
	if o.help {
		out.WriteString(helpText)
		return ExitOK
	}
	actions := 0
	for _, b := range []bool{o.list, o.queryGPU != nil, o.queryApps != nil, o.mig != nil, o.reset} {
		if b {
			actions++
		}
	}
	if actions > 1 || (o.format != nil && o.queryGPU == nil && o.queryApps == nil) {
		return invalidArgs(out)
	}
	gpus, code := selectGPUs(s, o.ids, o.hasIDs, out)
	if code != ExitOK {
		return code
	}
	if code := checkLost(gpus, out); code != ExitOK {
		return code
	}
	switch {
	case o.list:
		return listGPUs(gpus, out)
	case o.queryGPU != nil:
		return queryGPU(s, gpus, *o.queryGPU, o.format, out)
	case o.queryApps != nil:
		return queryApps(gpus, *o.queryApps, o.format, out)
	case o.mig != nil:
		return setMIG(s, gpus, *o.mig, out)
	case o.reset:
		return resetGPUs(gpus, out)
	}
	return summary(gpus, out)
}

func invalidArgs(out *bytes.Buffer) int {
	out.WriteString(msgInvalidArgs)
	return ExitInvalidArg
}

// selectGPUs resolves -i: indexes, GPU UUIDs or PCI bus IDs, comma separated.
func selectGPUs(s *State, ids string, has bool, out *bytes.Buffer) ([]*GPU, int) {
	if !has {
		if len(s.GPUs) == 0 {
			out.WriteString(msgNoDevices)
			return nil, ExitNotFound
		}
		return s.GPUs, ExitOK
	}
	var sel []*GPU
	seen := map[int]bool{}
	for _, tok := range strings.Split(ids, ",") {
		tok = strings.TrimSpace(tok)
		g := findGPU(s, tok)
		if g == nil {
			out.WriteString(msgNoDevices)
			return nil, ExitNotFound
		}
		if !seen[g.Index] {
			seen[g.Index] = true
			sel = append(sel, g)
		}
	}
	return sel, ExitOK
}

func findGPU(s *State, tok string) *GPU {
	if n, ok := atoiStrict(tok); ok {
		if n < len(s.GPUs) {
			return s.GPUs[n]
		}
		return nil
	}
	for _, g := range s.GPUs {
		if strings.EqualFold(tok, g.UUID) || strings.EqualFold(tok, g.BusID) ||
			strings.EqualFold(tok, strings.TrimPrefix(g.BusID, "0000")) ||
			strings.EqualFold(tok, g.BusID[len("00000000:"):]) {
			return g
		}
	}
	return nil
}

// checkLost fails like the real tool when a GPU fell off the bus.
func checkLost(gpus []*GPU, out *bytes.Buffer) int {
	code := ExitOK
	for _, g := range gpus {
		if g.Lost {
			fmt.Fprintf(out, "Unable to determine the device handle for GPU %s: GPU is lost.  Reboot the system to recover this GPU\n",
				strings.TrimPrefix(g.BusID, "0000"))
			code = ExitGPULost
		}
	}
	return code
}

func listGPUs(gpus []*GPU, out *bytes.Buffer) int {
	for _, g := range gpus {
		fmt.Fprintf(out, "GPU %d: %s (UUID: %s)\n", g.Index, g.ProductName(), g.UUID)
		if !g.MIGCurrent {
			continue
		}
		for _, d := range g.MIGDevices() {
			fmt.Fprintf(out, "  MIG %-11s Device %2d: (UUID: %s)\n", d.Name, d.Index, d.UUID)
		}
	}
	return ExitOK
}

type csvFormat struct{ header, units bool }

func parseFormat(f *string, out *bytes.Buffer) (csvFormat, int) {
	cf := csvFormat{header: true, units: true}
	if f == nil {
		out.WriteString("Option --format=csv must be specified together with --query-*.\n" + msgInvalidArgs)
		return cf, ExitInvalidArg
	}
	csv := false
	for _, t := range strings.Split(*f, ",") {
		switch strings.TrimSpace(t) {
		case "csv":
			csv = true
		case "noheader":
			cf.header = false
		case "nounits":
			cf.units = false
		default:
			return cf, invalidArgs(out)
		}
	}
	if !csv {
		return cf, invalidArgs(out)
	}
	return cf, ExitOK
}

// gpuField is one --query-gpu field.
type gpuField struct {
	header string
	unit   string // printed after the value and in the header, e.g. "MiB"
	value  func(s *State, g *GPU) string
}

func migField(pending bool) func(*State, *GPU) string {
	return func(_ *State, g *GPU) string {
		if !g.model().MIGCapable() {
			return "[N/A]"
		}
		v := g.MIGCurrent
		if pending {
			v = g.MIGPending
		}
		return enabled(v)
	}
}

func enabled(v bool) string {
	if v {
		return "Enabled"
	}
	return "Disabled"
}

func usedMiB(g *GPU) int {
	n := 0
	for _, p := range g.Processes {
		n += p.UsedMiB
	}
	return n
}

var gpuFields = map[string]gpuField{
	"index":            {"index", "", func(_ *State, g *GPU) string { return fmt.Sprint(g.Index) }},
	"count":            {"count", "", func(s *State, _ *GPU) string { return fmt.Sprint(len(s.GPUs)) }},
	"name":             {"name", "", func(_ *State, g *GPU) string { return g.ProductName() }},
	"uuid":             {"uuid", "", func(_ *State, g *GPU) string { return g.UUID }},
	"serial":           {"serial", "", func(_ *State, g *GPU) string { return serial(g) }},
	"pci.bus_id":       {"pci.bus_id", "", func(_ *State, g *GPU) string { return g.BusID }},
	"pci.device_id":    {"pci.device_id", "", func(_ *State, g *GPU) string { return g.model().DeviceID }},
	"driver_version":   {"driver_version", "", func(*State, *GPU) string { return DriverVersion }},
	"mig.mode.current": {"mig.mode.current", "", migField(false)},
	"mig.mode.pending": {"mig.mode.pending", "", migField(true)},
	"memory.total":     {"memory.total", "MiB", func(_ *State, g *GPU) string { return fmt.Sprint(g.model().MemoryMiB) }},
	"memory.used":      {"memory.used", "MiB", func(_ *State, g *GPU) string { return fmt.Sprint(usedMiB(g)) }},
	"memory.free": {"memory.free", "MiB", func(_ *State, g *GPU) string {
		return fmt.Sprint(g.model().MemoryMiB - usedMiB(g))
	}},
	"persistence_mode": {"persistence_mode", "", func(*State, *GPU) string { return "Enabled" }},
}

var gpuFieldAliases = map[string]string{
	"gpu_name": "name", "gpu_uuid": "uuid", "gpu_bus_id": "pci.bus_id",
	"gpu_serial": "serial", "persistence-mode": "persistence_mode",
	"mig.mode": "mig.mode.current",
}

func serial(g *GPU) string {
	h := hashUUID(false, "serial", g.UUID)
	n := 0
	var b strings.Builder
	for _, c := range h {
		if c >= '0' && c <= '9' && n < 13 {
			b.WriteRune(c)
			n++
		}
	}
	for ; n < 13; n++ {
		b.WriteByte('1')
	}
	return b.String()
}

func splitFields(list string) []string {
	var fs []string
	for _, f := range strings.Split(list, ",") {
		if f = strings.TrimSpace(f); f != "" {
			fs = append(fs, f)
		}
	}
	return fs
}

func badField(out *bytes.Buffer, f string) int {
	fmt.Fprintf(out, "Field \"%s\" is not a valid field to query.\n\n", f)
	return ExitInvalidArg
}

func queryGPU(s *State, gpus []*GPU, list string, format *string, out *bytes.Buffer) int {
	var fields []gpuField
	for _, name := range splitFields(list) {
		key := strings.ToLower(name)
		if a, ok := gpuFieldAliases[key]; ok {
			key = a
		}
		f, ok := gpuFields[key]
		if !ok {
			return badField(out, name)
		}
		fields = append(fields, f)
	}
	if len(fields) == 0 {
		return invalidArgs(out)
	}
	cf, code := parseFormat(format, out)
	if code != ExitOK {
		return code
	}
	if cf.header {
		hs := make([]string, len(fields))
		for i, f := range fields {
			hs[i] = f.header
			if f.unit != "" {
				hs[i] += " [" + f.unit + "]"
			}
		}
		out.WriteString(strings.Join(hs, ", ") + "\n")
	}
	for _, g := range gpus {
		vs := make([]string, len(fields))
		for i, f := range fields {
			vs[i] = f.value(s, g)
			if f.unit != "" && cf.units {
				vs[i] += " " + f.unit
			}
		}
		out.WriteString(strings.Join(vs, ", ") + "\n")
	}
	return ExitOK
}

type appField struct {
	header string
	unit   string
	value  func(g *GPU, p Process) string
}

var appFields = map[string]appField{
	"pid":             {"pid", "", func(_ *GPU, p Process) string { return fmt.Sprint(p.PID) }},
	"process_name":    {"process_name", "", func(_ *GPU, p Process) string { return p.Name }},
	"gpu_uuid":        {"gpu_uuid", "", func(g *GPU, _ Process) string { return g.UUID }},
	"gpu_bus_id":      {"gpu_bus_id", "", func(g *GPU, _ Process) string { return g.BusID }},
	"gpu_name":        {"gpu_name", "", func(g *GPU, _ Process) string { return g.ProductName() }},
	"gpu_serial":      {"gpu_serial", "", func(g *GPU, _ Process) string { return serial(g) }},
	"used_gpu_memory": {"used_gpu_memory", "MiB", func(_ *GPU, p Process) string { return fmt.Sprint(p.UsedMiB) }},
}

func queryApps(gpus []*GPU, list string, format *string, out *bytes.Buffer) int {
	var fields []appField
	for _, name := range splitFields(list) {
		key := strings.ToLower(name)
		switch key {
		case "used_memory":
			key = "used_gpu_memory"
		case "name":
			key = "process_name"
		}
		f, ok := appFields[key]
		if !ok {
			return badField(out, name)
		}
		fields = append(fields, f)
	}
	if len(fields) == 0 {
		return invalidArgs(out)
	}
	cf, code := parseFormat(format, out)
	if code != ExitOK {
		return code
	}
	if cf.header {
		hs := make([]string, len(fields))
		for i, f := range fields {
			hs[i] = f.header
			if f.unit != "" {
				hs[i] += " [" + f.unit + "]"
			}
		}
		out.WriteString(strings.Join(hs, ", ") + "\n")
	}
	for _, g := range gpus {
		for _, p := range g.Processes {
			vs := make([]string, len(fields))
			for i, f := range fields {
				vs[i] = f.value(g, p)
				if f.unit != "" && cf.units {
					vs[i] += " " + f.unit
				}
			}
			out.WriteString(strings.Join(vs, ", ") + "\n")
		}
	}
	return ExitOK
}

// setMIG implements `-mig 0|1`.
func setMIG(s *State, gpus []*GPU, val string, out *bytes.Buffer) int {
	var want bool
	switch strings.ToLower(val) {
	case "1", "enabled":
		want = true
	case "0", "disabled":
		want = false
	default:
		return invalidArgs(out)
	}
	verb, state := "Enabled", "enable"
	if !want {
		verb, state = "Disabled", "disable"
	}
	for _, g := range gpus {
		m := g.model()
		if !m.MIGCapable() {
			fmt.Fprintf(out, "Unable to %s MIG Mode for GPU %s: Not Supported\n", state, g.BusID)
			out.WriteString(msgTerminating)
			return ExitNotSupported
		}
		if g.MIGCurrent == want {
			// Nothing to activate; a pending change the other way is cancelled.
			g.MIGPending = want
			fmt.Fprintf(out, "%s MIG Mode for GPU %s\n", verb, g.BusID)
			continue
		}
		busy := g.InUse() || (!want && len(g.Instances) > 0)
		g.MIGPending = want
		switch {
		case busy:
			fmt.Fprintf(out, "Warning: MIG mode is in pending %s state for GPU %s:In use by another client\n", state, g.BusID)
			fmt.Fprintf(out, "%s is currently being used by one or more other processes (e.g. CUDA application or a monitoring "+
				"application such as another instance of nvidia-smi). Please first kill all processes using the device and "+
				"retry the command or reboot the system to make MIG mode effective.\n", g.BusID)
		case m.Arch == Ampere && g.ResetUnsupported:
			fmt.Fprintf(out, "Warning: MIG mode is in pending %s state for GPU %s:Not Supported\n", state, g.BusID)
			fmt.Fprintf(out, "Reboot the system or try nvidia-smi --gpu-reset to make MIG mode effective on GPU %s\n", g.BusID)
		case m.Arch == Ampere && !s.AmpereAutoReset:
			// Pending until `-r` or a reboot; the tool still reports success.
			fmt.Fprintf(out, "%s MIG Mode for GPU %s\n", verb, g.BusID)
		default:
			g.MIGCurrent = want
			g.Instances = nil
			fmt.Fprintf(out, "%s MIG Mode for GPU %s\n", verb, g.BusID)
		}
	}
	out.WriteString("All done.\n")
	return ExitOK
}

// resetGPUs implements `-r`: apply the pending MIG mode, drop all instances.
func resetGPUs(gpus []*GPU, out *bytes.Buffer) int {
	for _, g := range gpus {
		if g.ResetUnsupported {
			fmt.Fprintf(out, "Resetting GPU %s is not supported.\n", g.BusID)
			return ExitNotSupported
		}
		if g.InUse() {
			fmt.Fprintf(out, "GPU %s is currently in use by another process.\n\n", g.BusID)
			out.WriteString("1 device is currently being used by one or more other processes (e.g., Fabric Manager, CUDA " +
				"application, graphics application such as an X server, or a monitoring application such as another " +
				"instance of nvidia-smi). Please first kill all processes using this device and all compute applications " +
				"running in the system.\n")
			return ExitOther
		}
	}
	for _, g := range gpus {
		g.MIGCurrent = g.MIGPending
		g.Instances = nil
		fmt.Fprintf(out, "GPU %s was successfully reset.\n", g.BusID)
	}
	out.WriteString("All done.\n")
	return ExitOK
}

func summary(gpus []*GPU, out *bytes.Buffer) int {
	line := "+-----------------------------------------------------------------------------------------+\n"
	sep := "+-----------------------------------------+------------------------+----------------------+\n"
	out.WriteString(time.Now().Format("Mon Jan _2 15:04:05 2006") + "\n")
	out.WriteString(line)
	fmt.Fprintf(out, "| NVIDIA-SMI %-22s Driver Version: %-14s CUDA Version: %-8s |\n", DriverVersion, DriverVersion, cudaVersion)
	out.WriteString(sep)
	out.WriteString("| GPU  Name                 Persistence-M | Bus-Id          Disp.A | Volatile Uncorr. ECC |\n")
	out.WriteString("| Fan  Temp   Perf          Pwr:Usage/Cap |           Memory-Usage | GPU-Util  Compute M. |\n")
	out.WriteString("|                                         |                        |               MIG M. |\n")
	out.WriteString("|=========================================+========================+======================|\n")
	for _, g := range gpus {
		name := g.ProductName()
		if len(name) > 28 {
			name = name[:25] + "..."
		}
		mig := "N/A"
		if g.model().MIGCapable() {
			mig = enabled(g.MIGCurrent)
		}
		fmt.Fprintf(out, "|%4d  %-31s%-3s |   %s Off |                    0 |\n", g.Index, name, "On", g.BusID)
		mem := fmt.Sprintf("%dMiB / %dMiB", usedMiB(g), g.model().MemoryMiB)
		fmt.Fprintf(out, "| N/A   30C    P0             60W /  400W | %22s |      0%%      Default |\n", mem)
		fmt.Fprintf(out, "|                                         |                        | %20s |\n", mig)
		out.WriteString(sep)
	}
	return ExitOK
}

const helpText = `NVIDIA System Management Interface -- fake for end-to-end tests (gpumode e2e/fakesmi)

    nvidia-smi [OPTION1 [ARG1]] ...

    -h,   --help                Print usage information and exit.
    -L,   --list-gpus           Display a list of GPUs connected to the system.
    -i,   --id=                 Target a specific GPU (index, UUID or PCI bus ID; comma list).
    --query-gpu=                index, count, name, uuid, serial, pci.bus_id, pci.device_id,
                                driver_version, mig.mode.current, mig.mode.pending,
                                memory.total, memory.used, memory.free, persistence_mode
    --query-compute-apps=       pid, process_name, gpu_uuid, gpu_bus_id, gpu_name, used_memory
    --format=                   csv[,noheader][,nounits]
    -mig, --multi-instance-gpu= Enable (1) or disable (0) MIG mode.
    -r,   --gpu-reset           Reset the GPU(s).
    mig                         -lgi, -lgip, -lgipp, -lci, -cgi LIST [-C], -cci [LIST],
                                -dci, -dgi, with -i, -gi, -ci.
    --fake-*                    Control the fake itself (see e2e/fakesmi/README.md).
`
