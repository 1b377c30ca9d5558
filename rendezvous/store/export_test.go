package store

import "slices"

// Keys lists the keys s holds, sorted, so tests can see what torch stored.
func Keys(s *Server) []string {
	s.ks.mu.Lock()
	defer s.ks.mu.Unlock()
	keys := make([]string, 0, len(s.ks.data))
	for k := range s.ks.data {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}
