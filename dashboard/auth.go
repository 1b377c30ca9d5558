package dashboard

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"net/http"
	"net/url"
	"strings"
)

// cookieName holds a browser's session: not the cluster token itself (which
// also opens the head's gRPC service) but a MAC derived from it, so a
// leaked cookie opens the dashboard only.
const cookieName = "rtrain_session"

// auth checks every request against the cluster token.
type auth struct {
	token   string
	session string
}

func newAuth(token string) auth {
	m := hmac.New(sha256.New, []byte(token))
	m.Write([]byte("rtrain dashboard session v1"))
	return auth{token: token, session: hex.EncodeToString(m.Sum(nil))}
}

func equal(a, b string) bool { return subtle.ConstantTimeCompare([]byte(a), []byte(b)) == 1 }

// ok reports whether r carries the token (Authorization: Bearer) or the
// session cookie.
func (a auth) ok(r *http.Request) bool {
	if h := r.Header.Get("Authorization"); h != "" {
		scheme, tok, _ := strings.Cut(h, " ")
		return strings.EqualFold(scheme, "Bearer") && equal(strings.TrimSpace(tok), a.token)
	}
	c, err := r.Cookie(cookieName)
	return err == nil && equal(c.Value, a.session)
}

// login sets the session cookie and sends the browser on to next.
func (a auth) login(w http.ResponseWriter, r *http.Request, next string) {
	http.SetCookie(w, &http.Cookie{
		Name: cookieName, Value: a.session, Path: "/",
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil,
	})
	http.Redirect(w, r, next, http.StatusSeeOther)
}

// wrap lets through what carries the token. A browser without it gets the
// login form, or signs in with ?token= once (the redirect drops it from
// the address bar) or by posting the form to /login; programs (/metrics,
// /api/) get a plain 401.
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
			if equal(r.PostFormValue("token"), a.token) {
				a.login(w, r, to)
				return
			}
			form(w, r, to, true)
		case r.Method == http.MethodGet && r.URL.Query().Has("token"):
			q := r.URL.Query()
			tok := q.Get("token")
			q.Del("token")
			u := url.URL{Path: r.URL.Path, RawQuery: q.Encode()}
			if equal(tok, a.token) {
				a.login(w, r, u.String())
				return
			}
			if program {
				http.Error(w, "wrong token", http.StatusUnauthorized)
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
