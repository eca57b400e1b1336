package fakesmi

import (
	"fmt"
	"sort"
	"strings"
)

// nvErr is an NVML-style failure: the reason nvidia-smi prints after a colon
// and the exit code it returns.
type nvErr struct {
	Reason string
	Code   int
}

func (e *nvErr) Error() string { return e.Reason }

// Exit codes, from the nvidia-smi manual.
const (
	ExitOK           = 0
	ExitInvalidArg   = 2
	ExitNotSupported = 3
	ExitNoPermission = 4
	ExitNotFound     = 6
	ExitNoDriver     = 9
	ExitNoNVML       = 12
	ExitGPULost      = 15
	ExitOther        = 255
)

var (
	errInsufficient = &nvErr{"Insufficient Resources", ExitOther}
	errInvalidArg   = &nvErr{"Invalid Argument", ExitInvalidArg}
	errNotFound     = &nvErr{"Not Found", ExitNotFound}
	errInUse        = &nvErr{"In use by another client", ExitOther}
	errNotSupported = &nvErr{"Not Supported", ExitNotSupported}
)

// memSlices is the number of memory slices (placement slots) of every
// MIG-capable model modelled here.
const memSlices = 8

type occupancy [memSlices]bool

func (g *GPU) occupancy() occupancy {
	var o occupancy
	for _, gi := range g.Instances {
		for i := gi.Start; i < gi.Start+gi.Size && i < memSlices; i++ {
			o[i] = true
		}
	}
	return o
}

func (o *occupancy) fits(start, size int) bool {
	if start < 0 || start+size > memSlices {
		return false
	}
	for i := start; i < start+size; i++ {
		if o[i] {
			return false
		}
	}
	return true
}

func (o *occupancy) take(start, size int) {
	for i := start; i < start+size; i++ {
		o[i] = true
	}
}

func (g *GPU) countProfile(id int) int {
	n := 0
	for _, gi := range g.Instances {
		if gi.ProfileID == id {
			n++
		}
	}
	return n
}

// freeCount is how many more instances of p fit (the "Free" of -lgip): the
// free valid placements (same-size aligned placements never overlap each
// other), capped by the profile's total.
func freeCount(o occupancy, p *GIProfile, existing int) int {
	n := 0
	for _, st := range p.Starts {
		if o.fits(st, p.Size) {
			n++
		}
	}
	if left := p.Max - existing; n > left {
		n = left
	}
	if n < 0 {
		n = 0
	}
	return n
}

// FreeCount reports the -lgip "Free" number of profile p on g.
func (g *GPU) FreeCount(p *GIProfile) int {
	return freeCount(g.occupancy(), p, g.countProfile(p.ID))
}

// capacityScore rates what would remain free: the sum over profiles of free
// instances weighted by their size. Automatic placement maximizes it, which
// reproduces NVIDIA's documented examples (first 1g at 6:1, then 2g at 4:2,
// 4g at 0:4; a 3g on an empty GPU at 4:4).
func (g *GPU) capacityScore(o occupancy, extra *GIProfile) int {
	score := 0
	m := g.model()
	for i := range m.Profiles {
		p := &m.Profiles[i]
		ex := g.countProfile(p.ID)
		if extra != nil && extra.ID == p.ID {
			ex++
		}
		score += freeCount(o, p, ex) * p.Size
	}
	return score
}

// giID derives the GPU instance ID from its placement, as NVIDIA's driver
// numbers a binary tree of slots: 7g 0; half 1-2; quarter 3-6; eighth 7-14.
func giID(size, start int) int {
	switch size {
	case 8:
		return 0
	case 4:
		return 1 + start/4
	case 2:
		return 3 + start/2
	default:
		return 7 + start
	}
}

