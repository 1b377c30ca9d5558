#!/bin/sh
# The porting rule, mechanically: a Ray Train program on stdin becomes an
# rtrain one on stdout. ray.train -> rtrain, ray.tune -> rtrain.tune, and
# ray -> rtrain, as module names only (not inside other words).
exec sed -E \
	-e 's/\bray\.train\b/rtrain/g' \
	-e 's/\bray\.tune\b/rtrain.tune/g' \
	-e 's/\bray\b/rtrain/g'
