package fakesmi

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"syscall"
	"time"
)

// StateEnv names the environment variable holding the state file path.
const StateEnv = "FAKE_NVIDIA_SMI_STATE"

// AllGPUs selects every GPU in the helpers that take a GPU index.
const AllGPUs = -1

// StateVersion is the version of the state file format.
const StateVersion = 1

// maxLog bounds the invocation log kept in the state file.
const maxLog = 500

// State is everything the fake knows about one simulated node. It is stored
// as JSON; see README.md for the format.
type State struct {
	Version int    `json:"version"`
	Seed    string `json:"seed"`
	// Boots counts boots of the simulated node; Reboot increments it.
	Boots int `json:"boots"`
	// DriverUnloaded makes every command fail as if the NVIDIA driver were
	// not loaded (exit 9).
	DriverUnloaded bool `json:"driverUnloaded,omitempty"`
	// AmpereAutoReset models newer drivers on bare metal, which reset an idle
	// Ampere GPU themselves during `-mig`: the change is then immediate.
	// Default false: the change stays pending until `-r` or a reboot.
	AmpereAutoReset bool `json:"ampereAutoReset,omitempty"`
	// LatencyMS delays every nvidia-smi invocation (not --fake-* commands).
	LatencyMS int `json:"latencyMs,omitempty"`
	// Serial counts compute instance creations; it seeds MIG device UUIDs so
	// that a re-created device gets a new UUID, as on real hardware.
	Serial int      `json:"serial,omitempty"`
	GPUs   []*GPU   `json:"gpus"`
	Faults []*Fault `json:"faults,omitempty"`
	// Log records the last invocations (most recent last).
	Log []Invocation `json:"log,omitempty"`
}

// GPU is one simulated GPU.
type GPU struct {
	Index int    `json:"index"`
	Model string `json:"model"`
	// Name overrides the model's product name when set.
	Name       string `json:"name,omitempty"`
	UUID       string `json:"uuid"`
	BusID      string `json:"busId"`
	MIGCurrent bool   `json:"migCurrent"`
	MIGPending bool   `json:"migPending"`
	// ResetUnsupported makes `-r` fail ("not supported", exit 3) and makes
	// an Ampere MIG mode change end pending with the "Not Supported" warning,
	// as in VM passthrough.
	ResetUnsupported bool `json:"resetUnsupported,omitempty"`
	// Lost makes the GPU fall off the bus: commands touching it exit 15.
	// Reboot clears it.
	Lost bool `json:"lost,omitempty"`
	// Holders are named clients keeping the GPU open (device plugin, DCGM,
	// workload pods...). Any holder blocks a reset and a MIG mode change.
	Holders   []string       `json:"holders,omitempty"`
	Processes []Process      `json:"processes,omitempty"`
	Instances []*GPUInstance `json:"gpuInstances,omitempty"`
}

// Process is a compute process listed by --query-compute-apps.
type Process struct {
	PID     int    `json:"pid"`
	Name    string `json:"name"`
	UsedMiB int    `json:"usedMiB"`
	// GI, when set, pins the process to that GPU instance (it then also
	// blocks destroying that instance).
	GI *int `json:"gi,omitempty"`
}

// GPUInstance is a MIG GPU instance.
type GPUInstance struct {
	ID               int                `json:"id"`
	ProfileID        int                `json:"profileId"`
	Start            int                `json:"start"`
	Size             int                `json:"size"`
	ComputeInstances []*ComputeInstance `json:"computeInstances,omitempty"`
}

// ComputeInstance is a MIG compute instance; each one is a MIG device.
type ComputeInstance struct {
	ID        int    `json:"id"`
	ProfileID int    `json:"profileId"`
	Start     int    `json:"start"`
	Size      int    `json:"size"`
	UUID      string `json:"uuid"`
}