// createGI creates a GPU instance of profile p at start (-1: automatic).
func (g *GPU) createGI(p *GIProfile, start int) (*GPUInstance, *nvErr) {
	o := g.occupancy()
	if start >= 0 {
		valid := false
		for _, st := range p.Starts {
			valid = valid || st == start
		}
		if !valid {
			return nil, errInvalidArg
		}
	}
	if g.countProfile(p.ID) >= p.Max {
		return nil, errInsufficient
	}
	if start < 0 {
		best, bestScore := -1, -1
		for _, st := range p.Starts {
			if !o.fits(st, p.Size) {
				continue
			}
			oo := o
			oo.take(st, p.Size)
			if sc := g.capacityScore(oo, p); sc > bestScore {
				best, bestScore = st, sc
			}
		}
		if best < 0 {
			return nil, errInsufficient
		}
		start = best
	} else if !o.fits(start, p.Size) {
		return nil, errInsufficient
	}
	gi := &GPUInstance{ID: giID(p.Size, start), ProfileID: p.ID, Start: start, Size: p.Size}
	g.Instances = append(g.Instances, gi)
	sort.Slice(g.Instances, func(a, b int) bool { return g.Instances[a].ID < g.Instances[b].ID })
	return gi, nil
}

func (g *GPU) findGI(id int) *GPUInstance {
	for _, gi := range g.Instances {
		if gi.ID == id {
			return gi
		}
	}
	return nil
}

// Compute instance profiles: NVML's profile IDs by slice count.
var ciProfileIDs = map[int]int{1: 0, 2: 1, 3: 2, 4: 3, 7: 4, 8: 5, 6: 6}

// ciSizeByID is the inverse of ciProfileIDs.
func ciSizeByID(id int) (int, bool) {
	for s, i := range ciProfileIDs {
		if i == id {
			return s, true
		}
	}
	return 0, false
}

// ciName is the MIG device name of a compute instance of size slices in a
// GPU instance of profile p: "3g.20gb" for a full one, "1c.3g.20gb" else.
func ciName(p *GIProfile, size int) string {
	if size == p.Slices {
		return p.Name
	}
	return fmt.Sprintf("%dc.%s", size, p.Name)
}

// resolveCIProfile reads a -cci profile spec (CI profile ID or name) for a
// GPU instance of profile p and returns the compute slice count.
func resolveCIProfile(p *GIProfile, spec string) (int, bool) {
	spec = strings.TrimPrefix(strings.ToLower(strings.TrimSpace(spec)), "mig ")
	size := 0
	if id, ok := atoiStrict(spec); ok {
		s, ok := ciSizeByID(id)
		if !ok {
			return 0, false
		}
		size = s
	} else if spec == strings.ToLower(p.Name) {
		size = p.Slices
	} else {
		var n int
		var rest string
		if k, err := fmt.Sscanf(spec, "%dc.%s", &n, &rest); err != nil || k != 2 || rest != strings.ToLower(p.Name) {
			return 0, false
		}
		size = n
	}
	if size < 1 || size > p.Slices {
		return 0, false
	}
	if _, ok := ciProfileIDs[size]; !ok {
		return 0, false
	}
	return size, true
}

// createCI creates a compute instance of size compute slices in gi.
func (g *GPU) createCI(s *State, gi *GPUInstance, size int) (*ComputeInstance, *nvErr) {
	p := g.model().profileByID(gi.ProfileID)
	if p == nil || size < 1 || size > p.Slices {
		return nil, errInvalidArg
	}
	var used [8]bool
	for _, ci := range gi.ComputeInstances {
		for i := ci.Start; i < ci.Start+ci.Size && i < len(used); i++ {
			used[i] = true
		}
	}
	start := -1
	for st := 0; st+size <= p.Slices; st += size {
		free := true
		for i := st; i < st+size; i++ {
			free = free && !used[i]
		}
		if free {
			start = st
			break
		}
	}
	if start < 0 {
		return nil, errInsufficient
	}
	id := 0
	for taken := true; taken; {
		taken = false
		for _, ci := range gi.ComputeInstances {
			if ci.ID == id {
				taken = true
				id++
				break
			}
		}
	}
	s.Serial++
	ci := &ComputeInstance{
		ID: id, ProfileID: ciProfileIDs[size], Start: start, Size: size,
		UUID: "MIG-" + hashUUID(true, g.UUID, fmt.Sprint(gi.ID), fmt.Sprint(id), fmt.Sprint(s.Serial)),
	}
	gi.ComputeInstances = append(gi.ComputeInstances, ci)
	sort.Slice(gi.ComputeInstances, func(a, b int) bool { return gi.ComputeInstances[a].ID < gi.ComputeInstances[b].ID })
	return ci, nil
}

