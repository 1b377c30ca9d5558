package sched

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
)

// Custom is an amount of custom resources by name, like Ray's
// `--resources '{"accel": 4}'`: anything a node has a fixed number of that
// jobs must not overbook (a licence, a special accelerator, a fast disk).
//
// It is kept as its canonical text, "name=qty,name=qty" with names sorted,
// so that Resources stays comparable: the scheduler keys node shapes by
// Resources. Quantities are rounded to 1/10000, Ray's precision, which also
// keeps sums of fractions exact enough to compare.
type Custom string

// customName is what a custom resource may be called: Ray's names
// ("accelerator_type:A100", "node:10.0.0.1") fit.
var customName = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.:/-]*$`)

// reserved are the resources that have flags of their own.
var reserved = map[string]bool{"cpu": true, "gpu": true, "memory": true}

// ParseCustom reads custom resources the way users write them: a JSON
// object as `ray start --resources` takes ({"accel": 2}), or name=qty
// pairs separated by commas (accel=2,licence=1). Empty is none.
func ParseCustom(s string) (Custom, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return "", nil
	}
	m := map[string]float64{}
	if strings.HasPrefix(s, "{") {
		if err := json.Unmarshal([]byte(s), &m); err != nil {
			return "", fmt.Errorf(`custom resources %q: not a JSON object of numbers (%v); write {"name": 2} or name=2`, s, err)
		}
	} else {
		for pair := range strings.SplitSeq(s, ",") {
			name, qty, ok := strings.Cut(pair, "=")
			q, err := strconv.ParseFloat(strings.TrimSpace(qty), 64)
			if !ok || err != nil {
				return "", fmt.Errorf("custom resources %q: %q is not name=quantity", s, strings.TrimSpace(pair))
			}
			name = strings.TrimSpace(name)
			if _, dup := m[name]; dup {
				return "", fmt.Errorf("custom resources %q: %s is given twice", s, name)
			}
			m[name] = q
		}
	}
	return CustomOf(m)
}

// CustomOf checks m and makes it a Custom. Zero quantities are dropped.
func CustomOf(m map[string]float64) (Custom, error) {
	for name, q := range m {
		if reserved[strings.ToLower(name)] {
			return "", fmt.Errorf("%q is not a custom resource: CPUs, GPUs and memory have flags of their own", name)
		}
		if !customName.MatchString(name) {
			return "", fmt.Errorf("custom resource %q: names are letters, digits and _ . : / -", name)
		}
		if q < 0 || math.IsNaN(q) {
			return "", fmt.Errorf("custom resource %s: quantity %g must be 0 or more", name, q)
		}
		if q > maxCustom {
			return "", fmt.Errorf("custom resource %s: quantity %g is above the largest, %g", name, q, float64(maxCustom))
		}
		if q > 0 && round4(q) == 0 {
			return "", fmt.Errorf("custom resource %s: quantity %g is below the smallest, 0.0001", name, q)
		}
	}
	return customFrom(m), nil
}

// MustCustom is CustomOf for amounts known to be valid.
func MustCustom(m map[string]float64) Custom {
	c, err := CustomOf(m)
	if err != nil {
		panic(err)
	}
	return c
}

// maxCustom is the largest quantity: to 1/10000, sums of quantities up to
// it stay exact in a float64.
const maxCustom = 1e9

func round4(q float64) float64 { return math.Round(q*1e4) / 1e4 }

// customFrom encodes m, dropping what rounds to zero or below.
func customFrom(m map[string]float64) Custom {
	var b strings.Builder
	for _, name := range slices.Sorted(maps.Keys(m)) {
		q := round4(m[name])
		if q <= 0 {
			continue
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(name)
		b.WriteByte('=')
		b.WriteString(strconv.FormatFloat(q, 'g', -1, 64))
	}
	return Custom(b.String())
}

// Map is c by name; nil when c is empty.
func (c Custom) Map() map[string]float64 {
	if c == "" {
		return nil
	}
	m := map[string]float64{}
	c.each(func(name string, q float64) bool {
		m[name] = q
		return true
	})
	return m
}

// each calls f for every resource in name order until f returns false.
func (c Custom) each(f func(name string, q float64) bool) {
	if c == "" {
		return
	}
	for pair := range strings.SplitSeq(string(c), ",") {
		if pair == "" {
			continue
		}
		name, qty, _ := strings.Cut(pair, "=")
		q, _ := strconv.ParseFloat(qty, 64)
		if !f(name, q) {
			return
		}
	}
}

// get is the quantity of name in c, 0 when c has none.
func (c Custom) get(name string) float64 {
	var found float64
	c.each(func(n string, q float64) bool {
		if n == name {
			found = q
			return false
		}
		return true
	})
	return found
}

// plus is c + k*o.
func (c Custom) plus(o Custom, k float64) Custom {
	if o == "" || k == 0 {
		return c
	}
	m := c.Map()
	if m == nil {
		m = map[string]float64{}
	}
	o.each(func(name string, q float64) bool {
		m[name] += k * q
		return true
	})
	return customFrom(m)
}

// fits reports whether c fits in free.
func (c Custom) fits(free Custom) bool {
	_, _, _, short := c.short(free)
	return !short
}

// capacity is how many of c fit in free, or noFit when c is empty.
func (c Custom) capacity(free Custom) int {
	n := noFit
	c.each(func(name string, q float64) bool {
		n = min(n, int(min((free.get(name)+1e-9)/q, noFit)))
		return n > 0
	})
	return n
}

// short is the first resource of c that the amount in free cannot give,
// for messages: its name and the two quantities.
func (c Custom) short(free Custom) (name string, want, have float64, ok bool) {
	c.each(func(n string, q float64) bool {
		if h := free.get(n); q > h+1e-9 {
			name, want, have, ok = n, q, h, true
			return false
		}
		return true
	})
	return name, want, have, ok
}

// String is c as JSON, the way `--resources` takes it.
func (c Custom) String() string {
	if c == "" {
		return "{}"
	}
	var parts []string
	c.each(func(name string, q float64) bool {
		parts = append(parts, strconv.Quote(name)+": "+strconv.FormatFloat(q, 'g', -1, 64))
		return true
	})
	return "{" + strings.Join(parts, ", ") + "}"
}