// Fault makes matching invocations misbehave.
type Fault struct {
	// Match is a regular expression matched against the arguments joined by
	// single spaces (without the program name), e.g. `^-i 0 -mig 1$` or
	// `mig -cgi`.
	Match string `json:"match"`
	// Remaining is how many more invocations this fault applies to; -1 means
	// forever. The fault is removed when it reaches 0.
	Remaining int `json:"remaining"`
	// Exit is the exit code to return (when not Passthrough).
	Exit   int    `json:"exit,omitempty"`
	Stdout string `json:"stdout,omitempty"`
	Stderr string `json:"stderr,omitempty"`
	// DelayMS is added latency before the invocation answers.
	DelayMS int `json:"delayMs,omitempty"`
	// Passthrough runs the real command after the delay and after printing
	// Stdout/Stderr (use it for pure latency). Exit is then ignored.
	Passthrough bool `json:"passthrough,omitempty"`
}

// Invocation is one entry of the invocation log.
type Invocation struct {
	Time  string   `json:"time"`
	Args  []string `json:"args"`
	Exit  int      `json:"exit"`
	Fault bool     `json:"fault,omitempty"`
}

// NewState builds a node with gpus GPUs of one model and random UUIDs.
func NewState(model string, gpus int) (*State, error) {
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		return nil, err
	}
	return NewStateSeeded(model, gpus, hex.EncodeToString(b[:]))
}

// NewStateSeeded is NewState with UUIDs derived from seed (use the node
// name for stable, cluster-unique UUIDs).
func NewStateSeeded(model string, gpus int, seed string) (*State, error) {
	if gpus < 0 || gpus > 64 {
		return nil, fmt.Errorf("fakesmi: bad GPU count %d", gpus)
	}
	s := &State{Version: StateVersion, Seed: seed, Boots: 1}
	for i := 0; i < gpus; i++ {
		if err := s.AddGPU(model); err != nil {
			return nil, err
		}
	}
	return s, nil
}

var dgxBuses = []string{"07", "0F", "47", "4E", "87", "90", "B7", "BD"}

// AddGPU appends a GPU of the given model (nodes may mix models).
func (s *State) AddGPU(model string) error {
	m, err := LookupModel(model)
	if err != nil {
		return err
	}
	i := len(s.GPUs)
	bus := fmt.Sprintf("%02X", 0xC1+i-len(dgxBuses))
	if i < len(dgxBuses) {
		bus = dgxBuses[i]
	}
	s.GPUs = append(s.GPUs, &GPU{
		Index: i,
		Model: m.Key,
		UUID:  "GPU-" + hashUUID(false, "gpu", s.Seed, fmt.Sprint(i)),
		BusID: "00000000:" + bus + ":00.0",
	})
	return nil
}

// hashUUID formats a SHA-1 of parts as a UUID; v5 sets the version and
// variant bits as a name-based UUID (MIG device UUIDs look like that).
func hashUUID(v5 bool, parts ...string) string {
	h := sha1.New()
	for _, p := range parts {
		h.Write([]byte(p))
		h.Write([]byte{0})
	}
	b := h.Sum(nil)[:16]
	if v5 {
		b[6] = b[6]&0x0f | 0x50
		b[8] = b[8]&0x3f | 0x80
	}
	x := hex.EncodeToString(b)
	return x[0:8] + "-" + x[8:12] + "-" + x[12:16] + "-" + x[16:20] + "-" + x[20:32]
}

// model returns the GPU's model.
func (g *GPU) model() *Model {
	m, err := LookupModel(g.Model)
	if err != nil {
		// Unknown models in a hand-edited state behave as non-MIG GPUs.
		return &Model{Key: g.Model, Name: g.Model, DeviceID: "0x00000000", Arch: NoMIG}
	}
	return m
}

// ProductName is the name nvidia-smi prints.
func (g *GPU) ProductName() string {
	if g.Name != "" {
		return g.Name
	}
	return g.model().Name
}

// users lists what keeps the GPU busy: holders and compute processes.
func (g *GPU) users() []string {
	var u []string
	u = append(u, g.Holders...)
	for _, p := range g.Processes {
		u = append(u, fmt.Sprintf("pid %d (%s)", p.PID, p.Name))
	}
	return u
}

// InUse tells whether any holder or compute process uses the GPU.
func (g *GPU) InUse() bool { return len(g.Holders) > 0 || len(g.Processes) > 0 }

