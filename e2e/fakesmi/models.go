package fakesmi

import (
	"fmt"
	"sort"
	"strings"
)

// Arch is a GPU architecture family; it decides the MIG mode rules.
type Arch string

const (
	// Ampere (A100, A30): a MIG mode change needs a GPU reset and stays
	// pending until one happens; the mode persists across reboots.
	Ampere Arch = "ampere"
	// Hopper (H100, H200): a MIG mode change is immediate when the GPU is not
	// in use; the mode is lost on reboot.
	Hopper Arch = "hopper"
	// NoMIG covers GPUs without MIG support (L40S, T4).
	NoMIG Arch = "none"
)

// GIProfile is one GPU instance profile of a model: what `mig -lgip` lists
// and `mig -lgipp` places.
type GIProfile struct {
	ID     int     // NVIDIA profile ID (19 for 1g.*, 14 for 2g.*, ...)
	Name   string  // e.g. "1g.10gb" (printed as "MIG 1g.10gb")
	Slices int     // compute slices (the "Ng" part)
	Size   int     // memory slices occupied: the placement size
	Starts []int   // valid placement starts
	Max    int     // total instances of this profile that fit an empty GPU
	MemGiB float64 // as printed by -lgip
	SM     int
	DEC    int
	ENC    int
	CE     int
	JPEG   int
	OFA    int
}

// Model describes one GPU product.
type Model struct {
	Key       string // canonical key used in the state file
	Name      string // product name as nvidia-smi prints it
	DeviceID  string // pci.device_id, e.g. 0x20B010DE
	MemoryMiB int    // memory.total
	Arch      Arch
	Profiles  []GIProfile // in -lgip order; empty when the GPU has no MIG
}

// MIGCapable tells whether the model supports MIG.
func (m *Model) MIGCapable() bool { return len(m.Profiles) > 0 }

// Profile finds a GPU instance profile by numeric ID or name ("3g.20gb",
// "MIG 3g.20gb"); names are matched case-insensitively.
func (m *Model) Profile(spec string) (*GIProfile, bool) {
	spec = strings.TrimSpace(spec)
	if id, ok := atoiStrict(spec); ok {
		for i := range m.Profiles {
			if m.Profiles[i].ID == id {
				return &m.Profiles[i], true
			}
		}
		return nil, false
	}
	name := strings.TrimPrefix(strings.ToLower(spec), "mig ")
	for i := range m.Profiles {
		if strings.ToLower(m.Profiles[i].Name) == name {
			return &m.Profiles[i], true
		}
	}
	return nil, false
}

// profileByID returns the profile with the given ID or nil.
func (m *Model) profileByID(id int) *GIProfile {
	for i := range m.Profiles {
		if m.Profiles[i].ID == id {
			return &m.Profiles[i]
		}
	}
	return nil
}

func seq(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = i
	}
	return s
}

// eightSlice builds the profile table shared by A100 and H100-class GPUs:
// eight memory slices, seven compute slices. names are the memory parts of
// 1g, 1g(double memory), 2g, 3g/4g and 7g; mem the GiB column; engine counts
// per row {SM, DEC, ENC, CE, JPEG, OFA}.
func eightSlice(n1, n1x2, n2, n34, n7 string, mem [7]float64, eng [7][6]int) []GIProfile {
	mk := func(id int, name string, slices, size int, starts []int, max int, row int) GIProfile {
		e := eng[row]
		return GIProfile{ID: id, Name: name, Slices: slices, Size: size, Starts: starts, Max: max,
			MemGiB: mem[row], SM: e[0], DEC: e[1], ENC: e[2], CE: e[3], JPEG: e[4], OFA: e[5]}
	}
	return []GIProfile{
		mk(19, "1g."+n1, 1, 1, seq(7), 7, 0),
		mk(20, "1g."+n1+"+me", 1, 1, seq(7), 1, 1),
		mk(15, "1g."+n1x2, 1, 2, []int{0, 2, 4, 6}, 4, 2),
		mk(14, "2g."+n2, 2, 2, []int{0, 2, 4}, 3, 3),
		mk(9, "3g."+n34, 3, 4, []int{0, 4}, 2, 4),
		mk(5, "4g."+n34, 4, 4, []int{0}, 1, 5),
		mk(0, "7g."+n7, 7, 8, []int{0}, 1, 6),
	}
}

