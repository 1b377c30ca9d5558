package main

import (
	"bytes"
	"errors"
	"fmt"
	"html"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strings"
	"time"
)

// section is one "## " section of BENCHMARKS.md and the charts it links.
type section struct {
	heading string            // without the "## "
	body    string            // the Markdown under the heading
	charts  map[string][]byte // file name in the output directory → SVG
}

const (
	launchHeading     = "Launch overhead"
	checkpointHeading = "Checkpoint throughput"
)

// sectionOrder is the order of the sections in BENCHMARKS.md, and the
// benchmarks -only may name, by heading.
var sectionOrder = []string{launchHeading, checkpointHeading, reportHeading, schedHeading, heartbeatHeading, recoveryHeading, driverHeading, tuneHeading, failoverHeading, teardownHeading}

const docHeader = "# Benchmarks\n\n" +
	"Written by `make bench` (`go run ./cmd/rtrain-bench`). Do not edit by hand. `-only NAME` (launch, checkpoint, report, scheduler, heartbeat, recovery, driver or sweep) measures one section again and keeps the others as they were, so each section says when and on what it was measured; the teardown soak runs only as `-only teardown` (`make soak`).\n\n" +
	"Machines are noisy: within each round the contenders run one after another in a random order, so drift hits all of them alike, and every figure stands next to its anchor measured in the same run.\n"

// measuredPrefix starts the first line of every section.
const measuredPrefix = "Measured on "

// measuredLine is a section's first line: when, on what, how often.
// torch is left out when empty.
func measuredLine(rounds int, torch string) string {
	return formatMeasured(time.Now().UTC().Format("2006-01-02 15:04 MST"), machine(torch), fmt.Sprint(rounds))
}

// machine says what the figures were measured on.
func machine(torch string) string {
	m := fmt.Sprintf("%d cores (%s), %s", runtime.NumCPU(), cpuModel(), runtime.Version())
	if torch != "" {
		m += ", torch " + torch
	}
	return m
}

func formatMeasured(when, machine, rounds string) string {
	return fmt.Sprintf("%s%s — %s. Every figure is the median of %s runs, p95 in parentheses.", measuredPrefix, when, machine, rounds)
}

// writeDoc writes the fresh sections and their charts into out, keeping
// the other sections of the BENCHMARKS.md already there.
func writeDoc(out string, fresh []section) error {
	path := filepath.Join(out, "BENCHMARKS.md")
	old, err := os.ReadFile(path)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if err := os.MkdirAll(out, 0o755); err != nil {
		return err
	}
	for _, s := range fresh {
		for name, svg := range s.charts {
			if err := os.WriteFile(filepath.Join(out, name), svg, 0o644); err != nil {
				return err
			}
		}
	}
	return os.WriteFile(path, []byte(mergeDoc(string(old), fresh)), 0o644)
}

// mergeDoc is the new BENCHMARKS.md: the header, then each section,
// fresh if it was measured now, else as the old document had it, else a
// line saying how to measure it.
func mergeDoc(old string, fresh []section) string {
	oldHeader, oldSections := splitDoc(old)
	// Documents written before sections said when they were measured had
	// it once, in the header; a kept section takes it along.
	legacy := legacyMeasured(oldHeader)
	order := slices.Clone(sectionOrder)
	bodies := map[string]string{}
	for _, s := range oldSections {
		body := strings.Trim(s.body, "\n")
		if legacy != "" && !strings.HasPrefix(body, measuredPrefix) {
			body = legacy + "\n\n" + body
		}
		bodies[s.heading] = body
		if !slices.Contains(order, s.heading) {
			order = append(order, s.heading)
		}
	}
	for _, s := range fresh {
		bodies[s.heading] = strings.Trim(s.body, "\n")
	}
	var b strings.Builder
	b.WriteString(docHeader)
	for _, h := range order {
		body, ok := bodies[h]
		if !ok {
			body = fmt.Sprintf("Not measured yet: `go run ./cmd/rtrain-bench -only %s` measures it.", onlyName(h))
		}
		fmt.Fprintf(&b, "\n## %s\n\n%s\n", h, body)
	}
	return b.String()
}

