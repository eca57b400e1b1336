package fakesmi

import (
	"bytes"
	"fmt"
	"strings"
)

type migOpts struct {
	ids    string
	hasIDs bool
	action string
	list   *string // the value of -cgi / -cci
	gi     *string
	ci     *string
	defCI  bool
}

var migActions = map[string]string{
	"-lgi": "lgi", "--list-gpu-instances": "lgi",
	"-lgip": "lgip", "--list-gpu-instance-profiles": "lgip",
	"-lgipp": "lgipp", "--list-gpu-instance-possible-placements": "lgipp",
	"-lci": "lci", "--list-compute-instances": "lci",
	"-cgi": "cgi", "--create-gpu-instance": "cgi",
	"-cci": "cci", "--create-compute-instance": "cci",
	"-dci": "dci", "--destroy-compute-instance": "dci",
	"-dgi": "dgi", "--destroy-gpu-instance": "dgi",
}

func runMIG(s *State, args []string, out *bytes.Buffer) int {
	var o migOpts
	a := &argv{args: args}
	for {
		raw, ok := a.next()
		if !ok {
			break
		}
		opt, att := splitOpt(raw)
		if act, ok := migActions[opt]; ok {
			if o.action != "" {
				return invalidArgs(out)
			}
			o.action = act
			switch act {
			case "cgi":
				v, ok := a.value(opt, att)
				if !ok {
					return invalidArgs(out)
				}
				o.list = &v
			case "cci":
				// The profile list is optional.
				if att != nil {
					o.list = att
				} else if a.i < len(a.args) && !strings.HasPrefix(a.args[a.i], "-") {
					v, _ := a.next()
					o.list = &v
				}
			}
			continue
		}
		switch opt {
		case "-i", "--id":
			v, ok := a.value(opt, att)
			if !ok {
				return invalidArgs(out)
			}
			o.ids, o.hasIDs = v, true
		case "-gi", "--gpu-instance-id":
			v, ok := a.value(opt, att)
			if !ok {
				return invalidArgs(out)
			}
			o.gi = &v
		case "-ci", "--compute-instance-id":
			v, ok := a.value(opt, att)
			if !ok {
				return invalidArgs(out)
			}
			o.ci = &v
		case "-C", "--default-compute-instance":
			o.defCI = true
		default:
			return invalidArgs(out)
		}
	}
	if o.action == "" || (o.defCI && o.action != "cgi") || (o.ci != nil && o.action != "dci" && o.action != "lci") {
		return invalidArgs(out)
	}
	gis, ok := parseIDList(o.gi)
	cis, ok2 := parseIDList(o.ci)
	if !ok || !ok2 {
		return invalidArgs(out)
	}
	sel, code := selectGPUs(s, o.ids, o.hasIDs, out)
	if code != ExitOK {
		return code
	}
	if code := checkLost(sel, out); code != ExitOK {
		return code
	}
	var gpus []*GPU
	capable := false
	for _, g := range sel {
		capable = capable || g.model().MIGCapable()
		if g.model().MIGCapable() && g.MIGCurrent {
			gpus = append(gpus, g)
		}
	}
	if !capable {
		out.WriteString(msgNoMIGSupport)
		return ExitNotFound
	}
	if len(gpus) == 0 {
		out.WriteString(msgNoMIGEnabled)
		return ExitNotFound
	}
	switch o.action {
	case "lgip":
		return listProfiles(gpus, out)
	case "lgipp":
		return listPlacements(gpus, out)
	case "lgi":
		return listGIs(gpus, gis, out)
	case "lci":
		return listCIs(gpus, gis, cis, out)
	case "cgi":
		return createGIs(s, gpus, *o.list, o.defCI, out)
	case "cci":
		return createCIs(s, gpus, o.list, gis, out)
	case "dci":
		return destroyCIs(gpus, gis, cis, out)
	case "dgi":
		return destroyGIs(gpus, gis, out)
	}
	return invalidArgs(out)
}