// selectGPUs resolves AllGPUs or one index.
func (s *State) selectGPUs(gpu int) ([]*GPU, error) {
	if gpu == AllGPUs {
		return s.GPUs, nil
	}
	if gpu < 0 || gpu >= len(s.GPUs) {
		return nil, fmt.Errorf("fakesmi: no GPU %d (node has %d)", gpu, len(s.GPUs))
	}
	return []*GPU{s.GPUs[gpu]}, nil
}

// AddHolder marks GPU gpu (or AllGPUs) as held by the named client.
func (s *State) AddHolder(gpu int, name string) error {
	gs, err := s.selectGPUs(gpu)
	if err != nil {
		return err
	}
	for _, g := range gs {
		if !slices.Contains(g.Holders, name) {
			g.Holders = append(g.Holders, name)
		}
	}
	return nil
}

// RemoveHolder drops the named holder from GPU gpu (or AllGPUs).
func (s *State) RemoveHolder(gpu int, name string) error {
	gs, err := s.selectGPUs(gpu)
	if err != nil {
		return err
	}
	for _, g := range gs {
		g.Holders = slices.DeleteFunc(g.Holders, func(h string) bool { return h == name })
	}
	return nil
}

// AddProcess adds a compute process on GPU gpu.
func (s *State) AddProcess(gpu int, p Process) error {
	gs, err := s.selectGPUs(gpu)
	if err != nil {
		return err
	}
	if gpu == AllGPUs {
		return errors.New("fakesmi: a process runs on one GPU")
	}
	if p.Name == "" {
		p.Name = "python3"
	}
	gs[0].Processes = append(gs[0].Processes, p)
	return nil
}

// RemoveProcess removes the process with that pid from every GPU.
func (s *State) RemoveProcess(pid int) {
	for _, g := range s.GPUs {
		g.Processes = slices.DeleteFunc(g.Processes, func(p Process) bool { return p.PID == pid })
	}
}

// SetResetUnsupported marks GPU gpu (or AllGPUs) as unable to reset.
func (s *State) SetResetUnsupported(gpu int, v bool) error {
	gs, err := s.selectGPUs(gpu)
	if err != nil {
		return err
	}
	for _, g := range gs {
		g.ResetUnsupported = v
	}
	return nil
}

// SetLost makes GPU gpu (or AllGPUs) fall off the bus (exit 15) until reboot.
func (s *State) SetLost(gpu int, v bool) error {
	gs, err := s.selectGPUs(gpu)
	if err != nil {
		return err
	}
	for _, g := range gs {
		g.Lost = v
	}
	return nil
}

// InjectFault adds a fault. A Remaining of 0 means once.
func (s *State) InjectFault(f Fault) error {
	if _, err := regexp.Compile(f.Match); err != nil {
		return fmt.Errorf("fakesmi: bad fault pattern: %w", err)
	}
	if f.Remaining == 0 {
		f.Remaining = 1
	}
	s.Faults = append(s.Faults, &f)
	return nil
}

// ClearFaults removes every fault.
func (s *State) ClearFaults() { s.Faults = nil }

// takeFault returns the first fault matching args and uses it up once.
func (s *State) takeFault(args []string) *Fault {
	line := joinArgs(args)
	for i, f := range s.Faults {
		re, err := regexp.Compile(f.Match)
		if err != nil || !re.MatchString(line) {
			continue
		}
		hit := *f
		if f.Remaining > 0 {
			f.Remaining--
			if f.Remaining == 0 {
				s.Faults = append(s.Faults[:i], s.Faults[i+1:]...)
			}
		}
		return &hit
	}
	return nil
}

func joinArgs(args []string) string {
	var b bytes.Buffer
	for i, a := range args {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(a)
	}
	return b.String()
}

// Reboot simulates a node reboot: every GPU and compute instance is lost,
// compute processes die, a lost GPU comes back; Ampere GPUs boot with their
// pending MIG mode (it is kept in the InfoROM), Hopper GPUs boot with MIG
// disabled. Holders are kept: they model pods, which the node simulator owns.
func (s *State) Reboot() {
	s.Boots++
	for _, g := range s.GPUs {
		g.Lost = false
	}
	s.ReloadDriver()
}