// giBusy tells whether a compute process is pinned to gi.
func (g *GPU) giBusy(gi *GPUInstance) bool {
	for _, p := range g.Processes {
		if p.GI != nil && *p.GI == gi.ID {
			return true
		}
	}
	return false
}

func (g *GPU) destroyCI(gi *GPUInstance, ci *ComputeInstance) *nvErr {
	if g.giBusy(gi) {
		return errInUse
	}
	for i, c := range gi.ComputeInstances {
		if c == ci {
			gi.ComputeInstances = append(gi.ComputeInstances[:i], gi.ComputeInstances[i+1:]...)
			return nil
		}
	}
	return errNotFound
}

func (g *GPU) destroyGI(gi *GPUInstance) *nvErr {
	if len(gi.ComputeInstances) > 0 || g.giBusy(gi) {
		return errInUse
	}
	for i, x := range g.Instances {
		if x == gi {
			g.Instances = append(g.Instances[:i], g.Instances[i+1:]...)
			return nil
		}
	}
	return errNotFound
}

// orderedInstances lists g's GPU instances in nvidia-smi's order: by
// profile (in -lgip order), then by instance ID.
func (g *GPU) orderedInstances() []*GPUInstance {
	m := g.model()
	rank := map[int]int{}
	for i, p := range m.Profiles {
		rank[p.ID] = i
	}
	out := append([]*GPUInstance{}, g.Instances...)
	sort.SliceStable(out, func(a, b int) bool {
		ra, rb := rank[out[a].ProfileID], rank[out[b].ProfileID]
		if ra != rb {
			return ra < rb
		}
		return out[a].ID < out[b].ID
	})
	return out
}

// MIGDevice is a compute instance seen as a device (as -L lists it).
type MIGDevice struct {
	GPU   int
	Index int    // "Device N" on its GPU
	Name  string // e.g. "1g.10gb" or "1c.3g.20gb"
	UUID  string
	GI    int
	CI    int
	// MemMiB is the memory of its GPU instance (what NVML reports for the
	// MIG device, and feature discovery labels).
	MemMiB int
}

// MIGDevices lists g's MIG devices in -L order.
func (g *GPU) MIGDevices() []MIGDevice {
	var out []MIGDevice
	m := g.model()
	for _, gi := range g.orderedInstances() {
		p := m.profileByID(gi.ProfileID)
		if p == nil {
			continue
		}
		for _, ci := range gi.ComputeInstances {
			out = append(out, MIGDevice{GPU: g.Index, Index: len(out), Name: ciName(p, ci.Size), UUID: ci.UUID, GI: gi.ID, CI: ci.ID,
				MemMiB: int(p.MemGiB * 1024)})
		}
	}
	return out
}

// MIGDevices lists the MIG devices of every GPU whose MIG mode is in effect,
// in -L order.
func (s *State) MIGDevices() []MIGDevice {
	var out []MIGDevice
	for _, g := range s.GPUs {
		if g.MIGCurrent {
			out = append(out, g.MIGDevices()...)
		}
	}
	return out
}

// MIGDeviceCounts counts MIG devices by name ("1g.10gb", "1c.3g.20gb"): what
// a device plugin with the mixed strategy would advertise as
// nvidia.com/mig-<name>.
func (s *State) MIGDeviceCounts() map[string]int {
	n := map[string]int{}
	for _, d := range s.MIGDevices() {
		n[d.Name]++
	}
	return n
}

// FullGPUs lists the GPUs usable whole (MIG not in effect), as a device
// plugin in full or vgpu mode would see them.
func (s *State) FullGPUs() []*GPU {
	var out []*GPU
	for _, g := range s.GPUs {
		if !g.MIGCurrent && !g.Lost {
			out = append(out, g)
		}
	}
	return out
}