// parseIDList reads "1,2,3"; nil means no filter.
func parseIDList(v *string) (map[int]bool, bool) {
	if v == nil {
		return nil, true
	}
	ids := map[int]bool{}
	for _, t := range strings.Split(*v, ",") {
		n, ok := atoiStrict(strings.TrimSpace(t))
		if !ok {
			return nil, false
		}
		ids[n] = true
	}
	return ids, true
}

func boxLine(width int, fill byte) string {
	return "+" + strings.Repeat(string(fill), width-2) + "+\n"
}

func boxText(width int, text string) string {
	return "|" + text + strings.Repeat(" ", max(0, width-2-len(text))) + "|\n"
}

// -lgip: the newer drivers' layout (81 columns), as in FACTS.md.
const lgipWidth = 81

func listProfiles(gpus []*GPU, out *bytes.Buffer) int {
	out.WriteString(boxLine(lgipWidth, '-'))
	out.WriteString(boxText(lgipWidth, " GPU instance profiles:"))
	out.WriteString("| GPU   Name               ID    Instances   Memory     P2P    SM    DEC   ENC  |\n")
	out.WriteString("|                                Free/Total   GiB              CE    JPEG  OFA  |\n")
	out.WriteString("|" + strings.Repeat("=", lgipWidth-2) + "|\n")
	for _, g := range gpus {
		m := g.model()
		for i := range m.Profiles {
			p := &m.Profiles[i]
			fmt.Fprintf(out, "|%4d  %-19s%3d%6d/%-8d %-11s%-3s%6d%6d%6d   |\n",
				g.Index, "MIG "+p.Name, p.ID, g.FreeCount(p), p.Max, fmt.Sprintf("%.2f", p.MemGiB), "No", p.SM, p.DEC, p.ENC)
			fmt.Fprintf(out, "|%58s%6d%6d%6d   |\n", "", p.CE, p.JPEG, p.OFA)
			out.WriteString(boxLine(lgipWidth, '-'))
		}
	}
	return ExitOK
}

func listPlacements(gpus []*GPU, out *bytes.Buffer) int {
	for _, g := range gpus {
		m := g.model()
		for _, p := range m.Profiles {
			st := make([]string, len(p.Starts))
			for i, v := range p.Starts {
				st[i] = fmt.Sprint(v)
			}
			fmt.Fprintf(out, "GPU %2d Profile ID %2d Placements: {%s}:%d\n", g.Index, p.ID, strings.Join(st, ","), p.Size)
		}
	}
	return ExitOK
}

// -lgi: the newer drivers' layout (59 columns).
const lgiWidth = 59

func listGIs(gpus []*GPU, gis map[int]bool, out *bytes.Buffer) int {
	var rows []string
	for _, g := range gpus {
		m := g.model()
		for _, gi := range g.orderedInstances() {
			if gis != nil && !gis[gi.ID] {
				continue
			}
			name := "MIG ?"
			if p := m.profileByID(gi.ProfileID); p != nil {
				name = "MIG " + p.Name
			}
			rows = append(rows, fmt.Sprintf("|%4d  %-20s%4d%9d%11d:%-6d|\n", g.Index, name, gi.ProfileID, gi.ID, gi.Start, gi.Size))
		}
	}
	if len(rows) == 0 {
		out.WriteString("No GPU instances found: Not Found\n")
		return ExitNotFound
	}
	out.WriteString(boxLine(lgiWidth, '-'))
	out.WriteString(boxText(lgiWidth, " GPU instances:"))
	out.WriteString("| GPU   Name               Profile  Instance   Placement  |\n")
	out.WriteString("|                            ID       ID       Start:Size |\n")
	out.WriteString("|" + strings.Repeat("=", lgiWidth-2) + "|\n")
	for _, r := range rows {
		out.WriteString(r)
		out.WriteString(boxLine(lgiWidth, '-'))
	}
	return ExitOK
}

// -lci: the older layout widened like -lgi (72 columns); unconfirmed.
const lciWidth = 72

