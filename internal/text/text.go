// Package text holds the small wording helpers rtrain's messages share.
package text

import "strconv"

// Plural is "1 worker" or "4 workers": n and noun, with an s unless n is 1.
func Plural(n int, noun string) string {
	if n == 1 {
		return "1 " + noun
	}
	return strconv.Itoa(n) + " " + noun + "s"
}
