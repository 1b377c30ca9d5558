package dashboard

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"fmt"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	clusterauth "github.com/rtrain/rtrain/cluster/auth"
)

// cookieName holds a browser's session: not the cluster token itself (which
// also opens the head's gRPC service) but an expiring MAC under a key this
// process drew, so a leaked cookie opens the dashboard only, for a while,
// and never after the head restarts.
const cookieName = "rtrain_session"

// sessionTTL is how long a browser stays signed in.
const sessionTTL = 12 * time.Hour

// loginParam carries a login link's ticket: the token never goes in an
// address, where history, proxies and Referer headers would keep it.
const loginParam = "login"

// auth checks every request against the cluster token.
type auth struct {
	token string
	key   []byte
	now   func() time.Time
	// used holds the login tickets already spent, until they expire.
	mu   *sync.Mutex
	used map[string]time.Time
}

func newAuth(token string) auth {
	key := make([]byte, 32)
	_, _ = rand.Read(key)
	secret, _ := clusterauth.SplitToken(token)
	return auth{token: secret, key: key, now: time.Now, mu: &sync.Mutex{}, used: map[string]time.Time{}}
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// tokenOK accepts the cluster's secret or a join token that carries it.
func (a auth) tokenOK(tok string) bool {
	secret, _ := clusterauth.SplitToken(strings.TrimSpace(tok))
	return equal(secret, a.token)
}

func mac(key []byte, purpose string, expiry int64) string {
	m := hmac.New(sha256.New, key)
	fmt.Fprintf(m, "rtrain dashboard %s v2|%d", purpose, expiry)
	return hex.EncodeToString(m.Sum(nil))
}

// signed is "expiry.mac"; verify checks one against now.
func signed(key []byte, purpose string, expiry time.Time) string {
	return strconv.FormatInt(expiry.Unix(), 10) + "." + mac(key, purpose, expiry.Unix())
}

func (a auth) verify(key []byte, purpose, v string) bool {
	exp, sum, ok := strings.Cut(v, ".")
	if !ok {
		return false
	}
	n, err := strconv.ParseInt(exp, 10, 64)
	if err != nil || a.now().Unix() >= n {
		return false
	}
	return equal(sum, mac(key, purpose, n))
}

// LoginLink is a link to the dashboard page at base (its URL) that signs
// a browser in once within ttl, made by whoever holds the cluster token:
// what scripts and headless browsers open instead of typing the token.
func LoginLink(base, token string, ttl time.Duration) string {
	secret, _ := clusterauth.SplitToken(token)
	u, err := url.Parse(base)
	if err != nil {
		return base
	}
	q := u.Query()
	q.Set(loginParam, signed([]byte(secret), "login", time.Now().Add(ttl)))
	u.RawQuery = q.Encode()
	return u.String()
}

// spend accepts a login ticket once.
func (a auth) spend(ticket string) bool {
	if !a.verify([]byte(a.token), "login", ticket) {
		return false
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	now := a.now()
	for t, exp := range a.used {
		if now.After(exp) {
			delete(a.used, t)
		}
	}
	if _, spent := a.used[ticket]; spent {
		return false
	}
	exp, _ := strconv.ParseInt(ticket[:strings.IndexByte(ticket, '.')], 10, 64)
	a.used[ticket] = time.Unix(exp, 0)
	return true
}

// ok reports whether r carries the token (Authorization: Bearer) or a
// live session cookie.
func (a auth) ok(r *http.Request) bool {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		return strings.EqualFold(scheme, "Bearer") && a.tokenOK(tok)
	}
	c, err := r.Cookie(cookieName)
	return err == nil && a.verify(a.key, "session", c.Value)
}

// login sets the session cookie and sends the browser on to next.
func (a auth) login(w http.ResponseWriter, r *http.Request, next string) {
	expiry := a.now().Add(sessionTTL)
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: signed(a.key, "session", expiry), Path: "/", Expires: expiry,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// wrap lets through what carries the token. A browser without it gets the
// login form, or signs in with a login link's ticket once (the redirect
// drops it from the address bar) or by posting the form to /login;
// programs (/metrics, /api/) get a plain 401.
func (a auth) wrap(next http.Handler, form func(w http.ResponseWriter, r *http.Request, next string, wrong bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if a.ok(r) {
			next.ServeHTTP(w, r)
			return
		}
		program := r.URL.Path == "/metrics" || strings.HasPrefix(r.URL.Path, "/api/")
		switch {
		case r.Method == http.MethodPost && r.URL.Path == "/login":
			to := localPath(r.PostFormValue("next"))
			if a.tokenOK(r.PostFormValue("token")) {
				a.login(w, r, to)
				return
			}
			form(w, r, to, true)
		case r.Method == http.MethodGet && r.URL.Query().Has(loginParam):
			q := r.URL.Query()
			ticket := q.Get(loginParam)
			q.Del(loginParam)
			u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
			if a.spend(ticket) {
				a.login(w, r, u.String())
				return
			}
			if program {
				http.Error(w, "expired or spent login link", http.StatusUnauthorized)
				return
			}
			form(w, r, u.String(), true)
		case program || r.Method != http.MethodGet:
			w.Header().Set("WWW-Authenticate", `Bearer realm="rtrain"`)
			http.Error(w, "the cluster token is required: Authorization: Bearer TOKEN", http.StatusUnauthorized)
		default:
			form(w, r, r.URL.RequestURI(), false)
		}
	})
}

// localPath is next if it is a path on this server, else "/": the login
// form must not redirect elsewhere.
func localPath(next string) string {
	u, err := url.Parse(next)
	if err != nil || u.Scheme != "" || u.Host != "" || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(next, "//") || strings.Contains(next, `\`) {
		return "/"
	}
	return u.RequestURI()
}