func listCIs(gpus []*GPU, gis, cis map[int]bool, out *bytes.Buffer) int {
	var rows []string
	for _, g := range gpus {
		m := g.model()
		for _, gi := range g.orderedInstances() {
			if gis != nil && !gis[gi.ID] {
				continue
			}
			p := m.profileByID(gi.ProfileID)
			if p == nil {
				continue
			}
			for _, ci := range gi.ComputeInstances {
				if cis != nil && !cis[ci.ID] {
					continue
				}
				rows = append(rows, fmt.Sprintf("|%4d%7d       %-20s%4d%10d%11d:%-6d|\n",
					g.Index, gi.ID, "MIG "+ciName(p, ci.Size), ci.ProfileID, ci.ID, ci.Start, ci.Size))
			}
		}
	}
	if len(rows) == 0 {
		out.WriteString("No compute instances found: Not Found\n")
		return ExitNotFound
	}
	out.WriteString(boxLine(lciWidth, '-'))
	out.WriteString(boxText(lciWidth, " Compute instances:"))
	out.WriteString(boxText(lciWidth, " GPU     GPU       Name               Profile   Instance   Placement  "))
	out.WriteString(boxText(lciWidth, "       Instance                         ID        ID       Start:Size "))
	out.WriteString(boxText(lciWidth, "         ID"))
	out.WriteString("|" + strings.Repeat("=", lciWidth-2) + "|\n")
	for _, r := range rows {
		out.WriteString(r)
		out.WriteString(boxLine(lciWidth, '-'))
	}
	return ExitOK
}

// giSpec is one -cgi list element: a profile ID or name, optionally with
// ":start" to ask for a placement.
type giSpec struct {
	text  string // the profile as the user wrote it
	start int    // -1: automatic
}

func parseGISpecs(list string) ([]giSpec, bool) {
	var specs []giSpec
	for _, t := range strings.Split(list, ",") {
		t = strings.TrimSpace(t)
		if t == "" {
			return nil, false
		}
		sp := giSpec{text: t, start: -1}
		if k := strings.LastIndexByte(t, ':'); k >= 0 {
			n, ok := atoiStrict(t[k+1:])
			if !ok {
				return nil, false
			}
			sp.text, sp.start = t[:k], n
		}
		specs = append(specs, sp)
	}
	return specs, len(specs) > 0
}

func createGIs(s *State, gpus []*GPU, list string, defCI bool, out *bytes.Buffer) int {
	specs, ok := parseGISpecs(list)
	if !ok {
		return invalidArgs(out)
	}
	for _, g := range gpus {
		m := g.model()
		for _, sp := range specs {
			p, ok := m.Profile(sp.text)
			var gi *GPUInstance
			err := errInvalidArg
			if ok {
				gi, err = g.createGI(p, sp.start)
			}
			if err != nil {
				fmt.Fprintf(out, "Unable to create a GPU instance on GPU %2d using profile %s: %s\n", g.Index, sp.text, err.Reason)
				fmt.Fprintf(out, "Failed to create GPU instances: %s\n", err.Reason)
				return err.Code
			}
			fmt.Fprintf(out, "Successfully created GPU instance ID %2d on GPU %2d using profile MIG %s (ID %2d)\n",
				gi.ID, g.Index, p.Name, p.ID)
			if defCI {
				ci, err := g.createCI(s, gi, p.Slices)
				if err != nil {
					fmt.Fprintf(out, "Unable to create a compute instance on GPU %2d GPU instance ID %2d using profile %d: %s\n",
						g.Index, gi.ID, ciProfileIDs[p.Slices], err.Reason)
					fmt.Fprintf(out, "Failed to create compute instances: %s\n", err.Reason)
					return err.Code
				}
				fmt.Fprintf(out, "Successfully created compute instance ID %2d on GPU %2d GPU instance ID %2d using profile MIG %s (ID %2d)\n",
					ci.ID, g.Index, gi.ID, ciName(p, ci.Size), ci.ProfileID)
			}
		}
	}
	return ExitOK
}