// onlyName is the -only value that measures the section with heading h.
func onlyName(h string) string {
	first, _, _ := strings.Cut(h, " ")
	return strings.ToLower(first)
}

// splitDoc cuts a Markdown document at its "## " headings.
func splitDoc(doc string) (header string, sections []section) {
	var hb strings.Builder
	var cur *section
	for _, line := range strings.SplitAfter(doc, "\n") {
		if h, ok := strings.CutPrefix(line, "## "); ok {
			sections = append(sections, section{heading: strings.TrimSpace(h)})
			cur = &sections[len(sections)-1]
			continue
		}
		if cur == nil {
			hb.WriteString(line)
		} else {
			cur.body += line
		}
	}
	return hb.String(), sections
}

var (
	legacyWhen    = regexp.MustCompile("Written by .* on (.+?)\\. Do not edit by hand\\.")
	legacyMachine = regexp.MustCompile(`Machine: (.+?)\. Every figure is the median of (\d+) runs`)
)

// legacyMeasured turns an old header's "written on" and "Machine:" lines
// into a section's measured line; "" when the header has none.
func legacyMeasured(header string) string {
	w := legacyWhen.FindStringSubmatch(header)
	m := legacyMachine.FindStringSubmatch(header)
	if w == nil || m == nil {
		return ""
	}
	return formatMeasured(w[1], m[1], m[2])
}

func cpuModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}

func torchVersion(python string) string {
	out, err := exec.Command(python, "-c", "import torch; print(torch.__version__)").Output()
	if err != nil {
		return "unknown"
	}
	return strings.TrimSpace(string(out))
}

// chart is horizontal bars of ratios, a group of bars per row, with
// dashed lines at marks.
type chart struct {
	title    string
	series   []string // legend: what each value of a row is
	rows     []chartRow
	marks    []mark
	scaleMax float64 // bars longer than this are cut at the edge
}

type chartRow struct {
	label  string
	values []float64 // one per series
}

type mark struct {
	at    float64
	label string
}

var seriesColors = []string{"#4c78a8", "#f58518", "#54a24b"}

func (c chart) svg() []byte {
	const left, barH, gap, width = 150, 14, 10, 640
	plotW := float64(width - left - 20)
	height := 40 + len(c.rows)*(len(c.series)*barH+gap) + 40
	x := func(r float64) float64 { return left + plotW*min(r, c.scaleMax)/c.scaleMax }
	var b bytes.Buffer
	fmt.Fprintf(&b, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="11">`+"\n", width, height)
	fmt.Fprintf(&b, `<rect width="100%%" height="100%%" fill="white"/><text x="%d" y="18" font-size="13">%s</text>`+"\n", left, html.EscapeString(c.title))
	y := 34
	for _, r := range c.rows {
		fmt.Fprintf(&b, `<text x="%d" y="%d" text-anchor="end">%s</text>`+"\n", left-6, y+len(c.series)*barH/2+3, html.EscapeString(r.label))
		for i, v := range r.values {
			fmt.Fprintf(&b, `<rect x="%d" y="%d" width="%.1f" height="%d" fill="%s"/><text x="%.1f" y="%d">%.2f</text>`+"\n",
				left, y, x(v)-left, barH-1, seriesColors[i%len(seriesColors)], x(v)+3, y+barH-3, v)
			y += barH
		}
		y += gap
	}
	for _, m := range c.marks {
		fmt.Fprintf(&b, `<line x1="%.1f" y1="28" x2="%.1f" y2="%d" stroke="black" stroke-dasharray="3,3"/><text x="%.1f" y="%d" text-anchor="middle">%s</text>`+"\n", x(m.at), x(m.at), y, x(m.at), y+12, html.EscapeString(m.label))
	}
	lx := left
	for i, s := range c.series {
		fmt.Fprintf(&b, `<rect x="%d" y="%d" width="10" height="10" fill="%s"/><text x="%d" y="%d">%s</text>`, lx, y+20, seriesColors[i%len(seriesColors)], lx+14, y+29, html.EscapeString(s))
		lx += 14 + 7*len([]rune(s)) + 16
	}
	b.WriteString("\n</svg>\n")
	return b.Bytes()
}