var ampereEngines = [7][6]int{
	{14, 0, 0, 1, 0, 0},
	{14, 1, 0, 1, 1, 1},
	{14, 1, 0, 1, 0, 0},
	{28, 1, 0, 2, 0, 0},
	{42, 2, 0, 3, 0, 0},
	{56, 2, 0, 4, 0, 0},
	{98, 5, 0, 7, 1, 1},
}

var hopperEngines = [7][6]int{
	{16, 1, 0, 1, 1, 0},
	{16, 1, 0, 1, 1, 1},
	{26, 1, 0, 1, 1, 0},
	{32, 2, 0, 2, 2, 0},
	{60, 3, 0, 3, 3, 0},
	{64, 4, 0, 4, 4, 0},
	{132, 7, 0, 8, 7, 1},
}

var models = map[string]*Model{
	"A100-SXM4-40GB": {
		Key: "A100-SXM4-40GB", Name: "NVIDIA A100-SXM4-40GB", DeviceID: "0x20B010DE",
		MemoryMiB: 40960, Arch: Ampere,
		Profiles: eightSlice("5gb", "10gb", "10gb", "20gb", "40gb",
			[7]float64{4.75, 4.75, 9.62, 9.62, 19.50, 19.50, 39.25}, ampereEngines),
	},
	"A100-SXM4-80GB": {
		Key: "A100-SXM4-80GB", Name: "NVIDIA A100-SXM4-80GB", DeviceID: "0x20B210DE",
		MemoryMiB: 81920, Arch: Ampere,
		Profiles: eightSlice("10gb", "20gb", "20gb", "40gb", "80gb",
			[7]float64{9.50, 9.50, 19.50, 19.50, 39.25, 39.25, 78.75}, ampereEngines),
	},
	"H100-80GB": {
		Key: "H100-80GB", Name: "NVIDIA H100 80GB HBM3", DeviceID: "0x233010DE",
		MemoryMiB: 81559, Arch: Hopper,
		Profiles: eightSlice("10gb", "20gb", "20gb", "40gb", "80gb",
			[7]float64{9.75, 9.75, 19.62, 19.62, 39.50, 39.50, 79.25}, hopperEngines),
	},
	"H200": {
		Key: "H200", Name: "NVIDIA H200", DeviceID: "0x233510DE",
		MemoryMiB: 143771, Arch: Hopper,
		Profiles: eightSlice("18gb", "35gb", "35gb", "71gb", "141gb",
			[7]float64{16.00, 16.00, 32.25, 32.25, 69.50, 69.50, 139.00}, hopperEngines),
	},
	"L40S": {
		Key: "L40S", Name: "NVIDIA L40S", DeviceID: "0x26B910DE",
		MemoryMiB: 46068, Arch: NoMIG,
	},
	"T4": {
		Key: "T4", Name: "Tesla T4", DeviceID: "0x1EB810DE",
		MemoryMiB: 15360, Arch: NoMIG,
	},
}

var modelAliases = map[string]string{
	"A100-40GB":      "A100-SXM4-40GB",
	"A100-80GB":      "A100-SXM4-80GB",
	"H100":           "H100-80GB",
	"H100-SXM5-80GB": "H100-80GB",
	"H100-80GB-HBM3": "H100-80GB",
	"H200-141GB":     "H200",
	"H200-SXM-141GB": "H200",
}

// LookupModel finds a model by key or alias, case-insensitively.
func LookupModel(key string) (*Model, error) {
	k := strings.ToUpper(strings.TrimSpace(key))
	if a, ok := modelAliases[k]; ok {
		k = a
	}
	if m, ok := models[k]; ok {
		return m, nil
	}
	return nil, fmt.Errorf("fakesmi: unknown GPU model %q (known: %s)", key, strings.Join(ModelKeys(), ", "))
}

// ModelKeys lists the canonical model keys.
func ModelKeys() []string {
	keys := make([]string, 0, len(models))
	for k := range models {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// atoiStrict parses a non-negative decimal integer made only of digits.
func atoiStrict(s string) (int, bool) {
	if s == "" || len(s) > 9 {
		return 0, false
	}
	n := 0
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}