func createCIs(s *State, gpus []*GPU, list *string, gis map[int]bool, out *bytes.Buffer) int {
	var specs []string
	if list != nil {
		for _, t := range strings.Split(*list, ",") {
			if t = strings.TrimSpace(t); t == "" {
				return invalidArgs(out)
			}
			specs = append(specs, t)
		}
	}
	found := false
	for _, g := range gpus {
		m := g.model()
		for _, gi := range g.orderedInstances() {
			if gis != nil && !gis[gi.ID] {
				continue
			}
			p := m.profileByID(gi.ProfileID)
			if p == nil {
				continue
			}
			found = true
			todo := specs
			if todo == nil {
				todo = []string{fmt.Sprint(ciProfileIDs[p.Slices])}
			}
			for _, sp := range todo {
				size, ok := resolveCIProfile(p, sp)
				var ci *ComputeInstance
				err := errInvalidArg
				if ok {
					ci, err = g.createCI(s, gi, size)
				}
				if err != nil {
					fmt.Fprintf(out, "Unable to create a compute instance on GPU %2d GPU instance ID %2d using profile %s: %s\n",
						g.Index, gi.ID, sp, err.Reason)
					fmt.Fprintf(out, "Failed to create compute instances: %s\n", err.Reason)
					return err.Code
				}
				fmt.Fprintf(out, "Successfully created compute instance ID %2d on GPU %2d GPU instance ID %2d using profile MIG %s (ID %2d)\n",
					ci.ID, g.Index, gi.ID, ciName(p, ci.Size), ci.ProfileID)
			}
		}
	}
	if !found {
		out.WriteString("Failed to create compute instances: Not Found\n")
		return ExitNotFound
	}
	return ExitOK
}

func destroyCIs(gpus []*GPU, gis, cis map[int]bool, out *bytes.Buffer) int {
	var failed *nvErr
	found := false
	for _, g := range gpus {
		for _, gi := range append([]*GPUInstance{}, g.Instances...) {
			if gis != nil && !gis[gi.ID] {
				continue
			}
			for _, ci := range append([]*ComputeInstance{}, gi.ComputeInstances...) {
				if cis != nil && !cis[ci.ID] {
					continue
				}
				found = true
				if err := g.destroyCI(gi, ci); err != nil {
					fmt.Fprintf(out, "Unable to destroy compute instance ID %2d from GPU %2d GPU instance ID %2d: %s\n",
						ci.ID, g.Index, gi.ID, err.Reason)
					failed = err
					continue
				}
				fmt.Fprintf(out, "Successfully destroyed compute instance ID %2d from GPU %2d GPU instance ID %2d\n",
					ci.ID, g.Index, gi.ID)
			}
		}
	}
	if !found {
		failed = errNotFound
	}
	if failed != nil {
		fmt.Fprintf(out, "Failed to destroy compute instances: %s\n", failed.Reason)
		return failed.Code
	}
	return ExitOK
}

func destroyGIs(gpus []*GPU, gis map[int]bool, out *bytes.Buffer) int {
	var failed *nvErr
	found := false
	for _, g := range gpus {
		for _, gi := range append([]*GPUInstance{}, g.Instances...) {
			if gis != nil && !gis[gi.ID] {
				continue
			}
			found = true
			if err := g.destroyGI(gi); err != nil {
				fmt.Fprintf(out, "Unable to destroy GPU instance ID %2d from GPU %2d: %s\n", gi.ID, g.Index, err.Reason)
				failed = err
				continue
			}
			fmt.Fprintf(out, "Successfully destroyed GPU instance ID %2d from GPU %2d\n", gi.ID, g.Index)
		}
	}
	if !found {
		failed = errNotFound
	}
	if failed != nil {
		fmt.Fprintf(out, "Failed to destroy GPU instances: %s\n", failed.Reason)
		return failed.Code
	}
	return ExitOK
}
