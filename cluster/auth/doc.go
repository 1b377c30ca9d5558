// Package auth is how every caller and server of a cluster proves itself:
// the cluster token, checked from a call's headers before its body is
// read; rtrain's version; TLS, with the head's own CA pinned by the join
// token or with certificates of the operator's; and the errors of refused
// calls, turned into one line that says what to do.
package auth
