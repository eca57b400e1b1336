// Package gpus describes the GPU models a simulated node can carry, as the
// GPU Operator's feature discovery would label them.
package gpus

// Model is one GPU model.
type Model struct {
	Name      string // the --gpu-model name
	Product   string // nvidia.com/gpu.product (GFD: the NVML name, spaces as dashes)
	MemoryMiB int    // nvidia.com/gpu.memory
	Family    string // nvidia.com/gpu.family
	Major     int    // nvidia.com/gpu.compute.major
	Minor     int
	DeviceID  string // PCI device id as mig-parted's device-filter writes it
	// MIGProfiles maps GPU-instance profile name to the maximum count;
	// nil for a model without MIG.
	MIGProfiles map[string]int
}

// MIGCapable tells whether the model supports MIG.
func (m *Model) MIGCapable() bool { return m.MIGProfiles != nil }

var a100_80 = map[string]int{"1g.10gb": 7, "1g.20gb": 4, "2g.20gb": 3, "3g.40gb": 2, "4g.40gb": 1, "7g.80gb": 1}

// Models in the order "mixed" cycles them.
var Models = []Model{
	{Name: "A100-SXM4-40GB", Product: "NVIDIA-A100-SXM4-40GB", MemoryMiB: 40960, Family: "ampere", Major: 8, Minor: 0, DeviceID: "0x20B010DE",
		MIGProfiles: map[string]int{"1g.5gb": 7, "1g.10gb": 4, "2g.10gb": 3, "3g.20gb": 2, "4g.20gb": 1, "7g.40gb": 1}},
	{Name: "A100-SXM4-80GB", Product: "NVIDIA-A100-SXM4-80GB", MemoryMiB: 81920, Family: "ampere", Major: 8, Minor: 0, DeviceID: "0x20B210DE",
		MIGProfiles: a100_80},
	{Name: "H100-80GB", Product: "NVIDIA-H100-80GB-HBM3", MemoryMiB: 81559, Family: "hopper", Major: 9, Minor: 0, DeviceID: "0x233010DE",
		MIGProfiles: a100_80},
	{Name: "H200", Product: "NVIDIA-H200", MemoryMiB: 143771, Family: "hopper", Major: 9, Minor: 0, DeviceID: "0x233510DE",
		MIGProfiles: map[string]int{"1g.18gb": 7, "1g.35gb": 4, "2g.35gb": 3, "3g.71gb": 2, "4g.71gb": 1, "7g.141gb": 1}},
	// No MIG: nvidia-smi prints [N/A] for its MIG fields. Not in "mixed".
	{Name: "L40S", Product: "NVIDIA-L40S", MemoryMiB: 46068, Family: "ada-lovelace", Major: 8, Minor: 9, DeviceID: "0x26B910DE"},
}

// ModelNames lists the accepted --gpu-model values (besides "mixed").
func ModelNames() []string {
	var out []string
	for _, m := range Models {
		out = append(out, m.Name)
	}
	return out
}

// Lookup finds a model by name.
func Lookup(name string) *Model {
	for i := range Models {
		if Models[i].Name == name {
			return &Models[i]
		}
	}
	return nil
}

// ForNode picks the model of the i-th node (0-based) for a --gpu-model value.
func ForNode(spec string, i int) *Model {
	if spec == "mixed" {
		var mig []*Model
		for k := range Models {
			if Models[k].MIGCapable() {
				mig = append(mig, &Models[k])
			}
		}
		return mig[i%len(mig)]
	}
	return Lookup(spec)
}