// ReloadDriver simulates the driver loaded again after an unload (its
// container restarted) without a reboot: the boot is the same, but the
// GPUs come back as from a reset. Hopper GPUs lose MIG mode (FACTS: it does
// not survive a reboot or a driver reload), Ampere ones take their pending
// mode, and no GPU or compute instance survives: they live in the driver,
// which a reset also clears. Processes died with the driver.
func (s *State) ReloadDriver() {
	for _, g := range s.GPUs {
		g.Instances = nil
		g.Processes = nil
		switch g.model().Arch {
		case Ampere:
			g.MIGCurrent = g.MIGPending
		default:
			g.MIGCurrent, g.MIGPending = false, false
		}
	}
}

// record appends an invocation to the log.
func (s *State) record(args []string, exit int, fault bool) {
	a := append([]string{}, args...)
	s.Log = append(s.Log, Invocation{Time: time.Now().UTC().Format(time.RFC3339Nano), Args: a, Exit: exit, Fault: fault})
	if len(s.Log) > maxLog {
		s.Log = append([]Invocation{}, s.Log[len(s.Log)-maxLog:]...)
	}
}

// normalize fixes up a state read from disk.
func (s *State) normalize() {
	for i, g := range s.GPUs {
		g.Index = i
		sort.Slice(g.Instances, func(a, b int) bool { return g.Instances[a].ID < g.Instances[b].ID })
	}
}

// ErrNoState is returned by Load when the state file does not exist.
var ErrNoState = errors.New("fakesmi: state file does not exist")

// Load reads a state file. Writers replace the file atomically, so Load needs
// no lock; use Update to change a state.
func Load(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, ErrNoState
	}
	if err != nil {
		return nil, err
	}
	return decode(data)
}

func decode(data []byte) (*State, error) {
	var s State
	if err := json.Unmarshal(data, &s); err != nil {
		return nil, fmt.Errorf("fakesmi: corrupt state: %w", err)
	}
	if s.Version != StateVersion {
		return nil, fmt.Errorf("fakesmi: state version %d, want %d", s.Version, StateVersion)
	}
	s.normalize()
	return &s, nil
}

// Save writes s to path atomically, under the state lock. It overwrites
// whatever is there: use it to create a state, and Update to change one.
func Save(path string, s *State) error {
	unlock, err := lock(path)
	if err != nil {
		return err
	}
	defer unlock()
	return write(path, s)
}

func write(path string, s *State) error {
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	tmp, err := os.CreateTemp(filepath.Dir(path), ".fakesmi-*")
	if err != nil {
		return err
	}
	name := tmp.Name()
	_, err = tmp.Write(data)
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Chmod(name, 0o644)
	}
	if err == nil {
		err = os.Rename(name, path)
	}
	if err != nil {
		os.Remove(name)
	}
	return err
}

// lock takes the exclusive flock on path + ".lock".
func lock(path string) (func(), error) {
	f, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if err != syscall.EINTR {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() {
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

// Update loads the state under an exclusive lock, calls fn, and saves the
// result if fn returns nil and changed anything. Concurrent Updates and fake
// nvidia-smi invocations on the same path are serialized.
func Update(path string, fn func(*State) error) error {
	unlock, err := lock(path)
	if err != nil {
		return err
	}
	defer unlock()
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return ErrNoState
	}
	if err != nil {
		return err
	}
	s, err := decode(data)
	if err != nil {
		return err
	}
	if err := fn(s); err != nil {
		return err
	}
	out, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if bytes.Equal(append(out, '\n'), data) {
		return nil
	}
	return write(path, s)
}

// Convenience wrappers for node simulators: each is one Update.

// AddHolderFile adds a holder in the state file at path.
func AddHolderFile(path string, gpu int, name string) error {
	return Update(path, func(s *State) error { return s.AddHolder(gpu, name) })
}

// RemoveHolderFile removes a holder in the state file at path.
func RemoveHolderFile(path string, gpu int, name string) error {
	return Update(path, func(s *State) error { return s.RemoveHolder(gpu, name) })
}

// RebootFile reboots the node whose state is at path.
func RebootFile(path string) error {
	return Update(path, func(s *State) error { s.Reboot(); return nil })
}

// InjectFaultFile adds a fault to the state file at path.
func InjectFaultFile(path string, f Fault) error {
	return Update(path, func(s *State) error { return s.InjectFault(f) })
}
